//! Why a message scored as it did: the count-based Bayes' strongest tokens,
//! or the classifier's strongest features and each rule's fitted weight
//! (`chaff scan --explain`).

use std::collections::HashMap;

use super::Engine;
use crate::bayes::{self, Contribution};
use crate::classifier::{ModelFeatures, Weights};
use crate::context::ScanContext;
use crate::extract::Features;
use crate::message::Envelope;

impl Engine {
    /// The tokens that weighed most in the statistical verdict, strongest
    /// first, with their text.
    pub fn explain(&self, raw: &[u8], limit: usize) -> Vec<ExplainedToken> {
        let message = self.parse(raw);
        let features = Features::statistical(raw, &message, &self.tokenizer);
        let Ok(classification) = bayes::classify(
            &features.tokens,
            &features.grams,
            &self.store,
            &self.config.bayes,
        ) else {
            return Vec::new();
        };
        let mut texts: HashMap<bayes::Feature, String> = HashMap::new();
        self.tokenizer
            .tokenize(&message, &mut |hash: u64, text: &dyn Fn() -> String| {
                texts
                    .entry(bayes::Feature::Token(hash))
                    .or_insert_with(text);
            });
        for (bucket, text) in crate::extract::grams::gram_texts(raw) {
            texts.entry(bayes::Feature::Gram(bucket)).or_insert(text);
        }
        classification
            .contributions
            .into_iter()
            .take(limit)
            .map(|contribution| ExplainedToken {
                text: texts
                    .get(&contribution.feature)
                    .cloned()
                    .unwrap_or_else(|| format!("{:?}", contribution.feature)),
                contribution,
            })
            .collect()
    }

    /// The classifier's features that weighed most in a message's verdict
    /// (`limit` of them, by points), with their text, and every rule that
    /// fired with its configured and fitted weight.
    pub fn explain_classifier(&self, raw: &[u8], envelope: &Envelope, limit: usize) -> Explanation {
        let active = self.active();
        let message = self.parse(raw);
        let model = ModelFeatures::of_message(&message, raw, &self.tokenizer, []);
        let (raw_log_odds, weights) = crate::classifier::text_log_odds(&self.store, &model);
        let calibration = self.store.calibration();
        let log_odds = calibration.apply(raw_log_odds);
        // Each feature's points as BAYES_SPAM counts them: calibrated.
        let scale = self.config.classifier.points_per_logit * calibration.slope;
        let mut texts: HashMap<u32, String> = HashMap::new();
        self.tokenizer
            .tokenize(&message, &mut |hash: u64, text: &dyn Fn() -> String| {
                texts
                    .entry(crate::classifier::token_index(hash))
                    .or_insert_with(text);
            });
        for (index, text) in crate::classifier::head_gram_texts(raw) {
            texts.entry(index).or_insert(text);
        }
        let mut ranked: Vec<(u32, f32)> = model
            .text
            .iter()
            .zip(&weights)
            .map(|(&index, &weight)| (index, weight))
            .collect();
        ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        let features = ranked
            .into_iter()
            .take(limit)
            .map(|(index, weight)| ExplainedFeature {
                text: texts
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| format!("feature #{index}")),
                points: f64::from(weight) * scale,
                weight,
            })
            .collect();
        let context = ScanContext::new(raw, envelope, message, Features::default());
        let rules = active
            .rule_hits_of(&context)
            .into_iter()
            .filter(|name| active.is_rule_feature(name))
            .map(|name| {
                let symbol = active.config.symbols.get(&name);
                let configured = symbol.map_or(0.0, |s| s.weight);
                ExplainedRule {
                    fitted: active
                        .fitted_weight(&name, &self.store)
                        .unwrap_or(configured),
                    pinned: symbol.is_some_and(|s| s.pinned),
                    configured,
                    name,
                }
            })
            .collect();
        Explanation {
            log_odds,
            bias_points: self.store.bias() * scale
                + calibration.intercept * self.config.classifier.points_per_logit,
            features,
            rules,
        }
    }
}
/// One token's part in a verdict, with its text.
#[derive(Debug, Clone)]
pub struct ExplainedToken {
    pub text: String,
    pub contribution: Contribution,
}

/// One feature's part in the classifier's verdict, for `--explain`.
#[derive(Debug, Clone)]
pub struct ExplainedFeature {
    /// The token's text, `bytes "…"` for a byte 4-gram.
    pub text: String,
    /// Points it adds to this message (its weight × points per logit).
    pub points: f64,
    /// Its weight in the model: log-odds, before calibration.
    pub weight: f32,
}

/// A rule that fired, with its configured and fitted weight.
#[derive(Debug, Clone)]
pub struct ExplainedRule {
    pub name: String,
    pub configured: f64,
    /// What it scores here: configured + the classifier's correction
    /// (configured when pinned or when the classifier abstains).
    pub fitted: f64,
    pub pinned: bool,
}

/// Why the classifier scored a message as it did.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Log-odds of the text features (bias included).
    pub log_odds: f64,
    pub bias_points: f64,
    /// Features that weighed most, by |points|.
    pub features: Vec<ExplainedFeature>,
    pub rules: Vec<ExplainedRule>,
}
