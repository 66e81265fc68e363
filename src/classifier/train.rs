//! Training to convergence over the stored samples.
//!
//! The objective is liblinear's L2-regularised logistic regression with the
//! classes balanced: `½‖w‖² + Σ_i C_i · log(1 + e^(−y_i z_i))`, `C_i =
//! C × (total / (2 × samples of i's class))` with `C = 1 / l2`, so a site
//! that learned ten times more spam than ham gets no lean towards spam from
//! that alone. `z_i` includes the rules' configured points as an offset, so
//! the rule weights learned are corrections pulled towards the configured
//! values; a rule feature enters with value `√(l2 / rule_l2)`, which is
//! what a stronger L2 on its correction amounts to.
//!
//! The solver is dual coordinate descent (Yu, Huang and Lin 2011, the one
//! liblinear runs for `-s 7`): one sample at a time, a Newton step on its
//! dual variable, until the largest projected gradient of an epoch falls
//! under `tolerance`. Unlike stochastic gradient steps it needs no learning
//! rate and reaches the optimum in a few passes, whatever the number of
//! features per message. The order of the samples in each epoch is a
//! permutation keyed by each sample's digest and the epoch number, never
//! the order they were learned in: the same samples train the same weights,
//! bit for bit, whatever order they arrived in and however many threads the
//! machine has (training is one thread; scans go on beside it).

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
    pub max_epochs: u32,
    /// Stop once no sample's dual gradient exceeds this.
    pub tolerance: f64,
}

impl Default for TrainParams {
    /// The embedded configuration's values.
    fn default() -> TrainParams {
        TrainParams {
            l2: 1.0,
            rule_l2: 20.0,
            max_epochs: 30,
            tolerance: 0.1,
        }
    }
}

/// The default `classifier.max_samples`.
pub const DEFAULT_MAX_SAMPLES: usize = 100_000;

/// No rules: every rule feature has no offset and never moves.
pub struct NoRules;

impl RuleTerms for NoRules {
    fn offset(&self, _: u32) -> f64 {
        0.0
    }
    fn trainable(&self, _: u32) -> bool {
        false
    }
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
    /// The primal objective per sample at the end.
    pub loss: f64,
    pub micros: u64,
    /// Unix time the training ended.
    pub trained_at: u64,
    pub spam_samples: u64,
    pub ham_samples: u64,
}

/// The value of the constant feature that carries the bias.
const BIAS_VALUE: f64 = 1.0;

/// Trains from zero over every sample until the dual converges.
pub fn train(samples: &dyn Samples, rules: &dyn RuleTerms, params: &TrainParams) -> Trained {
    let started = Instant::now();
    let mut text = Vec::new();
    let mut rule_features = Vec::new();
    let rule_value = (params.l2 / params.rule_l2.max(1e-12)).sqrt();
    let c = 1.0 / params.l2.max(1e-12);
    // First pass: classes and keys.
    let mut order: Vec<(u128, usize)> = Vec::with_capacity(samples.len());
    let mut classes: Vec<Option<Class>> = vec![None; samples.len()];
    let (mut spam, mut ham) = (0u64, 0u64);
    for (i, slot) in classes.iter_mut().enumerate() {
        let Some((digest, class)) = samples.get(i, &mut text, &mut rule_features) else {
            continue;
        };
        match class {
            Class::Spam => spam += 1,
            Class::Ham => ham += 1,
        }
        *slot = Some(class);
        order.push((digest, i));
    }
    let total = (spam + ham) as f64;
    let upper = |class: Class| -> f64 {
        let n = match class {
            Class::Spam => spam,
            Class::Ham => ham,
        };
        if n == 0 {
            0.0
        } else {
            c * total / (2.0 * n as f64)
        }
    };
    let mut weights = vec![0.0f64; WEIGHT_COUNT];
    // Rule corrections live apart from the text weights while training (a
    // hash collision must not tie a rule to a word) and are added at the end.
    let mut rule_weights: std::collections::HashMap<u32, f64> = std::collections::HashMap::new();
    let mut bias = 0.0f64;
    // alpha[i] and C_i - alpha[i], liblinear's pair per sample.
    let mut alpha = vec![(0.0f64, 0.0f64); samples.len()];
    for &(_, i) in &order {
        let Some(class) = classes[i] else { continue };
        let bound = upper(class);
        let start = (0.001 * bound).min(1e-8);
        alpha[i] = (start, bound - start);
        if samples.get(i, &mut text, &mut rule_features).is_none() {
            continue;
        }
        let signed = label(class) * start;
        add_to(&mut weights, &text, signed);
        for &index in &rule_features {
            if rules.trainable(index) {
                *rule_weights.entry(index).or_insert(0.0) += signed * rule_value;
            }
        }
        bias += signed * BIAS_VALUE;
    }
    let mut epochs = 0;
    let mut inner_tolerance = 1e-2f64;
    while epochs < params.max_epochs && total > 0.0 {
        epochs += 1;
        let seed = u128::from(epochs).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        order.sort_unstable_by_key(|&(digest, i)| (mix(digest ^ seed), i));
        let mut largest_gradient = 0.0f64;
        for &(_, i) in &order {
            let Some(class) = classes[i] else { continue };
            if samples.get(i, &mut text, &mut rule_features).is_none() {
                continue;
            }
            let y = label(class);
            let bound = upper(class);
            let mut score = bias * BIAS_VALUE;
            let mut norm = BIAS_VALUE * BIAS_VALUE + text.len() as f64;
            for &index in &text {
                score += weights.get(index as usize).copied().unwrap_or(0.0);
            }
            for &index in &rule_features {
                score += rules.offset(index);
                if rules.trainable(index) {
                    score += rule_value * rule_weights.get(&index).copied().unwrap_or(0.0);
                    norm += rule_value * rule_value;
                }
            }
            let (a, b) = (norm, y * score);
            // Minimise g(z) = z log z + (C − z) log(C − z) + ½a(z − old)² + sign·b(z − old)
            // over the member of the pair the gradient points into.
            let (mut first, mut sign) = (true, 1.0);
            if 0.5 * a * (alpha[i].1 - alpha[i].0) + b < 0.0 {
                first = false;
                sign = -1.0;
            }
            let old = if first { alpha[i].0 } else { alpha[i].1 };
            let mut z = old;
            if bound - z < 0.5 * bound {
                z *= 0.1;
            }
            let mut gradient = a * (z - old) + sign * b + (z / (bound - z)).ln();
            largest_gradient = largest_gradient.max(gradient.abs());
            let mut steps = 0;
            while steps < 100 && gradient.abs() >= inner_tolerance {
                let curvature = a + bound / (bound - z) / z;
                let next = z - gradient / curvature;
                z = if next <= 0.0 { z * 0.1 } else { next };
                gradient = a * (z - old) + sign * b + (z / (bound - z)).ln();
                steps += 1;
            }
            if steps == 0 || !z.is_finite() {
                continue;
            }
            if first {
                alpha[i] = (z, bound - z);
            } else {
                alpha[i] = (bound - z, z);
            }
            let delta = sign * (z - old) * y;
            add_to(&mut weights, &text, delta);
            for &index in &rule_features {
                if rules.trainable(index) {
                    *rule_weights.entry(index).or_insert(0.0) += delta * rule_value;
                }
            }
            bias += delta * BIAS_VALUE;
        }
        if largest_gradient <= params.tolerance {
            break;
        }
        inner_tolerance = (inner_tolerance * 0.1).max(1e-8);
    }
    // The primal objective, for `model stat`: how well the weights fit.
    let mut loss = 0.5 * (weights.iter().map(|w| w * w).sum::<f64>() + bias * bias);
    loss += 0.5 * rule_weights.values().map(|w| w * w).sum::<f64>();
    for &(_, i) in &order {
        let Some(class) = classes[i] else { continue };
        if samples.get(i, &mut text, &mut rule_features).is_none() {
            continue;
        }
        let mut score = bias * BIAS_VALUE;
        for &index in &text {
            score += weights.get(index as usize).copied().unwrap_or(0.0);
        }
        for &index in &rule_features {
            score +=
                rules.offset(index) + rule_value * rule_weights.get(&index).copied().unwrap_or(0.0);
        }
        loss += upper(class) * log_loss(score, if class == Class::Spam { 1.0 } else { 0.0 });
    }
    let mut table: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    for (&index, &w) in &rule_weights {
        if let Some(slot) = table.get_mut(index as usize) {
            *slot += (w * rule_value) as f32;
        }
    }
    Trained {
        weights: table,
        bias: bias * BIAS_VALUE,
        epochs,
        loss: if total > 0.0 { loss / total } else { 0.0 },
        micros: started.elapsed().as_micros() as u64,
        trained_at: crate::engine::unix_now(),
        spam_samples: spam,
        ham_samples: ham,
    }
}

fn label(class: Class) -> f64 {
    if class == Class::Spam { 1.0 } else { -1.0 }
}

fn add_to(weights: &mut [f64], indices: &[u32], delta: f64) {
    for &index in indices {
        if let Some(weight) = weights.get_mut(index as usize) {
            *weight += delta;
        }
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
/// the bias) moves by the returned amount, so that its own log-odds move
/// by `step × (y − p)`.
pub fn online_step(current_log_odds: f64, class: Class, feature_count: usize, step: f64) -> f64 {
    let label = if class == Class::Spam { 1.0 } else { 0.0 };
    let error = label - sigmoid(current_log_odds);
    step * error / (feature_count as f64 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Memory(Vec<(u128, Class, Vec<u32>, Vec<u32>)>);

    impl Samples for Memory {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn get(
            &self,
            i: usize,
            text: &mut Vec<u32>,
            rules: &mut Vec<u32>,
        ) -> Option<(u128, Class)> {
            let (digest, class, t, r) = self.0.get(i)?;
            text.clear();
            text.extend(t);
            rules.clear();
            rules.extend(r);
            Some((*digest, *class))
        }
    }

    fn params() -> TrainParams {
        TrainParams {
            l2: 1.0,
            rule_l2: 10.0,
            max_epochs: 50,
            tolerance: 0.01,
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
        assert!(trained.epochs < 50, "{} epochs", trained.epochs);
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
                let rules = if class == Class::Spam {
                    vec![500, 501]
                } else {
                    Vec::new()
                };
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
