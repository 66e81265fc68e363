//! The whole pipeline, top to bottom, in one place.
//!
//! ```text
//! bytes + Envelope
//!   → message::parse      Message (decoded headers, visible text, links, parts)
//!   → Features::extract   tokens, fuzzy digests (and, later, URLs)
//!   → maps                allow/deny lists; a forced action ends the scan here
//!   → checks, in order    Vec<Symbol>   (gtube, bayes, fuzzy, rules)
//!   → rules.finish        metas and composites over all symbols
//!   → verdict::combine    score, action (weights: config over rule files)
//! ```
//!
//! The daemon, the CLI and the rescorer are adapters over [`Engine::scan`]
//! and [`Engine::learn`]; none of them parse, tokenize or weigh anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::bayes::{self, Abstain, Classification, Contribution, LearnOutcome};
use crate::checks;
use crate::classifier::train::{RuleTerms, Samples, TrainParams, Trained};
use crate::classifier::{ModelFeatures, Weights};
use crate::config::Config;
use crate::extract::{Features, Tokenizer};
use crate::message::{self, Envelope, Message};
use crate::rules::{Input, RuleSet, RulesError};
use crate::store::{BayesStore, Class, FuzzyStats, FuzzyStore, StoreError, StoreStats};
use crate::verdict::{self, Verdict};

/// Why learning one message failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("empty message")]
    Empty,
    #[error("no header fields: not a mail message")]
    NotAMessage,
    #[error("no part long enough to hash (fuzzy.min_words, fuzzy.min_bytes)")]
    NothingToHash,
    #[error("fuzzy flag {0} is not configured ([fuzzy.flags.{0}])")]
    UnknownFlag(u32),
    #[error(
        "hash `{0}` is not 8 to 32 hex digits (a digest, or the prefix a fuzzy symbol's options show)"
    )]
    BadHash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an engine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rules: {0}")]
    Rules(#[from] RulesError),
}

/// Rules in force and the configuration they complete: the rule files'
/// weights with the config's `[symbols]` over them. Replaced whole.
pub struct Active {
    pub rules: RuleSet,
    /// What `verdict::combine` reads.
    pub config: Config,
}

impl Active {
    /// Loads and compiles the rules and maps `config` names.
    pub fn load(config: &Config) -> Result<Active, RulesError> {
        let rules = RuleSet::load(&config.rules, &config.symbol_names())?;
        let mut merged = config.clone();
        for (name, symbol) in rules.symbols() {
            merged
                .symbols
                .entry(name.clone())
                .or_insert_with(|| symbol.clone());
        }
        Ok(Active {
            rules,
            config: merged,
        })
    }

    /// The rule and map symbols a message fires, metas included, without
    /// any other check (`chaff rules stats`): names, sorted, distinct.
    pub fn rule_hits(&self, raw: &[u8], envelope: &Envelope) -> Vec<String> {
        let message = message::parse(raw, &self.config.limits);
        self.rule_hits_of(&message, raw, envelope)
    }

    /// [`Active::rule_hits`] of a message already parsed.
    fn rule_hits_of(&self, message: &Message, raw: &[u8], envelope: &Envelope) -> Vec<String> {
        let input = Input::new(message, raw, envelope);
        let mut symbols = checks::maps::check(&self.rules, &input).symbols;
        symbols.extend(checks::rules::check(&self.rules, &input));
        let symbols = self.rules.finish(symbols, &|name| self.config.weight(name));
        let mut names: Vec<String> = symbols.into_iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The rule symbols a message fires that the classifier takes as
    /// features (what [`Engine::learn`] stores with the sample).
    fn rule_features(&self, message: &Message, raw: &[u8]) -> Vec<String> {
        let mut names = self.rule_hits_of(message, raw, &Envelope::default());
        names.retain(|name| self.is_rule_feature(name));
        names
    }

    /// Whether the classifier learns what symbol `name` is worth: a rule or
    /// map symbol without a forced action (a forced action is final
    /// whatever its points).
    fn is_rule_feature(&self, name: &str) -> bool {
        self.config
            .symbols
            .get(name)
            .is_none_or(|symbol| symbol.force_action.is_none())
            && self.rules.symbols().contains_key(name)
    }

    /// The weight symbol `name` scores with: configured, plus the
    /// classifier's fitted correction unless pinned.
    fn fitted_weight(&self, name: &str, weights: &impl Weights) -> Option<f64> {
        let symbol = self.config.symbols.get(name);
        if symbol.is_some_and(|s| s.pinned) || !self.is_rule_feature(name) {
            return None;
        }
        let configured = symbol.map_or(0.0, |s| s.weight);
        let correction = f64::from(weights.weight(crate::classifier::rule_index(name)));
        // Calibrated as the classifier's share is, so the total keeps
        // ranking exactly as the model's log-odds do.
        let slope = weights.calibration().slope;
        Some(slope * (configured + self.config.classifier.points_per_logit * correction))
    }
}

/// The rules' side of training, from the configuration in force: each rule
/// symbol's configured points as log-odds, and whether it may move.
struct RuleTable {
    offsets: HashMap<u32, (f64, bool)>,
}

impl RuleTable {
    fn new(active: &Active) -> RuleTable {
        let scale = active.config.classifier.points_per_logit;
        let offsets = active
            .rules
            .symbols()
            .keys()
            .filter(|name| active.is_rule_feature(name))
            .map(|name| {
                let symbol = active.config.symbols.get(name);
                let weight = symbol.map_or(0.0, |s| s.weight);
                let pinned = symbol.is_some_and(|s| s.pinned);
                (
                    crate::classifier::rule_index(name),
                    (weight / scale, !pinned),
                )
            })
            .collect();
        RuleTable { offsets }
    }
}

impl RuleTerms for RuleTable {
    fn offset(&self, index: u32) -> f64 {
        self.offsets.get(&index).map_or(0.0, |o| o.0)
    }

    fn trainable(&self, index: u32) -> bool {
        self.offsets.get(&index).is_some_and(|o| o.1)
    }
}

/// What a fuzzy report or removal did.
#[derive(Debug, Clone)]
pub struct FuzzyLearned {
    /// Digests written (add) or found and removed (del).
    pub digests: usize,
    pub message_id: Option<String>,
}

/// The result of scanning one message.
#[derive(Debug, Clone)]
pub struct Scan {
    pub verdict: Verdict,
    pub message_id: Option<String>,
    /// The decoded Subject, for logs and history.
    pub subject: String,
    /// The classifier's answer, or why it abstained.
    pub bayes: Result<Classification, Abstain>,
    /// Distinct host names of the message's URLs, in order (`/checkv2` `urls`).
    pub urls: Vec<String>,
}

impl Scan {
    /// The answer for a message whose scan ran past the time limit:
    /// `SCAN_TIMEOUT` alone, scoring nothing (a slow message is not
    /// evidence either way), with the action the symbol forces (`soft
    /// reject` by default: the MTA tries again later).
    pub fn timed_out(config: &Config) -> Scan {
        let mut verdict = verdict::combine(
            vec![checks::Symbol::new("SCAN_TIMEOUT")],
            config.scoring(),
            "",
        );
        verdict.score = 0.0;
        Scan {
            verdict,
            message_id: None,
            subject: String::new(),
            bayes: Err(Abstain::Skipped),
            urls: Vec::new(),
        }
    }
}

/// What learning one message did, and which message it was.
#[derive(Debug, Clone)]
pub struct Learned {
    pub outcome: LearnOutcome,
    pub message_id: Option<String>,
}

/// Fewest learns since the last training that [`Engine::training_due`]
/// retrains for by `classifier.retrain_fraction`.
const MIN_LEARNS_TO_RETRAIN: u64 = 16;

/// A message read for learning, not yet recorded ([`Engine::prepare_learn`]).
pub struct PreparedLearn {
    digest: u128,
    message_id: Option<String>,
    features: Features,
    model_features: ModelFeatures,
}

/// Prepares learns ([`Engine::learn_preparer`]): the limits, tokenizer and
/// rules in force when it was made.
pub struct LearnPreparer {
    limits: message::Limits,
    tokenizer: Tokenizer,
    active: Arc<Active>,
    /// Whether the count-based Bayes' tokens are learned ([`counts_in_use`]).
    counts: bool,
}

impl LearnPreparer {
    /// What preparing learns under `config` needs, with no store open: a
    /// bulk learn prepares its first messages while the store replays its
    /// journal ([`Engine::open_for_learning_with`]).
    pub fn new(config: &Config) -> Result<LearnPreparer, OpenError> {
        Ok(LearnPreparer {
            limits: config.limits.clone(),
            tokenizer: Parts::tokenizer_of(config),
            active: Arc::new(Active::load(config)?),
            counts: counts_in_use(config),
        })
    }

    /// Parses a message and computes what its learn records.
    pub fn prepare(&self, raw: &[u8]) -> Result<PreparedLearn, LearnError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(LearnError::Empty);
        }
        let message = message::parse(raw, &self.limits);
        if message.headers.is_empty() {
            return Err(LearnError::NotAMessage);
        }
        let rules = self.active.rule_features(&message, raw);
        let rule_names = rules.iter().map(String::as_str);
        // The counts are learned only when they score; otherwise the
        // tokens go straight to the classifier's indices.
        let (features, model_features) = if self.counts {
            let features = Features::statistical(raw, &message, &self.tokenizer);
            let model_features = ModelFeatures::build(&features.tokens, raw, rule_names);
            (features, model_features)
        } else {
            let model_features =
                ModelFeatures::of_message(&message, raw, &self.tokenizer, rule_names);
            (Features::default(), model_features)
        };
        Ok(PreparedLearn {
            digest: message_digest(raw),
            message_id: message.message_id,
            features,
            model_features,
        })
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

/// A configured scanner over one data directory.
pub struct Engine {
    config: Config,
    tokenizer: Tokenizer,
    store: BayesStore,
    fuzzy: FuzzyStore,
    /// Local URL lists and the resolver of the network checks.
    lists: crate::lists::Lists,
    active: RwLock<Arc<Active>>,
    /// When rule and map files were last checked for changes.
    rules_checked: Mutex<Instant>,
}

impl Engine {
    /// Opens the data directory for scanning (no lock; learns by others are
    /// seen on the next open).
    pub fn open(config: Config, data_dir: &Path) -> Result<Engine, OpenError> {
        let store = BayesStore::open_read_only(data_dir)?;
        let fuzzy = FuzzyStore::open_read_only(data_dir)?;
        Engine::with_stores(config, store, fuzzy)
    }

    /// Opens the data directory for learning and fuzzy reports: takes both
    /// writer locks (the daemon's controller does both).
    pub fn open_for_learning(config: Config, data_dir: &Path) -> Result<Engine, OpenError> {
        let store = BayesStore::open_writer(data_dir)?;
        let fuzzy = FuzzyStore::open_writer(data_dir)?;
        Engine::with_stores(config, store, fuzzy)
    }

    /// Opens the data directory for fuzzy reports only: takes `fuzzy.lock`,
    /// reads the Bayes model without locking it.
    pub fn open_for_fuzzy_learning(config: Config, data_dir: &Path) -> Result<Engine, OpenError> {
        let fuzzy = FuzzyStore::open_writer(data_dir)?;
        let store = BayesStore::open_read_only(data_dir)?;
        Engine::with_stores(config, store, fuzzy)
    }

    /// [`Engine::open_for_learning`] with the rules `preparer` loaded from
    /// the same `config`, so they are read once.
    pub fn open_for_learning_with(
        config: Config,
        data_dir: &Path,
        preparer: &LearnPreparer,
    ) -> Result<Engine, OpenError> {
        let store = BayesStore::open_writer(data_dir)?;
        let fuzzy = FuzzyStore::open_writer(data_dir)?;
        let parts = Parts::with_rules(config, preparer.active.clone());
        Ok(Engine::assemble(parts, store, fuzzy))
    }

    fn with_stores(
        config: Config,
        store: BayesStore,
        fuzzy: FuzzyStore,
    ) -> Result<Engine, OpenError> {
        Ok(Engine::assemble(Parts::build(config)?, store, fuzzy))
    }

    fn assemble(parts: Parts, store: BayesStore, fuzzy: FuzzyStore) -> Engine {
        Engine {
            lists: parts.lists,
            tokenizer: parts.tokenizer,
            config: parts.config,
            store,
            fuzzy,
            active: RwLock::new(parts.active),
            rules_checked: Mutex::new(Instant::now()),
        }
    }

    /// The rules in force. At most every `rules.reload_check_secs`, one
    /// caller checks the rule and map files and, if one changed, loads them
    /// anew; a set that fails to load leaves the old one in force.
    pub fn active(&self) -> Arc<Active> {
        let current = match self.active.read() {
            Ok(active) => active.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let interval = Duration::from_secs(self.config.rules.reload_check_secs);
        let due = match self.rules_checked.try_lock() {
            Ok(mut checked) if checked.elapsed() >= interval => {
                *checked = Instant::now();
                true
            }
            _ => false,
        };
        if !due || !current.rules.changed() {
            return current;
        }
        match Active::load(&self.config) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if let Ok(mut active) = self.active.write() {
                    *active = fresh.clone();
                }
                fresh
            }
            Err(error) => {
                tracing::warn!("rules changed but do not load, keeping the old ones: {error}");
                current
            }
        }
    }

    fn features(&self, raw: &[u8], message: &Message) -> Features {
        let mut features = self.features_without_fuzzy(raw, message);
        features.fuzzy = crate::fuzzy::FuzzyDigests::compute(message, &self.config.fuzzy.params());
        features
    }

    /// URLs, and the count-based Bayes' tokens when it is in use; fuzzy
    /// digests are added by the caller when the fuzzy store could match
    /// anything. The classifier draws its own features (`classify`).
    fn features_without_fuzzy(&self, raw: &[u8], message: &Message) -> Features {
        let mut features = if counts_in_use(&self.config) {
            Features::statistical(raw, message, &self.tokenizer)
        } else {
            Features::default()
        };
        features.urls = crate::extract::urls::extract(message);
        features
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses a message within the configured limits.
    pub fn parse(&self, raw: &[u8]) -> Message {
        message::parse(raw, &self.config.limits)
    }

    /// Scans one message: the whole pipeline.
    pub fn scan(&self, raw: &[u8], envelope: &Envelope) -> Scan {
        let active = self.active();
        let message = self.parse(raw);
        let mut features = self.features_without_fuzzy(raw, &message);
        if !self.fuzzy.is_empty() {
            features.fuzzy =
                crate::fuzzy::FuzzyDigests::compute(&message, &self.config.fuzzy.params());
        }
        let input = Input::new(&message, raw, envelope);

        // Maps first: an allow/deny map with a forced action ends the scan
        // here, as rspamd's multimap prefilter does.
        let maps = checks::maps::check(&active.rules, &input);
        let mut symbols = maps.symbols;
        let mut bayes = Err(bayes::Abstain::Skipped);
        if !maps.stop {
            symbols.extend(checks::gtube::check(&message));
            let (bayes_symbol, classified) = self.classify(raw, &message, &features);
            bayes = classified;
            symbols.extend(bayes_symbol);
            symbols.extend(checks::fuzzy::check(
                &features,
                &self.fuzzy,
                &self.config.fuzzy,
                unix_now(),
            ));
            symbols.extend(checks::rules::check(&active.rules, &input));
            symbols.extend(self.list_checks(raw, &message, &features, envelope));
        }
        // Metas and composites see every symbol found above.
        let symbols = active
            .rules
            .finish(symbols, &|name| active.config.weight(name));

        // Once the classifier speaks, rules score the weights it fitted to
        // this site's mail (the configured ones, for a young model).
        let classifier_speaks = self.config.classifier.enabled && bayes.is_ok();
        let fitted = |name: &str| {
            classifier_speaks
                .then(|| active.fitted_weight(name, &self.store))
                .flatten()
        };
        let verdict =
            verdict::combine_fitted(symbols, active.config.scoring(), &message.subject, &fitted);
        Scan {
            verdict,
            message_id: message.message_id,
            subject: message.subject,
            bayes,
            urls: url_hosts(&features.urls),
        }
    }

    /// BAYES_SPAM / BAYES_HAM: the discriminative classifier's text share,
    /// or with `[classifier] enabled = false` the count-based Bayes.
    fn classify(
        &self,
        raw: &[u8],
        message: &Message,
        features: &Features,
    ) -> (
        Option<checks::Symbol>,
        Result<bayes::Classification, Abstain>,
    ) {
        if !self.config.classifier.enabled {
            return checks::bayes::check(features, &self.store, &self.config.bayes);
        }
        let learns = self.store.learns();
        let min_learns = self.config.bayes.min_learns;
        let model_features = if learns.0 < min_learns || learns.1 < min_learns {
            // It will abstain: not worth extracting the model's features for.
            ModelFeatures::default()
        } else {
            ModelFeatures::for_scan(message, raw, &self.tokenizer)
        };
        checks::bayes::check_classifier(
            &model_features,
            &self.store,
            learns,
            min_learns,
            &self.config.classifier,
        )
    }

    /// URL lists, envelope sanity and, when `[network] enabled`, every DNS
    /// check at once (DNSBLs, SPF, DKIM, ARC, DMARC, sender MX) within the
    /// message's DNS budget.
    fn list_checks(
        &self,
        raw: &[u8],
        message: &Message,
        features: &Features,
        envelope: &Envelope,
    ) -> Vec<checks::Symbol> {
        let mut symbols = checks::uri::check(features, &self.lists.urls);
        symbols.extend(checks::envelope::check(envelope, &self.config.envelope));
        let network = match &self.lists.network {
            None => return symbols,
            Some(Err(why)) => {
                symbols.push(checks::Symbol::new("DNS_UNAVAILABLE").with_option(why.clone()));
                return symbols;
            }
            Some(Ok(network)) => network,
        };
        let client = crate::lists::received::client_ip(message, envelope, &self.lists.trusted);
        // An authenticated submission is the user's own: no RBL, no SPF.
        let client = client.filter(|_| envelope.user.is_none());
        let auth_input = checks::auth::AuthInput {
            raw,
            envelope,
            client,
            from_address: &message.from_address,
        };
        let found = network.run(|deadline| async move {
            let (dnsbl, auth, sender) = tokio::join!(
                checks::dnsbl::check(
                    network,
                    &self.config.network,
                    client,
                    &features.urls,
                    deadline
                ),
                checks::auth::check(
                    network.authenticator(),
                    &auth_input,
                    &self.config.auth,
                    deadline
                ),
                checks::envelope::check_dns(
                    network,
                    message,
                    envelope,
                    &self.config.envelope,
                    deadline
                ),
            );
            let mut all = dnsbl;
            all.extend(auth);
            all.extend(sender);
            all
        });
        match found {
            Some(found) => symbols.extend(found),
            None => symbols.push(checks::Symbol::new("DNS_TIMEOUT").with_option("budget")),
        }
        if network.resolver_down().0 {
            // Its lookups failed at once; this says why.
            symbols.push(checks::Symbol::new("DNS_UNAVAILABLE").with_option("resolver down"));
        }
        crate::lists::merge_symbols(symbols)
    }

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
        let rules = active
            .rule_hits_of(&message, raw, envelope)
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

    /// Learns one message as `class`. Durable only after [`Engine::commit`].
    pub fn learn(&mut self, raw: &[u8], class: Class) -> Result<Learned, LearnError> {
        let prepared = self.prepare_learn(raw)?;
        self.record_learn(prepared, class)
    }

    /// The part of a learn that reads the message (parsing, tokens, rules,
    /// features): on `&self`, so a batch of learns prepares on every core
    /// and only [`Engine::record_learn`] runs one at a time.
    pub fn prepare_learn(&self, raw: &[u8]) -> Result<PreparedLearn, LearnError> {
        self.learn_preparer().prepare(raw)
    }

    /// What preparing a learn needs, apart from the engine: a bulk learn
    /// prepares the next messages on other threads while the engine records
    /// and syncs the last ones.
    pub fn learn_preparer(&self) -> LearnPreparer {
        LearnPreparer {
            limits: self.config.limits.clone(),
            tokenizer: self.tokenizer.clone(),
            active: self.active(),
            counts: counts_in_use(&self.config),
        }
    }

    /// Records a prepared learn as `class` in the store (journal and
    /// overlay). Durable only after [`Engine::commit`].
    pub fn record_learn(
        &mut self,
        prepared: PreparedLearn,
        class: Class,
    ) -> Result<Learned, LearnError> {
        let outcome = bayes::learn(
            &mut self.store,
            prepared.digest,
            class,
            &prepared.features,
            prepared.model_features,
        )?;
        Ok(Learned {
            outcome,
            message_id: prepared.message_id,
        })
    }

    /// Reports a message to fuzzy list `flag` with `weight`: every digest of
    /// it is added (weights summed with earlier reports). Durable only after
    /// [`Engine::commit`].
    pub fn fuzzy_add(
        &mut self,
        raw: &[u8],
        flag: u32,
        weight: u32,
    ) -> Result<FuzzyLearned, LearnError> {
        let (message, features) = self.fuzzy_features(raw, flag)?;
        let now = unix_now();
        for part in &features.fuzzy.parts {
            self.fuzzy
                .add(part.exact, flag, weight, now, Some(&part.minhash))?;
        }
        for &digest in &features.fuzzy.attachments {
            self.fuzzy.add(digest, flag, weight, now, None)?;
        }
        Ok(FuzzyLearned {
            digests: features.fuzzy.parts.len() + features.fuzzy.attachments.len(),
            message_id: message.message_id,
        })
    }

    /// Removes a message's digests from fuzzy list `flag`. Durable only
    /// after [`Engine::commit`].
    pub fn fuzzy_del(&mut self, raw: &[u8], flag: u32) -> Result<FuzzyLearned, LearnError> {
        let (message, features) = self.fuzzy_features(raw, flag)?;
        let now = unix_now();
        let mut removed = 0;
        for digest in features
            .fuzzy
            .parts
            .iter()
            .map(|p| p.exact)
            .chain(features.fuzzy.attachments.iter().copied())
        {
            if self.fuzzy.delete(digest, flag, now)? {
                removed += 1;
            }
        }
        Ok(FuzzyLearned {
            digests: removed,
            message_id: message.message_id,
        })
    }

    /// Removes from list `flag` every stored digest a hash names: all 32
    /// hex digits, or a prefix of at least 8 (what a fuzzy symbol's options
    /// show, `1:3f9a2c1b:87%`). rspamd's `/fuzzydelhash`, for the admin who
    /// has the hash from a scan but not the message.
    pub fn fuzzy_del_hashes(
        &mut self,
        hashes: &[&str],
        flag: u32,
    ) -> Result<FuzzyLearned, LearnError> {
        if self.config.fuzzy.flag(flag).is_none() {
            return Err(LearnError::UnknownFlag(flag));
        }
        let ranges = hashes
            .iter()
            .map(|hash| {
                digest_range(hash.trim()).ok_or_else(|| LearnError::BadHash((*hash).to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = unix_now();
        let mut removed = 0;
        for (low, high) in ranges {
            for digest in self.fuzzy.digests_between(low, high, flag) {
                if self.fuzzy.delete(digest, flag, now)? {
                    removed += 1;
                }
            }
        }
        Ok(FuzzyLearned {
            digests: removed,
            message_id: None,
        })
    }

    fn fuzzy_features(&self, raw: &[u8], flag: u32) -> Result<(Message, Features), LearnError> {
        if self.config.fuzzy.flag(flag).is_none() {
            return Err(LearnError::UnknownFlag(flag));
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(LearnError::Empty);
        }
        let message = self.parse(raw);
        if message.headers.is_empty() {
            return Err(LearnError::NotAMessage);
        }
        let features = self.features(raw, &message);
        if features.fuzzy.is_empty() {
            return Err(LearnError::NothingToHash);
        }
        Ok((message, features))
    }

    /// Replaces the configuration and reloads the rules (SIGHUP); the store
    /// stays open. The OSB window may change freely: unigrams and pairs at a
    /// given distance hash the same whatever the window, so the model stays
    /// valid. Rules that fail to load leave everything as it was.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), RulesError> {
        let active = Active::load(&config)?;
        self.reconfigure_with(config, active);
        Ok(())
    }

    /// Replaces the configuration with rules already loaded from it
    /// ([`Active::load`], done outside any lock the caller holds).
    pub fn reconfigure_with(&mut self, config: Config, active: Active) {
        let parts = Parts::with_rules(config, Arc::new(active));
        self.lists = parts.lists;
        self.tokenizer = parts.tokenizer;
        self.config = parts.config;
        if let Ok(mut current) = self.active.write() {
            *current = parts.active;
        }
        if let Ok(mut checked) = self.rules_checked.lock() {
            *checked = Instant::now();
        }
    }

    /// [`Engine::commit`] of the learns in two steps: writes them now and
    /// returns what makes them durable, which runs without the engine, so
    /// that the daemon's scans, which share it, never wait for a disk
    /// flush. A learn is acknowledged only after that sync.
    pub fn write_learns(&mut self) -> Result<crate::store::JournalSync, StoreError> {
        self.store.write_for_sync()
    }

    /// Makes all learns and fuzzy reports so far durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.store.is_writable() {
            self.store.commit()?;
        }
        if self.fuzzy.is_writable() {
            self.fuzzy.commit()?;
        }
        Ok(())
    }

    /// Folds each writable store's journal into its model if it has grown
    /// past the configured size.
    pub fn compact_if_due(&mut self) -> Result<bool, StoreError> {
        let bayes_due = self.store.journal_bytes() >= self.config.bayes.auto_compact_journal_bytes;
        self.compact_where(bayes_due)
    }

    /// Folds what a batch learn recorded into the model, whatever the
    /// journal's size, and compacts the fuzzy store if due. The end of a
    /// batch is when a scan-ready model is wanted (as `sa-learn` syncs at its
    /// end): a journal left behind costs every later scan an overlay lookup
    /// per token and gram. The daemon, learning a message at a time, uses
    /// [`Engine::compact_if_due`] instead.
    pub fn compact_after_batch(&mut self) -> Result<bool, StoreError> {
        let bayes_due = self.store.has_uncompacted();
        self.compact_where(bayes_due)
    }

    /// Compacts the Bayes store if `bayes_due`, the fuzzy store if its
    /// journal passed its size; says whether either was.
    fn compact_where(&mut self, bayes_due: bool) -> Result<bool, StoreError> {
        let mut compacted = false;
        if self.store.is_writable() && bayes_due {
            self.train()?;
            compacted = true;
        }
        if self.fuzzy.is_writable()
            && self.fuzzy.journal_bytes() >= self.config.fuzzy.auto_compact_journal_bytes
        {
            self.compact_fuzzy()?;
            compacted = true;
        }
        Ok(compacted)
    }

    /// Folds the journals of the writable stores into their models now.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        if self.store.is_writable() {
            self.train()?;
        }
        if self.fuzzy.is_writable() {
            self.compact_fuzzy()?;
        }
        Ok(())
    }

    /// Folds the journal into a new model trained to convergence over every
    /// kept sample (`chaff model train`, and every compaction).
    pub fn train(&mut self) -> Result<Trained, StoreError> {
        let (max_samples, trainer) = self.trainer();
        self.store.compact_with(max_samples, trainer)
    }

    /// The first half of [`Engine::train`], on `&self` so scans go on
    /// beside it (the daemon holds only a read lock): trains and writes the
    /// next model. The caller keeps learns out until
    /// [`Engine::switch_to_trained`], and must have committed.
    pub fn write_trained(&self) -> Result<crate::store::Compacted, StoreError> {
        let (max_samples, trainer) = self.trainer();
        self.store.write_compacted(max_samples, trainer)
    }

    /// The second half of [`Engine::train`]: maps the new model.
    pub fn switch_to_trained(
        &mut self,
        trained: crate::store::Compacted,
    ) -> Result<(), StoreError> {
        self.store.switch_to(trained)
    }

    /// Whether the daemon should fold the journal and train now: the
    /// journal has grown past its compaction size, or the learns since the
    /// last training are `classifier.retrain_fraction` of the samples it
    /// used (at least `MIN_LEARNS_TO_RETRAIN`). The second keeps a young
    /// model close to trained while training is cheap: between trainings a
    /// learn takes only an online step, and a model of 200 samples should
    /// not wait ~450 learns for the journal to fill. Trainings then come at
    /// geometrically spaced sizes, so their total cost stays a constant
    /// multiple of the last one.
    pub fn training_due(&self) -> bool {
        if !self.store.has_uncompacted() {
            return false;
        }
        let (since, trained) = self.store.learns_since_training();
        let fraction = self.config.classifier.retrain_fraction;
        self.store.journal_bytes() >= self.config.bayes.auto_compact_journal_bytes
            || (fraction > 0.0
                && since >= MIN_LEARNS_TO_RETRAIN
                && since as f64 >= fraction * trained as f64)
    }

    /// What training needs from the configuration in force.
    fn trainer(&self) -> (usize, impl FnOnce(&dyn Samples) -> Trained + use<>) {
        let rules = RuleTable::new(&self.active());
        let c = &self.config.classifier;
        let params = TrainParams {
            l2: c.l2,
            rule_l2: c.rule_l2,
            max_epochs: c.max_epochs,
            tolerance: c.tolerance,
            ham_error_cost: c.ham_error_cost,
        };
        (c.max_samples, move |samples: &dyn Samples| {
            crate::classifier::train::train(samples, &rules, &params)
        })
    }

    fn compact_fuzzy(&mut self) -> Result<(), StoreError> {
        self.fuzzy
            .compact(unix_now(), self.config.fuzzy.expire_secs())
    }

    pub fn fuzzy_stats(&self) -> FuzzyStats {
        self.fuzzy.stats()
    }

    pub fn verify_fuzzy_store(&self) -> bool {
        self.fuzzy.verify()
    }

    /// With the network checks on: whether the resolver was found down
    /// (nothing listens on its nameservers), and how many messages' lookups
    /// failed at once because of it.
    pub fn resolver_down(&self) -> Option<(bool, u64)> {
        match &self.lists.network {
            Some(Ok(network)) => Some(network.resolver_down()),
            _ => None,
        }
    }

    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    pub fn verify_store(&self) -> bool {
        self.store.verify()
    }
}

/// Whether the count-based Bayes is in use: it scores only with
/// `[classifier] enabled = false`, and only then are its token counts
/// learned or its tokens drawn at a scan. The classifier beat it at every
/// model size measured (issue 15), so by default a learn records the
/// classifier's sample and no counts; turning the classifier off means
/// learning again.
fn counts_in_use(config: &Config) -> bool {
    !config.classifier.enabled
}

/// What an engine builds from a configuration: the tokenizer, the lists
/// (and the resolver), the rules with the weights they complete. Built in
/// this one place, at start and at reload alike, so the two cannot differ.
struct Parts {
    config: Config,
    tokenizer: Tokenizer,
    lists: crate::lists::Lists,
    active: Arc<Active>,
}

impl Parts {
    fn build(config: Config) -> Result<Parts, RulesError> {
        let active = Arc::new(Active::load(&config)?);
        Ok(Parts::with_rules(config, active))
    }

    /// The parts of `config` with its rules already loaded (they are the
    /// slow part, loaded outside any lock by the daemon and beside the
    /// store's opening by `chaff learn`).
    fn with_rules(config: Config, active: Arc<Active>) -> Parts {
        Parts {
            lists: crate::lists::Lists::new(&config.url_lists, &config.network),
            tokenizer: Parts::tokenizer_of(&config),
            config,
            active,
        }
    }

    /// The tokenizer alone (what a [`LearnPreparer`] needs besides the
    /// rules): byte 7-grams only when the count-based Bayes uses them.
    fn tokenizer_of(config: &Config) -> Tokenizer {
        if config.bayes.max_grams == 0 {
            Tokenizer::new(config.bayes.osb_window).without_grams()
        } else {
            Tokenizer::new(config.bayes.osb_window)
        }
    }
}

/// Distinct hosts of `urls`, first appearance first.
fn url_hosts(urls: &[crate::extract::Url]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for url in urls {
        if !hosts.contains(&url.host) {
            hosts.push(url.host.clone());
        }
    }
    hosts
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The identity of a message for idempotent learning: a 128-bit hash of its
/// bytes without any mbox envelope line and with line endings normalised, so
/// the same message learned from a file, an mbox or over HTTP is one message.
pub fn message_digest(raw: &[u8]) -> u128 {
    let body = if raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(&raw[raw.len()..], |end| &raw[end + 1..])
    } else {
        raw
    };
    let mut hasher = Xxh3::new();
    let mut from = 0;
    for cr in memchr::memchr_iter(b'\r', body) {
        hasher.update(&body[from..cr]);
        from = cr + 1;
    }
    hasher.update(&body[from..]);
    hasher.digest128()
}

/// The digests a hex hash or hash prefix names: `3f9a2c1b` is every digest
/// from `3f9a2c1b000…` to `3f9a2c1bfff…`. Fewer than 8 digits would name
/// too many reports to delete by accident.
fn digest_range(hex: &str) -> Option<(u128, u128)> {
    if !(8..=32).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u128::from_str_radix(hex, 16).ok()?;
    let free_bits = 4 * (32 - hex.len() as u32);
    let low = value.checked_shl(free_bits).unwrap_or(0);
    let spread = if free_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - free_bits)
    };
    Some((low, low | spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_is_a_digest_range_or_refused(text in "\\PC{0,40}") {
            let _ = digest_range(&text);
        }

        #[test]
        fn every_prefix_of_a_digest_names_it(digest: u128, digits in 8usize..=32) {
            let hex = format!("{digest:032x}");
            let (low, high) = digest_range(&hex[..digits]).expect("hex digits");
            proptest::prop_assert!(low <= digest && digest <= high);
            let spread = if digits == 32 { 0 } else { u128::MAX >> (4 * digits) };
            proptest::prop_assert_eq!(high - low, spread);
        }
    }

    #[test]
    fn a_young_model_retrains_after_a_fraction_of_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded();
        config.rules.enabled = false;
        config.classifier.retrain_fraction = 0.5;
        let mut engine = Engine::open_for_learning(config.clone(), dir.path()).unwrap();
        let learn = |engine: &mut Engine, n: u64| {
            let raw = format!("Subject: message {n}\nMessage-ID: <{n}@example.test>\n\nbody {n}\n");
            let class = if n.is_multiple_of(2) {
                Class::Spam
            } else {
                Class::Ham
            };
            engine.learn(raw.as_bytes(), class).unwrap();
            engine.commit().unwrap();
        };
        for n in 0..MIN_LEARNS_TO_RETRAIN - 1 {
            learn(&mut engine, n);
        }
        assert!(!engine.training_due(), "fewer learns than the minimum");
        learn(&mut engine, 100);
        assert!(engine.training_due(), "an untrained model with the minimum");
        engine.train().unwrap();
        assert!(!engine.training_due(), "just trained");
        // 16 samples trained: half of them again is 8, under the minimum.
        for n in 200..200 + MIN_LEARNS_TO_RETRAIN - 1 {
            learn(&mut engine, n);
        }
        assert!(!engine.training_due());
        learn(&mut engine, 300);
        assert!(engine.training_due());
        // Off: only a full journal trains.
        config.classifier.retrain_fraction = 0.0;
        engine.reconfigure(config).unwrap();
        assert!(!engine.training_due());
    }

    #[test]
    fn a_hash_prefix_names_a_range_of_digests() {
        let (low, high) = digest_range("3f9a2c1b").expect("8 hex digits");
        assert_eq!(low, 0x3f9a2c1b_u128 << 96);
        assert_eq!(high, (0x3f9a2c1b_u128 << 96) | (u128::MAX >> 32));
        let full = "0123456789abcdef0123456789ABCDEF";
        let (low, high) = digest_range(full).expect("32 hex digits");
        assert_eq!((low, high), (low, low));
        assert_eq!(format!("{low:032x}"), full.to_ascii_lowercase());
        for bad in [
            "3f9a2c1",
            "",
            "3f9a2c1g",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(digest_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_timed_out_scan_says_so_and_scores_nothing() {
        let scan = Scan::timed_out(&Config::embedded());
        let names: Vec<&str> = scan
            .verdict
            .symbols
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["SCAN_TIMEOUT"]);
        assert_eq!(scan.verdict.score, 0.0);
        assert_eq!(scan.verdict.action, crate::verdict::Action::SoftReject);
        assert!(matches!(scan.bayes, Err(Abstain::Skipped)));
    }

    #[test]
    fn digest_ignores_envelope_line_and_crlf() {
        let a = message_digest(b"Subject: x\n\nhello\n");
        let b = message_digest(b"From a@b Mon Jan 1 00:00:00 2024\nSubject: x\r\n\r\nhello\r\n");
        assert_eq!(a, b);
        assert_ne!(a, message_digest(b"Subject: y\n\nhello\n"));
    }
}
