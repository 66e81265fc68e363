//! Many patterns over one text in one pass.
//!
//! Each pattern is compiled with the `regex` crate (or, when it needs
//! look-around or back-references, `fancy-regex`, which then takes part
//! through its relaxed form: `relax.rs`). At build time the literals any
//! match must start with, end with or contain are extracted from each
//! pattern's syntax tree (`literals.rs`); all of them, ASCII-lowercased, go
//! into one Aho-Corasick automaton (case-insensitive). Scanning a text:
//!
//! 1. one Aho-Corasick pass finds which patterns *could* match, and where;
//! 2. `RegexSet`s of [`SET_SIZE`] cover the patterns with no usable literal;
//! 3. only candidates from step 1 run their own regex: anchored at each
//!    place one of its prefix literals occurs, for a pattern known by its
//!    suffix literals only up to the last of them, for one known by an
//!    inner literal one search;
//! 4. a fancy pattern whose relaxed form matched runs fancy-regex on the
//!    text, under [`BACKTRACK_LIMIT`] and the caller's deadline; what it
//!    cannot decide is reported in [`Found`], never taken as no match.
//!
//! So the text is read a few times whatever the number of patterns, and
//! the per-pattern cost is paid only by patterns whose literals occur, in
//! proportion to the stretch of text they could match, not to its length.
//! Nothing per message is sized by the number of patterns.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, meta};
use std::time::{Duration, Instant};

use super::literals::{Side, required_literals};
use super::spec::PatternError;

/// Size limit for one compiled pattern (SpamAssassin has some large ones).
const REGEX_SIZE_LIMIT: usize = 32 << 20;
/// Backtracking steps fancy-regex may take on one text before it gives up
/// (its default is 1,000,000): what bounds the worst case of one pattern.
/// A pattern that gives up is reported (`Found::exhausted`), not taken as
/// no match in silence.
pub const BACKTRACK_LIMIT: usize = 100_000;

/// fancy-regex gave up on a text at [`BACKTRACK_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

/// What one pass of a [`MultiMatcher`] over a text found, and which
/// patterns it could not decide.
#[derive(Debug, Default)]
pub struct Found {
    /// Patterns that match, each once, in no particular order.
    pub matched: Vec<u32>,
    /// Patterns that ran into [`BACKTRACK_LIMIT`] on this text.
    pub exhausted: Vec<u32>,
    /// fancy-regex patterns not run: the message's rule budget was spent.
    pub over_budget: Vec<u32>,
}

impl Found {
    pub fn clear(&mut self) {
        self.matched.clear();
        self.exhausted.clear();
        self.over_budget.clear();
    }
}

/// Patterns per no-literal set. One lazy DFA over all of SpamAssassin's
/// hundred-odd body patterns without a literal thrashes its cache: on 596
/// messages of the SpamAssassin corpus, `chaff rules stats --timing` gave
/// the body's no-literal pass 3.1 ms per message as one set, 0.34–0.48 ms
/// in sets of 2 or 4, 0.65 ms in sets of 8 and 2.3 ms in sets of 64.
const SET_SIZE: usize = 4;
/// Anchored tries per pattern and text; past them one unanchored search
/// from the next occurrence settles it (a literal occurring hundreds of
/// times, each try running to the end of a long line, would cost more).
const MAX_ANCHORED_TRIES: usize = 8;
/// fancy-regex tries per pattern and text, each anchored where its relaxed
/// form could start ([`MultiMatcher::run_fancy_at`]) or over a window where
/// it could lie ([`MultiMatcher::run_fancy_before`]); past them one search
/// settles it.
const MAX_FANCY_STARTS: usize = 64;

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
fn build_std(source: &str) -> Result<meta::Regex, PatternError> {
    build_std_capturing(source, WhichCaptures::None)
}

/// [`build_std`] with the capture groups `which` says: one that has to
/// tell where its matches are needs at least [`WhichCaptures::Implicit`]
/// (without any, the meta engine answers every `find` with `None`).
fn build_std_capturing(source: &str, which: WhichCaptures) -> Result<meta::Regex, PatternError> {
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
struct Reverse {
    dfa: DFA,
    caches: Pool<Cache, CacheFn>,
}

impl Reverse {
    /// None when the lazy DFA cannot take the pattern; the forward search
    /// then does.
    fn new(source: &str) -> Option<Reverse> {
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
    fn leftmost_start_ending_at(&self, text: &str, end: usize) -> Option<Option<usize>> {
        let input = Input::new(text).range(..end).anchored(Anchored::Yes);
        let mut cache = self.caches.get();
        self.dfa
            .try_search_rev(&mut cache, &input)
            .ok()
            .map(|found| found.map(|half| half.offset()))
    }

    /// Whether a match ends exactly at `end`; None when the DFA gave up
    /// (a Unicode `\b` next to non-ASCII text).
    fn matches_ending_at(&self, text: &str, end: usize) -> Option<bool> {
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

impl Compiled {
    /// Compiles `source` (inline flags already applied) with `regex`, or
    /// with `fancy-regex` when `regex` does not support a feature it uses.
    pub fn new(source: &str) -> Result<Compiled, PatternError> {
        match build_std(&ascii_word_boundaries(source)) {
            Ok(regex) => Ok(Compiled::Std(regex)),
            // fancy-regex does not take `(?-u:…)`: its `\b` stays Unicode.
            Err(std_error) => match fancy_regex::RegexBuilder::new(source)
                .delegate_size_limit(REGEX_SIZE_LIMIT)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
            {
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
    fn is_match_in(&self, text: &str, range: std::ops::Range<usize>, anchored: bool) -> bool {
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
            Err(std_error) => fancy_regex::RegexBuilder::new(source)
                .delegate_size_limit(REGEX_SIZE_LIMIT)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
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

#[cfg(test)]
mod counter_tests {
    use super::Counter;

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

/// Patterns over one kind of text, matched together.
#[derive(Debug, Default)]
pub struct MultiMatcher {
    patterns: Vec<Compiled>,
    /// Aho-Corasick over all extracted literals; literal id → pattern.
    prefilter: Option<AhoCorasick>,
    literal_owner: Vec<u32>,
    /// Per pattern: which end of a match its literals are at (unused for
    /// patterns outside the prefilter).
    side: Vec<Side>,
    /// Per pattern with suffix literals: its reverse matcher.
    reverse: Vec<Option<Box<Reverse>>>,
    /// Patterns with no literal, matched as sets of [`SET_SIZE`] each:
    /// (the set, the index in `set_members` of its first pattern).
    sets: Vec<(RegexSet, usize)>,
    set_members: Vec<u32>,
    /// Per fancy pattern with a relaxed form ([`super::relax`]): that form,
    /// which stands in for it in the prefilter, the set and the anchored
    /// searches; fancy-regex confirms only where it matched.
    gates: Vec<Option<Compiled>>,
    /// Per gated pattern that neither its prefix literals nor a reverse
    /// DFA can place: its relaxed form again, compiled to report where its
    /// matches start ([`MultiMatcher::run_fancy_from`]).
    finders: Vec<Option<meta::Regex>>,
    /// Fancy patterns without a relaxed form, run one by one.
    fancy: Vec<u32>,
}

/// A stage of [`MultiMatcher::matches_timed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The Aho-Corasick pass over the literals.
    Prefilter,
    /// The set of patterns with no literal.
    Set,
    /// One pattern confirmed or run on its own.
    Pattern(u32),
}

/// How a [`MultiMatcher`] split its patterns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatcherShape {
    pub prefiltered: usize,
    pub in_set: usize,
    /// Run by fancy-regex on every text.
    pub fancy: usize,
    /// Run by fancy-regex only where their relaxed form matched (counted
    /// in `prefiltered` or `in_set` too, as their relaxed form is).
    pub gated: usize,
}

impl MultiMatcher {
    /// Builds the matcher over already-compiled patterns (`sources[i]` is
    /// the source `patterns[i]` was compiled from).
    pub fn build(
        patterns: Vec<Compiled>,
        sources: &[String],
    ) -> Result<MultiMatcher, PatternError> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_owner = Vec::new();
        let mut set_sources = Vec::new();
        let mut set_members = Vec::new();
        let mut fancy = Vec::new();
        let mut side = vec![Side::Prefix; patterns.len()];
        let mut reverse: Vec<Option<Box<Reverse>>> = Vec::new();
        reverse.resize_with(patterns.len(), || None);
        let mut gates: Vec<Option<Compiled>> = Vec::new();
        gates.resize_with(patterns.len(), || None);
        let mut finders: Vec<Option<meta::Regex>> = Vec::new();
        finders.resize_with(patterns.len(), || None);
        for (index, (pattern, source)) in patterns.iter().zip(sources).enumerate() {
            let at = index;
            let index = index as u32;
            // What the one-pass search runs for this pattern: its own source,
            // or for a fancy pattern its relaxed form.
            let searched = if pattern.is_fancy() {
                let gate = super::relax::relaxed(source).and_then(|relaxed| {
                    let gate = build_std(&relaxed).ok()?;
                    Some((relaxed, gate))
                });
                let Some((relaxed, gate)) = gate else {
                    fancy.push(index);
                    continue;
                };
                if let Some(slot) = gates.get_mut(at) {
                    *slot = Some(Compiled::Std(gate));
                }
                std::borrow::Cow::Owned(relaxed)
            } else {
                std::borrow::Cow::Borrowed(source.as_str())
            };
            let placed = match required_literals(&searched) {
                Some((found_side, found)) => {
                    side[at] = found_side;
                    if found_side == Side::Suffix {
                        reverse[at] = Reverse::new(&searched).map(Box::new);
                    }
                    for literal in found {
                        literals.push(literal);
                        literal_owner.push(index);
                    }
                    found_side == Side::Prefix || reverse[at].is_some()
                }
                None => {
                    set_sources.push(ascii_word_boundaries(&searched));
                    set_members.push(index);
                    false
                }
            };
            if pattern.is_fancy() && !placed {
                finders[at] = build_std_capturing(&searched, WhichCaptures::Implicit).ok();
            }
        }
        let prefilter = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    // A full DFA: one table look-up per byte, however many
                    // literals (the default for many literals is an NFA
                    // whose per-byte cost grows with the automaton).
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&literals)
                    .map_err(|e| e.to_string())?,
            )
        };
        let mut sets = Vec::new();
        for (chunk, sources) in set_sources.chunks(SET_SIZE).enumerate() {
            let set = RegexSetBuilder::new(sources)
                .size_limit(REGEX_SIZE_LIMIT * 4)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| first_line(&e.to_string()))?;
            sets.push((set, chunk * SET_SIZE));
        }
        Ok(MultiMatcher {
            patterns,
            prefilter,
            literal_owner,
            side,
            reverse,
            sets,
            set_members,
            gates,
            finders,
            fancy,
        })
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether pattern `index` runs on fancy-regex's backtracking engine.
    pub fn is_fancy(&self, index: u32) -> bool {
        self.patterns
            .get(index as usize)
            .is_some_and(Compiled::is_fancy)
    }

    pub fn shape(&self) -> MatcherShape {
        MatcherShape {
            prefiltered: self.patterns.len() - self.set_members.len() - self.fancy.len(),
            in_set: self.set_members.len(),
            fancy: self.fancy.len(),
            gated: self.gates.iter().filter(|g| g.is_some()).count(),
        }
    }

    /// Whether pattern `index`, found by the one-pass search, matches:
    /// a fancy pattern found by its relaxed form is run now, on this text.
    fn confirmed(
        &self,
        index: u32,
        text: &str,
        deadline: Option<Instant>,
        found: &mut Found,
    ) -> bool {
        match (
            self.gates.get(index as usize),
            self.finders.get(index as usize),
        ) {
            (Some(Some(_)), Some(Some(finder))) => {
                self.run_fancy_from(index, finder, text, deadline, found)
            }
            (Some(Some(_)), _) => self.run_fancy(index, text, deadline, found),
            _ => true,
        }
    }

    /// Runs fancy pattern `index` only where its relaxed form has a match
    /// starting, as `finder` (that form) finds them one after the other.
    ///
    /// For a pattern with no literal, or only an inner one, nothing else
    /// says where a match could start, and fancy-regex's own search starts
    /// its VM at every position (`__RAND_HEADER` over a whole header
    /// block). The relaxed form matches wherever the exact pattern does, so
    /// each leftmost start of it from the last one on is a place to try
    /// fancy-regex anchored; past [`MAX_FANCY_STARTS`] one search from there
    /// settles it.
    fn run_fancy_from(
        &self,
        index: u32,
        finder: &meta::Regex,
        text: &str,
        deadline: Option<Instant>,
        found: &mut Found,
    ) -> bool {
        let Some(Compiled::Fancy(exact)) = self.patterns.get(index as usize) else {
            return self.run_fancy(index, text, deadline, found);
        };
        let mut from = 0;
        let mut exhausted = false;
        for tries in 0..=MAX_FANCY_STARTS {
            let Some(candidate) = finder.find(Input::new(text).range(from..)) else {
                break;
            };
            let start = candidate.start();
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                found.over_budget.push(index);
                return false;
            }
            let input = fancy_regex::RegexInput::new(text).from_pos(start);
            let last = tries == MAX_FANCY_STARTS;
            match exact.is_match_input(if last { input } else { input.anchored(true) }) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => exhausted = true,
            }
            // The next candidate starts one character further on.
            let Some(next) = text.get(start..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            if last {
                break;
            }
            from = start + next.len_utf8();
        }
        if exhausted {
            found.exhausted.push(index);
        }
        false
    }

    /// Runs fancy pattern `index` on `text`, unless the budget is spent;
    /// what it could not decide goes into `found`.
    fn run_fancy(
        &self,
        index: u32,
        text: &str,
        deadline: Option<Instant>,
        found: &mut Found,
    ) -> bool {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            found.over_budget.push(index);
            return false;
        }
        match self.patterns.get(index as usize).map(|p| p.try_match(text)) {
            Some(Ok(matches)) => matches,
            Some(Err(Exhausted)) => {
                found.exhausted.push(index);
                false
            }
            None => false,
        }
    }

    /// Runs fancy pattern `index`, whose relaxed form is known by prefix
    /// literals, only at `starts` (sorted), the places one of them occurs.
    ///
    /// fancy-regex's own search starts its backtracking VM at every
    /// position of the text; over a header block or a whole message that
    /// alone was most of what SpamAssassin's back-reference rules cost
    /// (`__TO_EQ_FROM_*`, `__SUBJ_HAS_*`). Every match of the relaxed form
    /// starts with one of its prefix literals, and the relaxed form matches
    /// wherever the exact pattern does (`relax.rs`), so no match can start
    /// anywhere else. At each start the relaxed form, anchored, is checked
    /// first, then fancy-regex anchored there, each try with
    /// [`BACKTRACK_LIMIT`] to itself; past [`MAX_FANCY_STARTS`] tries one
    /// search from the next start settles it, so the worst case stays a
    /// bounded number of limits per text.
    fn run_fancy_at(
        &self,
        index: u32,
        starts: &[usize],
        text: &str,
        deadline: Option<Instant>,
        found: &mut Found,
    ) -> bool {
        let (Some(Compiled::Fancy(exact)), Some(Some(gate))) = (
            self.patterns.get(index as usize),
            self.gates.get(index as usize),
        ) else {
            return self.run_fancy(index, text, deadline, found);
        };
        let mut exhausted = false;
        let mut tries = 0;
        for (at, &start) in starts.iter().enumerate() {
            if at > 0 && starts.get(at - 1) == Some(&start) {
                continue;
            }
            if !gate.is_match_in(text, start..text.len(), true) {
                continue;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                found.over_budget.push(index);
                return false;
            }
            let input = fancy_regex::RegexInput::new(text).from_pos(start);
            let outcome = if tries == MAX_FANCY_STARTS {
                exact.is_match_input(input)
            } else {
                exact.is_match_input(input.anchored(true))
            };
            match outcome {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => exhausted = true,
            }
            if tries == MAX_FANCY_STARTS {
                break;
            }
            tries += 1;
        }
        if exhausted {
            found.exhausted.push(index);
        }
        false
    }

    /// Runs fancy pattern `index`, whose relaxed form is known by suffix
    /// literals, only over the stretches of text where a match could lie.
    ///
    /// Every match of the exact pattern is a match of the relaxed one
    /// (same start, same end), so it ends where one of the suffix literals
    /// `hits` ends, and starts no earlier than the leftmost start of a
    /// relaxed match ending there, which the reverse DFA finds. fancy-regex
    /// then searches only those windows (overlapping ones merged; its
    /// look-around still sees the whole text), instead of starting its VM
    /// at every position of a whole body: on a 70 kB HTML spam with a
    /// dozen `promo`s, `__LOTTO_ADMITS_1` went from 38 ms to well under one.
    fn run_fancy_before(
        &self,
        index: u32,
        hits: &[(u32, usize, usize)],
        text: &str,
        deadline: Option<Instant>,
        found: &mut Found,
    ) -> bool {
        let (Some(Compiled::Fancy(exact)), Some(Some(reverse))) = (
            self.patterns.get(index as usize),
            self.reverse.get(index as usize),
        ) else {
            return self.candidate_matches(index, hits, text)
                && self.run_fancy(index, text, deadline, found);
        };
        let mut ends: Vec<usize> = hits.iter().map(|h| h.2).collect();
        ends.sort_unstable();
        ends.dedup();
        let mut windows: Vec<(usize, usize)> = Vec::new();
        for &end in &ends {
            match reverse.leftmost_start_ending_at(text, end) {
                Some(Some(start)) => windows.push((start, end)),
                Some(None) => {}
                // The DFA gave up: the whole text, as without literals.
                None => return self.run_fancy(index, text, deadline, found),
            }
        }
        windows.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
        for (start, end) in windows {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        // Past MAX_FANCY_STARTS windows, one search over all of them.
        if merged.len() > MAX_FANCY_STARTS
            && let (Some(first), Some(last)) = (merged.first().copied(), merged.last().copied())
        {
            merged = vec![(first.0, last.1)];
        }
        let mut exhausted = false;
        for (start, end) in merged {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                found.over_budget.push(index);
                return false;
            }
            match exact.is_match_input(fancy_regex::RegexInput::new(text).range(start..end)) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => exhausted = true,
            }
        }
        if exhausted {
            found.exhausted.push(index);
        }
        false
    }

    /// Appends to `matched` every pattern `i` that matches `text`, each
    /// once, in no particular order.
    /// (Patterns fancy-regex gave up on are left out; the scan uses
    /// [`MultiMatcher::matches_timed`], which reports them.)
    pub fn matches(&self, text: &str, matched: &mut Vec<u32>) {
        let mut found = Found::default();
        self.matches_timed(text, &mut found, None, None);
        matched.append(&mut found.matched);
    }

    /// [`MultiMatcher::matches`] into `found`, running no fancy-regex
    /// pattern once `deadline` has passed, and telling `timing` how long
    /// each stage took (`chaff rules stats --timing`; with `None` no clock
    /// is read for it).
    pub fn matches_timed(
        &self,
        text: &str,
        found: &mut Found,
        deadline: Option<Instant>,
        mut timing: Option<&mut dyn FnMut(Stage, Duration)>,
    ) {
        let mut timed = |stage: Stage, work: &mut dyn FnMut() -> bool| -> bool {
            match timing.as_mut() {
                None => work(),
                Some(timing) => {
                    let started = Instant::now();
                    let result = work();
                    timing(stage, started.elapsed());
                    result
                }
            }
        };
        if let Some(prefilter) = &self.prefilter {
            // (pattern, start, end) of every literal occurrence: as many as
            // the text has hits, however many patterns there are.
            let mut hits: Vec<(u32, usize, usize)> = Vec::new();
            timed(Stage::Prefilter, &mut || {
                hits.extend(prefilter.find_overlapping_iter(text).filter_map(|found| {
                    let owner = *self.literal_owner.get(found.pattern().as_usize())?;
                    Some((owner, found.start(), found.end()))
                }));
                hits.sort_unstable();
                true
            });
            for run in hits.chunk_by(|a, b| a.0 == b.0) {
                let Some(&(owner, _, _)) = run.first() else {
                    continue;
                };
                if timed(Stage::Pattern(owner), &mut || {
                    if self.gates.get(owner as usize).is_some_and(Option::is_some) {
                        match self.side.get(owner as usize) {
                            Some(Side::Prefix) => {
                                let starts: Vec<usize> = run.iter().map(|hit| hit.1).collect();
                                return self.run_fancy_at(owner, &starts, text, deadline, found);
                            }
                            Some(Side::Suffix) => {
                                return self.run_fancy_before(owner, run, text, deadline, found);
                            }
                            _ => {}
                        }
                    }
                    self.candidate_matches(owner, run, text)
                        && self.confirmed(owner, text, deadline, found)
                }) {
                    found.matched.push(owner);
                }
            }
        }
        if !self.sets.is_empty() {
            let mut in_sets = Vec::new();
            timed(Stage::Set, &mut || {
                for (set, first) in &self.sets {
                    in_sets.extend(set.matches(text).iter().map(|hit| first + hit));
                }
                true
            });
            for hit in in_sets {
                if let Some(&index) = self.set_members.get(hit)
                    && timed(Stage::Pattern(index), &mut || {
                        self.confirmed(index, text, deadline, found)
                    })
                {
                    found.matched.push(index);
                }
            }
        }
        for &index in &self.fancy {
            if timed(Stage::Pattern(index), &mut || {
                self.run_fancy(index, text, deadline, found)
            }) {
                found.matched.push(index);
            }
        }
    }

    /// Confirms pattern `owner` from its literal occurrences `hits`
    /// (sorted by start).
    fn candidate_matches(&self, owner: u32, hits: &[(u32, usize, usize)], text: &str) -> bool {
        let gate = self.gates.get(owner as usize).and_then(Option::as_ref);
        let Some(pattern) = gate.or_else(|| self.patterns.get(owner as usize)) else {
            return false;
        };
        let side = self
            .side
            .get(owner as usize)
            .copied()
            .unwrap_or(Side::Prefix);
        match side {
            Side::Prefix => {
                let mut starts = hits.iter().map(|h| h.1).peekable();
                let mut tries = 0;
                while let Some(start) = starts.next() {
                    // Overlapping literals of one pattern can share a start.
                    while starts.peek() == Some(&start) {
                        starts.next();
                    }
                    if tries == MAX_ANCHORED_TRIES {
                        return pattern.is_match_in(text, start..text.len(), false);
                    }
                    tries += 1;
                    if pattern.is_match_in(text, start..text.len(), true) {
                        return true;
                    }
                }
                false
            }
            // One search over the text: an inner literal says only that a
            // match is possible, not where.
            Side::Inner => pattern.is_match_in(text, 0..text.len(), false),
            Side::Suffix => {
                let mut ends: Vec<usize> = hits.iter().map(|h| h.2).collect();
                ends.sort_unstable();
                ends.dedup();
                let last = ends.last().copied().unwrap_or(text.len());
                if let Some(Some(reverse)) = self.reverse.get(owner as usize)
                    && ends.len() <= MAX_ANCHORED_TRIES
                {
                    let mut gave_up = false;
                    for &end in &ends {
                        match reverse.matches_ending_at(text, end) {
                            Some(true) => return true,
                            Some(false) => {}
                            None => {
                                gave_up = true;
                                break;
                            }
                        }
                    }
                    if !gave_up {
                        return false;
                    }
                }
                // Every match ends at one of the literals, so not after
                // the last.
                pattern.is_match_in(text, 0..last, false)
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
        let mut found = Vec::new();
        m.matches(text, &mut found);
        let mut out = vec![false; m.len()];
        for i in found {
            assert!(!out[i as usize], "pattern {i} reported twice");
            out[i as usize] = true;
        }
        out
    }

    #[test]
    fn fancy_patterns_past_the_limit_or_the_deadline_are_reported() {
        let m = matcher(&[r"((a|aa)+)\1b", r"(?<!x)aaa"]);
        let text = format!("{}c b", "a".repeat(40));
        let mut found = Found::default();
        m.matches_timed(&text, &mut found, None, None);
        assert_eq!(found.matched, vec![1]);
        assert_eq!(found.exhausted, vec![0]);
        assert!(found.over_budget.is_empty());
        // A spent budget: the gates still match, fancy-regex is not run.
        let mut found = Found::default();
        m.matches_timed(&text, &mut found, Some(Instant::now()), None);
        assert!(found.matched.is_empty());
        let mut skipped = found.over_budget.clone();
        skipped.sort();
        assert_eq!(skipped, vec![0, 1]);
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
        // Both fancy patterns run only where their relaxed forms (`foo`,
        // `(\w+) (?s:.*?)`) match.
        assert_eq!(shape.fancy, 0);
        assert_eq!(shape.gated, 2);
        assert_eq!(shape.in_set, 2);
        assert_eq!(shape.prefiltered, 4);
        assert_eq!(
            hits(&m, "Buy VIAGRA now, call 555-1234, FREE   money, the the"),
            vec![true, true, true, false, true, false]
        );
        // The relaxed forms match here; the exact patterns do not.
        assert_eq!(
            hits(&m, "foobar, one two"),
            vec![false, false, false, false, false, false]
        );
        assert_eq!(
            hits(&m, "foobaz STRASSE STRAẞE"),
            vec![false, false, false, true, false, true]
        );
    }

    /// Fancy patterns of the shapes SpamAssassin's rules have: a
    /// look-behind or look-ahead at the start, `^` in multi-line mode, a
    /// back-reference across lines.
    const FANCY: &[&str] = &[
        r"(?mi)^(?!abuse@)[^\n@]*@(?:mail\.example|aol\.com)$",
        r"(?m)\nFrom: ([^\n\s>]+)\n+(?:[^\n]{1,100}\n+)*To: \1\b",
        r"(?<!x)ab+(?!c)",
        r"(?i)\b(\w)\1{2}",
        r"(?s)^(?=.*b)a",
        r"(?<=\d)x(?=\d)",
        r"(?i)(?:a|b)(?:\s(?!ab)\w{1,3}){0,2}\s?(?:cab|bb)",
        r"(?i)\b(?:this|state)(?:\s(?!lot)\w{1,5}){0,2}\s?(?:lotto|promo)\b",
        r"(\w+) lotto \1",
    ];

    proptest::proptest! {
        /// Trying fancy-regex only where the relaxed form's matches start
        /// finds exactly what its own search over the whole text finds.
        #[test]
        fn fancy_patterns_tried_where_their_relaxed_form_starts_agree_with_fancy_regex(
            text in "(?s)(From: |To: |abuse@|bob@|mail\\.example|AOL\\.com|this |state|lotto|Promo|[abcx1 \n\u{e9}]){0,16}",
        ) {
            let m = matcher(FANCY);
            proptest::prop_assert_eq!(m.shape().gated, FANCY.len());
            let found = hits(&m, &text);
            for (i, source) in FANCY.iter().enumerate() {
                let exact = fancy_regex::Regex::new(source).unwrap().is_match(&text).unwrap();
                proptest::prop_assert_eq!(found[i], exact, "{} on {:?}", source, text);
            }
        }
    }

    #[test]
    fn a_multi_line_fancy_pattern_matches_on_a_later_line() {
        let m = matcher(FANCY);
        // The paths the proptest above goes through: fancy-regex tried at
        // prefix literals, before suffix literals, after an inner literal.
        assert_eq!(m.side[1], Side::Prefix);
        assert_eq!(m.side[7], Side::Suffix);
        assert_eq!(m.side[8], Side::Inner);
        let found = hits(&m, "Win this state promo, or a lotto a");
        assert_eq!(&found[7..], &[true, true]);
        let found = hits(&m, "this lottery, this state lot promo, the lotto b");
        assert_eq!(&found[7..], &[false, false]);
        let found = hits(&m, "x\nbob@mail.example\nFrom: ann\nSubject: s\nTo: ann\n");
        assert_eq!(&found[..2], &[true, true]);
        let found = hits(&m, "x\nabuse@mail.example\nFrom: ann\nTo: bob\n");
        assert_eq!(&found[..2], &[false, false]);
    }

    #[test]
    fn confirmation_at_the_literal_sees_the_text_around_it() {
        let m = matcher(&[
            r"(?i)\bfree\s+money\b",
            r"(?m)^click here",
            r"\w+@example\.com\b",
            r"(?i)\bwin\b.{0,5}now",
        ]);
        assert_eq!(m.shape().prefiltered, 4);
        // `\b` and `^` before the literal are judged on the whole text.
        assert_eq!(
            hits(&m, "carefree money; not click here"),
            vec![false, false, false, false]
        );
        assert_eq!(
            hits(&m, "carefree money, FREE  Money\nclick here"),
            vec![true, true, false, false]
        );
        // Suffix literals: the match ends at the last occurrence at latest.
        assert_eq!(
            hits(&m, "x@example.community bob@example.com"),
            vec![false, false, true, false]
        );
        // More occurrences than anchored tries: the last one matches.
        let many = format!("{}win now", "win later ".repeat(3 * MAX_ANCHORED_TRIES));
        assert_eq!(hits(&m, &many), vec![false, false, false, true]);
        let none = "win later ".repeat(3 * MAX_ANCHORED_TRIES);
        assert_eq!(hits(&m, &none), vec![false, false, false, false]);
        let m = matcher(&[r"(?i)\d{2} dollars\b"]);
        assert_eq!(
            required_literals(r"(?i)\d{2} dollars\b").map(|l| l.0),
            Some(Side::Suffix)
        );
        for repeat in [1, 3 * MAX_ANCHORED_TRIES] {
            let text = "a dollars, 7 DOLLARS, 12 dollarsx; ".repeat(repeat);
            assert_eq!(hits(&m, &text), vec![false]);
            assert_eq!(hits(&m, &format!("{text}12 Dollars")), vec![true]);
        }
    }

    #[test]
    fn the_matcher_agrees_with_each_regex_alone() {
        let sources = [
            r"(?i)\b(?:free|freedom|fre+ gift)\b",
            r"(?i)(?:act )?now\b",
            r"(?im)^sub(?:ject)?:\s*\$\d+",
            r"(?s)<font[^>]*>.{0,20}</font>",
            r"(?i)\d{3}[-.]\d{4}\s+call",
            r"(?i)(?:viagra|cialis)$",
            r"\bunsubscribe\b.*\bhere\b",
            r"(?i)straße",
        ];
        let m = matcher(&sources);
        let compiled: Vec<Compiled> = sources.iter().map(|s| Compiled::new(s).unwrap()).collect();
        let texts = [
            "",
            "Freedom! act  now, FREEE GIFT now",
            "subject: $50\nSub: 7",
            "<font color=red>hi</font> and <font>a very long text that goes past</font>",
            "555-1234   CALL now; 555.1234 calls",
            "cheap VIAGRA\nonline cialis",
            "unsubscribe here\nor unsubscribe\nthere",
            "STRASSE straße Straße",
            "the now-famous unsubscribed; heres",
        ];
        for text in texts {
            let expected: Vec<bool> = compiled.iter().map(|c| c.is_match(text)).collect();
            assert_eq!(hits(&m, text), expected, "{text:?}");
        }
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
        assert_eq!(lits, (Side::Prefix, vec![b"click here".to_vec()]));
        let lits = required_literals(r"(?im)\b(?:Free Gift|act now|order today)\b").unwrap();
        assert_eq!(lits.1.len(), 3);
        let lits = required_literals(r"\w+@example\.com").unwrap();
        assert_eq!(lits, (Side::Suffix, vec![b"@example.com".to_vec()]));
        assert!(required_literals(r"\w+").is_none());
        assert!(required_literals("a|bc").is_none());
    }
}
