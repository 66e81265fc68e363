//! One compiled pattern, as the matcher and the counting rules run it.
//!
//! A pattern is compiled with the `regex` crate (regex-automata's meta
//! engine, so a search can be anchored at a position with the text around
//! it still seen by `\b` and `^`), or with `fancy-regex` when it needs
//! look-around or back-references. Here too: the reverse lazy DFA that
//! confirms a pattern backwards from its suffix literal, the ASCII word
//! boundaries SpamAssassin's byte-oriented `\b` means, and the bounds that
//! keep one pattern's worst case finite (size limit, backtracking limit).

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, meta};

use super::spec::PatternError;

/// Size limit for one compiled pattern (SpamAssassin has some large ones).
pub(super) const REGEX_SIZE_LIMIT: usize = 32 << 20;
/// Backtracking steps fancy-regex may take on one text before it gives up
/// (its default is 1,000,000): what bounds the worst case of one pattern.
/// A pattern that gives up is reported (`Found::exhausted`), not taken as
/// no match in silence.
pub const BACKTRACK_LIMIT: usize = 100_000;

/// fancy-regex gave up on a text at [`BACKTRACK_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// One compiled pattern.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// The `regex` crate's engine, used directly for anchored searches
    /// from a position with the text around it still seen by `\b` and `^`.
    Std(meta::Regex),
    Fancy(Box<fancy_regex::Regex>),
}

/// As the `regex` crate builds a `Regex` (leftmost-first, UTF-8), without
/// capture groups, which `is_match` never reads.
pub(super) fn build_std(source: &str) -> Result<meta::Regex, PatternError> {
    build_std_capturing(source, WhichCaptures::None)
}

/// [`build_std`] with the capture groups `which` says: one that has to
/// tell where its matches are needs at least [`WhichCaptures::Implicit`]
/// (without any, the meta engine answers every `find` with `None`).
pub(super) fn build_std_capturing(
    source: &str,
    which: WhichCaptures,
) -> Result<meta::Regex, PatternError> {
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .match_kind(regex_automata::MatchKind::LeftmostFirst)
                .utf8_empty(true)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(2 << 20)
                .which_captures(which),
        )
        .syntax(regex_automata::util::syntax::Config::new().utf8(true))
        .build(source)
        .map_err(|e| {
            PatternError(if let Some(limit) = e.size_limit() {
                format!("compiled regex exceeds size limit of {limit} bytes")
            } else if let Some(syntax) = e.syntax_error() {
                syntax.to_string()
            } else {
                e.to_string()
            })
        })
}

type CacheFn =
    Box<dyn Fn() -> Cache + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A pattern known by its suffix literals, run backwards by a lazy DFA,
/// anchored where one of them ends: the forward regex could only search
/// everything before the literal for where a match might start.
#[derive(Debug)]
pub(super) struct Reverse {
    dfa: DFA,
    caches: Pool<Cache, CacheFn>,
}

impl Reverse {
    /// None when the lazy DFA cannot take the pattern; the forward search
    /// then does.
    pub(super) fn new(source: &str) -> Option<Reverse> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(regex_automata::MatchKind::All)
                    .unicode_word_boundary(true),
            )
            .syntax(regex_automata::util::syntax::Config::new().utf8(true))
            .thompson(
                thompson::Config::new()
                    .reverse(true)
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .which_captures(WhichCaptures::None),
            )
            .build(&ascii_word_boundaries(source))
            .ok()?;
        let for_caches = dfa.clone();
        let create: CacheFn = Box::new(move || for_caches.create_cache());
        Some(Reverse {
            dfa,
            caches: Pool::new(create),
        })
    }

    /// Where the leftmost match ending exactly at `end` starts: `Some(None)`
    /// when none ends there, `None` when the DFA gave up.
    pub(super) fn leftmost_start_ending_at(&self, text: &str, end: usize) -> Option<Option<usize>> {
        let input = Input::new(text).range(..end).anchored(Anchored::Yes);
        let mut cache = self.caches.get();
        self.dfa
            .try_search_rev(&mut cache, &input)
            .ok()
            .map(|found| found.map(|half| half.offset()))
    }

    /// Whether a match ends exactly at `end`; None when the DFA gave up
    /// (a Unicode `\b` next to non-ASCII text).
    pub(super) fn matches_ending_at(&self, text: &str, end: usize) -> Option<bool> {
        let input = Input::new(text)
            .range(..end)
            .anchored(Anchored::Yes)
            .earliest(true);
        let mut cache = self.caches.get();
        self.dfa
            .try_search_rev(&mut cache, &input)
            .ok()
            .map(|found| found.is_some())
    }
}

/// `source` compiled by fancy-regex with this module's bounds, the
/// repetitions backtracking cannot change made atomic first
/// (`atomic.rs`): the same matches, fewer VM steps.
fn build_fancy(source: &str) -> Result<fancy_regex::Regex, fancy_regex::Error> {
    let atomic = super::atomic::with_atomic_runs(source);
    fancy_regex::RegexBuilder::new(atomic.as_deref().unwrap_or(source))
        .delegate_size_limit(REGEX_SIZE_LIMIT)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
}

impl Compiled {
    /// Compiles `source` (inline flags already applied) with `regex`, or
    /// with `fancy-regex` when `regex` does not support a feature it uses.
    pub fn new(source: &str) -> Result<Compiled, PatternError> {
        match build_std(&ascii_word_boundaries(source)) {
            Ok(regex) => Ok(Compiled::Std(regex)),
            // fancy-regex does not take `(?-u:…)`: its `\b` stays Unicode.
            Err(std_error) => match build_fancy(source) {
                // fancy-regex accepts everything regex does and more; only
                // use it when the pattern needs what regex lacks.
                Ok(fancy) => Ok(Compiled::Fancy(Box::new(fancy))),
                Err(fancy_error) => Err(format!(
                    "{} (fancy-regex: {})",
                    first_line(&std_error.to_string()),
                    first_line(&fancy_error.to_string())
                )
                .into()),
            },
        }
    }

    /// Whether `text` matches; a pattern that exhausts the backtracking
    /// limit counts as no match here ([`Compiled::try_match`] tells).
    pub fn is_match(&self, text: &str) -> bool {
        self.try_match(text).unwrap_or(false)
    }

    /// Whether `text` matches, or `Exhausted` when fancy-regex gave up at
    /// [`BACKTRACK_LIMIT`] without an answer.
    pub fn try_match(&self, text: &str) -> Result<bool, Exhausted> {
        match self {
            Compiled::Std(regex) => Ok(regex.is_match(text)),
            Compiled::Fancy(regex) => regex.is_match(text).map_err(|_| Exhausted),
        }
    }

    /// Whether a match of `text` lies within `range` (the text outside it
    /// still decides `\b`, `^` and `$`), starting at `range.start` when
    /// `anchored`.
    pub(super) fn is_match_in(
        &self,
        text: &str,
        range: std::ops::Range<usize>,
        anchored: bool,
    ) -> bool {
        match self {
            Compiled::Std(regex) => {
                let mut input = Input::new(text).range(range).earliest(true);
                if anchored {
                    input = input.anchored(Anchored::Yes);
                }
                regex.is_match(input)
            }
            Compiled::Fancy(regex) => regex.is_match(text).unwrap_or(false),
        }
    }

    pub fn is_fancy(&self) -> bool {
        matches!(self, Compiled::Fancy(_))
    }
}

/// A pattern that counts its matches (SpamAssassin's `tflags multiple`).
/// Compiled apart from the matcher's copy, which is built without match
/// spans (it only answers whether a pattern matches): counting has to know
/// where each match ends to look for the next.
#[derive(Debug, Clone)]
pub enum Counter {
    Std(regex::Regex),
    Fancy(Box<fancy_regex::Regex>),
}

impl Counter {
    pub fn new(source: &str) -> Result<Counter, PatternError> {
        match regex::RegexBuilder::new(&ascii_word_boundaries(source))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => Ok(Counter::Std(regex)),
            Err(std_error) => build_fancy(source)
                .map(|fancy| Counter::Fancy(Box::new(fancy)))
                .map_err(|_| PatternError(first_line(&std_error.to_string()))),
        }
    }

    /// Non-overlapping matches in `text`, counting no further than `limit`.
    pub fn count(&self, text: &str, limit: u32) -> u32 {
        let limit = limit as usize;
        let found = match self {
            Counter::Std(regex) => regex.find_iter(text).take(limit).count(),
            // A search that exhausts the backtracking limit ends the count.
            Counter::Fancy(regex) => regex
                .find_iter(text)
                .take(limit)
                .take_while(Result::is_ok)
                .count(),
        };
        found as u32
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
pub(super) fn first_line(error: &str) -> String {
    error
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map_or_else(
            || error.lines().last().unwrap_or(error).to_owned(),
            |l| l.trim_start_matches("error: ").to_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn counts_non_overlapping_matches_up_to_the_limit() {
        let std = Counter::new("!!").unwrap();
        assert_eq!(std.count("wow!! great!! now!! and!!", 3), 3);
        assert_eq!(std.count("wow!!!", 10), 1);
        // Look-behind: the fancy-regex engine.
        let fancy = Counter::new(r"(?<=\d)x").unwrap();
        assert!(matches!(fancy, Counter::Fancy(_)));
        assert_eq!(fancy.count("1x 2x ax 3x", 10), 3);
    }
}
