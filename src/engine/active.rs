//! The rules in force with the configuration they complete (`Active`),
//! swapped whole on reload, and the view of them training uses
//! (`RuleTable`: each rule's configured offset and whether it may move).

use std::collections::HashMap;

use crate::checks;
use crate::classifier::Weights;
use crate::classifier::train::RuleTerms;
use crate::config::Config;
use crate::context::ScanContext;
use crate::extract::Features;
use crate::message::{self, Envelope};
use crate::rules::{INCOMPLETE_SYMBOL, Input, RuleSet, RuleTimes, RulesError};

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
        let context = ScanContext::new(raw, envelope, message, Features::default());
        self.rule_hits_of(&context)
    }

    /// [`Active::rule_hits`], adding what each rule took to `times`.
    pub fn rule_hits_timed(
        &self,
        raw: &[u8],
        envelope: &Envelope,
        times: &mut RuleTimes,
    ) -> Vec<String> {
        let message = message::parse(raw, &self.config.limits);
        let context = ScanContext::new(raw, envelope, message, Features::default());
        let input = Input::new(&context);
        let mut symbols = times.time("maps", || checks::maps::check(&self.rules, &input).symbols);
        symbols.extend(self.rules.check_timed(&input, Some(times)));
        let symbols = times.time("metas", || {
            self.rules.finish(symbols, &|name| self.config.weight(name))
        });
        hit_names(symbols)
    }

    /// [`Active::rule_hits`] of a message already in its context.
    pub(super) fn rule_hits_of(&self, context: &ScanContext<'_>) -> Vec<String> {
        let input = Input::new(context);
        let mut symbols = checks::maps::check(&self.rules, &input).symbols;
        symbols.extend(checks::rules::check(&self.rules, &input));
        let symbols = self.rules.finish(symbols, &|name| self.config.weight(name));
        hit_names(symbols)
    }

    /// The rule symbols a message fires that the classifier takes as
    /// features (what [`Engine::learn`] stores with the sample).
    pub(super) fn rule_features(&self, context: &ScanContext<'_>) -> Vec<String> {
        let mut names = self.rule_hits_of(context);
        names.retain(|name| self.is_rule_feature(name));
        names
    }

    /// Whether the classifier learns what symbol `name` is worth: a rule or
    /// map symbol without a forced action (a forced action is final
    /// whatever its points).
    pub(super) fn is_rule_feature(&self, name: &str) -> bool {
        self.config
            .symbols
            .get(name)
            .is_none_or(|symbol| symbol.force_action.is_none())
            && (self.rules.symbols().contains_key(name)
                || crate::policy::replies::LEARNED.contains(&name))
    }

    /// The weight symbol `name` scores with: configured, plus the
    /// classifier's fitted correction unless pinned.
    pub(super) fn fitted_weight(&self, name: &str, weights: &impl Weights) -> Option<f64> {
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

/// Symbol names, sorted and distinct; the rules a scan left undecided as
/// `CHAFF_RULES_INCOMPLETE(backtrack-limit:RULE)`, one name each, so
/// `chaff rules stats` counts them per rule.
fn hit_names(symbols: Vec<crate::symbol::Symbol>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for symbol in symbols {
        if symbol.name == INCOMPLETE_SYMBOL {
            names.extend(
                symbol
                    .options
                    .iter()
                    .map(|option| format!("{INCOMPLETE_SYMBOL}({option})")),
            );
        } else {
            names.push(symbol.name);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The rules' side of training, from the configuration in force: each rule
/// symbol's configured points as log-odds, and whether it may move.
pub(super) struct RuleTable {
    offsets: HashMap<u32, (f64, bool)>,
}

impl RuleTable {
    pub(super) fn new(active: &Active) -> RuleTable {
        let scale = active.config.classifier.points_per_logit;
        let offsets = active
            .rules
            .symbols()
            .keys()
            .map(String::as_str)
            .chain(crate::policy::replies::LEARNED)
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
