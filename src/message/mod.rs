//! PARSE: raw bytes to a [`Message`] that every later stage reads.
//!
//! MIME structure, transfer encodings, charsets and RFC 2047 headers are the
//! work of `mail-parser`; this module walks its part tree once, renders HTML
//! to visible text, and keeps only what checks need, so no check ever goes
//! back to the raw bytes. Parsing never fails: malformed input yields the best
//! partial [`Message`] plus the [`ParseProblem`]s met on the way. All size and
//! shape limits live in [`Limits`], in this one place.

pub mod fields;
mod html;
mod html_form;
mod html_style;
pub mod images;
mod mime;

use std::net::IpAddr;

use serde::Deserialize;

pub use html::{Anchor, HtmlText, InvisibleText, html_to_text};
pub use html_form::Form;
pub use html_style::HtmlTests;
pub use mime::parse;

/// Bounds on what one message may cost. Input beyond a bound is not an
/// error: parsing stops there and says so in [`Message::problems`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes of a message that are parsed at all; the rest is ignored.
    pub max_message_bytes: usize,
    /// Nesting of multiparts and attached messages that is followed.
    pub max_mime_depth: usize,
    /// MIME parts visited per message.
    pub max_mime_parts: usize,
    /// Header fields kept per message (top level).
    pub max_headers: usize,
    /// Visible text kept per message, summed over parts.
    pub max_text_bytes: usize,
    /// Pictures (PNG, JPEG, GIF) searched for QR codes per message; 0
    /// reads none.
    pub max_images: usize,
    /// Larger pictures are not decoded.
    pub max_image_bytes: usize,
    /// Pictures with more pixels (by their header) are not decoded.
    pub max_image_pixels: u64,
    /// Once reading a message's pictures has taken this long, the rest are
    /// skipped.
    pub image_budget_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 50 * 1024 * 1024,
            max_mime_depth: 16,
            max_mime_parts: 512,
            max_headers: 2048,
            max_text_bytes: 2 * 1024 * 1024,
            max_images: 8,
            max_image_bytes: 10 * 1024 * 1024,
            max_image_pixels: 4_000_000,
            image_budget_ms: 200,
        }
    }
}

/// The SMTP envelope: what the MTA knows about the message beyond its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// The connecting client's address.
    pub client_ip: Option<IpAddr>,
    /// The client's reverse-DNS name, as the MTA saw it.
    pub client_hostname: Option<String>,
    /// The HELO/EHLO name.
    pub helo: Option<String>,
    /// MAIL FROM.
    pub mail_from: Option<String>,
    /// RCPT TO, one per recipient.
    pub recipients: Vec<String>,
    /// The SASL-authenticated user, if any.
    pub user: Option<String>,
    /// The MTA's queue id, for logs.
    pub queue_id: Option<String>,
}

impl Envelope {
    /// The envelope with its addresses as bare addresses (whitespace and
    /// one pair of angle brackets taken off MAIL FROM and each RCPT TO, as
    /// MTAs pass them either way) and the HELO name trimmed: done once,
    /// when the engine builds a message's context, so no check strips them.
    pub fn cleaned(&self) -> Envelope {
        let bare = |address: &str| {
            let address = address.trim();
            address
                .strip_prefix('<')
                .and_then(|a| a.strip_suffix('>'))
                .unwrap_or(address)
                .trim()
                .to_owned()
        };
        Envelope {
            client_ip: self.client_ip,
            client_hostname: self.client_hostname.as_deref().map(|h| h.trim().to_owned()),
            helo: self.helo.as_deref().map(|h| h.trim().to_owned()),
            mail_from: self.mail_from.as_deref().map(bare),
            recipients: self.recipients.iter().map(|r| bare(r)).collect(),
            user: self.user.clone(),
            queue_id: self.queue_id.clone(),
        }
    }
}

/// One decoded top-level header field.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderField {
    /// The field name as written.
    pub name: String,
    /// The value, RFC 2047-decoded, unfolded.
    pub value: String,
}

/// Whether a text part was written as plain text or rendered from HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    Html,
}

/// The visible text of one text part.
#[derive(Debug, Clone, PartialEq)]
pub struct TextPart {
    pub kind: TextKind,
    pub text: String,
}

/// A non-text part.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// `type/subtype`, lowercased.
    pub content_type: String,
    pub file_name: Option<String>,
    /// Decoded size in bytes.
    pub size: usize,
    /// 128-bit hash (XXH3) of the decoded bytes, for fuzzy matching.
    pub digest: u128,
}

/// Something the parser had to work around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseProblem {
    /// The message was longer than `max_message_bytes`; the tail was ignored.
    Truncated,
    /// Nesting went deeper than `max_mime_depth`.
    TooDeep,
    /// More parts than `max_mime_parts`.
    TooManyParts,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// A header line whose name is not a valid field name was dropped.
    MalformedHeader,
    /// More visible text than `max_text_bytes`.
    TooMuchText,
    /// A part's transfer encoding or charset could not be decoded cleanly.
    EncodingProblem,
    /// Nothing parseable as a message was found.
    NotAMessage,
    /// The MIME parser failed on this input; nothing of it was kept.
    ParserFailed,
}

/// One hop of the Received chain, as the host that took the message wrote
/// it: "from HELO (rdns [ip]) by … ; date". Hops below the ones our own
/// servers added can be forged; checks that read them weigh little.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Relay {
    /// The name the sending host gave (HELO/EHLO), lowercased; an address
    /// literal as its address text.
    pub helo: Option<String>,
    /// The sending host's reverse-DNS name as the receiver looked it up and
    /// wrote it (case kept: some SpamAssassin patterns are case-sensitive).
    pub rdns: Option<String>,
    /// The sending host's address.
    pub ip: Option<std::net::IpAddr>,
    /// When the receiver took the message (seconds since 1970, UTC).
    pub received_at: Option<i64>,
    /// The receiving host ("by").
    pub by: Option<String>,
    /// The receiver's queue id ("id").
    pub id: Option<String>,
    /// The ident (RFC 1413) user, when the receiver recorded one.
    pub ident: Option<String>,
    /// The protocol ("with"): `ESMTP`, `ESMTPSA` (authenticated), `POP3`
    /// and `IMAP` (a mail fetcher's hop, not a handover between servers), …
    pub protocol: Option<String>,
    /// The envelope sender the receiver wrote down (`envelope-from <…>`,
    /// `envelope-sender …`, `return-path …` in a `from` line), cleaned as
    /// SpamAssassin cleans it.
    pub envelope_from: Option<String>,
}

impl Relay {
    /// The authenticated protocol, when the sender logged in to send: such
    /// a hop is the sender's own submission.
    pub fn auth(&self) -> Option<&str> {
        self.protocol
            .as_deref()
            .filter(|p| p.ends_with('A') && p.contains("MTP"))
    }

    /// A mail fetcher's hop (fetchmail writing "with POP3"): the message
    /// was collected from a mailbox, not handed over by a server.
    pub fn fetched(&self) -> bool {
        matches!(self.protocol.as_deref(), Some("POP3" | "IMAP"))
    }
}

/// Not loopback, private, link-local or otherwise local: a hop from such an
/// address is inside someone's network, not the one that handed the mail in.
/// `bytes` as text, invalid UTF-8 replaced as [`String::from_utf8_lossy`]
/// does. Mail is mostly ASCII and `std::str::from_utf8` checks it a word
/// at a time, while `from_utf8_lossy` walks byte by byte: checking first
/// took the header and body conversions' cost down to a fraction.
pub fn lossy_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Bytes of MIME part headers kept in [`Message::mime_header_blocks`]:
/// legitimate parts have a few hundred each; past this a message is junk.
pub const MAX_MIME_HEADER_BYTES: usize = 64 * 1024;

/// Everything later stages need from a message, extracted once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// Top-level header fields in order.
    pub headers: Vec<HeaderField>,
    /// The decoded Subject, empty if none.
    pub subject: String,
    /// The From display name, empty if none.
    pub from_name: String,
    /// The From address, lowercased, empty if none.
    pub from_address: String,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// Visible text of every text part, attached messages included.
    pub text_parts: Vec<TextPart>,
    /// Link and image targets found in HTML (href, src), in order.
    pub links: Vec<String>,
    /// HTML links with their visible text (`<a href>…</a>`), in order.
    pub anchors: Vec<Anchor>,
    /// HTML forms (and inputs outside any form), in order.
    pub forms: Vec<Form>,
    /// The header block of every MIME part as written, the top-level one
    /// first, for SpamAssassin's `mimeheader` rules. At most
    /// `MAX_MIME_HEADER_BYTES` in all.
    pub mime_header_blocks: Vec<String>,
    /// Text the HTML parts draw where no reader sees it, summed over parts.
    pub invisible_text: InvisibleText,
    /// SpamAssassin's HTML tests, over all HTML parts.
    pub html_tests: HtmlTests,
    /// The decoded, unrendered source of each HTML part, in order (for
    /// rules on the raw body: hidden text, styles, comments).
    pub html_sources: Vec<String>,
    /// Non-text parts.
    pub attachments: Vec<Attachment>,
    /// The pictures read for QR codes, and the codes' text.
    pub images: images::ImageFacts,
    /// `type/subtype` of every leaf part, in order.
    pub content_types: Vec<String>,
    /// The Received chain, newest (our side) first.
    pub relays: Vec<Relay>,
    /// A text part (plain or HTML) came base64-encoded: text has no need
    /// of it, and bulk tools use it to hide words from filters that read
    /// the raw message.
    pub base64_text: bool,
    /// Bytes of the raw message.
    pub raw_size: usize,
    /// What the parser worked around, each kind once.
    pub problems: Vec<ParseProblem>,
}

impl Message {
    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub(crate) fn note(&mut self, problem: ParseProblem) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// All visible text, parts separated by blank lines.
    pub fn visible_text(&self) -> String {
        let mut out = String::new();
        for part in &self.text_parts {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&part.text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_text_is_from_utf8_lossy() {
        for bytes in [
            &b"plain ascii"[..],
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"bad \xff\xfe byte\xc3",
            b"",
        ] {
            assert_eq!(lossy_text(bytes), String::from_utf8_lossy(bytes));
        }
        assert!(matches!(
            lossy_text(b"borrowed"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
