//! `[fuzzy]`: near-copy detection's settings, owned and checked here.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::setting::InvalidSetting;

/// Fuzzy (near-copy) detection: which parts get digests, when a near-copy
/// matches, how long reports live, and the symbol of each list flag.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuzzyConfig {
    /// Text parts with fewer normalised words get no digest.
    pub min_words: usize,
    /// Attachments and images smaller than this get no digest.
    pub min_bytes: usize,
    /// The least fraction of equal min-hash values that counts as a match.
    pub min_similarity: f64,
    /// Reports not repeated for this many days are ignored and dropped at
    /// compaction; 0 = never.
    pub expire_days: u64,
    /// `fuzzy add` compacts at the end once the journal is this large.
    pub auto_compact_journal_bytes: u64,
    /// List flag (as a string key: "1") → symbol.
    pub flags: BTreeMap<String, FuzzyFlagConfig>,
}

/// One fuzzy list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuzzyFlagConfig {
    pub symbol: String,
    /// Reports at which the symbol reaches (nearly) full strength, as
    /// rspamd's `max_score`: strength = similarity × tanh(e × weight / max_score).
    pub max_score: f64,
}

impl FuzzyConfig {
    /// The configured list of `flag`, if any.
    pub fn flag(&self, flag: u32) -> Option<&FuzzyFlagConfig> {
        self.flags.get(&flag.to_string())
    }

    pub fn params(&self) -> super::FuzzyParams {
        super::FuzzyParams {
            min_words: self.min_words,
            min_bytes: self.min_bytes,
        }
    }

    pub fn expire_secs(&self) -> u64 {
        self.expire_days.saturating_mul(86_400)
    }

    /// Checks the section's values (keys relative to `[fuzzy]`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (flag, list) in &self.flags {
            if flag.parse::<u32>().is_err() {
                return Err(InvalidSetting::new(
                    format!("flags.{flag}"),
                    "a flag is a number",
                ));
            }
            if list.max_score.is_nan() || list.max_score <= 0.0 {
                return Err(InvalidSetting::new(
                    format!("flags.{flag}.max_score"),
                    "must be > 0",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.min_similarity) {
            return Err(InvalidSetting::new("min_similarity", "must be in [0, 1]"));
        }
        Ok(())
    }
}
