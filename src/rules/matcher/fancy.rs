//! How a fancy-regex pattern is confirmed once the one-pass search found
//! its relaxed form (`relax.rs`): only where a match could start or lie.
//!
//! fancy-regex's own search starts its backtracking VM at every position
//! of the text; over a header block or a whole message body that alone
//! was most of what SpamAssassin's look-around and back-reference rules
//! cost. The relaxed form matches wherever the exact pattern does (same
//! start, same end), so whatever places the relaxed form (its prefix
//! literals, the reverse DFA from its suffix literals, its own leftmost
//! starts) places every possible exact match too. Each try has the
//! backtracking limit ([`crate::rules::pattern::BACKTRACK_LIMIT`]) to
//! itself and checks the message's rule budget; what no try could decide
//! is reported in [`Found`], never taken as no match.

use std::time::Instant;

use regex_automata::{Input, meta};

use super::{Compiled, Found, MultiMatcher};
use crate::rules::pattern::Exhausted;

/// fancy-regex tries per pattern and text, each anchored where its relaxed
/// form could start ([`MultiMatcher::run_fancy_at`]) or over a window where
/// it could lie ([`MultiMatcher::run_fancy_before`]); past them one search
/// settles it.
const MAX_FANCY_STARTS: usize = 64;

/// The tries of one fancy pattern on one text: each checks the message's
/// rule budget first, and a try that hit the backtracking limit is
/// remembered, so that no match found anywhere is reported as undecided.
struct Trial<'r> {
    exact: &'r fancy_regex::Regex,
    deadline: Option<Instant>,
    exhausted: bool,
}

/// The message's rule budget was spent before a try.
struct OverBudget;

impl<'r> Trial<'r> {
    fn new(exact: &'r fancy_regex::Regex, deadline: Option<Instant>) -> Trial<'r> {
        Trial {
            exact,
            deadline,
            exhausted: false,
        }
    }

    /// Whether `exact` matches `input` (a try that gave up counts as no).
    fn run(&mut self, input: fancy_regex::RegexInput<'_, str>) -> Result<bool, OverBudget> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(OverBudget);
        }
        Ok(self.exact.is_match_input(input).unwrap_or_else(|_| {
            self.exhausted = true;
            false
        }))
    }

    /// Pattern `index`'s answer from a try's outcome once it is final, or
    /// once no try is left (`Ok(false)`): what could not be decided goes
    /// into `found`.
    fn settle(self, outcome: Result<bool, OverBudget>, index: u32, found: &mut Found) -> bool {
        match outcome {
            Ok(true) => true,
            Ok(false) => {
                if self.exhausted {
                    found.exhausted.push(index);
                }
                false
            }
            Err(OverBudget) => {
                found.over_budget.push(index);
                false
            }
        }
    }
}

impl MultiMatcher {
    /// Whether pattern `index`, found by the one-pass search, matches:
    /// a fancy pattern found by its relaxed form is run now, on this text.
    pub(super) fn confirmed(
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
        let mut trial = Trial::new(exact, deadline);
        let mut from = 0;
        for tries in 0..=MAX_FANCY_STARTS {
            let Some(candidate) = finder.find(Input::new(text).range(from..)) else {
                break;
            };
            let start = candidate.start();
            let input = fancy_regex::RegexInput::new(text).from_pos(start);
            let last = tries == MAX_FANCY_STARTS;
            let outcome = trial.run(if last { input } else { input.anchored(true) });
            if !matches!(outcome, Ok(false)) {
                return trial.settle(outcome, index, found);
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
        trial.settle(Ok(false), index, found)
    }

    /// Runs fancy pattern `index` on `text`, unless the budget is spent;
    /// what it could not decide goes into `found`.
    pub(super) fn run_fancy(
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
    /// first, then fancy-regex anchored there, each try with the
    /// backtracking limit to itself; past [`MAX_FANCY_STARTS`] tries one
    /// search from the next start settles it, so the worst case stays a
    /// bounded number of limits per text.
    pub(super) fn run_fancy_at(
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
        let mut trial = Trial::new(exact, deadline);
        let mut tries = 0;
        for (at, &start) in starts.iter().enumerate() {
            if at > 0 && starts.get(at - 1) == Some(&start) {
                continue;
            }
            if !gate.is_match_in(text, start..text.len(), true) {
                continue;
            }
            let input = fancy_regex::RegexInput::new(text).from_pos(start);
            let last = tries == MAX_FANCY_STARTS;
            let outcome = trial.run(if last { input } else { input.anchored(true) });
            if !matches!(outcome, Ok(false)) {
                return trial.settle(outcome, index, found);
            }
            if last {
                break;
            }
            tries += 1;
        }
        trial.settle(Ok(false), index, found)
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
    /// at every position of a whole body (`__LOTTO_ADMITS_1`, known by its
    /// `lotto`, `promo`, `jackpot` endings).
    pub(super) fn run_fancy_before(
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
            // No reverse DFA: placed by its relaxed form's own starts.
            return self.candidate_matches(index, hits, text)
                && self.confirmed(index, text, deadline, found);
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
        let mut trial = Trial::new(exact, deadline);
        for (start, end) in merged {
            let outcome = trial.run(fancy_regex::RegexInput::new(text).range(start..end));
            if !matches!(outcome, Ok(false)) {
                return trial.settle(outcome, index, found);
            }
        }
        trial.settle(Ok(false), index, found)
    }
}
