//! `[rules]`: which rule files load, owned here.

use std::path::PathBuf;

use serde::Deserialize;

/// Rule files, SpamAssassin rule files and maps (see `rules/README.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// `false` turns every rule and map off (Bayes and the other checks stay).
    pub enabled: bool,
    /// The default ruleset compiled into the binary (`rules/*.toml`).
    pub builtin: bool,
    /// More rule files, or directories of `*.toml` rule files.
    pub paths: Vec<PathBuf>,
    /// SpamAssassin `.cf` files, or directories of them.
    pub spamassassin: Vec<PathBuf>,
    /// Which of SpamAssassin's four scores to use (0: no Bayes, no network;
    /// 1: network; 2: Bayes; 3: both).
    pub spamassassin_score_set: usize,
    /// Rule and map files are checked for changes at most this often (the
    /// daemon reloads them on change, and on SIGHUP).
    pub reload_check_secs: u64,
    /// Rule time per message. Past it the patterns that need fancy-regex's
    /// backtracking engine (the only ones whose cost a text can blow up)
    /// are not run, and `CHAFF_RULES_INCOMPLETE` names them. Inside the
    /// scan time limit, so a message of pathological text still gets a
    /// verdict from everything else. 0: no budget.
    pub budget_ms: u64,
}
