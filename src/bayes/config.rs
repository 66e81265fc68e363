//! `[bayes]`: the count-based classifier's settings, owned and checked here.

use serde::Deserialize;

use crate::setting::InvalidSetting;

/// How the statistical classifier turns token counts into a verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesConfig {
    /// Learned messages needed in *each* class before the count-based
    /// Bayes speaks (the discriminative classifier has its own,
    /// `classifier.min_learns`).
    pub min_learns: u64,
    pub combiner: Combiner,
    pub robinson_strength: f64,
    pub robinson_x: f64,
    pub min_token_hits: u32,
    pub min_deviation: f64,
    pub max_tokens: usize,
    /// Byte-gram buckets used per message, besides the tokens (0 = none).
    pub max_grams: usize,
    /// `log_odds`: the summed log-likelihood ratio is divided by this before
    /// squashing (naive Bayes counts correlated features as independent).
    pub log_odds_scale: f64,
    /// BAYES_SPAM's points are its weight × tanh(z / this), z the verdict's
    /// log-odds: 2 gives the weight × (2p − 1), as rspamd scales by
    /// confidence, so the points rise steeply to the add-header threshold.
    pub spam_points_span: f64,
    /// BAYES_HAM's points are its weight × tanh(|z| / this). Wider than the
    /// spam side so the points keep ordering the ham Bayes is sure of instead
    /// of all sitting at the full weight, where any rule point would lift a
    /// ham above a spam Bayes missed (tools/rules-fit, on the train half).
    pub ham_points_span: f64,
    pub osb_window: usize,
    pub auto_compact_journal_bytes: u64,
}

/// The way per-token probabilities are combined into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combiner {
    /// Robinson–Fisher inverse chi-square, as bogofilter and rspamd use.
    ChiSquare,
    /// The sum of per-token log-odds (naive Bayes over token presence).
    LogOdds,
}

impl BayesConfig {
    /// Checks the section's values (keys relative to `[bayes]`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(0.0..1.0).contains(&self.robinson_x) || self.robinson_strength < 0.0 {
            return Err(InvalidSetting::new(
                "robinson_x",
                "must be in [0, 1), and robinson_strength >= 0",
            ));
        }
        if !(self.spam_points_span > 0.0 && self.ham_points_span > 0.0) {
            return Err(InvalidSetting::new(
                "spam_points_span",
                "spam_points_span and ham_points_span must be positive",
            ));
        }
        if self.osb_window == 0 || self.osb_window > 8 {
            return Err(InvalidSetting::new("osb_window", "must be between 1 and 8"));
        }
        Ok(())
    }
}
