//! Many patterns over one text in one pass.
//!
//! Each pattern is compiled with the `regex` crate (or, when it needs
//! look-around or back-references, `fancy-regex`). At build time the
//! literals any match must start (or end) with are extracted from each
//! pattern's syntax tree; all of them, ASCII-lowercased, go into one
//! Aho-Corasick automaton (case-insensitive). Scanning a text:
//!
//! 1. one Aho-Corasick pass finds which patterns *could* match;
//! 2. one `RegexSet` pass covers the patterns with no usable literal;
//! 3. only candidates from step 1 (and fancy patterns) run their own regex.
//!
//! So the text is read once or twice whatever the number of patterns, and
//! the per-pattern cost is paid only by patterns whose literals occur.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// Size limit for one compiled pattern (SpamAssassin has some large ones).
const REGEX_SIZE_LIMIT: usize = 32 << 20;
/// Literals shorter than this make a pattern a candidate too often to help.
const MIN_LITERAL: usize = 3;

/// One compiled pattern.
#[derive(Debug, Clone)]
pub enum Compiled {
    Std(Regex),
    Fancy(Box<fancy_regex::Regex>),
}

impl Compiled {
    /// Compiles `source` (inline flags already applied) with `regex`, or
    /// with `fancy-regex` when `regex` does not support a feature it uses.
    pub fn new(source: &str) -> Result<Compiled, String> {
        match RegexBuilder::new(&ascii_word_boundaries(source))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => Ok(Compiled::Std(regex)),
            // fancy-regex does not take `(?-u:…)`: its `\b` stays Unicode.
            Err(std_error) => match fancy_regex::RegexBuilder::new(source)
                .delegate_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                // fancy-regex accepts everything regex does and more; only
                // use it when the pattern needs what regex lacks.
                Ok(fancy) => Ok(Compiled::Fancy(Box::new(fancy))),
                Err(fancy_error) => Err(format!(
                    "{} (fancy-regex: {})",
                    first_line(&std_error.to_string()),
                    first_line(&fancy_error.to_string())
                )),
            },
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Compiled::Std(regex) => regex.is_match(text),
            // A pattern that exhausts the backtracking limit does not match.
            Compiled::Fancy(regex) => regex.is_match(text).unwrap_or(false),
        }
    }

    pub fn is_fancy(&self) -> bool {
        matches!(self, Compiled::Fancy(_))
    }
}

/// Rewrites `\b` and `\B` (outside classes) as ASCII word boundaries.
///
/// A Unicode word boundary makes the regex crate's DFAs give up on any text
/// with a non-ASCII character (nearly every mail) and fall back to its much
/// slower NFA simulation. An ASCII boundary is also what SpamAssassin's
/// byte-oriented Perl matching means by `\b`. `(?u:\b)` stays Unicode.
pub fn ascii_word_boundaries(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 16);
    let mut chars = source.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(b @ ('b' | 'B')) if !in_class && !out.ends_with("(?u:") => {
                    out.push_str("(?-u:\\");
                    out.push(b);
                    out.push(')');
                }
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            '[' => {
                if in_class && chars.peek() == Some(&':') {
                    // `[:alpha:]` inside a class: copy through its `]`.
                    out.push(c);
                    for d in chars.by_ref() {
                        out.push(d);
                        if d == ']' {
                            break;
                        }
                    }
                    continue;
                }
                if !in_class {
                    in_class = true;
                    out.push(c);
                    if chars.peek() == Some(&'^') {
                        out.push('^');
                        chars.next();
                    }
                    if chars.peek() == Some(&']') {
                        out.push(']');
                        chars.next();
                    }
                    continue;
                }
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The regex crate's errors span several lines with a caret diagram; the
/// last line says what is wrong.
fn first_line(error: &str) -> String {
    error
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map_or_else(
            || error.lines().last().unwrap_or(error).to_owned(),
            |l| l.trim_start_matches("error: ").to_owned(),
        )
}

/// Literals every match of `source` contains, ASCII-lowercased, if they are
/// all at least [`MIN_LITERAL`] bytes long.
///
/// The automaton is ASCII case-insensitive, so a leading `(?i)` is dropped
/// before extracting: otherwise every case variant of every letter would be
/// enumerated and long alternations would yield no usable literal. (The
/// cost: a text that spells an ASCII letter with a non-ASCII case variant,
/// the Kelvin sign for `k` or the long `ſ` for `s`, is not a candidate.)
fn required_literals(source: &str) -> Option<Vec<Vec<u8>>> {
    let folded = drop_leading_case_flag(source);
    if folded != source {
        // Only when every literal is ASCII: the automaton folds ASCII case
        // only, so `(?i)straße` must keep its enumerated variants (ẞ).
        let literals = extract_literals(&folded)?;
        if literals.iter().all(|l| l.is_ascii()) {
            return Some(literals);
        }
    }
    extract_literals(source)
}

fn extract_literals(source: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(source)
        .ok()?;
    let mut best: Option<Vec<Vec<u8>>> = None;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut extractor = Extractor::new();
        extractor
            .kind(kind)
            .limit_class(16)
            .limit_repeat(8)
            .limit_literal_len(24)
            .limit_total(512);
        let seq = extractor.extract(&hir);
        let Some(literals) = seq.literals() else {
            continue;
        };
        let mut lowered: Vec<Vec<u8>> = literals
            .iter()
            .map(|l| l.as_bytes().to_ascii_lowercase())
            .collect();
        lowered.sort();
        lowered.dedup();
        if lowered.is_empty() || lowered.iter().any(|l| l.len() < MIN_LITERAL) {
            continue;
        }
        let shortest = |v: &Vec<Vec<u8>>| v.iter().map(Vec::len).min().unwrap_or(0);
        if best
            .as_ref()
            .is_none_or(|b| shortest(&lowered) > shortest(b))
        {
            best = Some(lowered);
        }
    }
    best
}

/// `(?im)x` → `(?m)x`; `(?i)x` → `x`; anything else unchanged.
fn drop_leading_case_flag(source: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = source.strip_prefix("(?")
        && let Some(end) = rest.find(')')
        && rest[..end].contains('i')
        && rest[..end].bytes().all(|b| b.is_ascii_alphabetic())
    {
        let flags: String = rest[..end].chars().filter(|&c| c != 'i').collect();
        let body = &rest[end + 1..];
        return if flags.is_empty() {
            body.to_owned().into()
        } else {
            format!("(?{flags}){body}").into()
        };
    }
    source.into()
}

/// Patterns over one kind of text, matched together.
#[derive(Debug, Default)]
pub struct MultiMatcher {
    patterns: Vec<Compiled>,
    /// Aho-Corasick over all extracted literals; pattern id → pattern.
    prefilter: Option<AhoCorasick>,
    literal_owner: Vec<u32>,
    /// Std patterns with no literal, matched as one set.
    set: Option<RegexSet>,
    set_members: Vec<u32>,
    /// Fancy patterns, run one by one.
    fancy: Vec<u32>,
}

/// How a [`MultiMatcher`] split its patterns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatcherShape {
    pub prefiltered: usize,
    pub in_set: usize,
    pub fancy: usize,
}

impl MultiMatcher {
    /// Builds the matcher over already-compiled patterns (`sources[i]` is
    /// the source `patterns[i]` was compiled from).
    pub fn build(patterns: Vec<Compiled>, sources: &[String]) -> Result<MultiMatcher, String> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_owner = Vec::new();
        let mut set_sources = Vec::new();
        let mut set_members = Vec::new();
        let mut fancy = Vec::new();
        for (index, (pattern, source)) in patterns.iter().zip(sources).enumerate() {
            let index = index as u32;
            if pattern.is_fancy() {
                fancy.push(index);
                continue;
            }
            match required_literals(source) {
                Some(found) => {
                    for literal in found {
                        literals.push(literal);
                        literal_owner.push(index);
                    }
                }
                None => {
                    set_sources.push(ascii_word_boundaries(source));
                    set_members.push(index);
                }
            }
        }
        let prefilter = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&literals)
                    .map_err(|e| e.to_string())?,
            )
        };
        let set = if set_sources.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&set_sources)
                    .size_limit(REGEX_SIZE_LIMIT * 4)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| first_line(&e.to_string()))?,
            )
        };
        Ok(MultiMatcher {
            patterns,
            prefilter,
            literal_owner,
            set,
            set_members,
            fancy,
        })
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn shape(&self) -> MatcherShape {
        MatcherShape {
            prefiltered: self.patterns.len() - self.set_members.len() - self.fancy.len(),
            in_set: self.set_members.len(),
            fancy: self.fancy.len(),
        }
    }

    /// Sets `matched[i]` for every pattern `i` that matches `text`.
    pub fn matches(&self, text: &str, matched: &mut [bool]) {
        if let Some(prefilter) = &self.prefilter {
            let mut candidate = vec![false; self.patterns.len()];
            for found in prefilter.find_overlapping_iter(text) {
                if let Some(&owner) = self.literal_owner.get(found.pattern().as_usize()) {
                    candidate[owner as usize] = true;
                }
            }
            for (index, is_candidate) in candidate.into_iter().enumerate() {
                if is_candidate
                    && !matched[index]
                    && self.patterns.get(index).is_some_and(|p| p.is_match(text))
                {
                    matched[index] = true;
                }
            }
        }
        if let Some(set) = &self.set {
            for hit in set.matches(text).iter() {
                if let Some(&index) = self.set_members.get(hit) {
                    matched[index as usize] = true;
                }
            }
        }
        for &index in &self.fancy {
            if let Some(pattern) = self.patterns.get(index as usize)
                && pattern.is_match(text)
            {
                matched[index as usize] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(sources: &[&str]) -> MultiMatcher {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let compiled = sources.iter().map(|s| Compiled::new(s).unwrap()).collect();
        MultiMatcher::build(compiled, &sources).unwrap()
    }

    fn hits(m: &MultiMatcher, text: &str) -> Vec<bool> {
        let mut out = vec![false; m.len()];
        m.matches(text, &mut out);
        out
    }

    #[test]
    fn literals_set_and_fancy_all_agree_with_the_regexes() {
        let m = matcher(&[
            r"(?i)viagra",
            r"\d{3}-\d{4}",
            r"(?i)free\s+money",
            r"foo(?!bar)",
            r"(\w+) \1",
            r"(?i)straße",
        ]);
        let shape = m.shape();
        assert_eq!(shape.fancy, 2);
        assert_eq!(shape.in_set, 1);
        assert_eq!(shape.prefiltered, 3);
        assert_eq!(
            hits(&m, "Buy VIAGRA now, call 555-1234, FREE   money, the the"),
            vec![true, true, true, false, true, false]
        );
        assert_eq!(
            hits(&m, "foobaz STRASSE STRAẞE"),
            vec![false, false, false, true, false, true]
        );
    }

    #[test]
    fn word_boundaries_become_ascii_outside_classes() {
        assert_eq!(
            ascii_word_boundaries(r"\bfoo\B[\b]\\b"),
            r"(?-u:\b)foo(?-u:\B)[\b]\\b"
        );
        assert_eq!(
            ascii_word_boundaries(r"[[:alpha:]\]]\b"),
            r"[[:alpha:]\]](?-u:\b)"
        );
        // ASCII: `é` is not a word character, so no boundary after it.
        assert!(
            !Compiled::new(r"(?i)\bcafé\b")
                .unwrap()
                .is_match("un café noir")
        );
        assert!(
            Compiled::new(r"(?i)\bcafé(?u:\b)")
                .unwrap()
                .is_match("un café noir")
        );
    }

    #[test]
    fn literal_extraction_prefers_long_literals() {
        let lits = required_literals("(?i)click here").unwrap();
        assert_eq!(lits, vec![b"click here".to_vec()]);
        let lits = required_literals(r"(?im)\b(?:Free Gift|act now|order today)\b").unwrap();
        assert_eq!(lits.len(), 3);
        assert!(required_literals(r"\w+").is_none());
        assert!(required_literals("a|bc").is_none());
    }
}
