use super::*;
use crate::config::Config;
use crate::context::ScanContext;
use crate::message::{Envelope, Limits, parse};

fn set(text: &str) -> RuleSet {
    RuleSet::from_toml(&[("t.toml", text)], &Config::embedded().symbol_names()).unwrap()
}

fn fired(set: &RuleSet, raw: &str, envelope: &Envelope) -> Vec<String> {
    let message = parse(raw.as_bytes(), &Limits::default());
    let context = ScanContext::of_message(raw.as_bytes(), envelope, message);
    let input = Input::new(&context);
    let mut names: Vec<String> = set.check(&input).into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

const RULES: &str = r#"
[[rule]]
symbol = "SUBJ_FREE"
kind = "header"
header = "Subject"
pattern = '''\bfree\b'''
flags = "i"
weight = 1.5

[[rule]]
symbol = "FROM_NAME_BANK"
kind = "header"
header = "From"
form = "name"
pattern = '''(?i)bank'''

[[rule]]
symbol = "NO_DATE"
kind = "exists"
header = "Date"
negate = true

[[rule]]
symbol = "BODY_PILLS"
kind = "body"
pattern = '''^cheap pills$'''

[[rule]]
symbol = "RAW_HIDDEN"
kind = "rawbody"
pattern = '''display:\s*none'''

[[rule]]
symbol = "URI_IP"
kind = "uri"
pattern = '''^http://\d+\.\d+\.\d+\.\d+/'''

[[rule]]
symbol = "FULL_XMAILER"
kind = "full"
pattern = '''(?m)^X-Mailer: Bulk'''

[[rule]]
symbol = "HELO_DYN"
kind = "envelope"
field = "helo"
pattern = '''dyn'''

[[rule]]
symbol = "MISMATCH"
kind = "eval"
function = "link_text_mismatch"
"#;

#[test]
fn every_kind_matches_its_own_text() {
    let set = set(RULES);
    let raw = "From: \"My Bank\" <x@y.example>\nSubject: FREE stuff\nX-Mailer: Bulk 1\nContent-Type: text/html\n\n\
               <p>cheap\npills</p><div style=\"display: none\">x</div>\
               <a href=\"http://10.0.0.1/x\">www.bank.example</a>\n";
    let envelope = Envelope {
        helo: Some("host.dyn.example".into()),
        ..Envelope::default()
    };
    assert_eq!(
        fired(&set, raw, &envelope),
        vec![
            "BODY_PILLS",
            "FROM_NAME_BANK",
            "FULL_XMAILER",
            "HELO_DYN",
            "MISMATCH",
            "NO_DATE",
            "RAW_HIDDEN",
            "SUBJ_FREE",
            "URI_IP"
        ]
    );
    let clean = "Date: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: freedom\n\nhello\n";
    assert!(fired(&set, clean, &Envelope::default()).is_empty());
    assert_eq!(set.symbols()["SUBJ_FREE"].weight, 1.5);
}

fn names(symbols: &[Symbol]) -> Vec<(&str, f64)> {
    let mut v: Vec<(&str, f64)> = symbols
        .iter()
        .map(|s| (s.name.as_str(), s.strength))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

#[test]
fn composites_apply_rspamd_policies() {
    let text = r#"
[[rule]]
symbol = "A"
kind = "exists"
header = "X-A"
weight = 1.0
[[rule]]
symbol = "B"
kind = "exists"
header = "X-B"
weight = 2.0
[[rule]]
symbol = "C"
kind = "exists"
header = "X-C"
weight = 4.0
[[rule]]
symbol = "D"
kind = "exists"
header = "X-D"
weight = 8.0
[[rule]]
symbol = "__HIDDEN"
kind = "exists"
header = "X-A"
[[rule]]
symbol = "ALL"
kind = "meta"
expression = "A & ~B & -C & ^D & __HIDDEN"
weight = 10.0
[[rule]]
symbol = "COUNT"
kind = "meta"
expression = "A + B + C + D >= 4 && !X_NEVER"
policy = "leave"
weight = 1.0
[[rule]]
symbol = "X_NEVER"
kind = "exists"
header = "X-Never"
"#;
    let set = set(text);
    let raw = "X-A: 1\nX-B: 1\nX-C: 1\nX-D: 1\n\nbody\n";
    let message = parse(raw.as_bytes(), &Limits::default());
    let envelope = Envelope::default();
    let context = ScanContext::of_message(raw.as_bytes(), &envelope, message);
    let input = Input::new(&context);
    let symbols = set.check(&input);
    let weights = set.symbols().clone();
    let weight = |name: &str| weights.get(name).map_or(0.0, |s| s.weight);
    let out = set.finish(symbols, &weight);
    // A removed, B kept without weight, C kept, D's 8 points moved to ALL,
    // the hidden sub-rule dropped, COUNT fired (leave policy).
    assert_eq!(
        names(&out),
        vec![("ALL", 1.8), ("B", 0.0), ("C", 1.0), ("COUNT", 1.0)]
    );
}

#[test]
fn errors_name_file_and_line() {
    let err = RuleSet::from_toml(
        &[(
            "bad.toml",
            "\n[[rule]]\nsymbol = \"X\"\nkind = \"body\"\npattern = '''a(b'''\n",
        )],
        &Config::embedded().symbol_names(),
    )
    .unwrap_err();
    assert_eq!(err.origin.to_string(), "bad.toml:5", "{err}");
    assert!(err.message.contains("bad regex"), "{err}");

    let err = RuleSet::from_toml(
        &[(
            "meta.toml",
            "[[rule]]\nsymbol = \"M\"\nkind = \"meta\"\nexpression = \"BAYES_SPAM && NOPE\"\n",
        )],
        &Config::embedded().symbol_names(),
    )
    .unwrap_err();
    assert_eq!(err.origin.to_string(), "meta.toml:2");
    assert!(err.message.contains("unknown symbol NOPE"), "{err}");

    let err = RuleSet::from_toml(
        &[(
            "k.toml",
            "[[rule]]\nsymbol = \"K\"\nkind = \"bdy\"\npattern = 'x'\n",
        )],
        &Config::embedded().symbol_names(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("k.toml:3: K: unknown kind"),
        "{err}"
    );

    let cycle = "[[rule]]\nsymbol = \"P\"\nkind = \"meta\"\nexpression = \"Q\"\n\
                 [[rule]]\nsymbol = \"Q\"\nkind = \"meta\"\nexpression = \"P\"\n";
    let err =
        RuleSet::from_toml(&[("c.toml", cycle)], &Config::embedded().symbol_names()).unwrap_err();
    assert!(err.message.contains("depends on itself"), "{err}");

    let twice = "[[rule]]\nsymbol = \"T\"\nkind = \"exists\"\nheader = \"A\"\n\
                 [[rule]]\nsymbol = \"T\"\nkind = \"exists\"\nheader = \"B\"\n";
    let err =
        RuleSet::from_toml(&[("d.toml", twice)], &Config::embedded().symbol_names()).unwrap_err();
    assert!(err.message.contains("already defined at d.toml:2"), "{err}");
}

#[test]
fn the_builtin_ruleset_loads() {
    let set = RuleSet::load(
        &Config::embedded().rules,
        &Config::embedded().symbol_names(),
    )
    .unwrap();
    assert!(set.len() > 40);
    assert!(set.report.skipped.is_empty());
}

/// The symbols a message ends with after metas (every weight 1), sorted.
fn reported(set: &RuleSet, raw: &str) -> Vec<String> {
    let message = parse(raw.as_bytes(), &Limits::default());
    let envelope = Envelope::default();
    let context = ScanContext::of_message(raw.as_bytes(), &envelope, message);
    let symbols = set.check(&Input::new(&context));
    let mut names: Vec<String> = set
        .finish(symbols, &|_| 1.0)
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

#[test]
fn counting_rules_give_metas_their_number_of_matches() {
    let set = set(r#"
[[rule]]
symbol = "__EXCLAIM"
kind = "body"
pattern = '''!!'''
max_hits = 3

[[rule]]
symbol = "EXCLAIMS_3"
kind = "meta"
expression = "__EXCLAIM >= 3"
weight = 1.0

[[rule]]
symbol = "EXCLAIMS_ANY"
kind = "meta"
expression = "__EXCLAIM"
weight = 1.0
"#);
    let scan = |body: &str| reported(&set, &format!("Subject: x\n\n{body}\n"));
    assert_eq!(scan("wow!! great!! now"), vec!["EXCLAIMS_ANY"]);
    assert_eq!(
        scan("wow!! great!! now!! and!!"),
        vec!["EXCLAIMS_3", "EXCLAIMS_ANY"]
    );
    assert!(scan("calm").is_empty());
}

/// A rule set of only the SpamAssassin rules in `cf`, every one loaded.
fn spamassassin_set(cf: &str) -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.cf");
    std::fs::write(&path, cf).unwrap();
    let mut config = Config::embedded();
    config.rules.builtin = false;
    config.rules.spamassassin = vec![path];
    let set = RuleSet::load(&config.rules, &config.symbol_names()).unwrap();
    assert!(set.report.skipped.is_empty(), "{:?}", set.report.skipped);
    set
}

#[test]
fn spamassassin_tflags_multiple_counts_up_to_maxhits() {
    let set = spamassassin_set(
        "body __CASH /\\bcash\\b/i\ntflags __CASH multiple maxhits=2\n\
         meta CASH_TWICE __CASH > 1\nscore CASH_TWICE 1.0\n\
         meta CASH_THRICE __CASH > 2\nscore CASH_THRICE 1.0\n",
    );
    // maxhits=2: four matches count as two.
    assert_eq!(
        reported(&set, "Subject: x\n\ncash cash cash cash\n"),
        vec!["CASH_TWICE"]
    );
}

#[test]
fn mimeheader_rules_read_every_parts_headers() {
    let set = spamassassin_set(
        "mimeheader SA_PDF_PART Content-Type =~ /application\\/pdf/i\nscore SA_PDF_PART 1.0\n",
    );
    let toml = self::set(
        r#"
[[rule]]
symbol = "ZIP_PART"
kind = "mimeheader"
header = "Content-Disposition"
pattern = '''filename="?[^"]*\.zip'''
flags = "i"
"#,
    );
    let multipart = |attachment_type: &str, file: &str| {
        format!(
            "Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
             --b\nContent-Type: text/plain\n\nhello\n\
             --b\nContent-Type: {attachment_type}\nContent-Disposition: attachment; filename=\"{file}\"\n\
             Content-Transfer-Encoding: base64\n\nAAAA\n--b--\n"
        )
    };
    let pdf = multipart("application/pdf", "invoice.pdf");
    let zip = multipart("application/zip", "invoice.zip");
    assert_eq!(reported(&set, &pdf), vec!["SA_PDF_PART"]);
    assert!(reported(&set, &zip).is_empty());
    assert_eq!(reported(&toml, &zip), vec!["ZIP_PART"]);
    assert!(reported(&toml, &pdf).is_empty());
    // The top-level headers are a part's headers too, as in SpamAssassin.
    assert_eq!(
        reported(&set, "Content-Type: application/pdf\n\n%PDF-1.4\n"),
        vec!["SA_PDF_PART"]
    );
    // Each part's value is matched on its own: `^` is the start of the
    // second part's Content-Type too (SpamAssassin's __GIF_ATTACH).
    let anchored = spamassassin_set(
        "mimeheader GIF_ATTACH Content-Type =~ /^image\\/gif\\b/\nscore GIF_ATTACH 1.0\n",
    );
    assert_eq!(
        reported(&anchored, &multipart("image/gif", "a.gif")),
        vec!["GIF_ATTACH"]
    );
    assert!(reported(&anchored, &pdf).is_empty());
}

#[test]
fn spamassassin_relay_pseudo_headers_follow_its_trust_inference() {
    let set = spamassassin_set(
        "header RDNS_NONE X-Spam-Relays-External =~ /^[^\\]]+ rdns= /\nscore RDNS_NONE 1.0\n\
         header AUTH_HOP X-Spam-Relays-Trusted =~ / auth=ESMTPSA /\nscore AUTH_HOP 1.0\n",
    );
    let local = "Received: from localhost (localhost [127.0.0.1]) by mx.example.org \
                 with ESMTP id A1; Tue, 16 Jul 2002 10:00:00 +0100\n";
    let fetched = "Received: from pop.example.net [198.51.100.1] by localhost with POP3 \
                   (fetchmail-5.9.0); Tue, 16 Jul 2002 10:00:00 +0100\n";
    let message = |hop: &str| format!("{local}{fetched}{hop}Subject: x\n\nbody\n");
    // The first public hop (the fetchmail hop skipped) has no rDNS name.
    let bare = message(
        "Received: from spammer.example ([203.0.113.9]) by mx.example.org with SMTP id B2; \
         Tue, 16 Jul 2002 09:59:00 +0100\n",
    );
    assert_eq!(reported(&set, &bare), vec!["RDNS_NONE"]);
    // Sendmail's "(user@rdns [ip])" names the rDNS host.
    let named = message(
        "Received: from lists.example.org (root@lists.example.org [192.0.2.45]) by \
         mx.example.org (8.11.6/8.11.6) with ESMTP id C3; Tue, 16 Jul 2002 09:59:00 +0100\n",
    );
    assert!(reported(&set, &named).is_empty());
    // A sender that authenticated stays trusted; the hop before it is not
    // looked at for RDNS_NONE.
    let submitted = message(
        "Received: from laptop ([203.0.113.10]) by smtp.example.org with ESMTPSA id D4; \
         Tue, 16 Jul 2002 09:59:00 +0100\n",
    );
    assert_eq!(reported(&set, &submitted), vec!["AUTH_HOP"]);
    // A pseudo-header written into the message itself is not believed.
    let forged = format!("X-Spam-Relays-External: [ ip=1.2.3.4 rdns= helo= ]\n{named}");
    assert!(reported(&set, &forged).is_empty());
}

#[test]
fn the_envelope_client_is_the_newest_relay() {
    let set = spamassassin_set(
        "header RDNS_NONE X-Spam-Relays-External =~ /^[^\\]]+ rdns= /\nscore RDNS_NONE 1.0\n",
    );
    // Postfix's "unknown": no rDNS, in SpamAssassin's parse too (a qmail
    // line, `from NAME ([IP]) by … with SMTP`, names its rDNS).
    let raw = "Received: from spammer.example (unknown [203.0.113.9]) by relay.example.net \
               (Postfix) with ESMTP id 4A1B2C; Tue, 16 Jul 2002 09:59:00 +0100\nSubject: x\n\nbody\n";
    let client = |hostname: Option<&str>| Envelope {
        client_ip: Some("198.51.100.7".parse().unwrap()),
        client_hostname: hostname.map(str::to_owned),
        ..Envelope::default()
    };
    assert_eq!(fired(&set, raw, &Envelope::default()), vec!["RDNS_NONE"]);
    assert!(fired(&set, raw, &client(Some("relay.example.net"))).is_empty());
    assert_eq!(fired(&set, raw, &client(None)), vec!["RDNS_NONE"]);
}

#[test]
fn freemail_checks_become_address_patterns_over_the_listed_domains() {
    let set = spamassassin_set(
        "header FREEMAIL_FROM eval:check_freemail_from()\nscore FREEMAIL_FROM 1.0\n\
         header FM_RT_DIGIT eval:check_freemail_header('Reply-To', '\\d@')\nscore FM_RT_DIGIT 1.0\n\
         freemail_domains mail.example aol.* *.isp.example\n\
         freemail_welcomelist friend@mail.example\n",
    );
    let from = |address: &str| format!("From: Someone <{address}>\nSubject: x\n\nbody\n");
    for freemail in [
        "bob@mail.example",
        "Bob@AOL.com",
        "x@pop.isp.example",
        "x@MAIL.example",
    ] {
        assert_eq!(
            reported(&set, &from(freemail)),
            vec!["FREEMAIL_FROM"],
            "{freemail}"
        );
    }
    for not_freemail in [
        "bob@company.example",
        "bob@mail.example.org",
        "bob@aol.co.uk",
        "support@mail.example",
        "friend@mail.example",
    ] {
        assert!(
            reported(&set, &from(not_freemail)).is_empty(),
            "{not_freemail}"
        );
    }
    let reply_to = |address: &str| {
        format!("From: a@company.example\nReply-To: {address}\nSubject: x\n\nbody\n")
    };
    assert_eq!(
        reported(&set, &reply_to("joe42@mail.example")),
        vec!["FM_RT_DIGIT"]
    );
    assert!(reported(&set, &reply_to("joe@mail.example")).is_empty());
    assert!(reported(&set, &reply_to("joe42@company.example")).is_empty());
    // A Resent-From is the author in SpamAssassin's all_from_addrs: a list
    // re-sending a freemail user's post is not freemail, and the reverse.
    let resent = |resent: &str, from: &str| {
        format!("Resent-From: List <{resent}>\nFrom: {from}\nSubject: x\n\nbody\n")
    };
    assert!(reported(&set, &resent("list@company.example", "bob@mail.example")).is_empty());
    assert_eq!(
        reported(&set, &resent("bob@mail.example", "list@company.example")),
        vec!["FREEMAIL_FROM"]
    );
}

#[test]
fn shifted_date_compares_the_date_with_the_nearest_received_stamp() {
    let set = spamassassin_set(
        "header FUTURE_12_24 eval:check_for_shifted_date('12', '24')\nscore FUTURE_12_24 1.0\n\
         header PAST_96_XX eval:check_for_shifted_date('undef', '-96')\nscore PAST_96_XX 1.0\n",
    );
    // The local delivery and fetchmail lines on top are not the hops the
    // Date is compared with; the nearest remaining stamp is 12h01 behind.
    let received = "Received: from localhost (localhost [127.0.0.1]) by mx.example.org; \
                    Fri, 23 Aug 2002 19:00:00 +0100\n\
                    Received: from pop.example.net [198.51.100.1] by localhost with POP3 \
                    (fetchmail-5.9.0); Fri, 23 Aug 2002 19:00:00 +0100\n\
                    Received: from a.example (a.example [192.0.2.1]) by mx.example.org; \
                    Fri, 23 Aug 2002 08:40:00 +0100\n\
                    Received: from b.example ([192.0.2.2]) by a.example; \
                    Fri, 23 Aug 2002 07:00:00 +0100\n";
    let with_date = |date: &str| format!("{received}Date: {date}\nSubject: x\n\nbody\n");
    assert_eq!(
        reported(&set, &with_date("Fri, 23 Aug 2002 20:41:00 +0100")),
        vec!["FUTURE_12_24"]
    );
    // A zone without its sign is UTC to SpamAssassin (12h20 ahead), where a
    // strict reader would take +0300 (9h20).
    assert_eq!(
        reported(&set, &with_date("Fri, 23 Aug 2002 20:00:00 0300")),
        vec!["FUTURE_12_24"]
    );
    assert_eq!(
        reported(&set, &with_date("Sun, 18 Aug 2002 08:00:00 +0100")),
        vec!["PAST_96_XX"]
    );
    // No Date: nothing is shifted.
    assert!(reported(&set, &format!("{received}Subject: x\n\nbody\n")).is_empty());
}

#[test]
fn spamassassin_mime_and_sender_domain_evals() {
    let set = spamassassin_set(
        "body HTML_MESSAGE eval:html_test('html')\nscore HTML_MESSAGE 0.001\n\
         body MIME_HTML_ONLY eval:check_for_mime_html_only()\nscore MIME_HTML_ONLY 1\n\
         header DIFF_DOMAINS eval:check_equal_from_domains()\nscore DIFF_DOMAINS 1\n",
    );
    let alternative = "From: a@mail.example.com\nReturn-Path: <bounce@lists.example.com>\n\
                       Content-Type: multipart/alternative; boundary=b\n\n\
                       --b\nContent-Type: text/plain\n\nhi\n\
                       --b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n";
    // Same second-level domain (example.com), both kinds of text part.
    assert_eq!(reported(&set, alternative), vec!["HTML_MESSAGE"]);
    let html_only = "From: a@example.com\nReturn-Path: <b@other.example.net>\n\
                     Content-Type: text/html\n\n<p>hi</p>\n";
    assert_eq!(
        reported(&set, html_only),
        vec!["DIFF_DOMAINS", "HTML_MESSAGE", "MIME_HTML_ONLY"]
    );
    // A Return-Path below a Received line is not the envelope sender.
    let late_return_path = "Received: from x ([192.0.2.1]) by mx.example.org; \
                            Tue, 16 Jul 2002 10:00:00 +0100\nFrom: a@example.com\n\
                            Return-Path: <b@other.example.net>\n\nplain\n";
    assert!(reported(&set, late_return_path).is_empty());
}

#[test]
fn an_outlook_shaped_message_id_must_carry_the_send_time() {
    let set = spamassassin_set(
        "header MSGID_OUTLOOK_INVALID eval:check_outlook_message_id()\n\
         score MSGID_OUTLOOK_INVALID 1\n",
    );
    let message = |id: &str| {
        format!(
            "Received: from a.example ([192.0.2.1]) by mx.example.org; \
             Fri, 23 Aug 2002 08:45:00 +0100\n\
             Date: Fri, 23 Aug 2002 08:41:13 +0100\nMessage-ID: <{id}>\n\nbody\n"
        )
    };
    // 01c24a78 is the Date's time in Outlook's units.
    assert!(reported(&set, &message("000001c24a78$0a0b0c0d$01020304@pc")).is_empty());
    // 1,000 units (about five days) off both the Date and the Received time.
    assert_eq!(
        reported(&set, &message("000001c24e60$0a0b0c0d$01020304@pc")),
        vec!["MSGID_OUTLOOK_INVALID"]
    );
    // Not Outlook's shape: nothing to check.
    assert!(reported(&set, &message("12345.67890@mail.example")).is_empty());
}

#[test]
fn relay_pseudo_headers_keep_the_helo_as_written() {
    // SpamAssassin's HELO_DYNAMIC_* rules match the HELO case-sensitively.
    let set = spamassassin_set(
        "header HELO_AS_WRITTEN X-Spam-Relays-External =~ / helo=Mail\\.Example\\.NET /\n\
         score HELO_AS_WRITTEN 1.0\n",
    );
    let raw = "Received: from Mail.Example.NET (mail.example.net [193.120.211.219]) by \
               relay.example.org; Fri, 9 Aug 2002 15:32:48 +0100\nSubject: x\n\nbody\n";
    assert_eq!(reported(&set, raw), vec!["HELO_AS_WRITTEN"]);
}

#[test]
fn metas_evaluated_only_when_a_slot_they_read_moved_answer_as_all_evaluated() {
    let set = spamassassin_set(
        "body __A /aaa/\nbody __B /bbb/\nbody __C /ccc/\ntflags __C multiple maxhits=3\n\
         meta __NOT_A !__A\nmeta M1 __A && __B\nmeta M2 (__A + __B + __C) > 1\n\
         meta M3 __NOT_A && !__C\nmeta M4 M1 || M3\nmeta M5 !M4\nmeta M6 __C > 2\n\
         meta M7 !(__A || __B || __C)\nscore M1 1\nscore M2 1\nscore M3 1\nscore M4 1\n\
         score M5 1\nscore M6 1\nscore M7 1\n",
    );
    let weight = |_: &str| 1.0;
    let names = |symbols: Vec<Symbol>| {
        let mut names: Vec<String> = symbols.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    };
    let mut seen = std::collections::BTreeSet::new();
    for fired in 0..8u32 {
        for c_hits in [1, 3] {
            let symbols: Vec<Symbol> = ["__A", "__B", "__C"]
                .iter()
                .enumerate()
                .filter(|(bit, _)| fired & (1 << bit) != 0)
                .map(|(_, name)| {
                    let mut symbol = Symbol::new(*name);
                    if *name == "__C" {
                        symbol.hits = c_hits;
                    }
                    symbol
                })
                .collect();
            let planned = names(set.finish_metas(symbols.clone(), &weight, false));
            let all = names(set.finish_metas(symbols, &weight, true));
            assert_eq!(planned, all, "rules fired: {fired:03b}, __C x{c_hits}");
            seen.insert(all);
        }
    }
    // The cases differ: the comparison covers metas that fire and not.
    assert!(seen.len() >= 6, "{seen:?}");
}
