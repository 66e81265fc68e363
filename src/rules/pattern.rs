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
    /// A fancy-regex pattern and, when it has one, its relaxed form
    /// ([`super::relax`]) compiled to find where its matches start:
    /// fancy-regex's own search starts its VM at every position of the
    /// text (SpamAssassin counts `__HDR_CASE_REVERSED` over the whole
    /// header block), the relaxed form says where a match could start.
    Fancy {
        exact: Box<fancy_regex::Regex>,
        starts: Option<Box<meta::Regex>>,
    },
}

impl Counter {
    pub fn new(source: &str) -> Result<Counter, PatternError> {
        match regex::RegexBuilder::new(&ascii_word_boundaries(source))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => Ok(Counter::Std(regex)),
            Err(std_error) => build_fancy(source)
                .map(|fancy| Counter::Fancy {
                    exact: Box::new(fancy),
                    starts: super::relax::relaxed(source)
                        .and_then(|relaxed| {
                            build_std_capturing(&relaxed, WhichCaptures::Implicit).ok()
                        })
                        .map(Box::new),
                })
                .map_err(|_| PatternError(first_line(&std_error.to_string()))),
        }
    }

    /// Non-overlapping matches in `text`, counting no further than `limit`.
    pub fn count(&self, text: &str, limit: u32) -> u32 {
        let limit = limit as usize;
        let found = match self {
            Counter::Std(regex) => regex.find_iter(text).take(limit).count(),
            Counter::Fancy {
                exact,
                starts: Some(starts),
            } => count_from_starts(exact, starts, text, limit),
            Counter::Fancy {
                exact,
                starts: None,
            } => count_everywhere(exact, text, limit),
        };
        found as u32
    }
}

/// Anchored fancy-regex tries a count makes where its relaxed form starts
/// a match and the exact pattern does not; past them the count is
/// fancy-regex's own, so a text whose every position starts a relaxed
/// match costs at most what that search cost before.
const MAX_COUNT_MISSES: usize = 64;

/// fancy-regex's own count: its search from every position in turn.
/// A search that exhausts the backtracking limit ends the count.
fn count_everywhere(exact: &fancy_regex::Regex, text: &str, limit: usize) -> usize {
    exact
        .find_iter(text)
        .take(limit)
        .take_while(Result::is_ok)
        .count()
}

/// The same count as [`count_everywhere`], with fancy-regex tried only
/// where the relaxed form `starts` finds a match starting. Every match of
/// the exact pattern is one of the relaxed form with the same start, so no
/// exact match starts before the relaxed form's leftmost start from where
/// the count is. An empty match (none of SpamAssassin's counted rules has
/// one) hands the count to fancy-regex's own iteration, whose rules for
/// empty matches this does not repeat; so do [`MAX_COUNT_MISSES`] tries
/// that found nothing.
fn count_from_starts(
    exact: &fancy_regex::Regex,
    starts: &meta::Regex,
    text: &str,
    limit: usize,
) -> usize {
    let mut count = 0;
    let mut from = 0;
    let mut misses = 0;
    while count < limit && from <= text.len() {
        if misses == MAX_COUNT_MISSES {
            return count_everywhere(exact, text, limit);
        }
        let Some(found) = starts.search(&Input::new(text).range(from..)) else {
            break;
        };
        let start = found.start();
        let input = fancy_regex::RegexInput::new(text)
            .from_pos(start)
            .anchored(true);
        match exact.find_input(input) {
            Ok(Some(matched)) if matched.end() > matched.start() => {
                count += 1;
                from = matched.end();
            }
            Ok(Some(_)) => return count_everywhere(exact, text, limit),
            Ok(None) => {
                misses += 1;
                // The next place is past this character.
                from = start
                    + text
                        .get(start..)
                        .and_then(|rest| rest.chars().next())
                        .map_or(1, char::len_utf8);
            }
            Err(_) => break,
        }
    }
    count
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
        assert!(matches!(
            fancy,
            Counter::Fancy {
                starts: Some(_),
                ..
            }
        ));
        assert_eq!(fancy.count("1x 2x ax 3x", 10), 3);
    }

    /// Counted fancy patterns of SpamAssassin's shapes, each with a
    /// relaxed form.
    const COUNTED_FANCY: &[&str] = &[
        r"(?m)^(?!DomainKey)[^-:\s]*[a-z][A-Z]",
        r"(?m)^[[:xdigit:]]{8}-[[:xdigit:]]{4}-([[:xdigit:]]{3})-\1-[[:xdigit:]]{12}$",
        r"(?<=\d)x",
        r"(\w)\1",
        r"(?i)\b(\w+) \1\b",
        r"a(?=b)|(?<=c)d",
    ];

    proptest::proptest! {
        #[test]
        fn fancy_counts_from_relaxed_starts_change_no_count(text in "[abcdx1 \nA-]{0,30}") {
            for source in COUNTED_FANCY {
                let Ok(Counter::Fancy { exact, starts: Some(starts) }) = Counter::new(source) else {
                    continue;
                };
                for limit in [1, 3, 100] {
                    proptest::prop_assert_eq!(
                        count_from_starts(&exact, &starts, &text, limit),
                        count_everywhere(&exact, &text, limit),
                        "{} on {:?} to {}", source, text, limit
                    );
                }
            }
        }
    }

    #[test]
    fn a_fancy_count_from_its_relaxed_starts_is_fancy_regex_s_own() {
        let patterns = COUNTED_FANCY;
        // More relaxed starts without a match than the count tries
        // anchored, then matches: the rest is fancy-regex's own count.
        let many_misses = format!("{}1x 2x DomainKey aB\ncD", "ax ab ".repeat(100));
        let texts = [
            many_misses.as_str(),
            "",
            "DomainKey-Signature: x\nX-MailerId: 1\nsubjectLine: y\nxY: z\n",
            "01234567-89ab-cde-cde-0123456789ab\n01234567-89ab-cde-cdf-0123456789ab\n",
            "1x 2x ax 3xx 4x",
            "aabbcc dd é é ëë",
            "the the The the cat cat",
            "ab cd abcd cdcd ac",
        ];
        for source in patterns {
            let counter = Counter::new(source).unwrap();
            let Counter::Fancy {
                exact,
                starts: Some(starts),
            } = &counter
            else {
                panic!("{source} has a relaxed form");
            };
            for text in texts {
                for limit in [1, 2, 100] {
                    assert_eq!(
                        count_from_starts(exact, starts, text, limit),
                        count_everywhere(exact, text, limit),
                        "{source} on {text:?} to {limit}"
                    );
                }
            }
        }
    }
}
