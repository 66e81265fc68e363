//! `eval` rules: the few tests a regular expression cannot state, written
//! in Rust and named in rule files (SpamAssassin calls these `eval:`).

use super::input::Input;

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
}

impl EvalFn {
    pub const ALL: [(&'static str, EvalFn); 5] = [
        ("link_text_mismatch", EvalFn::LinkTextMismatch),
        ("html_only", EvalFn::HtmlOnly),
        ("date_invalid", EvalFn::DateInvalid),
        ("body_mostly_upper", EvalFn::BodyMostlyUpper),
        ("no_text", EvalFn::NoText),
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
            EvalFn::LinkTextMismatch => message.anchors.iter().any(|a| {
                match (host_of_url(&a.href), host_in_text(&a.text)) {
                    (Some(href), Some(text)) => base_domain(&href) != base_domain(&text),
                    _ => false,
                }
            }),
            EvalFn::HtmlOnly => {
                !message.text_parts.is_empty()
                    && message
                        .text_parts
                        .iter()
                        .all(|p| p.kind == crate::message::TextKind::Html)
            }
            EvalFn::DateInvalid => message
                .header("date")
                .is_some_and(|d| mail_parser::DateTime::parse_rfc822(d.trim()).is_none()),
            EvalFn::BodyMostlyUpper => {
                let (mut upper, mut letters) = (0usize, 0usize);
                for part in &message.text_parts {
                    for c in part.text.chars().filter(|c| c.is_alphabetic()) {
                        letters += 1;
                        upper += usize::from(c.is_uppercase());
                    }
                }
                letters >= 40 && upper * 10 > letters * 6
            }
            EvalFn::NoText => message.text_parts.iter().all(|p| p.text.trim().is_empty()),
        }
    }
}

/// The lowercased host of an absolute http(s) URL.
pub fn host_of_url(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#', ':']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or_default();
    let host = host.trim_end_matches('.');
    (host.contains('.') && !host.is_empty()).then(|| host.to_owned())
}

/// A host name the link text shows (`www.bank.example`, `http://…`), if the
/// text is nothing but that (with optional scheme and path).
fn host_in_text(text: &str) -> Option<String> {
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

/// The last two labels (three under a two-letter country code with a short
/// second level, as `example.co.uk`): close enough to the registrable
/// domain to tell two sites apart.
fn base_domain(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    let keep = if n >= 3
        && labels[n - 1].len() == 2
        && matches!(labels[n - 2], "co" | "com" | "net" | "org" | "ac" | "gov")
    {
        3
    } else {
        2
    };
    labels[n.saturating_sub(keep)..].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_base_domains() {
        assert_eq!(
            host_of_url("HTTP://user@Www.Bank.example:80/x").as_deref(),
            Some("www.bank.example")
        );
        assert_eq!(
            host_in_text("www.paypal.com/login").as_deref(),
            Some("www.paypal.com")
        );
        assert_eq!(host_in_text("click here"), None);
        assert_eq!(base_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(base_domain("www.example.com"), "example.com");
    }
}
