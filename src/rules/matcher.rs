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
//! 2. `RegexSet`s of [`SET_SIZE`] cover the patterns with no usable literal
//!    (one whose match can be as short as [`SHORT_MATCH`] is searched
//!    alone: a set would stop at its every match);
//! 3. only candidates from step 1 run their own regex: anchored at each
//!    place one of its prefix literals occurs, for a pattern known by its
//!    suffix literals only up to the last of them, for one known by an
//!    inner literal one search;
//! 4. a fancy pattern whose relaxed form matched runs fancy-regex only
//!    where a match could be (`matcher/fancy.rs`: anchored at its prefix
//!    literals, over windows ending at its suffix literals, or at its
//!    relaxed form's own starts), each try under [`BACKTRACK_LIMIT`], all
//!    under the caller's deadline; what it cannot decide is reported in
//!    [`Found`], never taken as no match;
//! 5. a pattern that carries a domain list (SpamAssassin's FreeMail checks)
//!    runs only on a text where an address's domain is on it
//!    (`domains.rs`).
//!
//! An empty text (a header the message does not have) gets the answer
//! worked out once when the matcher was built.
//!
//! So the text is read a few times whatever the number of patterns, and
//! the per-pattern cost is paid only by patterns whose literals occur, in
//! proportion to the stretch of text they could match, not to its length.
//! Nothing per message is sized by the number of patterns.

mod fancy;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use regex_automata::meta;
use regex_automata::nfa::thompson::WhichCaptures;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::domains::DomainGate;
use super::literals::{Side, required_literals};
pub use super::pattern::{BACKTRACK_LIMIT, Compiled, Counter, Exhausted};
use super::pattern::{
    REGEX_SIZE_LIMIT, Reverse, ascii_word_boundaries, build_std, build_std_capturing, first_line,
};
use super::spec::PatternError;

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
/// the body's no-literal pass 3.1 ms per message as one set and 2.3 ms in
/// sets of 64. With the short patterns searched alone ([`SHORT_MATCH`]),
/// callgrind on 600 messages scanned twice (the second time with the
/// DFAs' states built) counted the scan's instructions at 1.06 (sets of
/// 2), 1.00 (4), 0.99 (8) and 1.01 (16) on the first pass, and 0.95 for
/// sets of 8 against 4 on the second.
const SET_SIZE: usize = 8;
/// A no-literal pattern whose shortest match is this long or shorter
/// (`\S`, `e`, `\d`, `q[^u]`) is searched alone instead of in a set. Such
/// a pattern matches at nearly every position of a text when it matches
/// at all, and a set's search reports every match of every member, so it
/// stopped at almost every byte for it (on 600 messages of the
/// SpamAssassin corpus, 2,500 returns per message); alone, a search for it
/// ends at its first match.
const SHORT_MATCH: usize = 2;
/// Anchored tries per pattern and text; past them one unanchored search
/// from the next occurrence settles it (a literal occurring hundreds of
/// times, each try running to the end of a long line, would cost more).
const MAX_ANCHORED_TRIES: usize = 8;

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
    /// Patterns with no literal and a short match ([`SHORT_MATCH`]),
    /// each searched alone.
    short: Vec<u32>,
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
    /// Patterns run only on a text that names a domain of their list
    /// (`domains.rs`), kept out of the prefilter and the sets.
    looked_up: Vec<(u32, Arc<DomainGate>)>,
    /// What matches the empty text, worked out once when building: most
    /// header targets name a header the message does not have, and their
    /// answer never changes.
    on_empty: Option<Vec<u32>>,
}

/// A stage of [`MultiMatcher::matches_timed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The Aho-Corasick pass over the literals.
    Prefilter,
    /// One set of patterns with no literal, by its number
    /// ([`MultiMatcher::set_members`] names its patterns).
    Set(usize),
    /// One pattern confirmed or run on its own.
    Pattern(u32),
}

/// How a [`MultiMatcher`] split its patterns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatcherShape {
    pub prefiltered: usize,
    /// Without a literal: in a set, or searched alone (`alone`).
    pub in_set: usize,
    /// Without a literal and searched alone ([`SHORT_MATCH`]).
    pub alone: usize,
    /// Run by fancy-regex on every text.
    pub fancy: usize,
    /// Run by fancy-regex only where their relaxed form matched (counted
    /// in `prefiltered` or `in_set` too, as their relaxed form is).
    pub gated: usize,
    /// Run only on texts that name a domain of their list.
    pub looked_up: usize,
}

/// Whether `source`'s shortest match is at most [`SHORT_MATCH`] long.
fn matches_short(source: &str) -> bool {
    regex_syntax::Parser::new()
        .parse(source)
        .ok()
        .and_then(|hir| hir.properties().minimum_len())
        .is_some_and(|shortest| shortest <= SHORT_MATCH)
}

impl MultiMatcher {
    /// Builds the matcher over already-compiled patterns (`sources[i]` is
    /// the source `patterns[i]` was compiled from, `lookups[i]` the domain
    /// list its text must name, if any; missing entries are none).
    pub fn build(
        patterns: Vec<Compiled>,
        sources: &[String],
        lookups: Vec<Option<Arc<DomainGate>>>,
    ) -> Result<MultiMatcher, PatternError> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_owner = Vec::new();
        let mut set_sources = Vec::new();
        let mut set_members = Vec::new();
        let mut short = Vec::new();
        let mut fancy = Vec::new();
        let mut side = vec![Side::Prefix; patterns.len()];
        let mut reverse: Vec<Option<Box<Reverse>>> = Vec::new();
        reverse.resize_with(patterns.len(), || None);
        let mut gates: Vec<Option<Compiled>> = Vec::new();
        gates.resize_with(patterns.len(), || None);
        let mut finders: Vec<Option<meta::Regex>> = Vec::new();
        finders.resize_with(patterns.len(), || None);
        let mut looked_up = Vec::new();
        let mut lookups = lookups.into_iter();
        for (index, (pattern, source)) in patterns.iter().zip(sources).enumerate() {
            let at = index;
            let index = index as u32;
            if let Some(gate) = lookups.next().flatten() {
                looked_up.push((index, gate));
                continue;
            }
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
                None if matches_short(&searched) => {
                    short.push(index);
                    false
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
        let mut matcher = MultiMatcher {
            patterns,
            prefilter,
            literal_owner,
            side,
            reverse,
            sets,
            set_members,
            short,
            gates,
            finders,
            fancy,
            looked_up,
            on_empty: None,
        };
        let mut found = Found::default();
        matcher.matches_timed("", &mut found, None, None);
        if found.exhausted.is_empty() && found.over_budget.is_empty() {
            matcher.on_empty = Some(found.matched);
        }
        Ok(matcher)
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// The patterns of no-literal set `number` ([`Stage::Set`]).
    pub fn set_members(&self, number: usize) -> &[u32] {
        let Some((set, first)) = self.sets.get(number) else {
            return &[];
        };
        let members = self.set_members.get(*first..).unwrap_or_default();
        members.get(..set.len()).unwrap_or(members)
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
            prefiltered: self.patterns.len()
                - self.set_members.len()
                - self.short.len()
                - self.fancy.len()
                - self.looked_up.len(),
            in_set: self.set_members.len() + self.short.len(),
            alone: self.short.len(),
            fancy: self.fancy.len(),
            gated: self.gates.iter().filter(|g| g.is_some()).count(),
            looked_up: self.looked_up.len(),
        }
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
        if text.is_empty()
            && let Some(matched) = &self.on_empty
        {
            found.matched.extend_from_slice(matched);
            return;
        }
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
            for (number, (set, first)) in self.sets.iter().enumerate() {
                timed(Stage::Set(number), &mut || {
                    in_sets.extend(set.matches(text).iter().map(|hit| first + hit));
                    true
                });
            }
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
        for &index in &self.short {
            if timed(Stage::Pattern(index), &mut || {
                self.searched(index)
                    .is_some_and(|searched| searched.is_match(text))
                    && self.confirmed(index, text, deadline, found)
            }) {
                found.matched.push(index);
            }
        }
        for &index in &self.fancy {
            if timed(Stage::Pattern(index), &mut || {
                self.run_fancy(index, text, deadline, found)
            }) {
                found.matched.push(index);
            }
        }
        for (index, gate) in &self.looked_up {
            if timed(Stage::Pattern(*index), &mut || {
                gate.admits(text) && self.run_fancy(*index, text, deadline, found)
            }) {
                found.matched.push(*index);
            }
        }
    }

    /// What the one-pass search runs for pattern `index`: its relaxed
    /// form when it has one, else the pattern itself.
    fn searched(&self, index: u32) -> Option<&Compiled> {
        let gate = self.gates.get(index as usize).and_then(Option::as_ref);
        gate.or_else(|| self.patterns.get(index as usize))
    }

    /// Confirms pattern `owner` from its literal occurrences `hits`
    /// (sorted by start).
    fn candidate_matches(&self, owner: u32, hits: &[(u32, usize, usize)], text: &str) -> bool {
        let Some(pattern) = self.searched(owner) else {
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
        MultiMatcher::build(compiled, &sources, Vec::new()).unwrap()
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
    fn the_empty_text_gets_the_answer_worked_out_when_building() {
        let m = matcher(&[r"^$", r"(?i)viagra", r"^(?!x)", r"\A\z|y", r"a*"]);
        assert!(m.on_empty.is_some());
        assert_eq!(hits(&m, ""), vec![true, false, true, true, true]);
        assert_eq!(hits(&m, "y"), vec![false, false, true, true, true]);
    }

    #[test]
    fn fancy_patterns_past_the_limit_or_the_deadline_are_reported() {
        // The relaxed form (`((a|aa)+)x(?:(?:a|aa)+)b`) matches; fancy-regex
        // tries every way to split each run of `a` and gives up.
        let m = matcher(&[r"((a|aa)+)x\1b", r"(?<!x)aaa"]);
        let text = format!("{}x{}b", "a".repeat(40), "a".repeat(41));
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

    #[test]
    fn short_patterns_are_searched_alone_and_answer_as_in_a_set() {
        let patterns = [
            r"\S",
            r"(?m)e",
            r"q[^u]",
            r"\d{3}x",
            r"[A-Z]{5,}\d",
            r"(?<=y)q[^u]",
        ];
        let m = matcher(&patterns);
        // The first three and the relaxed form of the last are short; two
        // patterns are left for the set.
        assert_eq!(m.short.len(), 4);
        assert_eq!(m.set_members.len(), 2);
        assert_eq!(m.shape().in_set, 6);
        for text in ["", "   ", "qat 123x", "ABCDEF7 e", "yqa", "Qatar"] {
            let want: Vec<bool> = patterns
                .iter()
                .map(|p| fancy_regex::Regex::new(p).unwrap().is_match(text).unwrap())
                .collect();
            assert_eq!(hits(&m, text), want, "{text:?}");
        }
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
