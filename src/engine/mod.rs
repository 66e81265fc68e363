//! The whole pipeline, top to bottom, in one place.
//!
//! ```text
//! bytes + Envelope
//!   → message::parse      Message (decoded headers, visible text, links, parts)
//!   → Features            tokens (count-based Bayes only), fuzzy digests
//!   → ScanContext         what every check reads (URLs on first use)
//!   → maps                allow/deny lists; a forced action ends the scan here
//!   → checks, in order    Vec<Symbol>   (gtube, bayes, fuzzy, rules)
//!   → rules.finish        metas and composites over all symbols
//!   → verdict::combine    score, action (weights: config over rule files)
//! ```
//!
//! The daemon, the CLI and the rescorer are adapters over [`Engine::scan`]
//! and [`Engine::learn`]; none of them parse, tokenize or weigh anything.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::bayes::{self, Abstain, Classification};
use crate::checks;
use crate::classifier::ModelFeatures;
use crate::config::Config;
use crate::context::ScanContext;
use crate::extract::{Features, Tokenizer};
use crate::message::{self, Envelope, Message};
use crate::policy::{self, CheckName, PolicyState, Profiles, ScanRequest};
use crate::rules::{Input, RulesError};
use crate::store::{BayesStore, FuzzyStore, StoreError};
use crate::verdict::{self, Verdict};

mod active;
mod explain;
mod learn;
mod lists;
mod network;
mod upkeep;

pub use active::Active;
pub use explain::{ExplainedFeature, ExplainedRule, ExplainedToken, Explanation};
pub use learn::{FuzzyLearned, LearnError, LearnPreparer, Learned, PreparedLearn};
pub use lists::{EditableList, ListError};

/// Why an engine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rules: {0}")]
    Rules(#[from] RulesError),
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
    /// Distinct host names of the message's URLs, in order (`/checkv2`
    /// `urls`); empty from [`Engine::scan_verdict`].
    pub urls: Vec<String>,
    /// The settings profile the message was scanned under, if any.
    pub profile: Option<String>,
    /// What the policy modules counted (the daemon's metrics).
    pub policy: policy::Counted,
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
            profile: None,
            policy: policy::Counted::default(),
        }
    }
}

/// Fewest learns since the last training that [`Engine::training_due`]
/// retrains for by `classifier.retrain_fraction`.
pub(super) const MIN_LEARNS_TO_RETRAIN: u64 = 16;

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
    /// The settings profiles, checked and ordered.
    profiles: Profiles,
    /// Rate limits, greylisting and replies: only the daemon attaches it.
    policy: Option<PolicyState>,
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
            profiles: parts.profiles,
            policy: None,
        }
    }

    /// Opens the policy state in `data_dir` (`policy.lock` taken) so that
    /// scans count rate limits, greylist and remember replies. The daemon
    /// does this; a CLI scan or a rescore never counts against a sender.
    pub fn attach_policy(&mut self, data_dir: &Path) -> Result<(), policy::StateError> {
        let config = &self.config.policy;
        let mut state = PolicyState::open(
            data_dir,
            config.max_entries,
            Duration::from_millis(config.sync_interval_ms.max(1)),
        )?;
        state.share(&self.config.redis)?;
        self.policy = Some(state);
        Ok(())
    }

    /// The attached policy state, for `chaff policy` through the controller.
    pub fn policy_state(&self) -> Option<&PolicyState> {
        self.policy.as_ref()
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

    /// A message's features, built whole in this one place: the
    /// count-based Bayes' tokens when it is in use, and the fuzzy digests
    /// when `with_fuzzy` (a scan asks only when the fuzzy store could match
    /// anything; a fuzzy report always). URLs come from the context on
    /// first use; the classifier draws its own indices (`classify`).
    fn features(&self, raw: &[u8], message: &Message, with_fuzzy: bool) -> Features {
        let mut features = if counts_in_use(&self.config) {
            Features::statistical(raw, message, &self.tokenizer)
        } else {
            Features::default()
        };
        if with_fuzzy {
            features.fuzzy =
                crate::fuzzy::FuzzyDigests::compute(message, &self.config.fuzzy.params());
        }
        features
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses a message within the configured limits.
    pub fn parse(&self, raw: &[u8]) -> Message {
        message::parse(raw, &self.config.limits)
    }

    /// Scans one message: the whole pipeline, and the reply's URL hosts.
    pub fn scan(&self, raw: &[u8], envelope: &Envelope) -> Scan {
        self.scan_reporting(raw, envelope, &ScanRequest::default(), true)
    }

    /// [`Engine::scan`] with what the request says of its settings
    /// (`Settings-ID`, `Settings`, spamd's `User`).
    pub fn scan_request(&self, raw: &[u8], envelope: &Envelope, request: &ScanRequest) -> Scan {
        self.scan_reporting(raw, envelope, request, true)
    }

    /// [`Engine::scan`] for what needs only the verdict (the rescorer):
    /// URLs are extracted only if a check reads them, not for the reply.
    pub fn scan_verdict(&self, raw: &[u8], envelope: &Envelope) -> Scan {
        self.scan_reporting(raw, envelope, &ScanRequest::default(), false)
    }

    fn scan_reporting(
        &self,
        raw: &[u8],
        envelope: &Envelope,
        request: &ScanRequest,
        report_urls: bool,
    ) -> Scan {
        let active = self.active();
        let message = self.parse(raw);
        let features = self.features(raw, &message, !self.fuzzy.is_empty());
        let context = ScanContext::new(raw, envelope, message, features);
        let input = Input::new(&context);
        // The profile: thresholds, weights and checks for this message.
        let applied = self.profiles.select(&context.envelope, request);
        let runs = |check| applied.runs(check);
        let now_ms = policy::unix_now_ms();

        // Maps first: an allow/deny map with a forced action ends the scan
        // here, as rspamd's multimap prefilter does.
        let maps = checks::maps::check(&active.rules, &input);
        let mut symbols = maps.symbols;
        let mut bayes = Err(bayes::Abstain::Skipped);
        if !maps.stop {
            symbols.extend(checks::gtube::check(&context));
            if runs(CheckName::Classifier) {
                let (bayes_symbol, classified) = self.classify(&context);
                bayes = classified;
                symbols.extend(bayes_symbol);
            }
            if runs(CheckName::Fuzzy) {
                symbols.extend(checks::fuzzy::check(
                    &context,
                    &self.fuzzy,
                    &self.config.fuzzy,
                    unix_now(),
                ));
            }
            if runs(CheckName::Rules) {
                symbols.extend(checks::rules::check(&active.rules, &input));
            }
            symbols.extend(self.list_checks(&context, &applied));
            if let Some(state) = &self.policy {
                symbols.extend(policy::before(
                    &self.config.policy_modules(),
                    state,
                    &context.envelope,
                    &context.message,
                    now_ms / 1000,
                ));
            }
        }
        let scoring = active.config.scoring().with_settings(&applied.settings);
        let plain = applied.is_plain();
        let counts = |symbol: &checks::Symbol| {
            plain
                || applied
                    .settings
                    .counts(&symbol.name, active.config.group(&symbol.name))
        };
        // Metas and composites see every symbol found above that counts.
        symbols.retain(|s| counts(s));
        let mut symbols = active.rules.finish(symbols, &|name| scoring.weight(name));
        symbols.retain(|s| counts(s));

        // Once the classifier speaks, rules score the weights it fitted to
        // this site's mail (the configured ones, for a young model).
        let classifier_speaks = self.config.classifier.enabled && bayes.is_ok();
        let fitted = |name: &str| {
            classifier_speaks
                .then(|| active.fitted_weight(name, &self.store))
                .flatten()
        };
        let mut verdict =
            verdict::combine_fitted(symbols, scoring, &context.message.subject, &fitted);
        if let Some(profile) = &applied.profile {
            verdict.add_symbol(
                checks::Symbol::new("CHAFF_PROFILE").with_option(profile.clone()),
                &scoring,
            );
        }
        let counted = match &self.policy {
            Some(state) => policy::after(
                &self.config.policy_modules(),
                state,
                &policy::Scanned {
                    envelope: &context.envelope,
                    applied: &applied,
                    message_id: context.message.message_id.as_deref(),
                    now_ms,
                },
                &mut verdict,
                &scoring,
            ),
            None => policy::Counted::default(),
        };
        let urls = if report_urls {
            context.url_hosts()
        } else {
            Vec::new()
        };
        drop(input);
        let (message, _) = context.into_parts();
        Scan {
            verdict,
            message_id: message.message_id,
            subject: message.subject,
            bayes,
            urls,
            profile: applied.profile,
            policy: counted,
        }
    }

    /// BAYES_SPAM / BAYES_HAM: the discriminative classifier's text share,
    /// or with `[classifier] enabled = false` the count-based Bayes.
    fn classify(
        &self,
        context: &ScanContext<'_>,
    ) -> (
        Option<checks::Symbol>,
        Result<bayes::Classification, Abstain>,
    ) {
        if !self.config.classifier.enabled {
            return checks::bayes::check(context, &self.store, &self.config.bayes);
        }
        let learns = self.store.learns();
        let min_learns = self.config.classifier.min_learns;
        let model_features = if learns.0 < min_learns || learns.1 < min_learns {
            // It will abstain: not worth extracting the model's features for.
            ModelFeatures::default()
        } else {
            ModelFeatures::for_scan(&context.message, context.raw, &self.tokenizer)
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
        context: &ScanContext<'_>,
        applied: &policy::Applied,
    ) -> Vec<checks::Symbol> {
        let mut symbols = checks::envelope::check(context, &self.config.envelope);
        if applied.runs(CheckName::Network) {
            symbols.extend(self.network_checks(context));
        }
        // After the network checks, which record in the context where
        // shortener links led (judged with the links) and which DKIM
        // signatures verified (a brand's own clears its name).
        symbols.extend(checks::uri::check(context, &self.lists.urls));
        if let Some(phishing) = &self.lists.phishing
            && applied.runs(CheckName::Phishing)
        {
            symbols.extend(checks::phishing::check(context, phishing));
        }
        crate::lists::merge_symbols(symbols)
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
        self.profiles = parts.profiles;
        self.tokenizer = parts.tokenizer;
        self.config = parts.config;
        if let Ok(mut current) = self.active.write() {
            *current = parts.active;
        }
        if let Ok(mut checked) = self.rules_checked.lock() {
            *checked = Instant::now();
        }
    }
}

/// Whether the count-based Bayes is in use: it scores only with
/// `[classifier] enabled = false`, and only then are its token counts
/// learned or its tokens drawn at a scan. The classifier beat it at every
/// model size measured (issue 15), so by default a learn records the
/// classifier's sample and no counts; turning the classifier off means
/// learning again.
pub(super) fn counts_in_use(config: &Config) -> bool {
    !config.classifier.enabled
}

/// What an engine builds from a configuration: the tokenizer, the lists
/// (and the resolver), the rules with the weights they complete. Built in
/// this one place, at start and at reload alike, so the two cannot differ.
pub(super) struct Parts {
    config: Config,
    tokenizer: Tokenizer,
    lists: crate::lists::Lists,
    active: Arc<Active>,
    profiles: Profiles,
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
            lists: crate::lists::Lists::new(&config.url_lists, &config.network, &config.phishing),
            tokenizer: Parts::tokenizer_of(&config),
            // Checked when the config was loaded: a failure here is a
            // config built by hand, and runs with no profiles.
            profiles: Profiles::new(&config.profiles).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::learn::digest_range;
    use super::*;
    use crate::store::Class;

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
