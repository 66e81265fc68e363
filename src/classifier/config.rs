//! `[classifier]`: the discriminative classifier's settings, owned here.

use serde::Deserialize;

/// The discriminative classifier (`src/classifier`): how it scores and how
/// it trains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// `false` scores with the Bayes counts instead (`[bayes]`), as chaff
    /// did before the classifier; the samples are kept either way.
    pub enabled: bool,
    /// Learned messages needed in *each* class before BAYES_SPAM/BAYES_HAM
    /// speak. Far fewer than the count-based Bayes needs
    /// (`bayes.min_learns`, 200): a young model's calibration, fitted to
    /// its samples' leave-one-out scores, already makes it speak softly,
    /// and 200 learns of silence cost it the first weeks of a new site's
    /// mail (`tools/eval-trec --online`).
    pub min_learns: u64,
    /// Points per unit of the model's calibrated log-odds
    /// (`classifier::Calibration`): BAYES_SPAM/BAYES_HAM score
    /// `points_per_logit × (calibrated text log-odds) + shift`, each rule
    /// `slope × (configured weight + points_per_logit × correction)`.
    pub points_per_logit: f64,
    /// Points added to the classifier's share, placing the add-header
    /// threshold among the model's log-odds.
    pub shift: f64,
    /// The classifier's share never passes ± this many points.
    pub max_points: f64,
    /// L2 strength on token and gram weights.
    pub l2: f64,
    /// L2 strength on the rules' corrections (towards their configured weight).
    pub rule_l2: f64,
    /// Passes over the samples at most (later ones visit only the samples
    /// not yet settled).
    pub max_epochs: u32,
    /// Training stops once no sample's dual gradient is larger than this.
    pub tolerance: f64,
    /// How much more a ham scored as spam costs than a spam scored as ham
    /// when training fits the calibration: above 1, the calibration places
    /// a site's borderline ham further from the add-header threshold.
    pub ham_error_cost: f64,
    /// Samples kept for training; past it, the larger class loses its oldest.
    pub max_samples: usize,
    /// The daemon retrains once the learns since the last training reach
    /// this fraction of the samples it used (0: only when the journal is
    /// full, `bayes.auto_compact_journal_bytes`).
    pub retrain_fraction: f64,
}
