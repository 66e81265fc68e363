#!/usr/bin/env python3
"""Generate the hand-made RFC 5322 test fixtures for chaff.

Usage:
    python3 corpus/make_fixtures.py            # (re)write every fixture + fixtures.toml
    python3 corpus/make_fixtures.py --verify   # check fixtures on disk with Python's email package

Everything is deterministic: no clocks, no unseeded randomness. All files are
written in binary mode so the exact bytes (line endings, 8-bit charsets) are
under our control. All content is invented; only example.com / example.org /
example.net / .test domains and RFC 5737 documentation IP addresses are used.
"""

import base64
import hashlib
import os
import quopri
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

LF = b"\n"
CRLF = b"\r\n"

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# --------------------------------------------------------------------------
# RFC 2047 encoded-words
# --------------------------------------------------------------------------

_Q_SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _q_encode(raw: bytes) -> str:
    out = []
    for b in raw:
        if b == 0x20:
            out.append("_")
        elif b in _Q_SAFE:
            out.append(chr(b))
        else:
            out.append("=%02X" % b)
    return "".join(out)


def _word(charset: str, enc: str, raw: bytes) -> str:
    if enc == "B":
        payload = base64.b64encode(raw).decode("ascii")
    else:
        payload = _q_encode(raw)
    return "=?%s?%s?%s?=" % (charset, enc, payload)


def encoded_words(text: str, charset: str, enc: str, codec: str) -> str:
    """Encode `text` as one or more RFC 2047 encoded-words (each <= 75 chars),
    splitting only on character boundaries and folding with CRLF-less
    continuation (the caller's line ending is applied later)."""
    words = []
    chunk = ""
    for ch in text:
        cand = chunk + ch
        # the first word shares its line with "Subject: " (9 chars); keep lines <= 78
        limit = 75 if words else 69
        if chunk and len(_word(charset, enc, cand.encode(codec))) > limit:
            words.append(_word(charset, enc, chunk.encode(codec)))
            chunk = ch
        else:
            chunk = cand
    if chunk:
        words.append(_word(charset, enc, chunk.encode(codec)))
    return "\n ".join(words)


# --------------------------------------------------------------------------
# body transfer encodings (operate on LF-separated bytes; the file line
# ending is applied when the whole message is assembled)
# --------------------------------------------------------------------------


def cte_8bit(raw: bytes) -> bytes:
    return raw


def cte_qp(raw: bytes) -> bytes:
    return quopri.encodestring(raw, quotetabs=False)


def cte_b64(raw: bytes) -> bytes:
    # base64 of text uses canonical CRLF line endings (RFC 2045 6.8)
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    s = base64.b64encode(raw)
    lines = [s[i : i + 76] for i in range(0, len(s), 76)]
    return b"\n".join(lines) + b"\n"


def b64_binary(raw: bytes) -> bytes:
    s = base64.b64encode(raw)
    lines = [s[i : i + 76] for i in range(0, len(s), 76)]
    return b"\n".join(lines) + b"\n"


CTE = {
    "8bit": cte_8bit,
    "7bit": cte_8bit,
    "quoted-printable": cte_qp,
    "base64": cte_b64,
}


def eol(data: bytes, ending: bytes) -> bytes:
    """Normalise every line ending in `data` to `ending`."""
    data = data.replace(b"\r\n", b"\n")
    if ending == LF:
        return data
    return data.replace(b"\n", ending)


def headers(pairs) -> bytes:
    out = []
    for name, value in pairs:
        if isinstance(value, str):
            value = value.encode("ascii")
        out.append(name.encode("ascii") + b": " + value)
    return b"\n".join(out) + b"\n"


def std_headers(n, from_, to, subject, date=None, extra=()):
    return [
        (
            "Received",
            "from mail.example.org (mail.example.org [192.0.2.%d])\n"
            "\tby mx.example.com (Postfix) with ESMTP id 4T%04dQ\n"
            "\tfor <%s>; Mon, 15 Jan 2024 10:%02d:00 +0000" % (10 + n, n, "bob@example.com", n % 60),
        ),
        ("Message-ID", "<fixture-%04d@example.org>" % n),
        ("Date", date or "Mon, 15 Jan 2024 10:%02d:00 +0000" % (n % 60)),
        ("From", from_),
        ("To", to),
        ("Subject", subject),
        *extra,
    ]


# --------------------------------------------------------------------------
# fixture definitions
# --------------------------------------------------------------------------

FILES = {}  # relative path -> bytes
MANIFEST = []  # list of dicts
_counter = [0]


def add(path, data, ending=LF, manifest=None):
    FILES[path] = eol(data, ending)
    if manifest is not None:
        entry = {"file": path}
        entry.update(manifest)
        MANIFEST.append(entry)


# (file, charset label, python codec, header enc, CTE, line ending,
#  subject, body, text_contains, subject_contains)
CHARSET_FIXTURES = [
    (
        "utf8.eml", "utf-8", "utf-8", "B", "8bit", LF,
        "Grüße aus Zürich – naïve café ☕",
        "Hallo Bob,\n\nviele Grüße aus Zürich! Le café était naïve et délicieux.\n"
        "Ещё немного кириллицы, 一点中文, そして日本語.\n\n-- \nAlice\n",
        ["Grüße aus Zürich", "délicieux", "кириллицы", "一点中文"],
        "naïve café",
    ),
    (
        "iso-8859-1.eml", "ISO-8859-1", "latin-1", "Q", "quoted-printable", LF,
        "Ihre Bestellung für Größe M – à bientôt".replace("–", "-"),
        "Sehr geehrte Kundin,\n\nIhre Bestellung für Größe M wurde verschickt. Schöne Grüße!\n"
        "Votre commande a été expédiée. À bientôt, l'équipe du magasin.\n",
        ["Größe", "Schöne Grüße", "été expédiée", "À bientôt"],
        "für Größe",
    ),
    (
        "iso-8859-2.eml", "iso-8859-2", "iso8859-2", "Q", "quoted-printable", LF,
        "Zażółć gęślą jaźń – Příliš žluťoučký kůň".replace("–", "-"),
        "Dzień dobry,\n\nZażółć gęślą jaźń. Proszę o potwierdzenie spotkania.\n"
        "Příliš žluťoučký kůň úpěl ďábelské ódy.\n",
        ["gęślą jaźń", "potwierdzenie", "žluťoučký kůň", "ďábelské"],
        "Zażółć",
    ),
    (
        "iso-8859-5.eml", "ISO-8859-5", "iso8859-5", "B", "8bit", LF,
        "Счёт за услуги связи".replace("ё", "е"),
        "Здравствуйте!\n\nВаш счет за услуги связи готов. Сумма к оплате: 450 рублей.\n",
        ["Здравствуйте", "услуги связи", "рублей"],
        "Счет за услуги",
    ),
    (
        "iso-8859-15.eml", "iso-8859-15", "iso8859-15", "Q", "quoted-printable", LF,
        "Offre spéciale : 50 € pour votre œuvre",
        "Bonjour,\n\nNotre offre spéciale : 50 € de réduction sur chaque œuvre encadrée.\n"
        "Cœur fidèle, Ÿvonne.\n",
        ["50 €", "œuvre encadrée", "Cœur", "Ÿvonne"],
        "50 €",
    ),
    (
        "koi8-r.eml", "koi8-r", "koi8-r", "B", "8bit", LF,
        "Привет из Москвы",
        "Привет, Боб!\n\nЭто тестовое письмо. Большой привет от всей команды.\n",
        ["Это тестовое письмо", "привет", "команды"],
        "из Москвы",
    ),
    (
        "windows-1251.eml", "windows-1251", "cp1251", "Q", "quoted-printable", CRLF,
        "Выгодное предложение: скидка",
        "Добрый день!\n\nТолько сегодня скидка на все товары. Спешите купить.\n",
        ["Добрый день", "скидка на все товары", "Спешите"],
        "Выгодное предложение",
    ),
    (
        "gb2312.eml", "gb2312", "gb2312", "B", "base64", LF,
        "免费发票，代开增值税",
        "您好：\n\n这是一封测试邮件。本公司长期代开各类发票，价格优惠。\n",
        ["这是一封测试邮件", "代开各类发票"],
        "免费发票",
    ),
    (
        "big5.eml", "big5", "big5", "B", "8bit", LF,
        "會議時間確認",
        "您好：\n\n這是一封測試郵件，請確認下週的會議時間。謝謝！\n",
        ["這是一封測試郵件", "會議時間"],
        "會議時間確認",
    ),
    (
        "shift_jis.eml", "Shift_JIS", "shift_jis", "B", "base64", LF,
        "会議資料の送付について",
        "ボブ様\n\nこんにちは。明日の会議資料を送ります。ご確認ください。\n",
        ["こんにちは", "会議資料を送ります", "ご確認ください"],
        "会議資料",
    ),
    (
        "iso-2022-jp.eml", "ISO-2022-JP", "iso2022_jp", "B", "7bit", CRLF,
        "お打ち合わせの件",
        "ボブ様\n\nお世話になっております。明日の打ち合わせは午後三時からです。\nよろしくお願いいたします。\n",
        ["お世話になっております", "打ち合わせ", "よろしくお願いいたします"],
        "打ち合わせ",
    ),
    (
        "euc-kr.eml", "euc-kr", "euc-kr", "Q", "8bit", LF,
        "회의 일정 확인",
        "안녕하세요.\n\n다음 주 회의 일정을 확인해 주세요. 감사합니다.\n",
        ["안녕하세요", "회의 일정을 확인해", "감사합니다"],
        "회의 일정",
    ),
]


def build_charset_fixtures():
    for i, (fname, label, codec, henc, cte, ending, subject, body, contains, subj_contains) in enumerate(
        CHARSET_FIXTURES, start=1
    ):
        subj = encoded_words(subject, label, henc, codec)
        raw_body = body.encode(codec)
        hdrs = std_headers(
            i,
            '"Fixture Sender %d" <sender%d@example.org>' % (i, i),
            "Bob <bob@example.com>",
            subj,
            extra=[
                ("MIME-Version", "1.0"),
                ("Content-Type", "text/plain; charset=%s" % (label if "_" not in label else '"%s"' % label)),
                ("Content-Transfer-Encoding", cte),
                ("X-Mailer", "FixtureMailer 1.0"),
            ],
        )
        data = headers(hdrs) + b"\n" + CTE[cte](raw_body)
        add(
            fname,
            data,
            ending,
            {
                "charset": label.lower(),
                "subject_contains": subj_contains,
                "text_contains": contains,
            },
        )


def build_html_only():
    html = """<!DOCTYPE html>
<html>
<head>
<title>Account notice</title>
<style type="text/css">
body { font-family: Arial, sans-serif; } .stylesecret { color: #ff0000; }
</style>
<script type="text/javascript">
var scriptsecret = "tracking-beacon"; document.write("jsinjectedtext");
</script>
</head>
<body>
<p>Dear customer, your account has been <b>suspended</b>.</p>
<p><a href="http://phish.example.net/login">Click here to verify</a></p>
<img src="http://img.example.net/pixel.gif" width="1" height="1" alt="">
<p>Tom &amp; Jerry&nbsp;Bank &#233;quipe s&eacute;curit&eacute;</p>
<!-- commentsecret: this is an HTML comment -->
<div style="display:none">hiddenbayesword lottery winner</div>
<font color="#ffffff" size="1">whiteonwhitetext</font>
</body>
</html>
"""
    hdrs = std_headers(
        101,
        '"Security Team" <security@phish.example.net>',
        "bob@example.com",
        "Action required: verify your account",
        extra=[
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/html; charset="utf-8"'),
            ("Content-Transfer-Encoding", "8bit"),
        ],
    )
    add(
        "html-only.eml",
        headers(hdrs) + b"\n" + html.encode("utf-8"),
        LF,
        {
            "charset": "utf-8",
            "_comment": [
                "Hidden-text tricks (display:none div 'hiddenbayesword', white 1-size font",
                "'whiteonwhitetext') are deliberately asserted neither way.",
            ],
            "subject_contains": "verify your account",
            "text_contains": [
                "Dear customer",
                "Click here to verify",
                "Tom & Jerry",
                "équipe",
                "sécurité",
            ],
            # hidden text (display:none div, white-on-white font) is deliberately
            # NOT asserted either way; it is a feature, not a parsing requirement.
            "text_absent": [
                "scriptsecret",
                "jsinjectedtext",
                "stylesecret",
                "font-family",
                "commentsecret",
                "&amp;",
                "&#233;",
                "<p>",
                "href=",
            ],
            "urls_contains": [
                "http://phish.example.net/login",
                "http://img.example.net/pixel.gif",
            ],
        },
    )


def build_base64_text():
    body = (
        "Hello Bob,\n\nYour invoice number INV-20240117 is ready. The amount due is\n"
        "EUR 123.45, payable by 31 January. Thanks for being a naïve but loyal customer.\n\n"
        "Regards,\nAccounts\n"
    )
    hdrs = std_headers(
        102,
        '"Accounts" <accounts@example.org>',
        "bob@example.com",
        "Invoice INV-20240117",
        extra=[
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "base64"),
        ],
    )
    add(
        "base64-text.eml",
        headers(hdrs) + b"\n" + cte_b64(body.encode("utf-8")),
        LF,
        {
            "charset": "utf-8",
            "subject_contains": "INV-20240117",
            "text_contains": ["invoice number INV-20240117", "payable by 31 January", "naïve"],
            "text_absent": ["SGVsbG8g"],  # raw base64 must not leak into text
        },
    )


def build_nested_multipart():
    fake_pdf = (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n"
        b"stream\npdfattachmentmarker\x00\x01\x02\xff\xfe\nendstream\n%%EOF\n"
    )
    inner = headers(
        [
            ("Message-ID", "<inner-0001@example.com>"),
            ("Date", "Fri, 12 Jan 2024 08:00:00 +0000"),
            ("From", '"Carol" <carol@example.com>'),
            ("To", "alice@example.org"),
            ("Subject", "Original itinerary"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=us-ascii"),
        ]
    ) + b"\nForwarded content: the distinctive word is zanzibarquokka.\n"
    outer = headers(
        std_headers(
            103,
            '"Alice Example" <alice@example.org>',
            "Bob <bob@example.com>",
            "Fwd: quarterly report and itinerary",
            extra=[
                ("MIME-Version", "1.0"),
                ("Content-Type", 'multipart/mixed; boundary="==outer-boundary-7f3a=="'),
            ],
        )
    )
    parts = b"".join(
        [
            b"This is a multi-part message in MIME format.\n",
            b"\n--==outer-boundary-7f3a==\n",
            b'Content-Type: multipart/alternative; boundary="alt-boundary-19c2"\n',
            b"\n",
            b"--alt-boundary-19c2\n",
            b"Content-Type: text/plain; charset=us-ascii\n",
            b"Content-Transfer-Encoding: 7bit\n",
            b"\n",
            b"Hi Bob, please find the quarterly report attached, plus Carol's\n"
            b"itinerary forwarded below. Plainpartonly marker here.\n",
            b"\n--alt-boundary-19c2\n",
            b"Content-Type: text/html; charset=us-ascii\n",
            b"Content-Transfer-Encoding: 7bit\n",
            b"\n",
            b"<html><body><p>Hi Bob, please find the <b>quarterly report</b> attached.</p></body></html>\n",
            b"\n--alt-boundary-19c2--\n",
            b"\n--==outer-boundary-7f3a==\n",
            b'Content-Type: application/pdf; name="report-q4.pdf"\n',
            b"Content-Transfer-Encoding: base64\n",
            b'Content-Disposition: attachment; filename="report-q4.pdf"\n',
            b"\n",
            b64_binary(fake_pdf),
            b"\n--==outer-boundary-7f3a==\n",
            b"Content-Type: message/rfc822\n",
            b'Content-Disposition: attachment; filename="itinerary.eml"\n',
            b"\n",
            inner,
            b"\n--==outer-boundary-7f3a==--\n",
        ]
    )
    add(
        "nested-multipart.eml",
        outer + b"\n" + parts,
        LF,
        {
            "_comment": [
                "'zanzibarquokka' is only in the attached message/rfc822 part (an",
                "attachment in mail-parser terms); 'pdfattachmentmarker' only in the PDF.",
            ],
            "charset": "us-ascii",
            "subject_contains": "quarterly report",
            "text_contains": ["quarterly report", "zanzibarquokka"],
            "text_absent": ["pdfattachmentmarker"],
        },
    )


def build_empty():
    base = std_headers(
        104,
        '"Nobody" <nobody@example.org>',
        "bob@example.com",
        "Empty body test",
        extra=[("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=us-ascii")],
    )
    # headers + blank separator line, zero-length body
    add(
        "empty-body.eml",
        headers(base) + b"\n",
        LF,
        {"charset": "us-ascii", "subject_contains": "Empty body", "text_contains": []},
    )
    # headers only: last header line ends with a newline, no blank line at all
    base2 = [(k, v.replace("fixture-0104", "fixture-0105").replace("Empty body test", "Headers only test")) for k, v in base]
    add(
        "headers-only.eml",
        headers(base2),
        LF,
        {"charset": "us-ascii", "subject_contains": "Headers only", "text_contains": []},
    )


def build_malformed():
    data = b"".join(
        [
            b"Received: from broken.example.org (broken.example.org [198.51.100.7])\n",
            b"\tby mx.example.com (Postfix) with ESMTP id 4TBAD0\n",
            b"Message-ID: <fixture-0106@example.org>\n",
            b"Date: Mon, 15 Jan 2024 10:06:00 +0000\n",
            b'From: "Broken Sender" <broken@example.org>\n',
            b"To: bob@example.com\n",
            # valid encoded-word followed by a truncated one (no ?= terminator)
            b"Subject: Meeting notes =?utf-8?Q?caf=C3=A9?= =?utf-8?B?dHJ1bmNhdGVk\n",
            b"MIME-Version: 1.0\n",
            b'Content-Type: multipart/mixed; boundary="NEVERCLOSES"\n',
            # a header line without a colon
            b"This header line has no colon at all\n",
            b"\n",
            b"preamble text that nobody reads\n",
            b"--NEVERCLOSES\n",
            b"Content-Type: text/plain; charset=us-ascii\n",
            b"\n",
            b"Survivor text: the quick brown fox survives malformed mime.\n",
            b"--NEVERCLOSES\n",
            b"Content-Type: text/plain; charset=x-klingon-unknown\n",
            b"\n",
            b"Unknown charset part says qapla in plain ascii.\n",
            b"--NEVERCLOSES\n",
            b"Content-Type: text/plain; charset=utf-8\n",
            b"Content-Transfer-Encoding: base64\n",
            b"\n",
            b"SGVsbG8gd29ybGQ!!!@@@ this is *not* base64 ===\n",
            b"--NEVERCLOSES\n",
            b"Content-Type: text/plain; charset=us-ascii\n",
            b"\n",
            b"Final part with no closing boundary, word lastpartalive.\n",
            # EOF without --NEVERCLOSES--
        ]
    )
    add(
        "malformed-mime.eml",
        data,
        LF,
        {
            "_comment": [
                "Boundary never closes; part 3 has invalid base64; part 2 has an unknown",
                "charset; one top-level header line has no colon; Subject ends in a",
                "truncated encoded-word. 'lastpartalive' is in the unterminated last part:",
                "mail-parser 0.11 recovers it but files it under attachments, not text_body.",
            ],
            "charset": "mixed",
            "subject_contains": "Meeting notes",
            "text_contains": ["quick brown fox survives", "qapla", "lastpartalive"],
        },
    )


def build_binary_junk():
    out = bytearray()
    i = 0
    while len(out) < 4096:
        out += hashlib.sha256(b"chaff-binary-junk-seed-1:%d" % i).digest()
        i += 1
    FILES["binary-junk.bin"] = bytes(out[:4096])


def build_gtube():
    hdrs = std_headers(
        107,
        '"Test Sender" <tester@example.org>',
        "bob@example.com",
        "GTUBE test message",
        extra=[
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=us-ascii"),
            ("Content-Transfer-Encoding", "7bit"),
            ("X-Mailer", "FixtureMailer 1.0"),
        ],
    )
    body = (
        "This is the GTUBE, the Generic Test for Unsolicited Bulk Email.\n"
        "If your spam filter supports it, this message should be flagged.\n\n"
        + GTUBE
        + "\n\nNothing else to see here.\n"
    )
    add(
        "gtube.eml",
        headers(hdrs) + b"\n" + body.encode("ascii"),
        LF,
        {"charset": "us-ascii", "subject_contains": "GTUBE", "text_contains": [GTUBE]},
    )


def build_ham_spam():
    ham_hdrs = [
        (
            "Return-Path",
            "<dana.whitfield@example.org>",
        ),
        (
            "Received",
            "from smtp.example.org (smtp.example.org [192.0.2.25])\n"
            "\tby mx.example.com (Postfix) with ESMTPS id 4TJ2kQ0Zl9z1xyz\n"
            "\tfor <bob@example.com>; Tue, 16 Jan 2024 09:12:03 +0000 (UTC)",
        ),
        (
            "Received",
            "from [10.1.2.3] (laptop-dana.example.org [192.0.2.77])\n"
            "\tby smtp.example.org (Postfix) with ESMTPSA id 7A1B2C3D4E\n"
            "\tfor <bob@example.com>; Tue, 16 Jan 2024 09:12:01 +0000 (UTC)",
        ),
        ("Message-ID", "<5c1e9a3f-2b7d-4e0a-9f11-0d3c8e7a1b22@example.org>"),
        ("Date", "Tue, 16 Jan 2024 10:12:00 +0100"),
        ("From", '"Dana Whitfield" <dana.whitfield@example.org>'),
        ("To", '"Bob Miller" <bob@example.com>'),
        ("Cc", "team@example.org"),
        ("Subject", "Moving Thursday's project sync?"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=UTF-8; format=flowed"),
        ("Content-Transfer-Encoding", "7bit"),
        ("X-Mailer", "Mozilla Thunderbird 115.6.1"),
    ]
    ham_body = (
        "Hi Bob,\n\n"
        "Would you mind if we moved Thursday's project sync to 2:30pm? I have a\n"
        "dentist appointment in the morning. Room 4B is free then, and I'll bring\n"
        "the updated budget spreadsheet so we can go through the Q1 numbers.\n\n"
        "Let me know if that works for you.\n\n"
        "Thanks,\nDana\n"
    )
    add(
        "ham-plain.eml",
        headers(ham_hdrs) + b"\n" + ham_body.encode("ascii"),
        CRLF,
        {
            "charset": "utf-8",
            "subject_contains": "project sync",
            "text_contains": ["project sync to 2:30pm", "budget spreadsheet"],
        },
    )

    spam_hdrs = [
        ("Return-Path", "<winner-notify@lucky-draw.test>"),
        (
            "Received",
            "from User (unknown [203.0.113.66])\n"
            "\tby mx.example.com (Postfix) with SMTP id 4TJ9zz0Q1Az2abc\n"
            "\tfor <bob@example.com>; Tue, 16 Jan 2024 03:41:17 +0000 (UTC)",
        ),
        ("Message-ID", "<20240116034117.4F2A.winner@lucky-draw.test>"),
        ("Date", "Tue, 16 Jan 2024 03:41:17 +0000"),
        ("From", '"International Lottery Board" <winner-notify@lucky-draw.test>'),
        ("To", "undisclosed-recipients:;"),
        ("Reply-To", "claims.agent@free-mail.test"),
        ("Subject", "CONGRATULATIONS!!! You have WON $1,500,000.00 USD"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="us-ascii"'),
        ("Content-Transfer-Encoding", "7bit"),
        ("X-Mailer", "Microsoft Outlook Express 6.00.2600.0000"),
        ("X-Priority", "1 (Highest)"),
    ]
    spam_body = (
        "Dear Lucky Winner,\n\n"
        "Your email address has been selected in our INTERNATIONAL LOTTERY PROMOTION\n"
        "and you have WON the sum of $1,500,000.00 USD (One Million Five Hundred\n"
        "Thousand Dollars). To claim your prize, send your full name, bank account\n"
        "details and a processing fee to our claims agent immediately.\n\n"
        "ALSO: Cheap V1AGRA and C1ALIS, no prescription needed, 90% OFF!!!\n"
        "Order now at http://cheap-meds.example.net/order?id=7731\n\n"
        "Act now, this offer expires in 24 hours!\n"
    )
    add(
        "spam-plain.eml",
        headers(spam_hdrs) + b"\n" + spam_body.encode("ascii"),
        LF,
        {
            "charset": "us-ascii",
            "subject_contains": "You have WON",
            "text_contains": ["INTERNATIONAL LOTTERY PROMOTION", "processing fee", "no prescription needed"],
            "urls_contains": ["http://cheap-meds.example.net/order?id=7731"],
        },
    )


def build_mbox():
    sep = b"From sender@example.com Mon Jan  1 00:00:00 2024\n"

    def msg(n, subject, body):
        return headers(
            [
                ("From", '"Sender %d" <sender@example.com>' % n),
                ("To", "bob@example.com"),
                ("Subject", subject),
                ("Date", "Mon, 1 Jan 2024 00:0%d:00 +0000" % n),
                ("Message-ID", "<mbox-%d@example.com>" % n),
            ]
        ) + b"\n" + body

    m1 = msg(1, "mbox message one", b"First message in the mbox, word mboxalpha.\n")
    # mboxrd: body line "From the desk of ..." is stored as ">From the desk of ...",
    # and a line that already was ">From here" is stored as ">>From here".
    m2 = msg(
        2,
        "mbox message two",
        b"Second message, word mboxbravo.\n>From the desk of the sender: hello.\n>>From here it was already quoted.\n",
    )
    m3 = msg(3, "mbox message three", b"Third message, word mboxcharlie.\n")
    data = sep + m1 + b"\n" + sep + m2 + b"\n" + sep + m3 + b"\n"
    FILES["mbox-sample.mbox"] = data


def build_maildir():
    cur = headers(
        [
            ("Message-ID", "<maildir-cur-1@example.org>"),
            ("Date", "Mon, 1 Jan 2024 12:00:00 +0000"),
            ("From", '"Erin" <erin@example.org>'),
            ("To", "bob@example.com"),
            ("Subject", "maildir seen message"),
        ]
    ) + b"\nThis message was already read, word maildirseen.\n"
    new = headers(
        [
            ("Message-ID", "<maildir-new-1@example.org>"),
            ("Date", "Tue, 2 Jan 2024 12:00:00 +0000"),
            ("From", '"Frank" <frank@example.org>'),
            ("To", "bob@example.com"),
            ("Subject", "maildir new message"),
        ]
    ) + b"\nThis message is new and unread, word maildirfresh.\n"
    # Dovecot-style ",S=<size>" carries the real byte size of the file
    FILES["maildir-sample/cur/1704110400.M100001P4242.mail.example.com,S=%d:2,S" % len(cur)] = cur
    FILES["maildir-sample/new/1704196800.M200002P4242.mail.example.com,S=%d" % len(new)] = new
    # git cannot track empty directories; tmp/ only holds a placeholder
    FILES["maildir-sample/tmp/.gitkeep"] = b""


# --------------------------------------------------------------------------
# manifest (minimal TOML writer; tomllib is read-only)
# --------------------------------------------------------------------------


def toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_val(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(toml_val(x) for x in v) + "]"
    return toml_str(v)


def write_manifest():
    lines = [
        "# Generated by corpus/make_fixtures.py -- do not edit by hand.",
        "# One [[fixture]] per .eml file in this directory.",
        "#   charset          informational only",
        "#   subject_contains decoded (Unicode) substring of the Subject header",
        "#   text_contains    decoded substrings that must appear in the visible body text",
        "#   text_absent      substrings that must NOT appear in the visible body text",
        "#   urls_contains    hrefs / img srcs / bare URLs that must be collected",
        "#",
        "# Non-.eml fixtures (not listed below):",
        "#   binary-junk.bin   4096 deterministic pseudo-random bytes, not a message",
        "#   mbox-sample.mbox  mboxrd, 3 messages; bodies contain mboxalpha / mboxbravo /",
        "#                     mboxcharlie; message 2 unquotes to 'From the desk of' and",
        "#                     '>From here it was already quoted.'",
        "#   maildir-sample/   2 messages: cur/...:2,S (maildirseen), new/... (maildirfresh);",
        "#                     tmp/ holds only .gitkeep",
        "",
    ]
    keys = ["file", "charset", "subject_contains", "text_contains", "text_absent", "urls_contains"]
    for entry in MANIFEST:
        for c in entry.get("_comment", []):
            lines.append("# " + c)
        lines.append("[[fixture]]")
        for k in keys:
            if k in entry:
                lines.append("%s = %s" % (k, toml_val(entry[k])))
        lines.append("")
    FILES["fixtures.toml"] = ("\n".join(lines)).encode("utf-8")


def build_all():
    build_charset_fixtures()
    build_html_only()
    build_base64_text()
    build_nested_multipart()
    build_empty()
    build_malformed()
    build_binary_junk()
    build_gtube()
    build_ham_spam()
    build_mbox()
    build_maildir()
    write_manifest()


def write_all():
    for rel, data in sorted(FILES.items()):
        path = os.path.join(HERE, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print("wrote %-70s %6d bytes" % (rel, len(data)))


# --------------------------------------------------------------------------
# verification with Python's email package
# --------------------------------------------------------------------------


def _visible_text_and_urls(msg):
    import html.parser
    import re

    class Strip(html.parser.HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.out, self.urls, self.skip = [], [], 0

        def handle_starttag(self, tag, attrs):
            if tag in ("script", "style"):
                self.skip += 1
            for k, v in attrs:
                if k in ("href", "src") and v:
                    self.urls.append(v)

        def handle_endtag(self, tag):
            if tag in ("script", "style") and self.skip:
                self.skip -= 1

        def handle_data(self, data):
            if not self.skip:
                self.out.append(data)

    texts, urls = [], []
    for part in msg.walk():
        if part.get_content_maintype() != "text" or part.get_content_disposition() == "attachment":
            continue
        try:
            t = part.get_content()
        except LookupError:  # unknown charset: best effort
            t = part.get_payload(decode=True).decode("utf-8", "replace")
        if part.get_content_subtype() == "html":
            s = Strip()
            s.feed(t)
            urls += s.urls
            t = "".join(s.out).replace("\xa0", " ")
        texts.append(t)
        urls += re.findall(r"https?://[^\s<>\"]+", t)
    return "\n".join(texts), urls


def verify():
    import email
    import email.policy
    import mailbox
    import tomllib

    with open(os.path.join(HERE, "fixtures.toml"), "rb") as f:
        manifest = tomllib.load(f)
    failures = 0
    for fx in manifest["fixture"]:
        with open(os.path.join(HERE, fx["file"]), "rb") as f:
            raw = f.read()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        subj = str(msg.get("Subject", ""))
        text, urls = _visible_text_and_urls(msg)
        problems = []
        if "subject_contains" in fx and fx["subject_contains"] not in subj:
            problems.append("subject %r lacks %r" % (subj, fx["subject_contains"]))
        for s in fx.get("text_contains", []):
            if s not in text:
                problems.append("text lacks %r" % s)
        for s in fx.get("text_absent", []):
            if s in text:
                problems.append("text contains forbidden %r" % s)
        for u in fx.get("urls_contains", []):
            if u not in urls:
                problems.append("url missing %r" % u)
        defects = [type(d).__name__ for p in msg.walk() for d in p.defects]
        status = "FAIL" if problems else "ok  "
        failures += bool(problems)
        print("%s %-22s subject=%r%s" % (status, fx["file"], subj, (" defects=%s" % defects) if defects else ""))
        for p in problems:
            print("       " + p)

    mb = mailbox.mbox(os.path.join(HERE, "mbox-sample.mbox"))
    bodies = [m.get_payload() for m in mb]
    ok = len(bodies) == 3 and "mboxbravo" in bodies[1]
    print("%s mbox-sample.mbox       %d messages" % ("ok  " if ok else "FAIL", len(bodies)))
    failures += not ok
    md = mailbox.Maildir(os.path.join(HERE, "maildir-sample"), factory=None, create=False)
    subs = sorted(str(m["Subject"]) for m in md)
    ok = len(subs) == 2
    print("%s maildir-sample/        %s" % ("ok  " if ok else "FAIL", subs))
    failures += not ok
    with open(os.path.join(HERE, "binary-junk.bin"), "rb") as f:
        junk = f.read()
    ok = len(junk) == 4096 and hashlib.sha256(junk).hexdigest()[:8]
    print("%s binary-junk.bin        %d bytes sha256=%s" % ("ok  " if ok else "FAIL", len(junk), ok))
    print("%d failure(s)" % failures)
    return failures


if __name__ == "__main__":
    if "--verify" in sys.argv[1:]:
        sys.exit(1 if verify() else 0)
    build_all()
    write_all()
