//! BAYES_SPAM / BAYES_HAM from the statistical classifier.
//!
//! As rspamd does, the symbol's strength is the classifier's confidence, so
//! its points scale from 0 (p = 0.5) towards the full configured weight, and
//! the probability is shown as an option (`99.50%`). Confidence is
//! tanh(|log-odds| / span), one span per side (`spam_points_span`,
//! `ham_points_span`): a span of 2 is rspamd's |2p − 1|.

use crate::bayes::BayesConfig;
use crate::bayes::{Abstain, Classification, TokenCounts, classify};
use crate::classifier::ClassifierConfig;
use crate::classifier::{ModelFeatures, Weights, sigmoid, text_log_odds_only};
use crate::context::ScanContext;
use crate::symbol::Symbol;

/// BAYES_SPAM / BAYES_HAM from the discriminative classifier: points are
/// `points_per_logit ×` the text features' calibrated log-odds
/// (`classifier::Calibration`) `+ shift`, unsquashed
/// (clamped only at `max_points`), so a verdict twice as sure scores twice
/// as far out; the symbol's weight multiplies them (1 and −1 by default).
/// Silent until each class has `min_learns` learns and the model has
/// weights.
pub fn check_classifier(
    features: &ModelFeatures,
    weights: &impl Weights,
    learns: (u64, u64),
    min_learns: u64,
    config: &ClassifierConfig,
) -> (Option<Symbol>, Result<Classification, Abstain>) {
    let (spam, ham) = learns;
    if spam < min_learns.max(1) || ham < min_learns.max(1) {
        return (
            None,
            Err(Abstain::NotEnoughLearns {
                spam,
                ham,
                required: min_learns.max(1),
            }),
        );
    }
    let raw_log_odds = text_log_odds_only(weights, features);
    let log_odds = weights.calibration().apply(raw_log_odds);
    let classification = Classification {
        probability: sigmoid(log_odds),
        log_odds,
        tokens_used: features.text.len(),
        contributions: Vec::new(),
    };
    let points = (config.points_per_logit * log_odds + config.shift)
        .clamp(-config.max_points, config.max_points);
    let symbol = if !points.is_finite() || points == 0.0 {
        None
    } else {
        let name = if points > 0.0 {
            "BAYES_SPAM"
        } else {
            "BAYES_HAM"
        };
        Some(
            Symbol::new(name)
                .with_strength(points.abs())
                .with_option(format!("{:.2}%", classification.probability * 100.0)),
        )
    };
    (symbol, Ok(classification))
}

/// Classifies and turns the answer into at most one symbol.
pub fn check(
    context: &ScanContext<'_>,
    counts: &impl TokenCounts,
    config: &BayesConfig,
) -> (Option<Symbol>, Result<Classification, Abstain>) {
    let features = &context.features;
    let result = classify(&features.tokens, &features.grams, counts, config);
    let symbol = result.as_ref().ok().and_then(|c| {
        let (name, confidence) = graded(c.log_odds, config);
        if confidence.is_nan() || confidence <= 0.0 {
            return None;
        }
        Some(
            Symbol::new(name)
                .with_strength(confidence)
                .with_option(format!("{:.2}%", c.probability * 100.0)),
        )
    });
    (symbol, result)
}

/// The symbol a verdict of these log-odds gets, and the fraction of its
/// weight it scores.
fn graded(log_odds: f64, config: &BayesConfig) -> (&'static str, f64) {
    let (name, span) = if log_odds > 0.0 {
        ("BAYES_SPAM", config.spam_points_span)
    } else {
        ("BAYES_HAM", config.ham_points_span)
    };
    (name, (log_odds.abs() / span).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(spam_span: f64, ham_span: f64) -> BayesConfig {
        let mut bayes = Config::embedded().bayes;
        bayes.spam_points_span = spam_span;
        bayes.ham_points_span = ham_span;
        bayes
    }

    #[test]
    fn a_span_of_two_is_rspamds_confidence() {
        let config = config(2.0, 2.0);
        for z in [-30.0, -3.0, -0.5, 0.5, 3.0, 30.0] {
            let p = 1.0 / (1.0 + f64::exp(-z));
            let (_, confidence) = graded(z, &config);
            assert!(
                (confidence - ((p - 0.5) * 2.0).abs()).abs() < 1e-12,
                "z = {z}"
            );
        }
    }

    #[test]
    fn the_side_decides_symbol_and_span() {
        let config = config(2.0, 10.0);
        assert_eq!(graded(4.0, &config).0, "BAYES_SPAM");
        assert_eq!(graded(-4.0, &config).0, "BAYES_HAM");
        // The wide ham side still tells a sure ham from a doubtful one where
        // the spam side's span would give both the full weight.
        let (_, sure) = graded(-40.0, &config);
        let (_, doubtful) = graded(-8.0, &config);
        assert!(sure - doubtful > 0.3, "{sure} vs {doubtful}");
        let (_, spam_side) = graded(8.0, &config);
        assert!(spam_side > 0.99);
    }
}
