//! Where a rule scan's time goes, for `chaff rules stats --timing`: an admin
//! sees what a rule file costs on their mail before deploying it.
//!
//! The scan path passes no timing (`None`), so it reads no clock; only
//! `RuleSet::check_timed` fills a [`RuleTimes`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Time spent per rule, per pattern group and per text built.
#[derive(Debug, Default, Clone)]
pub struct RuleTimes {
    spent: HashMap<String, Spent>,
    /// Messages timed.
    pub messages: u64,
    /// The [`SLOWEST_KEPT`] messages whose rules took longest: where the
    /// worst case is, which a mean hides.
    slowest: Vec<(Duration, String)>,
}

/// Slowest messages a [`RuleTimes`] keeps.
pub const SLOWEST_KEPT: usize = 10;

/// Total time of one entry over every message, and how often it ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spent {
    pub total: Duration,
    pub runs: u64,
}

impl RuleTimes {
    pub fn add(&mut self, what: impl Into<String>, took: Duration) {
        let entry = self.spent.entry(what.into()).or_default();
        entry.total += took;
        entry.runs += 1;
    }

    /// Times `work` under `what`.
    pub fn time<R>(&mut self, what: impl Into<String>, work: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = work();
        self.add(what, started.elapsed());
        result
    }

    pub fn merge(&mut self, other: RuleTimes) {
        for (what, spent) in other.spent {
            let entry = self.spent.entry(what).or_default();
            entry.total += spent.total;
            entry.runs += spent.runs;
        }
        self.messages += other.messages;
        for (took, origin) in other.slowest {
            self.message_took(origin, took);
        }
    }

    /// Notes that the rules took `took` on the message from `origin`.
    pub fn message_took(&mut self, origin: impl Into<String>, took: Duration) {
        if self.slowest.len() == SLOWEST_KEPT
            && self.slowest.last().is_some_and(|(least, _)| *least >= took)
        {
            return;
        }
        self.slowest.push((took, origin.into()));
        self.slowest
            .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        self.slowest.truncate(SLOWEST_KEPT);
    }

    /// The slowest messages, slowest first.
    pub fn slowest(&self) -> &[(Duration, String)] {
        &self.slowest
    }

    /// Every entry, the costliest first.
    pub fn costliest(&self) -> Vec<(&str, Spent)> {
        let mut entries: Vec<(&str, Spent)> =
            self.spent.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        entries.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        entries
    }

    /// Time over every entry.
    pub fn total(&self) -> Duration {
        self.spent.values().map(|s| s.total).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_add_up_and_sort_by_cost() {
        let mut times = RuleTimes::default();
        times.add("a", Duration::from_millis(2));
        times.add("b", Duration::from_millis(5));
        times.add("a", Duration::from_millis(1));
        let mut other = RuleTimes::default();
        other.add("a", Duration::from_millis(4));
        other.messages = 3;
        times.merge(other);
        let costliest = times.costliest();
        assert_eq!(costliest[0].0, "a");
        assert_eq!(costliest[0].1.total, Duration::from_millis(7));
        assert_eq!(costliest[0].1.runs, 3);
        assert_eq!(times.total(), Duration::from_millis(12));
        assert_eq!(times.messages, 3);
    }

    #[test]
    fn the_slowest_messages_are_kept_slowest_first() {
        let mut times = RuleTimes::default();
        for n in 0..(SLOWEST_KEPT as u64 + 5) {
            times.message_took(format!("m{n}"), Duration::from_millis(n * 7 % 19));
        }
        let slowest = times.slowest();
        assert_eq!(slowest.len(), SLOWEST_KEPT);
        assert_eq!(slowest[0], (Duration::from_millis(18), "m8".to_owned()));
        assert!(slowest.windows(2).all(|w| w[0].0 >= w[1].0));
        let mut other = RuleTimes::default();
        other.message_took("late", Duration::from_secs(1));
        times.merge(other);
        assert_eq!(times.slowest()[0].1, "late");
    }
}
