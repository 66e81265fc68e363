//! The walk over mail-parser's part tree that fills a [`Message`].

use std::sync::LazyLock;

use mail_parser::{Address, HeaderValue, Host, MessageParser, MimeHeaders, PartType};

use super::images::{ImageReaderBudget, data_uri_picture};
use super::{
    Attachment, HeaderField, Limits, Message, ParseProblem, Relay, TextKind, TextPart, html_to_text,
};

/// Parses raw message bytes. Never fails and never panics: whatever cannot be
/// understood is skipped and noted in [`Message::problems`].
pub fn parse(raw: &[u8], limits: &Limits) -> Message {
    let mut message = Message {
        raw_size: raw.len(),
        ..Message::default()
    };
    let mut raw = strip_mbox_envelope_line(raw);
    if raw.len() > limits.max_message_bytes {
        raw = &raw[..limits.max_message_bytes];
        message.note(ParseProblem::Truncated);
    }
    // mail-parser is robust, but it is a third-party parser fed hostile
    // bytes: a panic in it must cost one message, not the daemon.
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(raw));
    let Ok(parsed) = parsed else {
        message.note(ParseProblem::ParserFailed);
        return message;
    };
    let Some(parsed) = parsed else {
        message.note(ParseProblem::NotAMessage);
        return message;
    };
    fill_top_level(&mut message, &parsed, limits);
    walk_parts(&mut message, &parsed, limits);
    message
}

/// The envelope sender a Received line records, as SpamAssassin's relay
/// parser reads it: in a line starting `from `, the word after
/// `return-path`, `envelope-from` or `envelope-sender`, without its angle
/// brackets, characters that cannot be in an address turned to `!`.
/// SpamAssassin first folds each run of white space to one space; the
/// pattern allows any run instead, so the parse of every Received line of
/// every message copies nothing.
fn received_envelope_from(received: &str) -> Option<String> {
    static ENVELOPE_FROM: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(r"(?i)(?:return-path:?\s+|envelope-(?:sender|from)(?:\s+|=))(\S+)\b").ok()
    });
    let rest = received.trim_start().strip_prefix("from")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let found = ENVELOPE_FROM.as_ref()?.captures(rest)?.get(1)?.as_str();
    let address: String = found
        .trim_start_matches('<')
        .trim_end_matches('>')
        .chars()
        .map(|c| if "\0#[]()<>|".contains(c) { '!' } else { c })
        .collect();
    Some(address)
}

/// The reverse-DNS name a qmail Received line records, as SpamAssassin's
/// relay parser reads it: `from NAME [(HELO h)] ([ident@]IP) by … with
/// SMTP` (no ` id ` after the protocol, which would be sendmail's) names
/// the host as tcpserver looked it up, `unknown` when it had none. Other
/// MTAs write that name beside the address, where mail-parser finds it:
/// `None` when the line is not qmail's, `Some(None)` when qmail had no name.
fn qmail_rdns(received: &str) -> Option<Option<String>> {
    // SpamAssassin folds each run of white space to one space first; the
    // pattern allows any run instead, so no Received line is copied.
    static QMAIL: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?s)^from\s+(\S+)(?:\s+\((?:HELO|EHLO)\s+\S*\))?\s+\((?:\S*@)?\[?([0-9A-Fa-f:.]+)\]?\)(?:\s+\(envelope-sender\s+<\S+>\))?\s+by\s+\S+(?:\s+\(.+\))*\s+with\s+(?:.*\s)?(?:SMTP|QMQP)",
        )
        .ok()
    });
    let received = received.trim_start();
    let found = QMAIL.as_ref()?.captures(received)?;
    let after = &received[found.get(0)?.end()..];
    let sendmail_id = after.starts_with(char::is_whitespace)
        && after
            .trim_start()
            .strip_prefix("id")
            .is_some_and(|rest| rest.starts_with(char::is_whitespace));
    if sendmail_id {
        return None;
    }
    found.get(2)?.as_str().parse::<std::net::IpAddr>().ok()?;
    let name = found.get(1)?.as_str();
    Some((name != "unknown").then(|| name.to_owned()))
}

/// Archive files and the SpamAssassin corpus start each message with an mbox
/// `From ` line; it is envelope, not header, and would parse as garbage.
fn strip_mbox_envelope_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match memchr::memchr(b'\n', raw) {
            Some(end) => &raw[end + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

fn fill_top_level(message: &mut Message, parsed: &mail_parser::Message<'_>, limits: &Limits) {
    let raw = parsed.raw_message();
    let headers = parsed.headers();
    if headers.len() > limits.max_headers {
        message.note(ParseProblem::TooManyHeaders);
    }
    for header in headers.iter().take(limits.max_headers) {
        if !is_field_name(header.name.as_str()) {
            // Binary junk and broken continuation lines parse as "headers"
            // with impossible names; they are body noise, not fields.
            message.note(ParseProblem::MalformedHeader);
            continue;
        }
        let value = header_value_text(&header.value, raw, header.offset_start, header.offset_end);
        if let HeaderValue::Received(received) = &header.value {
            // Sendmail writes "(user@rdns [ip])", which mail-parser reads as
            // one ident: the user is the ident and the host the rDNS name.
            let (ident_user, ident_host) = match received.ident.as_deref() {
                Some(ident) => match ident.split_once('@') {
                    Some((user, host)) => (Some(user), Some(host)),
                    None => (Some(ident), None),
                },
                None => (None, None),
            };
            message.relays.push(Relay {
                // As written: SpamAssassin's X-Spam-Relays-* keep the
                // HELO's case (HELO_DYNAMIC_* rules read it); whoever
                // compares names lowercases them.
                helo: received
                    .helo
                    .as_ref()
                    .or(received.from.as_ref())
                    .map(host_as_written),
                rdns: qmail_rdns(&value)
                    .unwrap_or_else(|| {
                        received
                            .from_iprev
                            .as_deref()
                            .or(ident_host)
                            .map(|name| name.trim_end_matches('.').to_owned())
                    })
                    .filter(|name| !name.is_empty()),
                ip: received.from_ip,
                received_at: received.date.as_ref().map(|date| date.to_timestamp()),
                by: received.by.as_ref().map(host_text),
                id: received.id.as_deref().map(str::to_owned),
                ident: ident_user.map(str::to_owned),
                protocol: received
                    .with
                    .as_ref()
                    .map(|protocol| format!("{protocol:?}")),
                envelope_from: received_envelope_from(&value),
            });
        }
        message.headers.push(HeaderField {
            name: header.name.as_str().to_owned(),
            value,
        });
    }
    message.subject = parsed.subject().unwrap_or_default().to_owned();
    if let Some(from) = parsed.from().and_then(|a| a.first()) {
        message.from_name = from.name.as_deref().unwrap_or_default().to_owned();
        message.from_address = from
            .address
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
    }
    message.message_id = parsed.message_id().map(str::to_owned);
}

/// Visits every part once, depth-first, with an explicit stack so hostile
/// nesting cannot exhaust the thread's stack.
fn walk_parts(message: &mut Message, root: &mail_parser::Message<'_>, limits: &Limits) {
    let mut pictures = ImageReaderBudget::new(limits);
    let mut stack: Vec<(&mail_parser::Message<'_>, u32, usize)> = vec![(root, 0, 0)];
    let mut visited = 0usize;
    let mut text_bytes = 0usize;
    let mut html_bytes = 0usize;
    let mut header_bytes = 0usize;
    while let Some((owner, part_id, depth)) = stack.pop() {
        if depth > limits.max_mime_depth {
            message.note(ParseProblem::TooDeep);
            continue;
        }
        visited += 1;
        if visited > limits.max_mime_parts {
            message.note(ParseProblem::TooManyParts);
            break;
        }
        let Some(part) = owner.parts.get(part_id as usize) else {
            continue;
        };
        if part.is_encoding_problem {
            message.note(ParseProblem::EncodingProblem);
        }
        keep_header_block(message, owner, part, &mut header_bytes);
        let content_type = part
            .content_type()
            .map(|ct| {
                let mut s = ct.c_type.to_ascii_lowercase();
                s.push('/');
                s.push_str(&ct.c_subtype.as_deref().unwrap_or("").to_ascii_lowercase());
                s
            })
            .unwrap_or_else(|| "text/plain".to_owned());
        // From the headers, not `part.encoding`: mail-parser resets that
        // when the base64 does not decode, and broken base64 is common in
        // exactly the mail this flags.
        let declared_base64 = part
            .content_transfer_encoding()
            .is_some_and(|cte| cte.trim().eq_ignore_ascii_case("base64"));
        if matches!(content_type.as_str(), "text/plain" | "text/html") && declared_base64 {
            message.base64_text = true;
        }
        // A base64 text part mail-parser could not decode arrives as its
        // base64; decoded leniently instead, its words reach the rules and
        // the statistics, as SpamAssassin's decoder would give them.
        let recovered = |text: &str| {
            (declared_base64 && part.is_encoding_problem)
                .then(|| {
                    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
                    lenient_base64_text(text, charset)
                })
                .flatten()
        };
        match &part.body {
            PartType::Multipart(children) => {
                // Reverse so the stack pops children in document order.
                for child in children.iter().rev() {
                    stack.push((owner, *child, depth + 1));
                }
            }
            PartType::Message(nested) => {
                message.content_types.push(content_type);
                if let Some(subject) = nested.subject() {
                    push_text(
                        message,
                        TextKind::Plain,
                        subject.to_owned(),
                        &mut text_bytes,
                        limits,
                    );
                }
                stack.push((nested, 0, depth + 1));
            }
            PartType::Text(text) | PartType::Html(text) => {
                // A recovered part is HTML when its header says so: mail-parser
                // hands an undecodable one back as plain text.
                let is_html = matches!(part.body, PartType::Html(_));
                let (text, is_html) = match recovered(text) {
                    Some(decoded) => (decoded, is_html || content_type == "text/html"),
                    None => (text.to_string(), is_html),
                };
                message.content_types.push(content_type);
                if is_html {
                    // Disposition `attachment`, not a file name: a body
                    // sent `inline; filename="alert.htm"` is still the body.
                    let attached = part
                        .content_disposition()
                        .is_some_and(|disposition| disposition.is_attachment());
                    push_html(
                        message,
                        text,
                        attached,
                        &mut html_bytes,
                        &mut text_bytes,
                        limits,
                    );
                } else {
                    collect_bare_urls(&text, &mut message.links);
                    push_text(message, TextKind::Plain, text, &mut text_bytes, limits);
                }
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                // An HTML page or SVG image sent as a file is a web page
                // the reader opens from disk: rendered like an HTML part,
                // so its links and forms are checked.
                if is_web_page(&content_type, part.attachment_name()) {
                    let source = crate::message::lossy_text(bytes).into_owned();
                    push_html(
                        message,
                        source,
                        true,
                        &mut html_bytes,
                        &mut text_bytes,
                        limits,
                    );
                }
                pictures.read(bytes, &mut message.images);
                message.attachments.push(Attachment {
                    content_type: content_type.clone(),
                    file_name: part.attachment_name().map(str::to_owned),
                    size: bytes.len(),
                    digest: xxhash_rust::xxh3::xxh3_128(bytes),
                });
                message.content_types.push(content_type);
            }
        }
    }
    // Pictures inside HTML as `data:` URIs, then the links the QR codes
    // hold, which join the message's links for every URL check.
    let data_pictures: Vec<Vec<u8>> = message
        .links
        .iter()
        .filter_map(|link| data_uri_picture(link))
        .collect();
    for picture in data_pictures {
        pictures.read(&picture, &mut message.images);
    }
    for code in &message.images.qr_codes {
        let code = code.trim();
        let lower = code.get(..8).unwrap_or(code).to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.")
        {
            message.links.push(code.to_owned());
        }
    }
}

/// The text of a base64 body that mail-parser gave back undecoded (it does
/// so when the part runs into the end of the message without its closing
/// boundary, or carries junk after the padding). Decoded the way Perl's
/// MIME::Base64, and so SpamAssassin, does: characters outside the base64
/// alphabet are skipped and decoding stops at the first `=`. `None` when
/// that gives nothing.
fn lenient_base64_text(encoded: &str, charset: Option<&str>) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len() / 4 * 3);
    let (mut chunk, mut count) = (0u32, 0u8);
    for byte in encoded.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        chunk = (chunk << 6) | u32::from(value);
        count += 1;
        if count == 4 {
            bytes.extend_from_slice(&chunk.to_be_bytes()[1..]);
            (chunk, count) = (0, 0);
        }
    }
    // A final group of 2 or 3 characters still holds 1 or 2 bytes.
    match count {
        2 => bytes.push((chunk >> 4) as u8),
        3 => bytes.extend_from_slice(&((chunk >> 2) as u16).to_be_bytes()),
        _ => {}
    }
    if bytes.is_empty() {
        return None;
    }
    let decoder =
        charset.and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()));
    Some(match decoder {
        Some(decode) => decode(&bytes),
        None => super::lossy_text(&bytes).into_owned(),
    })
}

/// Links written as plain text (`http://…`, `https://…`), up to the first
/// character that cannot be part of a URL. Plain-text spam carries its links
/// this way; HTML links come from `href`/`src` instead.
fn collect_bare_urls(text: &str, links: &mut Vec<String>) {
    // Built once: `memmem::find` would build its searcher on every call.
    static HTTP: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"http"));
    const MAX_LINKS: usize = 256;
    let mut rest = text;
    while links.len() < MAX_LINKS {
        let Some(at) = HTTP.find(rest.as_bytes()) else {
            return;
        };
        let candidate = &rest[at..];
        let scheme_len = if candidate.starts_with("https://") {
            8
        } else if candidate.starts_with("http://") {
            7
        } else {
            rest = &rest[at + 4..];
            continue;
        };
        let end = candidate
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(c, '<' | '>' | '"' | '\'' | '`' | '{' | '}' | '|' | '^')
            })
            .unwrap_or(candidate.len());
        let url = candidate[..end].trim_end_matches(['.', ',', ')', ';', ':', '!', '?']);
        if url.len() > scheme_len {
            links.push(url.to_owned());
        }
        rest = &candidate[end.max(scheme_len)..];
    }
}

/// Whether a non-text part is a web page by its type or file name: HTML or
/// SVG (which carries links, scripts and forms as HTML does).
fn is_web_page(content_type: &str, file_name: Option<&str>) -> bool {
    let by_name = file_name.is_some_and(|name| {
        let name = name.trim().to_ascii_lowercase();
        [".htm", ".html", ".shtml", ".xhtml", ".svg"]
            .iter()
            .any(|ext| name.ends_with(ext))
    });
    by_name || matches!(content_type, "image/svg+xml" | "application/xhtml+xml")
}

/// Renders an HTML part: its visible text, links, anchors, forms and
/// invisible letters, and its source (within the text budget) for
/// `rawbody` rules. `attached`: the part is a file, not the message body.
fn push_html(
    message: &mut Message,
    mut source: String,
    attached: bool,
    html_bytes: &mut usize,
    text_bytes: &mut usize,
    limits: &Limits,
) {
    let rendered = html_to_text(&source);
    message.links.extend(rendered.links);
    message.anchors.extend(rendered.anchors);
    message.forms.extend(
        rendered
            .forms
            .into_iter()
            .map(|form| crate::message::Form { attached, ..form }),
    );
    message.invisible_text.add(rendered.invisible);
    message.html_tests.add(rendered.tests);
    truncate_to(
        &mut source,
        limits.max_text_bytes.saturating_sub(*html_bytes),
    );
    *html_bytes += source.len();
    if !source.is_empty() {
        message.html_sources.push(source);
    }
    push_text(message, TextKind::Html, rendered.text, text_bytes, limits);
}

/// Cuts `text` to at most `room` bytes, at a character boundary; whether
/// anything was cut.
fn truncate_to(text: &mut String, room: usize) -> bool {
    if text.len() <= room {
        return false;
    }
    let cut = text.floor_char_boundary(room);
    text.truncate(cut);
    true
}

fn push_text(
    message: &mut Message,
    kind: TextKind,
    mut text: String,
    text_bytes: &mut usize,
    limits: &Limits,
) {
    if truncate_to(&mut text, limits.max_text_bytes.saturating_sub(*text_bytes)) {
        message.note(ParseProblem::TooMuchText);
    }
    if text.is_empty() {
        return;
    }
    *text_bytes += text.len();
    message.text_parts.push(TextPart { kind, text });
}

fn header_value_text(value: &HeaderValue<'_>, raw: &[u8], start: u32, end: u32) -> String {
    match value {
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(list) => list.join(", "),
        HeaderValue::Address(address) => address_text(address),
        _ => {
            let slice = raw.get(start as usize..end as usize).unwrap_or_default();
            unfold(&super::lossy_text(slice))
        }
    }
}

fn address_text(address: &Address<'_>) -> String {
    let mut out = String::new();
    for addr in address.iter() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        if let Some(name) = &addr.name {
            out.push_str(name);
            out.push(' ');
        }
        if let Some(email) = &addr.address {
            out.push('<');
            out.push_str(email);
            out.push('>');
        }
    }
    out
}

fn host_as_written(host: &Host<'_>) -> String {
    match host {
        Host::Name(name) => name.to_string(),
        Host::IpAddr(ip) => ip.to_string(),
    }
}

fn host_text(host: &Host<'_>) -> String {
    match host {
        Host::Name(name) => name.to_ascii_lowercase(),
        Host::IpAddr(ip) => ip.to_string(),
    }
}

/// RFC 5322 field names: printable ASCII except the colon.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keeps `part`'s header block as written, within the byte budget.
fn keep_header_block(
    message: &mut Message,
    owner: &mail_parser::Message<'_>,
    part: &mail_parser::MessagePart<'_>,
    header_bytes: &mut usize,
) {
    let span = part.offset_header as usize..part.offset_body as usize;
    if let Some(block) = owner.raw_message.get(span)
        && !block.is_empty()
        && *header_bytes + block.len() <= super::MAX_MIME_HEADER_BYTES
    {
        *header_bytes += block.len();
        message
            .mime_header_blocks
            .push(super::lossy_text(block).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_default(raw: &[u8]) -> Message {
        parse(raw, &Limits::default())
    }

    #[test]
    fn plain_message_yields_subject_sender_and_text() {
        let m = parse_default(
            b"From: Alice <Alice@Example.COM>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nhello world\r\n",
        );
        assert_eq!(m.subject, "caf\u{e9}");
        assert_eq!(m.from_name, "Alice");
        assert_eq!(m.from_address, "alice@example.com");
        assert_eq!(m.visible_text().trim(), "hello world");
    }

    #[test]
    fn mbox_envelope_line_is_not_a_header() {
        let m =
            parse_default(b"From bob@example.com Mon Jan  1 00:00:00 2024\nSubject: hi\n\nbody\n");
        assert_eq!(m.subject, "hi");
        assert!(m.headers.iter().all(|h| !h.name.starts_with("From bob")));
    }

    #[test]
    fn empty_input_is_not_a_message_but_no_panic() {
        let m = parse_default(b"");
        assert!(m.problems.contains(&ParseProblem::NotAMessage) || m.text_parts.is_empty());
    }

    #[test]
    fn oversized_input_is_truncated_and_noted() {
        let limits = Limits {
            max_message_bytes: 64,
            ..Limits::default()
        };
        let mut raw = b"Subject: big\n\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 1000));
        let m = parse(&raw, &limits);
        assert!(m.problems.contains(&ParseProblem::Truncated));
        assert!(m.visible_text().len() <= 64);
    }

    #[test]
    fn deep_nesting_stops_at_the_limit() {
        let limits = Limits {
            max_mime_depth: 3,
            ..Limits::default()
        };
        let mut raw = String::from("Subject: deep\n");
        for level in 0..10 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\n\n--b{level}\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\n\ninnermost\n");
        let m = parse(raw.as_bytes(), &limits);
        assert!(m.problems.contains(&ParseProblem::TooDeep));
        assert!(!m.visible_text().contains("innermost"));
    }

    #[test]
    fn bare_urls_in_plain_text_are_links() {
        let m = parse_default(
            b"Subject: x\n\nGo to http://a.example/x?y=1, or (https://b.example/). Not httpx://c.\n",
        );
        assert_eq!(
            m.links,
            vec![
                "http://a.example/x?y=1".to_owned(),
                "https://b.example/".to_owned()
            ]
        );
    }

    #[test]
    fn received_helo_is_collected() {
        let m = parse_default(
            b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by a.example.org; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: x\n\nbody\n",
        );
        assert_eq!(m.relays.len(), 1);
        assert_eq!(m.relays[0].helo.as_deref(), Some("mx.example.net"));
    }

    #[test]
    fn a_qmail_hop_names_its_rdns_as_spamassassin_reads_it() {
        let rdns_of = |line: &str| {
            let raw = format!("Received: {line}\nFrom: a@example.org\n\nbody\n");
            let message = parse(raw.as_bytes(), &Limits::default());
            message.relays.first().and_then(|relay| relay.rdns.clone())
        };
        assert_eq!(
            rdns_of("from inet-mail6.oracle.com (209.246.10.170)\n  by mi-1.example.de (qmail\n  1.03) with SMTP; 10 Jul 2002 13:22:30 -0000")
                .as_deref(),
            Some("inet-mail6.oracle.com")
        );
        assert_eq!(
            rdns_of("from host.example.net (HELO other.example) (user@192.0.2.7) by mx.example with SMTP; 1 Jan 2003 00:00:00 -0000")
                .as_deref(),
            Some("host.example.net")
        );
        // No name looked up, and a sendmail line that only looks alike.
        assert_eq!(
            rdns_of(
                "from unknown (HELO x.example) (192.0.2.7) by mx.example with SMTP; 1 Jan 2003 00:00:00 -0000"
            ),
            None
        );
        assert_eq!(
            rdns_of(
                "from helo.example (192.0.2.7) by mx.example with SMTP id abc; 1 Jan 2003 00:00:00 -0000"
            ),
            None
        );
    }

    #[test]
    fn relays_keep_helo_rdns_address_and_date_newest_first() {
        let m = parse_default(
            b"Received: from unknown (HELO mbox.example.com) (207.49.16.5)\n  by mx.example.org with SMTP; 29 Jul 2002 21:03:49 -0000\n\
Received: from Mail.Example.NET (mail.example.net. [193.120.211.219]) by\n    relay.example.org (8.11.6/8.11.6) with ESMTP id g79EWmb07857; Fri, 9 Aug 2002 15:32:48 +0100\n\
Subject: x\n\nbody\n",
        );
        assert_eq!(m.relays.len(), 2);
        let newest = &m.relays[0];
        assert_eq!(newest.helo.as_deref(), Some("mbox.example.com"));
        assert_eq!(newest.ip, Some("207.49.16.5".parse().expect("literal")));
        assert_eq!(newest.received_at, Some(1_027_976_629));
        let older = &m.relays[1];
        // The HELO as written (SpamAssassin's relay lines keep its case).
        assert_eq!(older.helo.as_deref(), Some("Mail.Example.NET"));
        assert_eq!(older.rdns.as_deref(), Some("mail.example.net"));
        assert_eq!(older.ip, Some("193.120.211.219".parse().expect("literal")));
        assert_eq!(older.received_at, Some(1_028_903_568));
    }

    #[test]
    fn base64_text_parts_are_flagged_even_when_the_base64_is_broken() {
        let message = |cte: &str, body: &str| {
            parse_default(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
                     Content-Type: text/html; charset=\"iso-8859-1\"\n\
                     Content-Transfer-Encoding: {cte}\n\n{body}\n--b--\n"
                )
                .as_bytes(),
            )
        };
        assert!(message("base64", "PGI+aGk8L2I+").base64_text);
        assert!(message("BASE64", "not base64 at all \u{1}").base64_text);
        assert!(!message("7bit", "<b>hi</b>").base64_text);
        // An attachment in base64 is how attachments travel: not flagged.
        let attachment = parse_default(
            b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhi\n--b\n\
              Content-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b--\n",
        );
        assert!(!attachment.base64_text);
    }

    /// Standard base64 with `=` padding, in lines of `width` characters.
    fn base64_lines(bytes: &[u8], width: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])
                } else {
                    '='
                });
            }
        }
        let chars: Vec<char> = out.chars().collect();
        chars
            .chunks(width.max(1))
            .map(|line| line.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    proptest::proptest! {
        #[test]
        fn lenient_base64_reads_what_an_encoder_wrote(text in ".{1,200}", width in 1usize..90) {
            let encoded = base64_lines(text.as_bytes(), width);
            proptest::prop_assert_eq!(lenient_base64_text(&encoded, None), Some(text));
        }

        #[test]
        fn lenient_base64_and_envelope_from_take_any_text(text in "\\PC{0,300}") {
            let _ = lenient_base64_text(&text, Some("iso-8859-1"));
            let _ = lenient_base64_text(&text, Some("no-such-charset"));
            let _ = received_envelope_from(&text);
            let _ = received_envelope_from(&format!("from {text}"));
        }
    }

    #[test]
    fn received_lines_give_their_envelope_sender() {
        assert_eq!(
            received_envelope_from(
                "from mx.example.com (mx.example.com [192.0.2.1])\n\t(envelope-from <bounce+x@lists.example.com>)\n\tby mail.example.org; Tue, 1 Jan 2002 00:00:00 +0000"
            )
            .as_deref(),
            Some("bounce+x@lists.example.com")
        );
        assert_eq!(
            received_envelope_from(
                "from a (b [192.0.2.1]) by c with ESMTP envelope-sender 'odd user'@x.example id 1"
            )
            .as_deref(),
            Some("'odd")
        );
        // Only in a `from` line, as SpamAssassin reads it.
        assert_eq!(
            received_envelope_from("by c (envelope-from <a@b.example>)"),
            None
        );
        assert_eq!(received_envelope_from("from a by c with SMTP"), None);
    }

    #[test]
    fn base64_text_mail_parser_cannot_decode_is_decoded_leniently() {
        // "<p>Cheap <b>ink</b> here</p>" in Latin-1 (with an é), base64, in a
        // part that runs into the end of the message without its closing
        // boundary: mail-parser gives the base64 back undecoded.
        let encoded = "PHA+Q2hlYXAgPGI+aW5rPC9iPiBoZXJlIOk8L3A+";
        let message = parse_default(
            format!(
                "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
                 Content-Type: text/html; charset=\"iso-8859-1\"\n\
                 Content-Transfer-Encoding: base64\n\n\n{encoded}\n"
            )
            .as_bytes(),
        );
        let text: String = message.text_parts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            text.trim(),
            "Cheap ink here \u{e9}",
            "{:?}",
            message.text_parts
        );
        assert_eq!(message.text_parts[0].kind, TextKind::Html);
        assert_eq!(message.content_types, vec!["text/html"]);

        // Perl's rules: characters outside the alphabet are skipped, and
        // decoding stops at the first `=`.
        assert_eq!(
            lenient_base64_text("aGkg*d29y\nbGQ=bm90", None).as_deref(),
            Some("hi world")
        );
        assert_eq!(lenient_base64_text("aGk", None).as_deref(), Some("hi"));
        assert_eq!(lenient_base64_text("!!", None), None);
    }
}
