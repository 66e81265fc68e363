//! A domain list as a pattern's necessary condition: one hash look-up per
//! address instead of a regex over thousands of alternatives.
//!
//! SpamAssassin's FreeMail plugin keeps `freemail_domains` (2,582 of them
//! in its stock rules, 29 with wildcards) in a hash and looks an address's
//! domain up. chaff states the same test as one pattern
//! (`spamassassin/mapping.rs`), exact but costly: with the wildcards it has
//! no literal to prefilter on, and a lazy DFA over a 2,800-way alternation
//! builds new states for every address it has not seen, 10–30 µs per
//! header text. A [`DomainGate`] runs first: the pattern only runs on a text
//! where some line's domain is on the list. The gate is a necessary
//! condition, never the verdict, so the pattern decides exactly as before.

use std::collections::HashSet;

/// A list entry as a regex: `*` any characters but `.`, `?` any one
/// character, the rest as written.
pub fn domain_pattern(entry: &str) -> String {
    regex::escape(entry)
        .replace("\\*", "[^.\\n]*")
        .replace("\\?", "[^\\n]")
}

/// Lines (addresses, one per line) whose domain, after the line's first
/// `@`, is on a list of domains: exact entries, and entries with `*` (any
/// characters but `.`) and `?` (any one character).
#[derive(Debug)]
pub struct DomainGate {
    /// Entries without wildcards, ASCII-lowercased.
    exact: HashSet<String>,
    /// Entries with wildcards (or anything but ASCII), as one
    /// case-insensitive anchored regex.
    wildcard: Option<regex::Regex>,
}

impl DomainGate {
    /// The gate for `entries`, or the regex error of its wildcard part.
    pub fn new(entries: &[String]) -> Result<DomainGate, regex::Error> {
        let mut exact = HashSet::new();
        let mut wildcards = Vec::new();
        for entry in entries {
            if entry.is_ascii() && !entry.contains(['*', '?']) {
                exact.insert(entry.to_ascii_lowercase());
            } else {
                wildcards.push(domain_pattern(entry));
            }
        }
        let wildcard = if wildcards.is_empty() {
            None
        } else {
            Some(regex::Regex::new(&format!(
                "(?i)^(?:{})$",
                wildcards.join("|")
            ))?)
        };
        Ok(DomainGate { exact, wildcard })
    }

    /// Whether some line of `text` has, after its first `@`, a domain on
    /// the list. A domain with characters beyond ASCII is let through: a
    /// case-insensitive pattern folds some of them onto ASCII letters (the
    /// Kelvin sign onto `k`), which a lowercase look-up would not.
    pub fn admits(&self, text: &str) -> bool {
        text.split('\n').any(|line| {
            let Some((_, domain)) = line.split_once('@') else {
                return false;
            };
            if !domain.is_ascii() {
                return true;
            }
            self.exact.contains(&domain.to_ascii_lowercase())
                || self
                    .wildcard
                    .as_ref()
                    .is_some_and(|wildcard| wildcard.is_match(domain))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> DomainGate {
        DomainGate::new(&["gmail.com".into(), "yahoo.*".into(), "mail?.ru".into()]).unwrap()
    }

    #[test]
    fn a_domain_on_the_list_opens_the_gate_on_any_line() {
        let gate = gate();
        assert!(gate.admits("a@example.org\nBob@GMail.Com"));
        assert!(gate.admits("x@yahoo.co"));
        assert!(gate.admits("x@mail1.ru"));
        assert!(gate.admits("x@caf\u{e9}.com"), "beyond ASCII: let through");
    }

    #[test]
    fn other_domains_and_lines_without_an_address_stay_shut() {
        let gate = gate();
        assert!(!gate.admits("a@example.org\nno address"));
        assert!(!gate.admits("x@yahoo.co.uk"), "`*` stops at a dot");
        assert!(!gate.admits("x@gmail.com.evil"));
        assert!(!gate.admits("gmail.com"));
        assert!(!gate.admits(""));
    }
}
