//! Configuration: an embedded default, merged under the admin's TOML file.
//!
//! Every key is optional in the admin's file; what it leaves out comes from
//! `default_config.toml`, which is compiled into the binary so chaff runs with
//! no file at all. Unknown keys are an error naming the key, because a typo in
//! a threshold that silently falls back to a default is the worst failure a
//! mail filter can have.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::message::Limits;

const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

/// The whole configuration after merging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub actions: ActionsConfig,
    pub limits: Limits,
    pub bayes: BayesConfig,
    pub classifier: ClassifierConfig,
    pub fuzzy: FuzzyConfig,
    pub server: ServerConfig,
    /// Local URL/domain blocklists, by name.
    #[serde(default)]
    pub url_lists: BTreeMap<String, crate::lists::UrlListConfig>,
    pub network: crate::lists::NetworkConfig,
    pub auth: crate::auth::AuthConfig,
    pub envelope: crate::auth::EnvelopeConfig,
    pub rules: RulesConfig,
    #[serde(default)]
    pub symbols: BTreeMap<String, SymbolConfig>,
}

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
}

/// The daemon (`chaff serve`): addresses, passwords, limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The scanning worker, as rspamd's normal worker.
    pub bind: String,
    /// The controller: learning and admin.
    pub controller_bind: String,
    /// Read-only admin password (rspamd's `password`).
    #[serde(default)]
    pub password: Option<String>,
    /// Password for learning, fuzzy and resets (rspamd's `enable_password`).
    #[serde(default)]
    pub enable_password: Option<String>,
    /// Clients in these networks need no password (rspamd's `secure_ip`).
    pub secure_ip: Vec<String>,
    /// Scans running or waiting for a core at once; 0 = four per core.
    pub max_scans_in_flight: usize,
    /// Open connections per port; beyond it, new connections wait.
    pub max_connections: usize,
    /// Time allowed for a request's header, then for its body.
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// Time allowed for one scan; past it the reply is a temporary failure.
    pub scan_timeout_ms: u64,
    /// Scans remembered for `/history`.
    pub history_size: usize,
}

/// Score thresholds for actions; an absent threshold disables that action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    pub greylist: Option<f64>,
    pub add_header: Option<f64>,
    pub rewrite_subject: Option<f64>,
    pub reject: Option<f64>,
    /// `%s` is replaced by the original subject.
    pub subject_template: String,
}

/// How the statistical classifier turns token counts into a verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesConfig {
    /// Learned messages needed in *each* class before the classifier speaks.
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

    pub fn params(&self) -> crate::fuzzy::FuzzyParams {
        crate::fuzzy::FuzzyParams {
            min_words: self.min_words,
            min_bytes: self.min_bytes,
        }
    }

    pub fn expire_secs(&self) -> u64 {
        self.expire_days.saturating_mul(86_400)
    }
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

/// Weight and metadata of one symbol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolConfig {
    pub weight: f64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// An action forced whenever this symbol fires (rspamd's force_actions).
    #[serde(default)]
    pub force_action: Option<String>,
    /// The classifier never fits this weight to learned mail: it scores as
    /// configured, always.
    #[serde(default)]
    pub pinned: bool,
}

/// The discriminative classifier (`src/classifier`): how it scores and how
/// it trains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// `false` scores with the Bayes counts instead (`[bayes]`), as chaff
    /// did before the classifier; the samples are kept either way.
    pub enabled: bool,
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

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Config {
        // The embedded file is part of the binary and covered by a unit test,
        // so failing here would be a build defect, not a user error.
        #[allow(clippy::expect_used)]
        toml::from_str(DEFAULT_CONFIG).expect("embedded default config is valid")
    }

    /// The defaults with the admin's file, if any, merged over them.
    pub fn load(path: Option<&Path>) -> Result<Config, LoadConfigError> {
        let Some(path) = path else {
            return Ok(Config::embedded());
        };
        let text = std::fs::read_to_string(path).map_err(|source| LoadConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_over_defaults(&text).map_err(|message| LoadConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses `text` as an override of the embedded defaults.
    pub fn from_toml_over_defaults(text: &str) -> Result<Config, String> {
        let user: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut merged: toml::Table = toml::from_str(DEFAULT_CONFIG).map_err(|e| e.to_string())?;
        merge_tables(&mut merged, user);
        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        let mut config = config;
        crate::lists::register_symbols(&mut config);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, symbol) in &self.symbols {
            if let Some(action) = &symbol.force_action
                && crate::verdict::Action::from_name(action).is_none()
            {
                return Err(format!(
                    "symbols.{name}.force_action: unknown action `{action}`"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.bayes.robinson_x) || self.bayes.robinson_strength < 0.0 {
            return Err("bayes.robinson_x must be in [0, 1) and robinson_strength >= 0".into());
        }
        for network in &self.server.secure_ip {
            if crate::config::parse_network(network).is_none() {
                return Err(format!(
                    "server.secure_ip: `{network}` is not an address or CIDR network"
                ));
            }
        }
        for (flag, list) in &self.fuzzy.flags {
            if flag.parse::<u32>().is_err() {
                return Err(format!("fuzzy.flags.{flag}: a flag is a number"));
            }
            if list.max_score.is_nan() || list.max_score <= 0.0 {
                return Err(format!("fuzzy.flags.{flag}.max_score must be > 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.fuzzy.min_similarity) {
            return Err("fuzzy.min_similarity must be in [0, 1]".into());
        }
        crate::lists::validate(self)?;
        if !(self.bayes.spam_points_span > 0.0 && self.bayes.ham_points_span > 0.0) {
            return Err("bayes.spam_points_span and ham_points_span must be positive".into());
        }
        if self.bayes.osb_window == 0 || self.bayes.osb_window > 8 {
            return Err("bayes.osb_window must be between 1 and 8".into());
        }
        Ok(())
    }

    /// The configured weight of a symbol; unknown symbols weigh nothing.
    pub fn weight(&self, symbol: &str) -> f64 {
        self.symbols.get(symbol).map_or(0.0, |s| s.weight)
    }
}

/// Parses `192.0.2.0/24`, `::1/128` or a bare address as a network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else is replaced.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge_tables(base_table, over_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_with_rspamd_thresholds() {
        let config = Config::embedded();
        assert_eq!(config.actions.greylist, Some(4.0));
        assert_eq!(config.actions.add_header, Some(6.0));
        assert_eq!(config.actions.reject, Some(15.0));
        assert_eq!(config.actions.rewrite_subject, None);
        assert_eq!(config.bayes.min_learns, 200);
    }

    #[test]
    fn user_file_overrides_one_key_and_keeps_the_rest() {
        let config = Config::from_toml_over_defaults("[actions]\nreject = 20.0\n").unwrap();
        assert_eq!(config.actions.reject, Some(20.0));
        assert_eq!(config.actions.add_header, Some(6.0));
        assert!(config.symbols.contains_key("BAYES_SPAM"));
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_toml_over_defaults("[actions]\nrejekt = 20.0\n").unwrap_err();
        assert!(err.contains("rejekt"), "{err}");
        let err = Config::from_toml_over_defaults("colour = 1\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn unknown_forced_action_is_rejected() {
        let err = Config::from_toml_over_defaults(
            "[symbols.X]\nweight = 1.0\nforce_action = \"explode\"\n",
        )
        .unwrap_err();
        assert!(err.contains("explode"), "{err}");
    }
}
