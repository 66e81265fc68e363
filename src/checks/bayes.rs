//! BAYES_SPAM / BAYES_HAM from the statistical classifier.
//!
//! As rspamd does, the symbol's strength is the classifier's confidence, so
//! its points scale from 0 (p = 0.5) to the full configured weight (p = 0 or
//! 1), and the probability is shown as an option (`99.50%`).

use crate::bayes::{Abstain, Classification, TokenCounts, classify};
use crate::config::BayesConfig;
use crate::extract::Features;
use crate::symbol::Symbol;

/// Classifies and turns the answer into at most one symbol.
pub fn check(
    features: &Features,
    counts: &impl TokenCounts,
    config: &BayesConfig,
) -> (Option<Symbol>, Result<Classification, Abstain>) {
    let result = classify(&features.tokens, &features.grams, counts, config);
    let symbol = result.as_ref().ok().and_then(|c| {
        let confidence = ((c.probability - 0.5) * 2.0).abs();
        if confidence <= 0.0 {
            return None;
        }
        let name = if c.probability > 0.5 {
            "BAYES_SPAM"
        } else {
            "BAYES_HAM"
        };
        Some(
            Symbol::new(name)
                .with_strength(confidence)
                .with_option(format!("{:.2}%", c.probability * 100.0)),
        )
    });
    (symbol, result)
}
