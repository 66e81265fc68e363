//! The texts rules match, each built once per message and only when some
//! rule needs it.

use std::borrow::Cow;
use std::cell::OnceCell;

use super::sa_facts::{self, relay_pseudo_headers};
use crate::context::ScanContext;
use crate::message::fields::{
    raw_header_fields, split_addresses, strip_mbox_line, unfold_as_spamassassin,
};
use crate::message::{Envelope, Message};

/// Which form of a header a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderForm {
    /// RFC 2047-decoded and unfolded (SpamAssassin's default).
    Decoded,
    /// As written, folding kept, nothing decoded (`:raw`).
    Raw,
    /// The addresses only, one per line (`:addr`).
    Addr,
    /// The display names only, one per line (`:name`).
    Name,
}

impl HeaderForm {
    /// How a rule file writes this form after the header's name.
    fn suffix(self) -> &'static str {
        match self {
            HeaderForm::Decoded => "",
            HeaderForm::Raw => ":raw",
            HeaderForm::Addr => ":addr",
            HeaderForm::Name => ":name",
        }
    }

    pub fn from_name(name: &str) -> Option<HeaderForm> {
        Some(match name {
            "decoded" => HeaderForm::Decoded,
            "raw" => HeaderForm::Raw,
            "addr" => HeaderForm::Addr,
            "name" => HeaderForm::Name,
            _ => return None,
        })
    }
}

/// Which envelope field an `envelope` rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnvelopeField {
    Ip,
    Helo,
    Hostname,
    MailFrom,
    Rcpt,
    User,
}

impl EnvelopeField {
    pub fn from_name(name: &str) -> Option<EnvelopeField> {
        Some(match name {
            "ip" => EnvelopeField::Ip,
            "helo" => EnvelopeField::Helo,
            "hostname" => EnvelopeField::Hostname,
            "mail_from" => EnvelopeField::MailFrom,
            "rcpt" => EnvelopeField::Rcpt,
            "user" => EnvelopeField::User,
            _ => return None,
        })
    }
}

/// One text a rule can match. Rules with equal targets share one pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A header by lowercased name (or a pseudo-header: `ALL`, `ToCc`,
    /// `MESSAGEID`, `EnvelopeFrom`), every occurrence, one per line.
    Header(String, HeaderForm),
    /// A header of any MIME part, the top-level headers included
    /// (SpamAssassin's `mimeheader`), every occurrence, one per line.
    MimeHeader(String, HeaderForm),
    /// Subject, then the rendered text, one paragraph per line.
    Body,
    /// The decoded text parts, HTML unrendered.
    RawBody,
    /// Every link, one per line.
    Uri,
    /// The whole message as received.
    Full,
    Envelope(EnvelopeField),
}

/// `body`, `header Subject`, `mimeheader Content-Type:raw`: what
/// `chaff rules stats --timing` calls a text.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Header(name, form) | Target::MimeHeader(name, form) => {
                write!(f, "{} {name}{}", self.kind(), form.suffix())
            }
            Target::Envelope(field) => write!(f, "envelope {field:?}"),
            _ => f.write_str(self.kind()),
        }
    }
}

impl Target {
    /// The rule kind this target belongs to, as written in rule files.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Header(..) => "header",
            Target::MimeHeader(..) => "mimeheader",
            Target::Body => "body",
            Target::RawBody => "rawbody",
            Target::Uri => "uri",
            Target::Full => "full",
            Target::Envelope(_) => "envelope",
        }
    }
}

/// A message as rules see it: the scan's context, and the texts built
/// from it that only rules read, each built once and only if a rule reads it.
pub struct Input<'a> {
    pub context: &'a ScanContext<'a>,
    pub message: &'a Message,
    pub raw: &'a [u8],
    pub envelope: &'a Envelope,
    /// SpamAssassin's relay pseudo-headers: (trusted, untrusted).
    relays: OnceCell<(String, String)>,
    sa_date_diff: OnceCell<i64>,
    /// Each MIME part's header fields as written, split once per message
    /// (every `mimeheader` target reads them).
    mime_fields: OnceCell<Vec<Vec<(String, String)>>>,
}

impl<'a> Input<'a> {
    pub fn new(context: &'a ScanContext<'a>) -> Input<'a> {
        Input {
            context,
            message: &context.message,
            raw: context.raw,
            envelope: &context.envelope,
            relays: OnceCell::new(),
            sa_date_diff: OnceCell::new(),
            mime_fields: OnceCell::new(),
        }
    }

    /// Seconds from the Received stamp nearest to the Date header to the
    /// Date header, as SpamAssassin's HeaderEval computes it for
    /// `check_for_shifted_date`: Resent-Date before Date; the stamps of every
    /// Received line except the local delivery and fetchmail lines on top;
    /// the oldest stamp dropped when it equals the Date exactly; 0 when
    /// either side is missing.
    pub fn sa_date_diff(&self) -> i64 {
        *self
            .sa_date_diff
            .get_or_init(|| sa_facts::date_diff(self.raw_headers()))
    }

    /// The envelope sender as SpamAssassin finds it (`EnvelopeFrom`): the
    /// MTA's MAIL FROM when it passed one; else none when an X-Sender and a
    /// fetchmail hop make headers untrustworthy; else the first
    /// X-Envelope-From, Envelope-Sender or Return-Path address written above
    /// every Received line (an X-Envelope-From below one ends the search).
    pub fn sa_envelope_from(&self) -> Option<String> {
        sa_facts::envelope_from(self.message, self.envelope, self.raw_headers())
    }

    /// Whether a header field named `name` (or, for a pseudo-header such
    /// as `ToCc`, any field it stands for) is present.
    pub fn has_header(&self, name: &str) -> bool {
        let key = header_key(name);
        if key == ":envelopefrom" {
            return self.sa_envelope_from().is_some();
        }
        let names = header_names(&key);
        self.message
            .headers
            .iter()
            .any(|h| names.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
    }

    /// The text of `target`.
    pub fn text(&self, target: &Target) -> Cow<'a, str> {
        match target {
            Target::Header(name, form) => Cow::Owned(self.header(name, *form)),
            Target::MimeHeader(name, form) => Cow::Owned(self.mime_header(name, *form)),
            Target::Body => Cow::Owned(body_text(self.message)),
            Target::RawBody => Cow::Owned(raw_body_text(self.message)),
            Target::Uri => Cow::Owned(uri_list(self.message)),
            // An mbox `From ` line is envelope, not message.
            Target::Full => crate::message::lossy_text(strip_mbox_line(self.raw)),
            Target::Envelope(field) => Cow::Owned(self.envelope_field(*field)),
        }
    }

    fn envelope_field(&self, field: EnvelopeField) -> String {
        let e = self.envelope;
        match field {
            EnvelopeField::Ip => e.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            EnvelopeField::Helo => e.helo.clone().unwrap_or_default(),
            EnvelopeField::Hostname => e.client_hostname.clone().unwrap_or_default(),
            EnvelopeField::MailFrom => e.mail_from.clone().unwrap_or_default(),
            EnvelopeField::Rcpt => e.recipients.join("\n"),
            EnvelopeField::User => e.user.clone().unwrap_or_default(),
        }
    }

    /// The texts `target`'s patterns run on, each on its own: one, except
    /// for a MIME-part header, whose every value is one (SpamAssassin's
    /// `mimeheader` matches each part's value apart, so `^image/gif` finds
    /// the second part's type, and none when no part has the header).
    pub fn texts(&self, target: &Target) -> Vec<Cow<'a, str>> {
        match target {
            Target::MimeHeader(name, form) => self
                .mime_header_values(name, *form, true)
                .into_iter()
                .map(Cow::Owned)
                .collect(),
            _ => vec![self.text(target)],
        }
    }

    /// Every part's fields named `name`, one per line (what `text` gives a
    /// `mimeheader` target; the rules match [`Input::texts`]' values).
    fn mime_header(&self, name: &str, form: HeaderForm) -> String {
        self.mime_header_values(name, form, false).join("\n")
    }

    /// Every part's fields named `name`: as written (`raw`) or unfolded;
    /// with `unset_as_empty`, an empty value for each part without one, as
    /// SpamAssassin matches an unset part header as empty text.
    /// Part headers are ASCII in practice (RFC 2047 words live in the
    /// top-level Subject and From), so `decoded` does not decode words.
    fn mime_header_values(
        &self,
        name: &str,
        form: HeaderForm,
        unset_as_empty: bool,
    ) -> Vec<String> {
        let mut values = Vec::new();
        let parts = self.mime_fields.get_or_init(|| {
            self.message
                .mime_header_blocks
                .iter()
                .map(|block| raw_header_fields(block.as_bytes()))
                .collect()
        });
        for fields in parts {
            let before = values.len();
            for (field, value) in fields {
                if field.eq_ignore_ascii_case(name) {
                    values.push(match form {
                        HeaderForm::Raw => value.clone(),
                        _ => unfold_as_spamassassin(value),
                    });
                }
            }
            if unset_as_empty && values.len() == before {
                values.push(String::new());
            }
        }
        values
    }

    /// The first address of the first `Resent-From`: SpamAssassin's
    /// `all_from_addrs` gives it priority over every other sender header
    /// (its bug 672: a resent message's author is who resent it), so a list
    /// that re-sends mail is judged as the list, not as the original sender.
    fn resent_author(&self) -> Option<String> {
        let (_, value) = self
            .raw_headers()
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case("resent-from"))?;
        split_addresses(&unfold_as_spamassassin(value))
            .into_iter()
            .map(|(_, address)| address)
            .find(|address| !address.is_empty())
    }

    fn raw_headers(&self) -> &[(String, String)] {
        self.context.header_fields()
    }

    pub(super) fn header(&self, name: &str, form: HeaderForm) -> String {
        if let Some(which) = name.strip_prefix(":relays-") {
            let (trusted, untrusted) = self
                .relays
                .get_or_init(|| relay_pseudo_headers(self.message, self.envelope));
            return if which == "trusted" {
                trusted
            } else {
                untrusted
            }
            .clone();
        }
        if name == ":all" {
            return self
                .raw_headers()
                .iter()
                .map(|(n, v)| format!("{n}: {v}\n"))
                .collect();
        }
        if name == ":envelopefrom" {
            // SpamAssassin's EnvelopeFrom is its get_envelope_from() guess,
            // with all its distrust of list and fetchmail hops, not simply
            // the Return-Path header.
            return match form {
                HeaderForm::Name => String::new(),
                _ => self.sa_envelope_from().unwrap_or_default(),
            };
        }
        if name == ":allfrom"
            && form == HeaderForm::Addr
            && let Some(resent) = self.resent_author()
        {
            return resent;
        }
        let names = header_names(name);
        // The header as written; decoded = unfolded, with RFC 2047 encoded
        // words decoded (mail-parser's value of the same occurrence).
        // mail-parser's own value is not used otherwise: it drops the angle
        // brackets of Message-ID and rewrites address lists.
        let mut values: Vec<String> = Vec::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (field, value) in self.raw_headers() {
            let Some(&wanted) = names.iter().find(|n| field.eq_ignore_ascii_case(n)) else {
                continue;
            };
            let nth = match seen.iter_mut().find(|(n, _)| *n == wanted) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    seen.push((wanted, 1));
                    0
                }
            };
            if form == HeaderForm::Raw {
                values.push(value.clone());
            } else if value.contains("=?") {
                let decoded = self
                    .message
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(wanted))
                    .nth(nth)
                    .map_or_else(|| unfold_as_spamassassin(value), |h| h.value.clone());
                values.push(decoded);
            } else {
                values.push(unfold_as_spamassassin(value));
            }
        }
        match form {
            HeaderForm::Decoded | HeaderForm::Raw => values.join("\n"),
            HeaderForm::Addr => values
                .iter()
                .flat_map(|v| split_addresses(v))
                .map(|(_, addr)| addr)
                .collect::<Vec<_>>()
                .join("\n"),
            HeaderForm::Name => values
                .iter()
                .flat_map(|v| split_addresses(v))
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// The fields a header name stands for (pseudo-headers: `ToCc`,
/// `MESSAGEID`, `EnvelopeFrom`), lowercased.
fn header_names(key: &str) -> Vec<&str> {
    match key {
        ":tocc" => vec!["to", "cc"],
        ":messageid" => vec!["message-id", "resent-message-id", "x-message-id"],
        // SpamAssassin's all_from_addrs: every header naming the sender.
        ":allfrom" => vec![
            "from",
            "envelope-sender",
            "resent-sender",
            "x-envelope-from",
            "return-path",
        ],
        other => vec![other],
    }
}

/// How a header name is looked up: field names are case-insensitive
/// (lowercased); the pseudo-headers are recognised by their exact spelling,
/// as SpamAssassin does (`ALL`, `ToCc`, `MESSAGEID`, `EnvelopeFrom`; a field
/// really named `MessageID` is just that), and become `:all`, `:tocc`, …
pub fn header_key(name: &str) -> String {
    match name {
        "ALL" => ":all".into(),
        "ToCc" => ":tocc".into(),
        "MESSAGEID" => ":messageid".into(),
        "EnvelopeFrom" => ":envelopefrom".into(),
        other => {
            let lower = other.to_ascii_lowercase();
            match lower.as_str() {
                "x-spam-relays-trusted" | "x-spam-relays-internal" => ":relays-trusted".into(),
                "x-spam-relays-untrusted" | "x-spam-relays-external" => ":relays-untrusted".into(),
                _ => lower,
            }
        }
    }
}

/// SpamAssassin's body: the Subject, then each paragraph of each text part
/// on one line (line breaks inside a paragraph become spaces).
pub fn body_text(message: &Message) -> String {
    let mut out = String::with_capacity(
        message.subject.len()
            + message
                .text_parts
                .iter()
                .map(|p| p.text.len())
                .sum::<usize>(),
    );
    out.push_str(&message.subject);
    out.push('\n');
    for part in &message.text_parts {
        let mut in_paragraph = false;
        for line in part.text.lines() {
            let line = line.trim();
            if line.is_empty() {
                if in_paragraph {
                    out.push('\n');
                    in_paragraph = false;
                }
                continue;
            }
            if in_paragraph {
                out.push(' ');
            }
            out.push_str(line);
            in_paragraph = true;
        }
        if in_paragraph {
            out.push('\n');
        }
    }
    out
}

/// What `uri` rules match, one URI per line: the message's links, then the
/// addresses written in its text as `mailto:` URIs, as SpamAssassin's URI
/// list has them (chaff's own `uri` rules all start `^https?://`).
fn uri_list(message: &Message) -> String {
    /// Addresses looked at per message: a bound for address-stuffed mail.
    const MAX_TEXT_ADDRESSES: usize = 64;
    let mut out = message.links.join("\n");
    let mut budget = MAX_TEXT_ADDRESSES;
    for text in std::iter::once(&message.subject).chain(message.text_parts.iter().map(|p| &p.text))
    {
        for uri in crate::extract::urls::text_mail_uris(text, budget) {
            if !message
                .links
                .iter()
                .any(|link| link.eq_ignore_ascii_case(&uri))
            {
                out.push('\n');
                out.push_str(&uri);
            }
            budget -= 1;
        }
        if budget == 0 {
            break;
        }
    }
    out
}

/// The decoded text parts with HTML left as written.
pub fn raw_body_text(message: &Message) -> String {
    let mut out = String::new();
    let mut html = message.html_sources.iter();
    for part in &message.text_parts {
        let text = match part.kind {
            crate::message::TextKind::Html => html.next().map_or(part.text.as_str(), |s| s),
            crate::message::TextKind::Plain => part.text.as_str(),
        };
        out.push_str(text);
        out.push('\n');
    }
    for rest in html {
        out.push_str(rest);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Limits, parse};

    #[test]
    fn body_joins_paragraph_lines_after_the_subject() {
        let m = parse(
            b"Subject: Hi there\n\nfirst line\nsecond line\n\nnext para\n",
            &Limits::default(),
        );
        assert_eq!(
            body_text(&m),
            "Hi there\nfirst line second line\nnext para\n"
        );
    }

    #[test]
    fn uri_rules_see_links_then_text_addresses() {
        let raw = b"From: a@example.org\nContent-Type: text/html\n\n<a href=\"http://example.com/x\">x</a> \
                    <a href=\"mailto:list-request@example.net\">y</a> write to list-request@example.net \
                    or remove@lists.example.org.\n";
        let m = parse(raw, &Limits::default());
        let env = Envelope::default();
        let context = ScanContext::of_message(raw, &env, m);
        let input = Input::new(&context);
        assert_eq!(
            input.text(&Target::Uri),
            "http://example.com/x\nmailto:list-request@example.net\nmailto:remove@lists.example.org"
        );
    }

    #[test]
    fn envelope_from_distrusts_return_path_behind_fetchmail_with_x_sender() {
        let fetched = b"Return-Path: <yyyy@example.com>\nReceived: from phobos [127.0.0.1]\n\
                        \tby localhost with IMAP (fetchmail-5.9.0)\nX-Sender: yyyy@example.com\n\
                        From: yyyy@example.com\n\nbody\n";
        let direct = b"Return-Path: <yyyy@example.com>\nFrom: yyyy@example.com\n\nbody\n";
        let env = Envelope::default();
        for (raw, expected) in [(&fetched[..], ""), (&direct[..], "yyyy@example.com")] {
            let m = parse(raw, &Limits::default());
            let context = ScanContext::of_message(raw, &env, m);
            let input = Input::new(&context);
            assert_eq!(input.header(":envelopefrom", HeaderForm::Addr), expected);
        }
    }

    #[test]
    fn envelope_from_distrusts_a_return_path_when_another_lies_below_a_received_line() {
        // A local delivery's Return-Path above, the list server's below its
        // Received line: SpamAssassin trusts neither (`ALL =~
        // /^Received:.*?^Return-Path:/smi`), so EnvelopeFrom is empty.
        let relisted = b"Return-Path: local@here.example\nReceived: via dmail for +lists\n\
                         Return-Path: <owner-list@lists.example>\nFrom: a@sender.example\n\nbody\n";
        let m = parse(relisted, &Limits::default());
        let env = Envelope::default();
        let context = ScanContext::of_message(relisted, &env, m);
        let input = Input::new(&context);
        assert_eq!(input.header(":envelopefrom", HeaderForm::Addr), "");
    }

    #[test]
    fn raw_headers_keep_folding_and_forms_split_addresses() {
        let raw = b"From: \"Bob B\" <bob@example.com>\nSubject: =?utf-8?q?caf=C3=A9?=\n  more\nTo: a@x.example, Carl <c@y.example>\n\nbody\n";
        let m = parse(raw, &Limits::default());
        let env = Envelope::default();
        let context = ScanContext::of_message(raw, &env, m);
        let input = Input::new(&context);
        assert_eq!(
            input.header("subject", HeaderForm::Raw),
            "=?utf-8?q?caf=C3=A9?=\n  more"
        );
        assert!(
            input
                .header("subject", HeaderForm::Decoded)
                .starts_with("caf\u{e9}")
        );
        assert_eq!(input.header("from", HeaderForm::Addr), "bob@example.com");
        assert_eq!(input.header("from", HeaderForm::Name), "Bob B");
        assert_eq!(
            input.header(":tocc", HeaderForm::Addr),
            "a@x.example\nc@y.example"
        );
        assert!(
            input
                .header(":all", HeaderForm::Raw)
                .contains("To: a@x.example")
        );
        assert_eq!(input.header("x-missing", HeaderForm::Decoded), "");
    }
}
