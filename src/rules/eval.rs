//! `eval` rules: the few tests a regular expression cannot state, written
//! in Rust and named in rule files (SpamAssassin calls these `eval:`).

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::input::{HeaderForm, Input};
use crate::extract::urls::{host_in_text, link_host, registrable_domain};
use crate::message::is_public_address;

/// A named test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalFn {
    /// A link whose visible text names a host other than the one it goes to.
    LinkTextMismatch,
    /// Text parts exist and every one is HTML (no plain-text alternative).
    HtmlOnly,
    /// A Date header is present but is not an RFC 5322 date.
    DateInvalid,
    /// The body is mostly upper case (over 60 % of at least 40 letters).
    BodyMostlyUpper,
    /// The message has no text at all (no text part with content).
    NoText,
    /// A text part came base64-encoded (read from the MIME parse, not by a
    /// regex over the whole raw message).
    TextBase64,
    /// The Date header is more than 12 hours after the newest Received
    /// stamp: clocks set ahead so the mail sorts to the top of an inbox.
    DateInFuture,
    /// The Date header is more than 96 hours before the newest Received
    /// stamp: a date reused from a template or a stale queue. Shorter
    /// delays are common in legitimate mail (slow lists, outboxes).
    DateInPast,
    /// The newest hop from a public address gave a HELO that is an address
    /// literal or a bare word rather than a host name, as bots do.
    RelayHeloNotFqdn,
    /// A relay's reverse-DNS name lies in the From address's registrable
    /// domain: the mail passed through its sender's own servers. A ham
    /// sign, but one a forged Received line can fake, so weighed lightly.
    FromDomainRelayed,
    /// The Message-ID's domain is the From address's registrable domain
    /// (rspamd's MID_RHS_MATCH_FROM); bulk tools and bots mint their own.
    MsgidFromDomain,
    /// HTML draws at least [`MIN_INVISIBLE_LETTERS`] letters inside
    /// `display:none`, `visibility:hidden` or a zero font size: words for the
    /// filter that the reader must not see.
    HtmlHiddenText,
    /// HTML draws at least [`MIN_INVISIBLE_LETTERS`] letters in (nearly) the
    /// colour of their background: white on white.
    HtmlLowContrastText,
    /// SpamAssassin's `check_for_shifted_date(min, max)`: the Date header
    /// minus the nearest Received stamp (its [`Input::sa_date_diff`]) lies in
    /// [min, max) hours, an open end where `None`. Only SpamAssassin files
    /// name it; chaff's own DATE_IN_FUTURE / DATE_IN_PAST read the newest
    /// stamp instead.
    ShiftedDate {
        min_hours: Option<i64>,
        max_hours: Option<i64>,
    },
    /// A text/html part exists (SpamAssassin's HTML_MESSAGE, `__MIME_HTML`).
    HtmlPart,
    /// The top-level type is text/html, or some part is text/html and no
    /// other part is text/* (SpamAssassin's MIME_HTML_ONLY; chaff's own
    /// `html_only` looks at the decoded text parts instead).
    MimeHtmlOnly,
    /// The From address and the envelope sender are in different
    /// "second-level" domains, their last two labels as SpamAssassin cuts
    /// them (HEADER_FROM_DIFFERENT_DOMAINS).
    FromDomainsDiffer,
    /// A Message-ID in Outlook's `<HHHHTTTTTTTT$…$…@` form whose time part
    /// matches neither the Date nor the Received time: an id forged to look
    /// like Outlook's (SpamAssassin's MSGID_OUTLOOK_INVALID).
    OutlookMessageIdInvalid,
    /// Some text run is drawn in (nearly) its background's colour by
    /// SpamAssassin's luminance-weighted measure (HTML_FONT_LOW_CONTRAST,
    /// `html_test('font_low_contrast')`); chaff's own HTML_WHITE_TEXT asks
    /// for 8 letters and plain RGB distance instead.
    FontLowContrast,
    /// A `<font face>` that is not a plain list of font names
    /// (SpamAssassin's HTML_FONT_FACE_BAD, `html_test('font_face_bad')`).
    FontFaceBad,
    /// SpamAssassin's SUBJ_ALL_CAPS (`subject_is_all_caps`): a Subject of
    /// more than one word and at least 10 characters, after any `Re:`/`Fwd:`
    /// prefixes, whose letters are all capitals, unless it is encoded in a
    /// charset whose encoded form is capitals anyway.
    SubjectAllCaps,
    /// Neither a To nor an Apparently-To header (SpamAssassin's
    /// MISSING_HEADERS, `check_for_missing_to_header`).
    ToMissing,
    /// Some HTML part's largest `<font size>` lies in (above, up_to]
    /// (SpamAssassin's `html_range('max_size', above, up_to)`:
    /// HTML_FONT_SIZE_LARGE, HTML_FONT_SIZE_HUGE). Only SpamAssassin files
    /// name it, so it has no name in chaff's own rule format.
    HtmlMaxFontSize { above: i64, up_to: Option<i64> },
}

/// Invisible letters before the HTML visibility tests fire: more than a
/// stray spacer character, less than one sentence of bait.
const MIN_INVISIBLE_LETTERS: usize = 8;

impl EvalFn {
    pub const ALL: [(&'static str, EvalFn); 21] = [
        ("link_text_mismatch", EvalFn::LinkTextMismatch),
        ("html_only", EvalFn::HtmlOnly),
        ("date_invalid", EvalFn::DateInvalid),
        ("body_mostly_upper", EvalFn::BodyMostlyUpper),
        ("no_text", EvalFn::NoText),
        ("text_base64", EvalFn::TextBase64),
        ("date_in_future", EvalFn::DateInFuture),
        ("date_in_past", EvalFn::DateInPast),
        ("relay_helo_not_fqdn", EvalFn::RelayHeloNotFqdn),
        ("from_domain_relayed", EvalFn::FromDomainRelayed),
        ("msgid_from_domain", EvalFn::MsgidFromDomain),
        ("html_hidden_text", EvalFn::HtmlHiddenText),
        ("html_low_contrast_text", EvalFn::HtmlLowContrastText),
        ("html_part", EvalFn::HtmlPart),
        ("mime_html_only", EvalFn::MimeHtmlOnly),
        ("from_domains_differ", EvalFn::FromDomainsDiffer),
        (
            "outlook_message_id_invalid",
            EvalFn::OutlookMessageIdInvalid,
        ),
        ("font_low_contrast", EvalFn::FontLowContrast),
        ("font_face_bad", EvalFn::FontFaceBad),
        ("subject_all_caps", EvalFn::SubjectAllCaps),
        ("to_missing", EvalFn::ToMissing),
    ];

    pub fn from_name(name: &str) -> Option<EvalFn> {
        EvalFn::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    pub fn run(self, input: &Input<'_>) -> bool {
        let message = input.message;
        match self {
            EvalFn::LinkTextMismatch => {
                message
                    .anchors
                    .iter()
                    .any(|a| match (link_host(&a.href), host_in_text(&a.text)) {
                        (Some(href), Some(text)) => site(&href) != site(&text),
                        _ => false,
                    })
            }
            EvalFn::HtmlOnly => {
                !message.text_parts.is_empty()
                    && message
                        .text_parts
                        .iter()
                        .all(|p| p.kind == crate::message::TextKind::Html)
            }
            EvalFn::DateInvalid => input.context.date() == Some(None),
            EvalFn::BodyMostlyUpper => {
                let (mut upper, mut letters) = (0usize, 0usize);
                for part in &message.text_parts {
                    let (part_upper, part_letters) = upper_and_letters(&part.text);
                    upper += part_upper;
                    letters += part_letters;
                }
                letters >= 40 && upper * 10 > letters * 6
            }
            EvalFn::NoText => message.text_parts.iter().all(|p| p.text.trim().is_empty()),
            EvalFn::TextBase64 => message.base64_text,
            EvalFn::DateInFuture => input
                .context
                .date_skew()
                .is_some_and(|ahead| ahead > 12 * HOUR),
            EvalFn::DateInPast => input
                .context
                .date_skew()
                .is_some_and(|ahead| ahead < -96 * HOUR),
            EvalFn::RelayHeloNotFqdn => message
                .relays
                .iter()
                .find(|relay| relay.ip.is_some_and(is_public_address))
                .and_then(|relay| relay.helo.as_deref())
                .is_some_and(|helo| {
                    let bare = helo.trim_matches(['[', ']']);
                    bare.parse::<IpAddr>().is_ok() || !helo.contains('.')
                }),
            EvalFn::FromDomainRelayed => from_domain(message).is_some_and(|from| {
                message.relays.iter().any(|relay| {
                    relay
                        .rdns
                        .as_deref()
                        .and_then(registrable_domain)
                        .is_some_and(|domain| domain == from)
                })
            }),
            EvalFn::MsgidFromDomain => from_domain(message).is_some_and(|from| {
                message
                    .message_id
                    .as_deref()
                    .and_then(|id| id.rsplit_once('@'))
                    .and_then(|(_, right)| registrable_domain(right.trim_end_matches('>')))
                    .is_some_and(|domain| domain == from)
            }),
            EvalFn::HtmlHiddenText => message.invisible_text.hidden_chars >= MIN_INVISIBLE_LETTERS,
            EvalFn::HtmlLowContrastText => {
                message.invisible_text.low_contrast_chars >= MIN_INVISIBLE_LETTERS
            }
            EvalFn::ShiftedDate {
                min_hours,
                max_hours,
            } => {
                let diff = input.sa_date_diff();
                min_hours.is_none_or(|min| diff >= min * HOUR)
                    && max_hours.is_none_or(|max| diff < max * HOUR)
            }
            EvalFn::HtmlPart => message.content_types.iter().any(|t| t == "text/html"),
            EvalFn::FontLowContrast => message.html_tests.font_low_contrast,
            EvalFn::FontFaceBad => message.html_tests.font_face_bad,
            EvalFn::HtmlMaxFontSize { above, up_to } => {
                message.html_tests.max_font_size_in(above, up_to)
            }
            EvalFn::SubjectAllCaps => subject_all_caps(input),
            // As SpamAssassin reads it: a header that is there is not
            // missing, even empty (`To: ` is "\n" to its `get`), and
            // `undisclosed-recipients:;` is an empty group, but a To header
            // all the same.
            EvalFn::ToMissing => ["to", "apparently-to"]
                .iter()
                .all(|name| message.header(name).is_none()),
            EvalFn::MimeHtmlOnly => {
                let top_is_html = message
                    .header("content-type")
                    .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
                let html = message.content_types.iter().filter(|t| *t == "text/html");
                let other_text = message
                    .content_types
                    .iter()
                    .filter(|t| t.starts_with("text/") && *t != "text/html");
                top_is_html || (html.count() > 0 && other_text.count() == 0)
            }
            EvalFn::FromDomainsDiffer => {
                let second_level = |address: &str| {
                    let (_, domain) = address.rsplit_once('@')?;
                    let labels: Vec<&str> = domain.split('.').collect();
                    let tail = if labels.len() > 2 && labels.iter().all(|l| !l.is_empty()) {
                        labels[labels.len() - 2..].join(".")
                    } else {
                        domain.to_owned()
                    };
                    (!tail.is_empty()).then(|| tail.to_ascii_lowercase())
                };
                match (
                    second_level(&message.from_address),
                    input.sa_envelope_from().as_deref().and_then(second_level),
                ) {
                    (Some(from), Some(envelope)) => from != envelope,
                    _ => false,
                }
            }
            EvalFn::OutlookMessageIdInvalid => outlook_message_id_invalid(input),
        }
    }
}

const HOUR: i64 = 3600;

/// SpamAssassin's check_for_outlook_message_id: Outlook writes the send
/// time into its Message-IDs, `<` then 4 hex digits, then 8 hex digits of
/// time in units of about 430 s. An id of that shape whose time is more
/// than 250 units from both the Date and the Received time was not written
/// by Outlook. As in SpamAssassin, "the Received time" is the first date in
/// all Received headers read as one text, and a missing date counts as 0.
fn outlook_message_id_invalid(input: &Input<'_>) -> bool {
    use super::input::{HeaderForm, Target};
    static SHAPE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}@").ok()
    });
    let header = |name: &str| input.text(&Target::Header(name.to_owned(), HeaderForm::Decoded));
    let ids = header(":messageid");
    let Some(time_token) = SHAPE
        .as_ref()
        .and_then(|shape| shape.captures(&ids))
        .and_then(|c| i64::from_str_radix(&c[1], 16).ok())
    else {
        return false;
    };
    let far_from = |text: &str| {
        let seconds = super::sa_facts::date::parse(text).unwrap_or(0);
        let expected = (seconds as f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
        (time_token - expected).abs() >= 250
    };
    far_from(&header("date")) && far_from(&header("received"))
}

/// Charsets whose encoded-word form is mostly capitals (SpamAssassin's
/// CHARSETS_LIKELY_TO_FP_AS_CAPS): a Subject in one says nothing by its case.
static CHARSETS_ALL_CAPS_ANYWAY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)=\?[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)[-_a-z0-9]*\?",
    )
    .ok()
});

/// Reply and forward prefixes SpamAssassin strips before judging the case.
static REPLY_PREFIXES: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\s*)+").ok());

/// SpamAssassin's `subject_is_all_caps`, step for step.
fn subject_all_caps(input: &Input<'_>) -> bool {
    let subject = input.header("subject", HeaderForm::Decoded);
    let subject = match REPLY_PREFIXES.as_ref() {
        Some(prefixes) => prefixes.replace(subject.trim(), "").into_owned(),
        None => subject.trim().to_owned(),
    };
    if !subject.contains(char::is_whitespace) || subject.chars().count() < 10 {
        return false;
    }
    let letters: String = subject.chars().filter(char::is_ascii_alphabetic).collect();
    let raw = input.header("subject", HeaderForm::Raw);
    if CHARSETS_ALL_CAPS_ANYWAY
        .as_ref()
        .is_some_and(|charsets| charsets.is_match(&raw))
    {
        return false;
    }
    !letters.is_empty() && !letters.contains(|c: char| c.is_ascii_lowercase())
}

/// The From address's registrable domain (`mail.example.co.uk` →
/// `example.co.uk`), lowercased.
fn from_domain(message: &crate::message::Message) -> Option<String> {
    let (_, host) = message.from_address.rsplit_once('@')?;
    registrable_domain(host)
}

/// The site a host belongs to: its registrable domain, or the host itself
/// for an address.
fn site(host: &str) -> String {
    registrable_domain(host).unwrap_or_else(|| host.to_owned())
}

/// Upper-case letters and letters of `text`. Most mail is ASCII, where a
/// byte loop gives the same counts as decoding every `char` and asking the
/// Unicode tables, at a fraction of the cost (this ran on every learn).
fn upper_and_letters(text: &str) -> (usize, usize) {
    if text.is_ascii() {
        text.bytes()
            .filter(u8::is_ascii_alphabetic)
            .fold((0, 0), |(upper, letters), b| {
                (upper + usize::from(b.is_ascii_uppercase()), letters + 1)
            })
    } else {
        text.chars()
            .filter(|c| c.is_alphabetic())
            .fold((0, 0), |(upper, letters), c| {
                (upper + usize::from(c.is_uppercase()), letters + 1)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_case_counts_agree_on_ascii_and_on_any_text() {
        let by_chars = |text: &str| {
            let letters = text.chars().filter(|c| c.is_alphabetic());
            (
                letters.clone().filter(|c| c.is_uppercase()).count(),
                letters.count(),
            )
        };
        for text in ["FREE MONEY now 123!", "", "ÉTÉ Straße ÀB cd", "ΑΒΓ δ x"] {
            assert_eq!(upper_and_letters(text), by_chars(text), "{text}");
        }
        assert_eq!(upper_and_letters("FREE MONEY now"), (9, 12));
    }

    #[test]
    fn hosts_and_sites() {
        assert_eq!(
            link_host("HTTP://user@Www.Bank.example:80/x").as_deref(),
            Some("www.bank.example")
        );
        assert_eq!(
            host_in_text("www.paypal.com/login").as_deref(),
            Some("www.paypal.com")
        );
        assert_eq!(host_in_text("click here"), None);
        assert_eq!(site("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(site("192.0.2.1"), "192.0.2.1");
    }

    fn fires(function: EvalFn, raw: &str) -> bool {
        let message = crate::message::parse(raw.as_bytes(), &crate::message::Limits::default());
        let envelope = crate::message::Envelope::default();
        let context = crate::context::ScanContext::of_message(raw.as_bytes(), &envelope, message);
        function.run(&Input::new(&context))
    }

    #[test]
    fn spamassassin_subject_caps_missing_to_and_font_face() {
        let subject = |s: &str| format!("To: a@example.org\nSubject: {s}\n\nbody\n");
        assert!(fires(EvalFn::SubjectAllCaps, &subject("FREE CASH NOW!!!")));
        assert!(fires(EvalFn::SubjectAllCaps, &subject("Re: FREE CASH NOW")));
        assert!(!fires(EvalFn::SubjectAllCaps, &subject("Free cash now")));
        // One word, or under 10 characters, says nothing.
        assert!(!fires(EvalFn::SubjectAllCaps, &subject("ANNOUNCEMENT")));
        assert!(!fires(EvalFn::SubjectAllCaps, &subject("HI THERE")));
        // Encoded in a charset whose encoded form is capitals anyway.
        assert!(!fires(
            EvalFn::SubjectAllCaps,
            &subject("=?ISO-2022-JP?B?GyRCJCQkRBsoQg==?= NEWS TODAY")
        ));

        assert!(fires(EvalFn::ToMissing, "Subject: x\n\nbody\n"));
        // Present but empty is not missing (SpamAssassin's MISSING_HEADERS
        // stays off on `To: `).
        assert!(!fires(EvalFn::ToMissing, "To: \nSubject: x\n\nbody\n"));
        assert!(!fires(EvalFn::ToMissing, &subject("x")));
        assert!(!fires(
            EvalFn::ToMissing,
            "To: undisclosed-recipients:;\n\nbody\n"
        ));
        assert!(!fires(
            EvalFn::ToMissing,
            "Apparently-To: a@example.org\n\nbody\n"
        ));

        let font =
            |face: &str| format!("Content-Type: text/html\n\n<font face=\"{face}\">hi</font>\n");
        assert!(!fires(
            EvalFn::FontFaceBad,
            &font("Verdana, Arial, Helvetica, sans-serif")
        ));
        assert!(!fires(
            EvalFn::FontFaceBad,
            &font("'Montserrat', sans-serif")
        ));
        assert!(fires(
            EvalFn::FontFaceBad,
            &font("Verdana Arial, Helvetica, 7pt")
        ));
        assert!(fires(EvalFn::FontFaceBad, &font("font1 font2 ??")));
    }

    #[test]
    fn spamassassin_font_sizes_are_read_as_its_html_parser_reads_them() {
        let large = EvalFn::HtmlMaxFontSize {
            above: 5,
            up_to: Some(6),
        };
        let huge = EvalFn::HtmlMaxFontSize {
            above: 6,
            up_to: None,
        };
        let html = |body: &str| format!("Content-Type: text/html\n\n{body}\n");
        // +3 is relative to the default 3.
        let plus_three = html("<font size=\"+3\">WOW</font>");
        assert!(fires(large, &plus_three) && !fires(huge, &plus_three));
        // ... or to a <basefont>.
        let based = html("<basefont size=5><font size=+2>WOW</font>");
        assert!(!fires(large, &based) && fires(huge, &based));
        assert!(fires(huge, &html("<font size=7>WOW</font>")));
        assert!(!fires(large, &html("<font size=4>hi</font><big>big</big>")));
        // Plain text has no HTML part to measure.
        assert!(!fires(large, "Subject: x\n\n<font size=6>x</font>\n"));
    }

    #[test]
    fn the_envelope_sender_comes_from_the_last_untrusted_hop_when_the_mta_gave_none() {
        let message = |envelope_from: &str| {
            format!(
                "Received: from mx.example.org (mx.example.org [10.0.0.2]) by inbox.example.org; \
                 Tue, 16 Jul 2002 10:00:01 +0100\n\
                 Received: from out.lists.example (out.lists.example [192.0.2.7]) \
                 (envelope-from <{envelope_from}>) by mx.example.org; Tue, 16 Jul 2002 10:00:00 +0100\n\
                 From: a@example.com\nSubject: x\n\nbody\n"
            )
        };
        assert!(fires(
            EvalFn::FromDomainsDiffer,
            &message("bounce@lists.example")
        ));
        assert!(!fires(
            EvalFn::FromDomainsDiffer,
            &message("bounce@mail.example.com")
        ));
    }

    const RECEIVED: &str = "Received: from mail.example.com (mail.example.com [192.0.2.7]) \
        by mx.example.org; Tue, 16 Jul 2002 10:00:00 +0100\n";

    #[test]
    fn date_skew_is_measured_against_the_newest_received_stamp() {
        let with_date = |date: &str| format!("{RECEIVED}Date: {date}\nSubject: x\n\nbody\n");
        // 13 hours ahead, and an hour behind (in another zone): only the
        // first is in the future.
        let ahead = with_date("Tue, 16 Jul 2002 23:00:00 +0100");
        let behind = with_date("Tue, 16 Jul 2002 04:00:00 -0400");
        assert!(fires(EvalFn::DateInFuture, &ahead));
        assert!(!fires(EvalFn::DateInFuture, &behind));
        assert!(!fires(EvalFn::DateInPast, &behind));
        let stale = with_date("Thu, 11 Jul 2002 10:00:00 +0100");
        assert!(fires(EvalFn::DateInPast, &stale));
        // Without a Received stamp there is nothing to compare with.
        assert!(!fires(
            EvalFn::DateInFuture,
            "Date: Tue, 16 Jul 2030 23:00:00 +0100\n\nbody\n"
        ));
    }

    #[test]
    fn hidden_and_white_text_need_enough_invisible_letters_drawn() {
        let html = |body: &str| {
            format!(
                "Content-Type: text/html\n\n<html><head><style>.m{{color:#fff}}</style></head><body>{body}</body></html>\n"
            )
        };
        let hidden = html("<p>Hi</p><div style=\"display:none\">cheap meds online</div>");
        assert!(fires(EvalFn::HtmlHiddenText, &hidden));
        assert!(!fires(EvalFn::HtmlLowContrastText, &hidden));
        let white = html("<font color=\"#FFFFFF\">cheap meds online</font>");
        assert!(fires(EvalFn::HtmlLowContrastText, &white));
        // A stylesheet's white class, white menu text on a dark cell, a
        // hidden spacer and a small font are not hidden text.
        let newsletter = html(
            "<td bgcolor=#003366><font color=white>Home | News | Help</font></td>\
             <span style='display:none'>.</span><font size=1>small print here</font>",
        );
        assert!(!fires(EvalFn::HtmlHiddenText, &newsletter));
        assert!(!fires(EvalFn::HtmlLowContrastText, &newsletter));
        // SpamAssassin's measure weighs channels by luminance: dark blue on
        // black is low contrast there (and one run is enough), far apart in
        // plain RGB.
        let navy_on_black = html("<p style='background:#000;color:#0000a0'>x</p>");
        assert!(fires(EvalFn::FontLowContrast, &navy_on_black));
        assert!(!fires(EvalFn::HtmlLowContrastText, &navy_on_black));
        assert!(fires(EvalFn::FontLowContrast, &white));
        assert!(!fires(
            EvalFn::FontLowContrast,
            &html("<font color=#cccccc>light grey, still legible</font>")
        ));
        // As in SpamAssassin 4.0, whose HTML.pm never applies a `bgcolor`
        // attribute: white on a navy cell counts, on a CSS navy it does not.
        assert!(fires(EvalFn::FontLowContrast, &newsletter));
        assert!(!fires(
            EvalFn::FontLowContrast,
            &html("<td style='background-color:#003366'><font color=white>Home</font></td>")
        ));
        // Fewer than 8 letters: a stray word, not bait.
        assert!(!fires(
            EvalFn::HtmlHiddenText,
            &html("<i style='font-size:0'>x y</i>")
        ));
    }

    #[test]
    fn the_helo_of_the_newest_public_hop_must_be_a_host_name() {
        let hop = |helo: &str, ip: &str| {
            format!(
                "Received: from {helo} (unknown [{ip}]) by mx.example.org; Tue, 16 Jul 2002 10:00:00 +0100\n\nx\n"
            )
        };
        assert!(fires(
            EvalFn::RelayHeloNotFqdn,
            &hop("[192.0.2.9]", "192.0.2.9")
        ));
        assert!(fires(
            EvalFn::RelayHeloNotFqdn,
            &hop("desktop", "192.0.2.9")
        ));
        assert!(!fires(
            EvalFn::RelayHeloNotFqdn,
            &hop("mail.example.com", "192.0.2.9")
        ));
        // A host inside the receiver's network names itself as it likes.
        assert!(!fires(
            EvalFn::RelayHeloNotFqdn,
            &hop("desktop", "10.0.0.5")
        ));
    }

    #[test]
    fn sender_domain_alignment() {
        let message = |from: &str, id: &str| {
            format!("{RECEIVED}From: A <a@{from}>\nMessage-ID: <1.2@{id}>\n\nbody\n")
        };
        let aligned = message("news.example.com", "mta3.example.com");
        assert!(fires(EvalFn::FromDomainRelayed, &aligned));
        assert!(fires(EvalFn::MsgidFromDomain, &aligned));
        let elsewhere = message("example.net", "bulk.example.org");
        assert!(!fires(EvalFn::FromDomainRelayed, &elsewhere));
        assert!(!fires(EvalFn::MsgidFromDomain, &elsewhere));
        // Registrable domains, not the last two labels.
        let uk = message("a.example.co.uk", "b.other.co.uk");
        assert!(!fires(EvalFn::MsgidFromDomain, &uk));
    }
}
