//! URLs: every link a message carries, computed once for all checks.
//!
//! Sources: the `href`/`src`/`action` targets and bare `http(s)://` links the
//! parser collected ([`Message::links`]), and the visible text of every part,
//! scanned again here for what a reader would take for a link: `www.` forms,
//! `example.com/path` without a scheme, and the defanged forms spam and
//! phishing use to slip past filters (`hxxp://`, `example[.]com`,
//! `example(dot)com`, `[:]//`). Hosts are percent- and entity-decoded,
//! lowercased, IDNA-encoded, stripped of `user@` prefixes (the classic
//! `http://bank.example@evil.example/` trick) and of trailing dots; integer
//! and hexadecimal IPv4 forms (`http://3232235777/`) are recognised as
//! addresses. Redirector parameters (`?url=`, `?u=`, `?redirect=`, Google's
//! `/url?q=` …) add their target as a URL of its own, so a blocklisted site
//! behind a redirector is still seen.
//!
//! Each [`Url`] carries its registrable domain by the Public Suffix List
//! (`psl`, embedded at build time): `a.b.example.co.uk` → `example.co.uk`.
//!
//! Never panics, runs in time linear in the text, and stops at
//! [`MAX_URLS`].

mod parse;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use parse::{MAX_URL_BYTES, cut, is_named_host, parse_url, redirect_targets};

use crate::message::Message;

/// URLs kept per message; beyond it the rest is ignored.
pub const MAX_URLS: usize = 512;
/// Redirector targets followed inside one URL (a redirector to a redirector…).
const MAX_REDIRECT_DEPTH: usize = 3;
/// Where a URL was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// An HTML attribute or a bare `http(s)://` link in plain text.
    Link,
    /// Found by scanning visible text (`www.`, schemeless, defanged).
    Text,
    /// The target of a redirector parameter of another URL.
    Redirect,
}

/// One URL, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `scheme://host[:port]/path?query` with the host normalised (no
    /// user-info, no fragment).
    pub url: String,
    /// Lowercase ASCII host (IDNA), or the address for IP-literal URLs.
    pub host: String,
    /// The registrable domain (eTLD+1) by the Public Suffix List; the host
    /// itself when it is an address or has no registrable part.
    pub domain: String,
    /// The address, when the host is one.
    pub ip: Option<IpAddr>,
    /// Written defanged (`hxxp`, `[.]`, `(dot)`) or with an encoded host.
    pub obfuscated: bool,
    pub source: UrlSource,
}

/// Extracts every URL of `message`, distinct by normalised URL, in order of
/// first appearance.
pub fn extract(message: &Message) -> Vec<Url> {
    let mut out = Collector::default();
    for link in &message.links {
        out.add_link(link, UrlSource::Link, false, 0);
    }
    for part in &message.text_parts {
        scan_text(&part.text, &mut out);
        if out.urls.len() >= MAX_URLS {
            break;
        }
    }
    out.urls
}

/// The message's links alone ([`Message::links`]: HTML targets, bare
/// `http(s)://` links, QR codes' links) and their redirector targets,
/// without scanning the visible text: a fraction of [`extract`]'s cost,
/// for checks that judge where links go rather than every host named.
pub fn extract_links(message: &Message) -> Vec<Url> {
    let mut out = Collector::default();
    // Newsletters repeat one link many times: each is parsed once.
    let mut written: HashSet<&str> = HashSet::new();
    for link in &message.links {
        if written.insert(link.as_str()) {
            out.add_link(link, UrlSource::Link, false, 0);
        }
    }
    out.urls
}

/// One absolute URL (a redirect's Location), normalised as every URL here
/// is; `None` when it is not one.
pub fn parse_link(href: &str) -> Option<Url> {
    parse_url(href.trim()).map(|mut url| {
        url.source = UrlSource::Link;
        url
    })
}

/// The host of a link that is an absolute http(s) URL, normalised as every
/// URL here is (what the link-text test compares with the text's host).
pub fn link_host(href: &str) -> Option<String> {
    let href = href.trim();
    let scheme = href.get(..8).unwrap_or(href).to_ascii_lowercase();
    if !(scheme.starts_with("http://") || scheme.starts_with("https://")) {
        return None;
    }
    parse_url(href).map(|url| url.host)
}

/// A host name the link text shows (`www.bank.example`, `http://…`), if the
/// text is nothing but that (with optional scheme and path): where a reader
/// believes the link goes, for the link-text checks.
pub fn host_in_text(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.contains(char::is_whitespace) || text.is_empty() {
        return None;
    }
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or(&text);
    let end = rest.find(['/', '?', '#', ':']).unwrap_or(rest.len());
    let host = rest[..end].trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let plausible = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    plausible.then(|| host.to_owned())
}

/// Extracts the URLs written in one piece of text (no HTML parsing).
pub fn extract_from_text(text: &str) -> Vec<Url> {
    let mut out = Collector::default();
    scan_text(text, &mut out);
    out.urls
}

/// The registrable domain of `host` by the Public Suffix List, lowercase;
/// `None` for addresses and hosts that are themselves a public suffix.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return None;
    }
    psl::domain_str(&host).map(str::to_owned)
}

/// The email addresses written in `text`, as `mailto:` URIs, the way
/// SpamAssassin's text URI parser finds them: mail readers linkify a bare
/// address, so its `uri` rules (`__UNSUB_LINK`, ...) see `mailto:` URIs
/// for them as for `<a href="mailto:...">`. An address runs between
/// Thunderbird's delimiters, loses trailing punctuation, and needs a dot
/// and a known public suffix after its `@`; one with a `/` before the `@`
/// is part of a URL, not an address. At most `max` are returned.
pub fn text_mail_uris(text: &str, max: usize) -> Vec<String> {
    // Thunderbird's end delimiters for addresses (SpamAssassin's
    // `$tbirdenddelimemail`); non-ASCII ends an address too.
    fn ends_address(b: u8) -> bool {
        !b.is_ascii_graphic()
            || matches!(
                b,
                b'>' | b'<' | b'"' | b'`' | b'}' | b']' | b'{' | b'[' | b'|' | b',' | b'(' | b'\''
            )
    }
    const TRAILING_PUNCTUATION: &[char] = &[
        '-', '~', '!', '@', '#', '^', '&', '*', '(', ')', '_', '+', '=', ':', ';', '\'', '?', ',',
        '.',
    ];
    let bytes = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    for at in memchr::memchr_iter(b'@', bytes) {
        if out.len() >= max {
            break;
        }
        let start = bytes[..at]
            .iter()
            .rposition(|&b| ends_address(b) || b == b'@')
            .map_or(0, |i| i + 1);
        let end = bytes[at + 1..]
            .iter()
            .position(|&b| ends_address(b) || b == b'@')
            .map_or(bytes.len(), |i| at + 1 + i);
        if at - start > 251 || end - at > 252 {
            continue;
        }
        // Both ends stop at ASCII delimiters, so these are char boundaries.
        let Some(candidate) = text.get(start..end) else {
            continue;
        };
        // Thunderbird: `)` ends a URI that has no `(` before it.
        let candidate = candidate.split(')').next().unwrap_or(candidate);
        let candidate = candidate.trim_end_matches(TRAILING_PUNCTUATION);
        let Some((local, domain)) = candidate.split_once('@') else {
            continue;
        };
        let content_id = local
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("cid:") || p.eq_ignore_ascii_case("mid:"));
        if local.is_empty() || local.contains('/') || content_id || !domain.contains('.') {
            continue;
        }
        let host = domain.split(['?', '&', '>']).next().unwrap_or(domain);
        if !is_named_host(host.trim_end_matches('.')) {
            continue;
        }
        let uri = match local.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => candidate.to_owned(),
            _ => {
                let local = strip_misparsed_scheme(local);
                format!("mailto:{local}@{domain}")
            }
        };
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    out
}

/// SpamAssassin strips these from a bare address before linkifying it
/// (`s/^(?:skype|e?-?mail)?:+//i`).
fn strip_misparsed_scheme(local: &str) -> &str {
    let Some(colon) = local.find(':') else {
        return local;
    };
    let scheme = local[..colon].to_ascii_lowercase();
    if matches!(
        scheme.as_str(),
        "" | "skype" | "mail" | "email" | "e-mail" | "-mail"
    ) {
        local[colon..].trim_start_matches(':')
    } else {
        local
    }
}

#[derive(Default)]
struct Collector {
    urls: Vec<Url>,
    seen: HashSet<String>,
}

impl Collector {
    fn full(&self) -> bool {
        self.urls.len() >= MAX_URLS
    }

    /// Parses `text` as a URL (scheme optional) and records it and the
    /// targets of its redirector parameters.
    fn add_link(&mut self, text: &str, source: UrlSource, defanged: bool, depth: usize) {
        if self.full() {
            return;
        }
        let text = cut(text.trim(), MAX_URL_BYTES);
        let Some(mut url) = parse_url(text) else {
            return;
        };
        url.obfuscated |= defanged;
        url.source = source;
        let targets = if depth < MAX_REDIRECT_DEPTH {
            redirect_targets(&url.url, &url.host)
        } else {
            Vec::new()
        };
        if self.seen.insert(url.url.clone()) {
            self.urls.push(url);
        }
        for target in targets {
            self.add_link(&target, UrlSource::Redirect, false, depth + 1);
        }
    }
}

/// Scans visible text for links, including schemeless and defanged ones.
fn scan_text(text: &str, out: &mut Collector) {
    // Cheap pre-filter: text without a dot cannot hold a host name.
    if !text.contains(['.', '(', '[']) {
        return;
    }
    let bytes = text.as_bytes();
    let tokens: Box<dyn Iterator<Item = &str> + '_> = if text.is_ascii() {
        // Splitting the bytes draws the same tokens without decoding each
        // character, and an ASCII string splits into ASCII strings. Without
        // a spelled-out dot only tokens with a `.` can hold a host: those
        // are found from the dots instead of splitting every word.
        let pieces: Box<dyn Iterator<Item = &[u8]> + '_> = if has_spelled_dot(bytes) {
            Box::new(bytes.split(|&b| is_ascii_separator(b)))
        } else {
            Box::new(tokens_with_a_dot(bytes))
        };
        Box::new(pieces.map(|raw| std::str::from_utf8(raw).unwrap_or_default()))
    } else {
        Box::new(text.split(is_separator))
    };
    for raw in tokens {
        if out.full() {
            return;
        }
        if may_hold_host(raw.as_bytes()) {
            scan_token(raw, out);
        }
    }
}

/// Whether `text` spells a dot out (`example dot com`, `[DOT]`), which
/// [`refang`] reads as one.
fn has_spelled_dot(text: &[u8]) -> bool {
    static FINDERS: LazyLock<[memchr::memmem::Finder<'static>; 2]> = LazyLock::new(|| {
        [
            memchr::memmem::Finder::new(b"dot"),
            memchr::memmem::Finder::new(b"DOT"),
        ]
    });
    FINDERS.iter().any(|finder| finder.find(text).is_some())
}

/// The tokens of `text` (split at [`is_ascii_separator`]) that hold a
/// `.`, in order: exactly those of splitting it whole, found from each dot
/// outwards, so text without dots costs one `memchr` pass.
fn tokens_with_a_dot(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done_until = 0;
    memchr::memchr_iter(b'.', text).filter_map(move |dot| {
        if dot < done_until {
            return None;
        }
        let start = text[..dot]
            .iter()
            .rposition(|&b| is_ascii_separator(b))
            .map_or(0, |at| at + 1);
        let end = text[dot..]
            .iter()
            .position(|&b| is_ascii_separator(b))
            .map_or(text.len(), |at| dot + at);
        done_until = end;
        Some(&text[start..end])
    })
}

/// Whether a token could hold a host name: most words hold no dot and no
/// `(dot)`, and this loop sees every word of every text part, so they are
/// dropped here before any trimming or allocation.
fn may_hold_host(token: &[u8]) -> bool {
    token.len() >= 4
        && (memchr::memchr(b'.', token).is_some()
            || token.windows(3).any(|w| w == b"dot" || w == b"DOT"))
}

fn scan_token(raw: &str, out: &mut Collector) {
    let token = raw.trim_matches(|c: char| {
        matches!(
            c,
            '(' | ')' | '<' | '>' | '"' | '\'' | ',' | ';' | '!' | '?' | '*' | '`' | '{' | '}'
        )
    });
    let token = token.trim_end_matches(['.', ':']);
    // Trimming can leave a token too short or without its dot.
    if !may_hold_host(token.as_bytes()) {
        return;
    }
    let (clean, defanged) = refang(token);
    let clean = clean.trim_end_matches(['.', ':', ')', ']']);
    let lower_start: String = clean
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower_start.starts_with("http://")
        || lower_start.starts_with("https://")
        || lower_start.starts_with("www.")
    {
        out.add_link(clean, UrlSource::Text, defanged, 0);
    } else if !clean.contains("://") && !clean.contains('@') && looks_like_bare_url(clean) {
        // `example.com/path`; a bare `example.com` only when defanged
        // (`file.zip`, `readme.md` are names, not links).
        if clean.contains('/') || defanged {
            out.add_link(clean, UrlSource::Text, defanged, 0);
        }
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '"' | '|' | '\u{a0}')
}

/// [`is_separator`] for ASCII bytes (`char::is_whitespace` includes the
/// vertical tab, which `u8::is_ascii_whitespace` does not).
fn is_ascii_separator(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'<' | b'>' | b'"' | b'|'
    )
}

/// Undoes common defanging: `hxxp` → `http`, `[.]` / `(.)` / `(dot)` /
/// `[dot]` / `{.}` → `.`, `[:]` → `:`, and a few numeric entities.
fn refang(token: &str) -> (String, bool) {
    let lower = token.to_ascii_lowercase();
    let needs = lower.contains("hxxp")
        || lower.contains("dot")
        || lower.contains("[.]")
        || lower.contains("(.)")
        || lower.contains("{.}")
        || lower.contains("[:]")
        || lower.contains("&#");
    if !needs {
        return (token.to_owned(), false);
    }
    const REPLACEMENTS: &[(&str, &str)] = &[
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("{dot}", "."),
        ("[:]", ":"),
        ("&#46;", "."),
        ("&#x2e;", "."),
        ("&#58;", ":"),
        ("&#x3a;", ":"),
        ("&#47;", "/"),
        ("&#x2f;", "/"),
    ];
    let mut out = String::with_capacity(token.len());
    let mut changed = false;
    let mut i = 0;
    let bytes = lower.as_bytes();
    'outer: while i < token.len() {
        for (from, to) in REPLACEMENTS {
            if bytes[i..].starts_with(from.as_bytes()) {
                out.push_str(to);
                i += from.len();
                changed = true;
                continue 'outer;
            }
        }
        if bytes[i..].starts_with(b"hxxp") {
            out.push_str("http");
            i += 4;
            changed = true;
            continue;
        }
        // Copy one character (token and lower share char boundaries:
        // ASCII lowercasing keeps every byte's length).
        let ch_len = token[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&token[i..i + ch_len]);
        i += ch_len;
    }
    (out, changed)
}

/// `label.label.tld[/...]` where the TLD is a known public suffix.
fn looks_like_bare_url(text: &str) -> bool {
    let host_end = text.find(['/', '?', '#']).unwrap_or(text.len());
    let host = &text[..host_end];
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    host.parse::<Ipv4Addr>().is_ok() || is_named_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_become_mailto_uris() {
        let text = "To unsubscribe, mail forteana-unsubscribe@egroups.com. Or write \
                    (sales@example.co.uk) or mailto:Bob@Example.org, not Vi@gra, \
                    cid:image001.png@01D4986E.E3459640 or http://user@host.example.com/x";
        assert_eq!(
            text_mail_uris(text, 10),
            [
                "mailto:forteana-unsubscribe@egroups.com",
                "mailto:sales@example.co.uk",
                "mailto:Bob@Example.org",
            ]
        );
        assert_eq!(
            text_mail_uris("a@b.com a@b.com c@d.com", 1),
            ["mailto:a@b.com"]
        );
        assert!(text_mail_uris("no address @ all", 10).is_empty());
    }

    fn hosts(text: &str) -> Vec<String> {
        extract_from_text(text)
            .into_iter()
            .map(|u| u.host)
            .collect()
    }

    #[test]
    fn schemes_www_and_bare_paths() {
        assert_eq!(
            hosts("see http://a.example.com/x and www.b.example.org, or c.example.net/path."),
            vec!["a.example.com", "www.b.example.org", "c.example.net"]
        );
        // A bare name without a path is not a link (file names look alike).
        assert!(hosts("open report.zip or readme.md").is_empty());
    }

    #[test]
    fn defanged_forms_are_refanged() {
        let urls =
            extract_from_text("hxxp://evil[.]example[.]com/login and bad(dot)example(dot)org");
        let found: Vec<(&str, bool)> = urls
            .iter()
            .map(|u| (u.host.as_str(), u.obfuscated))
            .collect();
        assert_eq!(
            found,
            vec![("evil.example.com", true), ("bad.example.org", true)]
        );
    }

    #[test]
    fn userinfo_encoding_and_numeric_hosts() {
        let u = parse_url("http://bank.example.com@evil.example.net/x").unwrap();
        assert_eq!(u.host, "evil.example.net");
        assert!(u.obfuscated);
        let u = parse_url("http://%65vil.example.net/").unwrap();
        assert_eq!(u.host, "evil.example.net");
        let u = parse_url("http://3232235777/").unwrap();
        assert_eq!(u.ip, Some("192.168.1.1".parse().unwrap()));
        let u = parse_url("http://0xc0a80101/").unwrap();
        assert_eq!(u.host, "192.168.1.1");
        let u = parse_url("https://[2001:db8::1]:8443/a").unwrap();
        assert_eq!(u.url, "https://[2001:db8::1]:8443/a");
    }

    #[test]
    fn registrable_domains_by_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("a.b.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable_domain("shop.example.com.ru").as_deref(),
            Some("example.com.ru")
        );
        assert_eq!(
            registrable_domain("WWW.Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("192.0.2.1"), None);
        let u = parse_url("http://xn--bcher-kva.example/").unwrap();
        assert_eq!(u.host, "xn--bcher-kva.example");
        let u = parse_url("http://bücher.example.de/").unwrap();
        assert_eq!(
            u.host,
            "bücher.example.de".replace("bücher", "xn--bcher-kva")
        );
        assert_eq!(u.domain, "example.de");
    }

    #[test]
    fn redirector_targets_are_urls_too() {
        let urls = extract_from_text(
            "https://www.google.com/url?q=https%3A%2F%2Fphish.example.net%2Flogin&sa=D \
             http://t.example.com/click?u=http://spam.example.org/offer",
        );
        let hosts: Vec<(&str, UrlSource)> =
            urls.iter().map(|u| (u.host.as_str(), u.source)).collect();
        assert_eq!(
            hosts,
            vec![
                ("www.google.com", UrlSource::Text),
                ("phish.example.net", UrlSource::Redirect),
                ("t.example.com", UrlSource::Text),
                ("spam.example.org", UrlSource::Redirect),
            ]
        );
    }

    #[test]
    fn message_links_and_text_are_merged_without_repeats() {
        let raw = b"Subject: x\nContent-Type: text/html\n\n<a href=\"http://a.example.com/x\">www.b.example.com</a> http://a.example.com/x\n";
        let message = crate::message::parse(raw, &crate::message::Limits::default());
        let urls = extract(&message);
        let hosts: Vec<&str> = urls.iter().map(|u| u.host.as_str()).collect();
        assert_eq!(hosts, vec!["a.example.com", "www.b.example.com"]);
    }

    #[test]
    fn emails_and_non_web_schemes_are_not_urls() {
        assert!(hosts("write to bob@example.com/x or mailto:bob@example.com").is_empty());
        assert!(parse_url("javascript:alert(1)").is_none());
        assert!(parse_url("cid:part1@example.com").is_none());
    }

    proptest::proptest! {
        /// Found from the dots, the tokens are exactly the dotted ones of
        /// splitting the whole text.
        #[test]
        fn dotted_tokens_are_those_of_a_split(text in "[a-z. <>\"|\t\n/:]{0,120}") {
            let found: Vec<&[u8]> = tokens_with_a_dot(text.as_bytes()).collect();
            let split: Vec<&[u8]> = text
                .as_bytes()
                .split(|&b| is_ascii_separator(b))
                .filter(|token| token.contains(&b'.'))
                .collect();
            proptest::prop_assert_eq!(found, split);
        }
    }
}
