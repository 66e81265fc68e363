//! Configuration: an embedded default, merged under the admin's TOML file.
//!
//! Every key is optional in the admin's file; what it leaves out comes from
//! `default_config.toml`, which is compiled into the binary so chaff runs with
//! no file at all. Unknown keys are an error naming the key, because a typo in
//! a threshold that silently falls back to a default is the worst failure a
//! mail filter can have.
//!
//! This module only puts the sections together: each part owns its own
//! section's type and checks it (`bayes::BayesConfig::validate`,
//! `lists::NetworkConfig::validate`, …), and no part edits another's. The
//! one section without a library owner is `[server]`, whose code lives in
//! the binary. Dependencies point from here to the parts, never back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::auth::{AuthConfig, EnvelopeConfig};
pub use crate::bayes::{BayesConfig, Combiner};
pub use crate::classifier::ClassifierConfig;
pub use crate::fuzzy::{FuzzyConfig, FuzzyFlagConfig};
pub use crate::lists::brands::PhishingConfig;
pub use crate::lists::{NetworkConfig, UrlListConfig};
pub use crate::message::Limits;
pub use crate::policy::greylist::GreylistConfig;
pub use crate::policy::ratelimit::RatelimitConfig;
pub use crate::policy::replies::RepliesConfig;
pub use crate::policy::{PolicyConfig, ProfileConfig, RedisConfig};
pub use crate::rules::RulesConfig;
pub use crate::setting::{InvalidSetting, parse_network};
pub use crate::verdict::{ActionsConfig, Scoring, SymbolConfig};

/// The built-in configuration a config file is laid over.
pub const EMBEDDED_DEFAULTS: &str = include_str!("default_config.toml");
const DEFAULT_CONFIG: &str = EMBEDDED_DEFAULTS;

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
    pub url_lists: BTreeMap<String, UrlListConfig>,
    pub network: NetworkConfig,
    pub phishing: PhishingConfig,
    pub auth: AuthConfig,
    pub envelope: EnvelopeConfig,
    pub rules: RulesConfig,
    #[serde(default)]
    pub symbols: BTreeMap<String, SymbolConfig>,
    /// Named settings chosen per message (`[profiles.NAME]`).
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    pub policy: PolicyConfig,
    pub ratelimit: RatelimitConfig,
    pub greylist: GreylistConfig,
    pub replies: RepliesConfig,
    /// Several nodes share the policy state through Redis.
    pub redis: RedisConfig,
}

fn default_history_messages_mb() -> usize {
    32
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
    /// Bytes (MiB) of the history's messages kept in memory, so the web UI
    /// can learn or report one from its entry; 0 keeps none.
    #[serde(default = "default_history_messages_mb")]
    pub history_messages_mb: usize,
    /// The milter door (Postfix `smtpd_milters`, Sendmail); empty = off.
    pub milter_bind: String,
    /// What the milter answers when a scan fails or times out.
    #[serde(default)]
    pub milter_on_error: MilterOnError,
    /// SpamAssassin's spamd protocol (spamc, Exim's default `spam =`,
    /// Haraka's spamassassin plugin); empty = off.
    #[serde(default)]
    pub spamd_bind: String,
    /// Let spamd's TELL learn (spamd's `--allow-tell`): the spamd protocol
    /// has no password, so it is off unless the admin turns it on.
    #[serde(default)]
    pub spamd_allow_tell: bool,
}

/// What the milter answers the MTA when a scan fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MilterOnError {
    /// `451 4.7.1`: the MTA keeps the message and tries again.
    #[default]
    Tempfail,
    Accept,
    Reject,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Invalid { path: PathBuf, source: ConfigError },
}

/// Why a configuration text is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or a key or type no section has (the message names it).
    #[error("{0}")]
    Toml(String),
    /// A value a section's own check refused.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
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
        Config::from_toml_over_defaults(&text).map_err(|source| LoadConfigError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses `text` as an override of the embedded defaults.
    pub fn from_toml_over_defaults(text: &str) -> Result<Config, ConfigError> {
        let toml_error = |e: toml::de::Error| ConfigError::Toml(e.to_string());
        let user: toml::Table = toml::from_str(text).map_err(toml_error)?;
        let mut merged: toml::Table = toml::from_str(DEFAULT_CONFIG).map_err(toml_error)?;
        merge_tables(&mut merged, user);
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.message().to_owned()))?;
        config.validate()?;
        // A list that carries its own `weight` gives its symbol that weight
        // unless `[symbols]` already names it.
        let declared = crate::lists::declared_weights(&config.url_lists, &config.network);
        for (symbol, weight) in declared {
            config
                .symbols
                .entry(symbol)
                .or_insert_with(|| SymbolConfig::weighted(weight));
        }
        Ok(config)
    }

    /// Each section checked by its owner; the error names the full key.
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.bayes.validate().map_err(|e| e.within("bayes"))?;
        self.fuzzy.validate().map_err(|e| e.within("fuzzy"))?;
        self.network.validate().map_err(|e| e.within("network"))?;
        if self.phishing.enabled {
            self.phishing.validate().map_err(|e| e.within("phishing"))?;
        }
        for (name, list) in &self.url_lists {
            list.validate()
                .map_err(|e| e.within(&format!("url_lists.{name}")))?;
        }
        crate::policy::Profiles::new(&self.profiles).map_err(|e| e.within("profiles"))?;
        self.ratelimit
            .validate()
            .map_err(|e| e.within("ratelimit"))?;
        self.greylist.validate().map_err(|e| e.within("greylist"))?;
        crate::setting::check_networks("server.secure_ip", &self.server.secure_ip)
    }

    /// The weights and thresholds, all the verdict reads.
    pub fn scoring(&self) -> Scoring<'_> {
        Scoring {
            actions: &self.actions,
            symbols: &self.symbols,
            settings: None,
        }
    }

    /// The configured weight of a symbol; unknown symbols weigh nothing.
    pub fn weight(&self, symbol: &str) -> f64 {
        self.scoring().weight(symbol)
    }

    /// The policy modules' sections, as `policy` reads them.
    pub fn policy_modules(&self) -> crate::policy::Modules<'_> {
        crate::policy::Modules {
            ratelimit: &self.ratelimit,
            greylist: &self.greylist,
            replies: &self.replies,
        }
    }

    /// The configured group of a symbol (`[symbols.NAME] group`).
    pub fn group(&self, symbol: &str) -> Option<&str> {
        self.symbols.get(symbol).and_then(|s| s.group.as_deref())
    }

    /// Every symbol the configuration names outside the rules (`[symbols]`
    /// and the fuzzy lists' symbols): what rule metas may refer to.
    pub fn symbol_names(&self) -> Vec<String> {
        self.symbols
            .keys()
            .cloned()
            .chain(self.fuzzy.flags.values().map(|f| f.symbol.clone()))
            .collect()
    }
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
        assert_eq!(config.classifier.min_learns, 10);
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
        assert!(err.to_string().contains("rejekt"), "{err}");
        let err = Config::from_toml_over_defaults("colour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn unknown_forced_action_is_rejected() {
        let err = Config::from_toml_over_defaults(
            "[symbols.X]\nweight = 1.0\nforce_action = \"explode\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("explode"), "{err}");
    }
}
