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
//!
//! Features enter with value 1, not scaled to unit length per message.
//! Scaling (each text feature `√(1000 / n)` for a message of `n`, in
//! training and scoring alike) was tried in session 21: trec07p-late's
//! chronological split went from 1-AUC 0.0101% to 0.0140% and recall where
//! 0.1% of ham is flagged from 96.2% to 94.0%, and the SpamAssassin split's
//! twelve flagged newsletters stayed twelve (`tools/eval-trec`,
//! `tools/eval`).

use std::time::Instant;

use super::{Calibration, WEIGHT_COUNT, sigmoid};
use crate::class::Class;

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
    /// How much more a ham scored as spam costs than a spam scored as ham
    /// when the calibration is fitted ([`Calibration`]).
    pub ham_error_cost: f64,
}

impl Default for TrainParams {
    /// The embedded configuration's values.
    fn default() -> TrainParams {
        TrainParams {
            l2: 1.0,
            rule_l2: 20.0,
            max_epochs: 10,
            tolerance: 0.1,
            ham_error_cost: 1.0,
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
    /// (primal + dual) / primal at the end: 0 at the exact optimum. The
    /// ranking of held-out mail stops changing long before it reaches 0
    /// (tools/eval-trec --dev with max_epochs 5, 10 and 30 scores alike).
    pub duality_gap: f64,
    /// Platt scaling fitted to the samples' leave-one-out log-odds.
    pub calibration: Calibration,
    pub micros: u64,
    /// Unix time the training ended.
    pub trained_at: u64,
    pub spam_samples: u64,
    pub ham_samples: u64,
}

/// The value of the constant feature that carries the bias.
const BIAS_VALUE: f64 = 1.0;

/// Epochs in a row a sample's dual gradient must stay under
/// `SHRINK_FRACTION × tolerance` before it is left out.
const QUIET_EPOCHS: u8 = 2;
const SHRINK_FRACTION: f64 = 0.1;

/// Trains from zero over every sample until the dual converges.
pub fn train(samples: &dyn Samples, rules: &dyn RuleTerms, params: &TrainParams) -> Trained {
    let started = Instant::now();
    let mut solver = Solver::new(samples, rules, params);
    let mut epochs = 0;
    let mut inner_tolerance = 1e-2f64;
    // Shrinking (liblinear's, for its SVM duals): a sample whose dual
    // gradient stayed under a fraction of the tolerance for `QUIET_EPOCHS`
    // epochs in a row is left out of the next ones. Most learned mail is
    // classified with a wide margin after a few epochs and its dual variable
    // barely moves again, so later epochs visit only the hard samples.
    // Convergence is only ever declared after a full pass over every sample,
    // so the optimum reached is the one without shrinking.
    let mut full_pass = true;
    while epochs < params.max_epochs && solver.total > 0.0 {
        epochs += 1;
        let largest_gradient = solver.epoch(epochs, full_pass, inner_tolerance);
        if largest_gradient <= params.tolerance {
            if full_pass {
                break;
            }
            // The active samples converged: check every sample once more.
            full_pass = true;
            solver.quiet.iter_mut().for_each(|q| *q = 0);
            continue;
        }
        full_pass = false;
        inner_tolerance = (inner_tolerance * 0.1).max(1e-8);
    }
    let Summary {
        primal: loss,
        dual,
        calibration,
    } = solver.summary();
    let total = solver.total;
    let (spam, ham) = (solver.spam, solver.ham);
    let bias = solver.bias;
    Trained {
        weights: solver.into_table(),
        bias: bias * BIAS_VALUE,
        epochs,
        loss: if total > 0.0 { loss / total } else { 0.0 },
        calibration,
        duality_gap: if loss > 0.0 {
            (loss + dual) / loss
        } else {
            0.0
        },
        micros: started.elapsed().as_micros() as u64,
        trained_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        spam_samples: spam,
        ham_samples: ham,
    }
}

/// The end of a training run ([`Solver::summary`]).
struct Summary {
    primal: f64,
    dual: f64,
    calibration: Calibration,
}

/// The state of one training run: primal weights, dual variables and the
/// samples' order.
struct Solver<'a> {
    samples: &'a dyn Samples,
    rules: &'a dyn RuleTerms,
    /// Every sample that decodes: (digest, index), re-sorted each epoch.
    order: Vec<(u128, usize)>,
    classes: Vec<Option<Class>>,
    spam: u64,
    ham: u64,
    total: f64,
    c: f64,
    rule_value: f64,
    /// A sample's gradient under this counts as quiet (shrinking).
    shrink_below: f64,
    ham_error_cost: f64,
    /// f32 as stored: half the memory traffic of f64, and the epochs are
    /// bound by it (random reads and writes over the whole table).
    weights: Vec<f32>,
    /// Rule corrections live apart from the text weights while training (a
    /// hash collision must not tie a rule to a word) and are added at the end.
    rule_weights: std::collections::HashMap<u32, f64>,
    bias: f64,
    /// alpha[i] and C_i − alpha[i], liblinear's pair per sample.
    alpha: Vec<(f64, f64)>,
    /// Epochs in a row each sample's gradient stayed small (shrinking).
    quiet: Vec<u8>,
    text: Vec<u32>,
    rule_features: Vec<u32>,
}

impl<'a> Solver<'a> {
    fn new(samples: &'a dyn Samples, rules: &'a dyn RuleTerms, params: &TrainParams) -> Self {
        let mut text = Vec::new();
        let mut rule_features = Vec::new();
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
        // By digest, not learn order: even the start's sums must not depend
        // on the order the samples arrived in.
        order.sort_unstable_by_key(|&(digest, i)| (digest, i));
        let mut solver = Solver {
            samples,
            rules,
            order,
            classes,
            spam,
            ham,
            total: (spam + ham) as f64,
            c: 1.0 / params.l2.max(1e-12),
            rule_value: (params.l2 / params.rule_l2.max(1e-12)).sqrt(),
            shrink_below: SHRINK_FRACTION * params.tolerance,
            ham_error_cost: params.ham_error_cost,
            weights: vec![0.0f32; WEIGHT_COUNT],
            rule_weights: std::collections::HashMap::new(),
            bias: 0.0,
            alpha: vec![(0.0, 0.0); samples.len()],
            quiet: vec![0; samples.len()],
            text,
            rule_features,
        };
        // liblinear's start: every alpha just above zero, w = Σ α_i y_i x_i.
        for k in 0..solver.order.len() {
            let i = solver.order[k].1;
            let Some(class) = solver.classes[i] else {
                continue;
            };
            let bound = solver.upper(class);
            let start = (0.001 * bound).min(1e-8);
            solver.alpha[i] = (start, bound - start);
            if solver.load(i) {
                solver.add(label(class) * start);
            }
        }
        solver
    }

    /// C_i: classes balanced, so each class weighs half the objective.
    fn upper(&self, class: Class) -> f64 {
        let n = match class {
            Class::Spam => self.spam,
            Class::Ham => self.ham,
        };
        if n == 0 {
            0.0
        } else {
            self.c * self.total / (2.0 * n as f64)
        }
    }

    /// Decodes sample `i` into the scratch buffers.
    fn load(&mut self, i: usize) -> bool {
        self.samples
            .get(i, &mut self.text, &mut self.rule_features)
            .is_some()
    }

    /// The loaded sample's log-odds (rule offsets included) and ‖x‖².
    fn score(&self) -> (f64, f64) {
        let mut score = self.bias * BIAS_VALUE;
        let mut norm = BIAS_VALUE * BIAS_VALUE + self.text.len() as f64;
        let mut text_score = 0.0f32;
        for &index in &self.text {
            text_score += self.weights.get(index as usize).copied().unwrap_or(0.0);
        }
        score += f64::from(text_score);
        for &index in &self.rule_features {
            score += self.rules.offset(index);
            if self.rules.trainable(index) {
                score += self.rule_value * self.rule_weights.get(&index).copied().unwrap_or(0.0);
                norm += self.rule_value * self.rule_value;
            }
        }
        (score, norm)
    }

    /// w += delta · x for the loaded sample.
    fn add(&mut self, delta: f64) {
        add_to(&mut self.weights, &self.text, delta);
        for &index in &self.rule_features {
            if self.rules.trainable(index) {
                *self.rule_weights.entry(index).or_insert(0.0) += delta * self.rule_value;
            }
        }
        self.bias += delta * BIAS_VALUE;
    }

    /// One pass of coordinate descent; returns the largest dual gradient
    /// seen.
    fn epoch(&mut self, epoch: u32, full_pass: bool, inner_tolerance: f64) -> f64 {
        let seed = u128::from(epoch).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        self.order
            .sort_unstable_by_key(|&(digest, i)| (mix(digest ^ seed), i));
        let mut largest_gradient = 0.0f64;
        for k in 0..self.order.len() {
            let i = self.order[k].1;
            let Some(class) = self.classes[i] else {
                continue;
            };
            if !full_pass && self.quiet[i] >= QUIET_EPOCHS {
                continue;
            }
            if !self.load(i) {
                continue;
            }
            let y = label(class);
            let bound = self.upper(class);
            let (score, a) = self.score();
            let b = y * score;
            // Minimise g(z) = z log z + (C − z) log(C − z) + ½a(z − old)² + sign·b(z − old)
            // over the member of the pair the gradient points into.
            let (mut first, mut sign) = (true, 1.0);
            if 0.5 * a * (self.alpha[i].1 - self.alpha[i].0) + b < 0.0 {
                first = false;
                sign = -1.0;
            }
            let old = if first {
                self.alpha[i].0
            } else {
                self.alpha[i].1
            };
            let mut z = old;
            if bound - z < 0.5 * bound {
                z *= 0.1;
            }
            let mut gradient = a * (z - old) + sign * b + (z / (bound - z)).ln();
            largest_gradient = largest_gradient.max(gradient.abs());
            if gradient.abs() < self.shrink_below {
                self.quiet[i] = self.quiet[i].saturating_add(1);
            } else {
                self.quiet[i] = 0;
            }
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
            self.alpha[i] = if first {
                (z, bound - z)
            } else {
                (bound - z, z)
            };
            self.add(sign * (z - old) * y);
        }
        largest_gradient
    }

    /// What the end of training reports, from one pass over the samples:
    /// the primal objective `½‖w‖² + Σ C_i log(1 + e^(−y_i z_i))`; the dual
    /// being minimised, `½‖w‖² + Σ α_i y_i o_i + Σ [α_i ln α_i + (C_i − α_i)
    /// ln(C_i − α_i) − C_i ln C_i]` (at the optimum minus the primal, so
    /// their sum is the duality gap); and the calibration.
    ///
    /// The calibration is Platt scaling fitted to every sample's approximate
    /// leave-one-out log-odds, `z_i − y_i α_i ‖x_i‖²`: its score with its own
    /// term of `w = Σ α_j y_j x_j` taken out (the other dual variables are
    /// left as they are, a first-order estimate that costs nothing beyond
    /// this pass). The classes weigh equally, as in training, and the
    /// targets are Platt's smoothed ones, so separable scores still give a
    /// finite slope.
    fn summary(&mut self) -> Summary {
        let half_norm = 0.5 * self.norm_squared();
        let (mut primal, mut dual) = (half_norm, half_norm);
        let mut held_out: Vec<(f64, bool)> = Vec::with_capacity(self.order.len());
        let entropy = |v: f64| if v > 0.0 { v * v.ln() } else { 0.0 };
        for k in 0..self.order.len() {
            let i = self.order[k].1;
            let Some(class) = self.classes[i] else {
                continue;
            };
            let bound = self.upper(class);
            let (a, rest) = self.alpha[i];
            dual += entropy(a) + entropy(rest) - entropy(bound);
            if !self.load(i) {
                continue;
            }
            let (score, norm) = self.score();
            let y = label(class);
            let offset: f64 = self
                .rule_features
                .iter()
                .map(|&r| self.rules.offset(r))
                .sum();
            dual += a * y * offset;
            let target = if class == Class::Spam { 1.0 } else { 0.0 };
            primal += bound * log_loss(score, target);
            let loo = score - y * a * norm;
            if loo.is_finite() {
                held_out.push((loo, class == Class::Spam));
            }
        }
        Summary {
            primal,
            dual,
            calibration: fit_platt(&held_out, self.spam, self.ham, self.ham_error_cost),
        }
    }

    fn norm_squared(&self) -> f64 {
        self.weights
            .iter()
            .map(|&w| f64::from(w) * f64::from(w))
            .sum::<f64>()
            + self.bias * self.bias
            + self.rule_weights.values().map(|w| w * w).sum::<f64>()
    }

    /// The weight table as stored: text weights with the rule corrections
    /// added at their indices.
    fn into_table(self) -> Vec<f32> {
        let mut table = self.weights;
        for (&index, &w) in &self.rule_weights {
            if let Some(slot) = table.get_mut(index as usize) {
                *slot += (w * self.rule_value) as f32;
            }
        }
        table
    }
}

/// Fits `σ(a z + b)` to labelled scores by Newton's method on the
/// class-balanced log loss, with Platt's targets `(N₊+1)/(N₊+2)` and
/// `1/(N₋+2)`. Without both classes there is nothing to fit.
fn fit_platt(scores: &[(f64, bool)], spam: u64, ham: u64, ham_error_cost: f64) -> Calibration {
    if spam == 0 || ham == 0 || scores.is_empty() {
        return Calibration::IDENTITY;
    }
    let total = (spam + ham) as f64;
    let spam_weight = total / (2.0 * spam as f64);
    let ham_weight = ham_error_cost.max(f64::MIN_POSITIVE) * total / (2.0 * ham as f64);
    let spam_target = (spam as f64 + 1.0) / (spam as f64 + 2.0);
    let ham_target = 1.0 / (ham as f64 + 2.0);
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let objective = |a: f64, b: f64| -> f64 {
        scores
            .iter()
            .map(|&(z, is_spam)| {
                let (t, w) = if is_spam {
                    (spam_target, spam_weight)
                } else {
                    (ham_target, ham_weight)
                };
                let f = a * z + b;
                w * (t * log_loss(f, 1.0) + (1.0 - t) * log_loss(f, 0.0))
            })
            .sum()
    };
    let mut current = objective(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
        for &(z, is_spam) in scores {
            let (t, w) = if is_spam {
                (spam_target, spam_weight)
            } else {
                (ham_target, ham_weight)
            };
            let p = sigmoid(a * z + b);
            let g = w * (p - t);
            let h = w * p * (1.0 - p);
            ga += g * z;
            gb += g;
            haa += h * z * z;
            hab += h * z;
            hbb += h;
        }
        let det = haa * hbb - hab * hab;
        if !det.is_finite() || det <= 0.0 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        // Backtrack until the objective falls: Newton's step can overshoot
        // where the scores are far apart.
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-6 {
            let (na, nb) = (a - step * da, b - step * db);
            let value = objective(na, nb);
            if value.is_finite() && value <= current {
                (a, b, current) = (na, nb, value);
                improved = true;
                break;
            }
            step *= 0.5;
        }
        if !improved || (da.abs() + db.abs()) * step < 1e-9 {
            break;
        }
    }
    Calibration {
        slope: a.clamp(Calibration::MIN_SLOPE, Calibration::MAX_SLOPE),
        intercept: b.clamp(-10.0, 10.0),
    }
}

fn label(class: Class) -> f64 {
    if class == Class::Spam { 1.0 } else { -1.0 }
}

fn add_to(weights: &mut [f32], indices: &[u32], delta: f64) {
    let delta = delta as f32;
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
            ham_error_cost: 1.0,
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
    fn platt_recovers_a_known_slope() {
        // Labels drawn (deterministically) from σ(0.5 z): the fit must find
        // slope 0.5 and, the classes being symmetric, no intercept.
        let mut scores = Vec::new();
        let (mut spam, mut ham) = (0u64, 0u64);
        for step in -100..=100 {
            let z = f64::from(step) / 10.0;
            let p = sigmoid(0.5 * z);
            let spam_copies = (100.0 * p).round() as usize;
            for copy in 0..100 {
                let is_spam = copy < spam_copies;
                scores.push((z, is_spam));
                if is_spam {
                    spam += 1;
                } else {
                    ham += 1;
                }
            }
        }
        let fitted = fit_platt(&scores, spam, ham, 1.0);
        assert!((fitted.slope - 0.5).abs() < 0.02, "{fitted:?}");
        assert!(fitted.intercept.abs() < 0.05, "{fitted:?}");
        // One class only: nothing to fit.
        assert_eq!(fit_platt(&scores[..10], 0, 10, 1.0), Calibration::IDENTITY);
        // Ham errors four times as costly: the same slope, log-odds moved
        // down by ln 4, as a weighted logistic fit moves them.
        let costly = fit_platt(&scores, spam, ham, 4.0);
        assert!((costly.slope - 0.5).abs() < 0.02, "{costly:?}");
        assert!((costly.intercept + 4f64.ln()).abs() < 0.1, "{costly:?}");
    }

    #[test]
    fn training_fits_a_calibration_that_keeps_order() {
        let trained = train(&Memory(corpus()), &NoRules, &params());
        let slope = trained.calibration.slope;
        assert!(
            (Calibration::MIN_SLOPE..=Calibration::MAX_SLOPE).contains(&slope),
            "{slope}"
        );
        assert!(trained.duality_gap.is_finite() && trained.duality_gap >= -1e-6);
    }

    #[test]
    fn log_loss_is_stable() {
        assert!((log_loss(0.0, 1.0) - 2f64.ln()).abs() < 1e-12);
        assert!(log_loss(1000.0, 1.0) < 1e-300 + 1e-12);
        assert!((log_loss(-1000.0, 1.0) - 1000.0).abs() < 1e-9);
        assert!(log_loss(800.0, 0.0).is_finite());
    }
}
