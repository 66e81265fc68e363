//! Training to convergence over the stored samples.
//!
//! The objective is L2-regularised logistic loss with the classes balanced:
//! `Σ_i s_i · log(1 + e^(−y_i z_i)) + λ/2 ‖w_text‖² + λ_rule/2 ‖w_rule‖²`,
//! where `s_i` weighs each class to half the total (a site that learned ten
//! times more spam than ham gets no bias towards spam from that alone) and
//! `z_i` includes the rules' configured points as an offset, so the rule
//! weights are corrections pulled towards the configured values.
//!
//! AdaGrad over epochs until the objective stops falling. The order of the
//! samples in each epoch is a permutation keyed by each sample's digest and
//! the epoch number, never the order they were learned in: the same samples
//! train the same weights, bit for bit, whatever order they arrived in and
//! however many threads the machine has (training is one thread; scans go
//! on beside it). The L2 term is spread over a feature's appearances (each
//! of a feature's `df` samples applies `λ w / df`), so an epoch applies it
//! once, as the full objective does, without touching every weight.

use std::time::Instant;

use super::{WEIGHT_COUNT, sigmoid};
use crate::store::Class;

/// What training reads: the stored samples.
pub trait Samples {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `i`: its digest (for the epoch order), class, and features
    /// decoded into `text` and `rules` (cleared first). `None` for a sample
    /// that does not decode, which training skips.
    fn get(&self, i: usize, text: &mut Vec<u32>, rules: &mut Vec<u32>) -> Option<(u128, Class)>;
}

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct TrainParams {
    /// L2 strength on token and gram weights (liblinear's 1/C).
    pub l2: f64,
    /// L2 strength on rule corrections, stronger: a rule keeps its
    /// configured weight until the site's mail says otherwise.
    pub rule_l2: f64,
    /// AdaGrad's base step.
    pub learning_rate: f64,
    pub max_epochs: u32,
    /// Stop once an epoch lowers the objective by less than this fraction.
    pub tolerance: f64,
}

/// The rules' side of training: each rule index's configured offset in
/// log-odds (`c_r / k`) and whether its correction may move (pinned weights
/// never do).
pub trait RuleTerms {
    fn offset(&self, index: u32) -> f64;
    fn trainable(&self, index: u32) -> bool;
}

/// A trained model.
#[derive(Debug, Clone)]
pub struct Trained {
    pub weights: Vec<f32>,
    pub bias: f64,
    pub epochs: u32,
    /// The objective per unit of sample weight after the last epoch.
    pub loss: f64,
    pub micros: u64,
    pub spam_samples: u64,
    pub ham_samples: u64,
}

/// Per-weight training state, together so one feature is one cache line.
#[derive(Clone, Copy, Default)]
struct Slot {
    weight: f32,
    squared_gradients: f32,
    /// λ / df of this index, for the spread L2 term.
    l2_share: f32,
}

/// Trains from zero over every sample until the objective converges.
pub fn train(samples: &dyn Samples, rules: &dyn RuleTerms, params: &TrainParams) -> Trained {
    let started = Instant::now();
    let mut text = Vec::new();
    let mut rule_features = Vec::new();
    let mut slots = vec![Slot::default(); WEIGHT_COUNT];
    // First pass: classes, keys and how many samples each feature is in.
    let mut order: Vec<(u128, usize)> = Vec::with_capacity(samples.len());
    let mut document_frequency = vec![0u32; WEIGHT_COUNT];
    let (mut spam, mut ham) = (0u64, 0u64);
    for i in 0..samples.len() {
        let Some((digest, class)) = samples.get(i, &mut text, &mut rule_features) else {
            continue;
        };
        match class {
            Class::Spam => spam += 1,
            Class::Ham => ham += 1,
        }
        order.push((digest, i));
        for &index in text.iter().chain(rule_features.iter()) {
            if let Some(df) = document_frequency.get_mut(index as usize) {
                *df = df.saturating_add(1);
            }
        }
    }
    let is_rule = {
        let mut marks = vec![false; WEIGHT_COUNT];
        for &(_, i) in &order {
            if samples.get(i, &mut text, &mut rule_features).is_some() {
                for &index in &rule_features {
                    if let Some(mark) = marks.get_mut(index as usize) {
                        *mark = true;
                    }
                }
            }
        }
        marks
    };
    for ((slot, &df), &rule) in slots.iter_mut().zip(&document_frequency).zip(&is_rule) {
        if df > 0 {
            let l2 = if rule { params.rule_l2 } else { params.l2 };
            slot.l2_share = (l2 / f64::from(df)) as f32;
        }
    }
    drop(document_frequency);
    let total = (spam + ham) as f64;
    let class_weight = |class: Class| -> f64 {
        let n = match class {
            Class::Spam => spam,
            Class::Ham => ham,
        };
        if n == 0 { 0.0 } else { total / (2.0 * n as f64) }
    };
    let mut bias = 0.0f64;
    let mut bias_squared = 0.0f64;
    let rate = params.learning_rate;
    let mut epochs = 0;
    let mut loss = f64::INFINITY;
    let mut previous = f64::INFINITY;
    while epochs < params.max_epochs && total > 0.0 {
        epochs += 1;
        let seed = u128::from(epochs).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        order.sort_unstable_by_key(|&(digest, i)| (mix(digest ^ seed), i));
        let mut epoch_loss = 0.0;
        for &(_, i) in &order {
            let Some((_, class)) = samples.get(i, &mut text, &mut rule_features) else {
                continue;
            };
            let weight = class_weight(class);
            let label = if class == Class::Spam { 1.0 } else { 0.0 };
            let mut z = bias;
            for &index in &text {
                if let Some(slot) = slots.get(index as usize) {
                    z += f64::from(slot.weight);
                }
            }
            for &index in &rule_features {
                z += rules.offset(index);
                if let Some(slot) = slots.get(index as usize) {
                    z += f64::from(slot.weight);
                }
            }
            let p = sigmoid(z);
            epoch_loss += weight * log_loss(z, label);
            let error = weight * (p - label);
            bias_squared += error * error;
            bias -= rate * error / (bias_squared.sqrt() + 1e-6);
            let mut step = |index: u32| {
                if let Some(slot) = slots.get_mut(index as usize) {
                    let w = f64::from(slot.weight);
                    epoch_loss += 0.5 * f64::from(slot.l2_share) * w * w;
                    let gradient = error + f64::from(slot.l2_share) * w;
                    let g2 = f64::from(slot.squared_gradients) + gradient * gradient;
                    slot.squared_gradients = g2 as f32;
                    slot.weight = (w - rate * gradient / (g2.sqrt() + 1e-6)) as f32;
                }
            };
            for &index in &text {
                step(index);
            }
            for &index in &rule_features {
                if rules.trainable(index) {
                    step(index);
                }
            }
        }
        loss = epoch_loss / total;
        let converged = previous.is_finite() && (previous - loss) <= params.tolerance * previous;
        previous = loss;
        if converged {
            break;
        }
    }
    Trained {
        weights: slots.into_iter().map(|s| s.weight).collect(),
        bias,
        epochs,
        loss: if loss.is_finite() { loss } else { 0.0 },
        micros: started.elapsed().as_micros() as u64,
        spam_samples: spam,
        ham_samples: ham,
    }
}

/// log(1 + e^(−y z)) for a label in {0, 1}, stable for any z.
fn log_loss(z: f64, label: f64) -> f64 {
    let margin = if label > 0.5 { z } else { -z };
    if margin > 0.0 {
        (-margin).exp().ln_1p()
    } else {
        -margin + margin.exp().ln_1p()
    }
}

fn mix(value: u128) -> u64 {
    let folded = (value as u64) ^ ((value >> 64) as u64);
    let mixed = (folded ^ (folded >> 31)).wrapping_mul(0x7fb5_d329_728e_a185);
    mixed ^ (mixed >> 27)
}

/// One online step on a single learned message, so a learn changes the
/// very next scan before any training: every feature of the message (and
/// the bias) moves so that its own log-odds move by `step × (y − p)`.
pub fn online_step(
    current_log_odds: f64,
    class: Class,
    feature_count: usize,
    step: f64,
) -> (f32, f64) {
    let label = if class == Class::Spam { 1.0 } else { 0.0 };
    let error = label - sigmoid(current_log_odds);
    let per_feature = step * error / (feature_count as f64 + 1.0);
    (per_feature as f32, per_feature)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Memory(Vec<(u128, Class, Vec<u32>, Vec<u32>)>);

    impl Samples for Memory {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn get(&self, i: usize, text: &mut Vec<u32>, rules: &mut Vec<u32>) -> Option<(u128, Class)> {
            let (digest, class, t, r) = self.0.get(i)?;
            text.clear();
            text.extend(t);
            rules.clear();
            rules.extend(r);
            Some((*digest, *class))
        }
    }

    struct NoRules;
    impl RuleTerms for NoRules {
        fn offset(&self, _: u32) -> f64 {
            0.0
        }
        fn trainable(&self, _: u32) -> bool {
            true
        }
    }

    fn params() -> TrainParams {
        TrainParams {
            l2: 1.0,
            rule_l2: 10.0,
            learning_rate: 0.3,
            max_epochs: 30,
            tolerance: 1e-4,
        }
    }

    fn corpus() -> Vec<(u128, Class, Vec<u32>, Vec<u32>)> {
        (0..200u32)
            .map(|i| {
                let class = if i % 3 == 0 { Class::Spam } else { Class::Ham };
                let marker = if class == Class::Spam { 10 } else { 20 };
                let text = vec![i % 7, marker, 100 + i % 11];
                (u128::from(i) * 7919, class, text, Vec::new())
            })
            .collect()
    }

    #[test]
    fn order_does_not_matter() {
        let data = corpus();
        let mut reversed = data.clone();
        reversed.reverse();
        let spam_first: Vec<_> = data
            .iter()
            .filter(|s| s.1 == Class::Spam)
            .chain(data.iter().filter(|s| s.1 == Class::Ham))
            .cloned()
            .collect();
        let a = train(&Memory(data), &NoRules, &params());
        let b = train(&Memory(reversed), &NoRules, &params());
        let c = train(&Memory(spam_first), &NoRules, &params());
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.weights, c.weights);
        assert_eq!(a.bias.to_bits(), c.bias.to_bits());
    }

    #[test]
    fn it_separates_and_converges() {
        let trained = train(&Memory(corpus()), &NoRules, &params());
        assert!(trained.weights[10] > 1.0, "{}", trained.weights[10]);
        assert!(trained.weights[20] < -1.0, "{}", trained.weights[20]);
        assert!(trained.epochs < 30, "{} epochs", trained.epochs);
        assert_eq!((trained.spam_samples, trained.ham_samples), (67, 133));
    }

    #[test]
    fn pinned_rules_never_move() {
        struct Pinned;
        impl RuleTerms for Pinned {
            fn offset(&self, _: u32) -> f64 {
                0.5
            }
            fn trainable(&self, index: u32) -> bool {
                index != 500
            }
        }
        let data: Vec<_> = corpus()
            .into_iter()
            .map(|(d, class, t, _)| {
                let rules = if class == Class::Spam { vec![500, 501] } else { Vec::new() };
                (d, class, t, rules)
            })
            .collect();
        let trained = train(&Memory(data), &Pinned, &params());
        assert_eq!(trained.weights[500], 0.0);
        assert!(trained.weights[501] > 0.0);
    }

    #[test]
    fn log_loss_is_stable() {
        assert!((log_loss(0.0, 1.0) - 2f64.ln()).abs() < 1e-12);
        assert!(log_loss(1000.0, 1.0) < 1e-300 + 1e-12);
        assert!((log_loss(-1000.0, 1.0) - 1000.0).abs() < 1e-9);
        assert!(log_loss(800.0, 0.0).is_finite());
    }
}
