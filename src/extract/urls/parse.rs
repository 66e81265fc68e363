//! One URL taken apart: scheme, user-info, host (percent and IDNA decoded,
//! integer and hex IPv4 forms read as addresses, trailing dots dropped),
//! port, and the targets a redirector carries in its query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Url, UrlSource, registrable_domain};

/// Longest URL looked at; longer candidates are cut (hosts never are).
pub(super) const MAX_URL_BYTES: usize = 4096;

/// A host name (no address) of letters, digits and hyphens whose TLD is a
/// known public suffix.
pub(super) fn is_named_host(host: &str) -> bool {
    if !host.contains('.') || host.starts_with('.') || host.contains("..") {
        return false;
    }
    if !host
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
    {
        return false;
    }
    let Some(tld) = host.rsplit('.').next() else {
        return false;
    };
    if tld.len() < 2 || !tld.chars().all(char::is_alphabetic) {
        return false;
    }
    let Some(ascii) = to_ascii_host(host) else {
        return false;
    };
    psl::suffix(ascii.as_bytes()).is_some_and(|s| s.is_known())
}

/// Parses one URL, scheme optional (`http://` is assumed).
pub(super) fn parse_url(text: &str) -> Option<Url> {
    let mut obfuscated = false;
    let (scheme, rest) = match text.find("://") {
        Some(at) if at > 0 && at <= 10 => {
            let scheme = text[..at].to_ascii_lowercase();
            if !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            {
                return None;
            }
            (scheme, &text[at + 3..])
        }
        Some(_) => return None,
        None => {
            if let Some(rest) = text.strip_prefix("//") {
                ("http".to_owned(), rest)
            } else {
                let lower = text.get(..7).unwrap_or("").to_ascii_lowercase();
                if lower.starts_with("mailto:")
                    || lower.starts_with("tel:")
                    || lower.starts_with("cid:")
                    || lower.starts_with("data:")
                    || lower.starts_with("javascri")
                    || lower.starts_with('#')
                {
                    return None;
                }
                ("http".to_owned(), text)
            }
        }
    };
    let scheme = match scheme.as_str() {
        "hxxp" | "hxxps" => {
            obfuscated = true;
            scheme.replace("xx", "tt")
        }
        _ => scheme,
    };
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return None;
    }
    // Backslashes count as slashes, as browsers treat them.
    let authority_end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let tail = &rest[authority_end..];
    let tail = tail.split('#').next().unwrap_or("");
    // user-info: everything up to the last '@' is not the host.
    let host_port = match authority.rfind('@') {
        Some(at) => {
            obfuscated = true;
            &authority[at + 1..]
        }
        None => authority,
    };
    let (host_raw, port) = split_port(host_port);
    let decoded = percent_decode(host_raw);
    if decoded != host_raw {
        obfuscated = true;
    }
    let host_text = decoded.trim_end_matches('.').to_lowercase();
    if host_text.is_empty() {
        return None;
    }
    let (host, ip) = if let Some(ip) = parse_host_ip(&host_text) {
        if ip.to_string() != host_text.trim_matches(['[', ']']) {
            obfuscated = true;
        }
        (ip.to_string(), Some(ip))
    } else {
        let ascii = to_ascii_host(&host_text)?;
        if !ascii.contains('.') && ascii != "localhost" {
            return None;
        }
        (ascii, None)
    };
    let domain = match ip {
        Some(_) => host.clone(),
        None => registrable_domain(&host).unwrap_or_else(|| host.clone()),
    };
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + tail.len() + 7);
    url.push_str(&scheme);
    url.push_str("://");
    match ip {
        Some(IpAddr::V6(_)) => {
            url.push('[');
            url.push_str(&host);
            url.push(']');
        }
        _ => url.push_str(&host),
    }
    if let Some(port) = port {
        url.push(':');
        url.push_str(port);
    }
    if tail.is_empty() {
        url.push('/');
    } else {
        if !tail.starts_with('/') {
            url.push('/');
        }
        url.push_str(&tail.replace('\\', "/"));
    }
    Some(Url {
        url,
        host,
        domain,
        ip,
        obfuscated,
        source: UrlSource::Link,
    })
}

fn split_port(host_port: &str) -> (&str, Option<&str>) {
    if host_port.starts_with('[') {
        if let Some(end) = host_port.find(']') {
            let port = host_port[end + 1..].strip_prefix(':');
            return (&host_port[..=end], port.filter(|p| is_port(p)));
        }
        return (host_port, None);
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if is_port(port) => (host, Some(port)),
        Some((host, "")) => (host, None),
        _ => (host_port, None),
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// IPv4 dotted quads, IPv6 in brackets, and the integer and hexadecimal
/// forms browsers accept (`3232235777`, `0xc0a80101`).
fn parse_host_ip(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    if let Some(hex) = host.strip_prefix("0x")
        && !hex.is_empty()
        && hex.len() <= 8
        && let Ok(n) = u32::from_str_radix(hex, 16)
    {
        return Some(IpAddr::V4(Ipv4Addr::from(n)));
    }
    if !host.is_empty()
        && host.len() <= 10
        && host.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = host.parse::<u32>()
        && n >= 1 << 24
    {
        return Some(IpAddr::V4(Ipv4Addr::from(n)));
    }
    None
}

/// Lowercase ASCII (IDNA) form of a host name; `None` if it is not one.
fn to_ascii_host(host: &str) -> Option<String> {
    let ascii = if host.is_ascii() {
        host.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(host).ok()?
    };
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(ascii)
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 stay as they are.
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Query parameters that carry a redirect target on common redirectors.
const REDIRECT_PARAMS: &[&str] = &[
    "url",
    "u",
    "redirect",
    "redirect_url",
    "redirect_uri",
    "redir",
    "target",
    "dest",
    "destination",
    "goto",
    "link",
    "out",
    "to",
    "next",
    "continue",
    "r",
];

/// The URLs hidden in `url`'s query: redirector parameters whose decoded
/// value is itself a URL. Google's `/url?q=` is recognised by host and path.
pub(super) fn redirect_targets(url: &str, host: &str) -> Vec<String> {
    let Some((before, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let google_url = before.ends_with("/url")
        && (psl::domain_str(host).is_some_and(|d| d.starts_with("google."))
            || host == "google.com");
    let mut out = Vec::new();
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let wanted = REDIRECT_PARAMS.contains(&name.as_str()) || (google_url && name == "q");
        if !wanted {
            continue;
        }
        let value = percent_decode(&value.replace('+', " "));
        let lower = value.get(..8).unwrap_or(&value).to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("//")
            || lower.starts_with("www.")
        {
            out.push(value);
        }
    }
    out
}

/// `text` cut to at most `max` bytes at a character boundary.
pub(super) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
