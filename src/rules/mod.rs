//! Weighted rules: regular expressions over headers, body, links, the raw
//! message and the envelope; named Rust tests (`eval`); and meta/composite
//! rules over other symbols. Loaded from chaff's TOML rule files
//! (`rules/README.md`) and from SpamAssassin `.cf` files.
//!
//! Loading turns every source into [`RuleSpec`]s, then compiles them once:
//! patterns are grouped by the text they read ([`Target`]) into one
//! [`MultiMatcher`] per target, so each text is scanned once whatever the
//! number of rules; metas are put in dependency order. A scan is then
//! [`RuleSet::check`] (pattern, exists and eval rules → symbols) and, after
//! every other check, [`RuleSet::finish`] (metas, composite policies,
//! hidden `__` sub-rules dropped).

mod atomic;
mod compile;
mod config;
mod domains;
pub mod eval;
pub mod expr;
pub mod input;
mod literals;
mod load;
pub mod maps;
pub mod matcher;
pub mod pattern;
mod relax;
mod sa_facts;
pub mod spamassassin;
mod spec;
pub mod timing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::symbol::Symbol;
use crate::verdict::SymbolConfig;
use maps::MapSet;

use compile::compile;
pub use config::RulesConfig;
pub use eval::EvalFn;
pub use expr::{Expr, Policy, Slotted};
pub use input::{EnvelopeField, HeaderForm, Input, Target};
pub use matcher::{Compiled, Counter, Found, MultiMatcher, Stage};
pub use spec::{LoadReport, Origin, RuleSpec, RulesError, Skip, SkipClass, SpecKind};
pub use timing::RuleTimes;

/// The rule files compiled into the binary (`rules/` in the source tree).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "rules/headers.toml",
        include_str!("../../rules/headers.toml"),
    ),
    ("rules/body.toml", include_str!("../../rules/body.toml")),
    ("rules/html.toml", include_str!("../../rules/html.toml")),
    ("rules/meta.toml", include_str!("../../rules/meta.toml")),
    (
        "rules/phishing.toml",
        include_str!("../../rules/phishing.toml"),
    ),
];

#[derive(Debug)]
struct TargetRules {
    target: Target,
    matcher: MultiMatcher,
    /// Per pattern: its rule index and whether it fires on no match.
    rules: Vec<(usize, bool)>,
    /// The patterns with `negate`, which fire unless they match.
    negated: Vec<u32>,
}

#[derive(Debug)]
struct Meta {
    symbol: String,
    expr: Expr,
    policy: Policy,
    /// `expr` over [`RuleSet::meta_slots`], and this meta's own slot.
    slotted: Slotted,
    slot: u32,
}

/// Compiled rules, ready to scan.
#[derive(Debug)]
pub struct RuleSet {
    /// Weight, description, group, forced action of every rule symbol.
    symbols: BTreeMap<String, SymbolConfig>,
    names: Vec<String>,
    /// Counting rules (`max_hits` > 1): rule → its counter and limit.
    counters: HashMap<usize, (Counter, u32)>,
    targets: Vec<TargetRules>,
    exists: Vec<(String, bool, usize)>,
    evals: Vec<(EvalFn, bool, usize)>,
    metas: Vec<Meta>,
    /// A slot for every symbol a meta names or is: metas read their
    /// members from a slice, not by hashing names.
    meta_slots: HashMap<String, u32>,
    /// Slot → the metas (indices into `metas`) that read it.
    meta_readers: Vec<Vec<u32>>,
    /// Slot → its value on a message no rule fires on (a meta's own slot:
    /// whether it fires then, as `!__X` does). A meta none of whose slots
    /// differs from this on a message has its value from here, unevaluated.
    meta_defaults: Vec<f64>,
    hidden: HashSet<String>,
    pub maps: MapSet,
    pub report: LoadReport,
    /// Files (and directories) read, with their modification times.
    watched: Vec<(PathBuf, Option<SystemTime>)>,
    /// Rule time per message (`rules.budget_ms`), `None` for no budget.
    budget: Option<Duration>,
}

/// The symbol a scan gets when some rule could not be decided: options
/// `backtrack-limit:RULE` (fancy-regex gave up on the text) and
/// `budget:RULE` (not run: the message's rule time was spent). Weight 0:
/// it tells the admin, it does not score.
pub const INCOMPLETE_SYMBOL: &str = "CHAFF_RULES_INCOMPLETE";

impl RuleSet {
    /// No rules at all (`rules.enabled = false`).
    pub fn empty() -> RuleSet {
        RuleSet {
            symbols: BTreeMap::new(),
            names: Vec::new(),
            counters: HashMap::new(),
            targets: Vec::new(),
            exists: Vec::new(),
            evals: Vec::new(),
            metas: Vec::new(),
            meta_slots: HashMap::new(),
            meta_readers: Vec::new(),
            meta_defaults: Vec::new(),
            hidden: HashSet::new(),
            maps: MapSet::default(),
            report: LoadReport::default(),
            watched: Vec::new(),
            budget: None,
        }
    }

    /// Loads the rules `rules` names (and its maps) and compiles them;
    /// metas may also name `configured`, the symbols the configuration
    /// declares elsewhere (`Config::symbol_names`).
    pub fn load(rules: &RulesConfig, configured: &[String]) -> Result<RuleSet, RulesError> {
        if !rules.enabled {
            return Ok(RuleSet::empty());
        }
        let mut sources = load::Sources::default();
        if rules.builtin {
            for (name, text) in BUILTIN {
                sources.parse_toml(name, text, None)?;
            }
        }
        for path in &rules.paths {
            sources.add_toml_path(path)?;
        }
        let mut report = LoadReport::default();
        for path in &rules.spamassassin {
            sources.add_spamassassin(path, rules.spamassassin_score_set, &mut report)?;
        }
        let maps = MapSet::load(&sources.maps)?;
        let mut watched = sources.watched;
        watched.extend(maps.watched());
        let map_symbols: Vec<String> = maps.specs().map(|m| m.symbol.clone()).collect();
        let mut set = compile(sources.specs, configured, report, &map_symbols)?;
        for map in maps.specs() {
            set.symbols.insert(
                map.symbol.clone(),
                SymbolConfig {
                    weight: map.weight,
                    description: map.description.clone(),
                    group: Some("maps".into()),
                    force_action: map.action,
                    pinned: false,
                },
            );
        }
        set.maps = maps;
        set.watched = watched;
        set.budget = (rules.budget_ms > 0).then(|| Duration::from_millis(rules.budget_ms));
        Ok(set)
    }

    /// Compiles rules from TOML texts (name, text) alone, without the
    /// built-in set or any file; for tests and benchmarks.
    pub fn from_toml(texts: &[(&str, &str)], configured: &[String]) -> Result<RuleSet, RulesError> {
        let mut sources = load::Sources::default();
        for (name, text) in texts {
            sources.parse_toml(name, text, None)?;
        }
        let maps = MapSet::load(&sources.maps)?;
        let mut set = compile(sources.specs, configured, LoadReport::default(), &[])?;
        set.maps = maps;
        Ok(set)
    }

    /// Compiles SpamAssassin `.cf` texts (name, text) alone, without the
    /// built-in set or any file; for tests, benchmarks and the fuzz targets.
    pub fn from_spamassassin_texts(
        texts: &[(&str, &str)],
        score_set: usize,
        configured: &[String],
    ) -> Result<RuleSet, RulesError> {
        let mut parser = spamassassin::CfParser::new(score_set);
        for (name, text) in texts {
            parser.parse(name, text);
        }
        let mut report = LoadReport::default();
        let specs = parser.finish(&mut report);
        compile(specs, configured, report, &[])
    }

    /// Whether any file this set was loaded from changed since.
    pub fn changed(&self) -> bool {
        self.watched
            .iter()
            .any(|(path, mtime)| load::mtime(path) != *mtime)
    }

    /// Weight, description and group of every rule symbol.
    pub fn symbols(&self) -> &BTreeMap<String, SymbolConfig> {
        &self.symbols
    }

    /// Number of rules that can fire (patterns, exists, evals, metas).
    pub fn len(&self) -> usize {
        self.names.len() + self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs the pattern, exists and eval rules.
    ///
    /// Work per message follows the rules that could match it, not the
    /// number of rules: nothing here is sized by the ruleset.
    pub fn check(&self, input: &Input<'_>) -> Vec<Symbol> {
        self.check_timed(input, None)
    }

    /// [`RuleSet::check`], adding to `times` what each text, pattern
    /// group, rule and eval took (`chaff rules stats --timing`).
    pub fn check_timed(&self, input: &Input<'_>, mut times: Option<&mut RuleTimes>) -> Vec<Symbol> {
        let deadline = self.budget.map(|budget| Instant::now() + budget);
        let mut fired: Vec<usize> = Vec::new();
        // (rule, matches) of the counting rules that fired.
        let mut counted: Vec<(usize, u32)> = Vec::new();
        let mut found = Found::default();
        // Rules left undecided, as `INCOMPLETE_SYMBOL`'s options.
        let mut undecided: Vec<String> = Vec::new();
        for group in &self.targets {
            let texts = match times.as_deref_mut() {
                None => input.texts(&group.target),
                Some(times) => times.time(format!("{} text", group.target), || {
                    input.texts(&group.target)
                }),
            };
            // Every text of the target (one, but each MIME part's value for
            // a `mimeheader` rule, as SpamAssassin matches them one by one):
            // a pattern matches the target when it matches one of them.
            let mut matched: Vec<u32> = Vec::new();
            for text in &texts {
                found.clear();
                match times.as_deref_mut() {
                    None => group
                        .matcher
                        .matches_timed(text, &mut found, deadline, None),
                    Some(times) => {
                        let mut add = |stage: Stage, took| {
                            times.add(self.stage_name(group, stage), took);
                        };
                        group
                            .matcher
                            .matches_timed(text, &mut found, deadline, Some(&mut add));
                    }
                }
                let rule_name = |pattern: &u32| {
                    group
                        .rules
                        .get(*pattern as usize)
                        .and_then(|&(rule, _)| self.names.get(rule))
                        .map_or("?", String::as_str)
                };
                undecided.extend(
                    found
                        .exhausted
                        .iter()
                        .map(|p| format!("backtrack-limit:{}", rule_name(p))),
                );
                undecided.extend(
                    found
                        .over_budget
                        .iter()
                        .map(|p| format!("budget:{}", rule_name(p))),
                );
                for &pattern in &found.matched {
                    if let Some(&(rule, false)) = group.rules.get(pattern as usize) {
                        fired.push(rule);
                        // Counted only once the rule is known to match, so
                        // the extra pass is paid by the few rules that fire.
                        if let Some((counter, limit)) = self.counters.get(&rule) {
                            let hits = counter.count(text, *limit);
                            match counted.iter_mut().find(|(r, _)| *r == rule) {
                                Some((_, total)) => *total = (*total + hits).min(*limit),
                                None => counted.push((rule, hits)),
                            }
                        }
                    }
                }
                matched.extend_from_slice(&found.matched);
            }
            if !group.negated.is_empty() {
                matched.sort_unstable();
                for &pattern in &group.negated {
                    if matched.binary_search(&pattern).is_err()
                        && let Some(&(rule, _)) = group.rules.get(pattern as usize)
                    {
                        fired.push(rule);
                    }
                }
            }
        }
        for (header, negate, rule) in &self.exists {
            if input.has_header(header) != *negate {
                fired.push(*rule);
            }
        }
        for (function, negate, rule) in &self.evals {
            let fires = match times.as_deref_mut() {
                None => function.run(input),
                Some(times) => {
                    let name = self.names.get(*rule).map_or("?", String::as_str);
                    times.time(format!("{name} (eval)"), || function.run(input))
                }
            };
            if fires != *negate {
                fired.push(*rule);
            }
        }
        if let Some(times) = times {
            times.messages += 1;
        }
        // In rule order, as they were written.
        fired.sort_unstable();
        fired.dedup();
        let mut symbols: Vec<Symbol> = fired
            .into_iter()
            .filter_map(|rule| {
                let mut symbol = Symbol::new(self.names.get(rule)?.clone());
                if let Some(&(_, hits)) = counted.iter().find(|(r, _)| *r == rule) {
                    symbol.hits = hits.max(1);
                }
                Some(symbol)
            })
            .collect();
        if !undecided.is_empty() {
            undecided.sort();
            undecided.dedup();
            let mut incomplete = Symbol::new(INCOMPLETE_SYMBOL);
            incomplete.options = undecided;
            symbols.push(incomplete);
        }
        symbols
    }

    /// How `chaff rules stats --timing` names a matcher stage of `group`.
    fn pattern_rule_name(&self, group: &TargetRules, pattern: u32) -> &str {
        group
            .rules
            .get(pattern as usize)
            .and_then(|&(rule, _)| self.names.get(rule))
            .map_or("?", String::as_str)
    }

    fn stage_name(&self, group: &TargetRules, stage: Stage) -> String {
        match stage {
            Stage::Prefilter => format!("{} literal prefilter", group.target),
            Stage::Set(number) => {
                let members: Vec<&str> = group
                    .matcher
                    .set_members(number)
                    .iter()
                    .map(|&pattern| self.pattern_rule_name(group, pattern))
                    .collect();
                format!("{} no-literal set: {}", group.target, members.join(" "))
            }
            Stage::Pattern(pattern) => {
                let name = self.pattern_rule_name(group, pattern);
                let how = if group.matcher.is_fancy(pattern) {
                    "fancy-regex"
                } else {
                    "confirm"
                };
                format!("{name} ({}, {how})", group.target.kind())
            }
        }
    }

    /// Works out, once the metas are in place, which metas read each slot
    /// and every slot's value on a message no rule fires on.
    pub(super) fn plan_metas(&mut self) {
        let slots = self.meta_slots.len();
        self.meta_readers = vec![Vec::new(); slots];
        for (index, meta) in self.metas.iter().enumerate() {
            let mut read = Vec::new();
            meta.slotted.slots(&mut read);
            read.sort_unstable();
            read.dedup();
            for slot in read {
                if let Some(readers) = self.meta_readers.get_mut(slot as usize) {
                    readers.push(index as u32);
                }
            }
        }
        self.meta_defaults = vec![0.0; slots];
        for meta in &self.metas {
            if meta.slotted.eval(&self.meta_defaults) != 0.0
                && let Some(value) = self.meta_defaults.get_mut(meta.slot as usize)
            {
                *value = 1.0;
            }
        }
    }

    /// Evaluates metas over all symbols found, applies composite policies
    /// to their members and drops hidden symbols. `weight` gives the
    /// configured weight of a symbol.
    pub fn finish(&self, symbols: Vec<Symbol>, weight: &dyn Fn(&str) -> f64) -> Vec<Symbol> {
        self.finish_metas(symbols, weight, false)
    }

    /// [`RuleSet::finish`]; with `every_meta`, each meta is evaluated
    /// instead of only those reading a slot that differs from its value on
    /// a message no rule fires on (which the tests compare).
    fn finish_metas(
        &self,
        mut symbols: Vec<Symbol>,
        weight: &dyn Fn(&str) -> f64,
        every_meta: bool,
    ) -> Vec<Symbol> {
        if self.metas.is_empty() && self.hidden.is_empty() {
            return symbols;
        }
        // Slot → its value in expressions: 1, or a counting rule's matches;
        // and whether that symbol is present at all. A meta is evaluated
        // only when a slot it reads moved from its default: most of a
        // SpamAssassin ruleset's hundreds of metas read rules that did not
        // fire.
        let mut values = self.meta_defaults.clone();
        values.resize(self.meta_slots.len(), 0.0);
        let mut present = vec![false; self.meta_slots.len()];
        // (A set whose metas were not planned evaluates them all.)
        let every_meta = every_meta || self.meta_readers.len() != self.meta_slots.len();
        let mut stale = vec![every_meta; self.metas.len()];
        let mark_readers = |slot: u32, stale: &mut Vec<bool>| {
            for &reader in self.meta_readers.get(slot as usize).into_iter().flatten() {
                if let Some(flag) = stale.get_mut(reader as usize) {
                    *flag = true;
                }
            }
        };
        for symbol in &symbols {
            if let Some(&slot) = self.meta_slots.get(&symbol.name) {
                values[slot as usize] = f64::from(symbol.hits);
                present[slot as usize] = true;
                mark_readers(slot, &mut stale);
            }
        }
        // Member symbol → the policies of the fired composites naming it.
        let mut removals: HashMap<String, Vec<(Policy, String)>> = HashMap::new();
        let mut fired_metas = Vec::new();
        for (index, meta) in self.metas.iter().enumerate() {
            let slot = meta.slot as usize;
            let default = self.meta_defaults.get(slot).copied().unwrap_or(0.0);
            let fires = if stale.get(index).copied().unwrap_or(true) {
                meta.slotted.eval(&values) != 0.0
            } else {
                default != 0.0
            };
            if f64::from(u8::from(fires)) != default {
                mark_readers(meta.slot, &mut stale);
            }
            if !fires {
                values[slot] = 0.0;
                continue;
            }
            values[meta.slot as usize] = 1.0;
            present[meta.slot as usize] = true;
            fired_metas.push(Symbol::new(meta.symbol.clone()));
            if meta.policy == Policy::Leave {
                continue;
            }
            for (member, prefix, negated) in meta.expr.symbols() {
                let is_present = self
                    .meta_slots
                    .get(member)
                    .is_some_and(|&slot| present[slot as usize]);
                if !negated && is_present {
                    removals
                        .entry(member.to_owned())
                        .or_default()
                        .push((prefix.unwrap_or(meta.policy), meta.symbol.clone()));
                }
            }
        }
        symbols.extend(fired_metas);
        // The least destructive request wins when composites disagree.
        let mut carried: HashMap<String, f64> = HashMap::new();
        symbols.retain_mut(|symbol| {
            let Some(requests) = removals.get(&symbol.name) else {
                return true;
            };
            let all = |ok: fn(Policy) -> bool| requests.iter().all(|(p, _)| ok(*p));
            let drop_weight = all(|p| matches!(p, Policy::RemoveAll | Policy::RemoveWeight));
            let drop_symbol = all(|p| matches!(p, Policy::RemoveAll | Policy::RemoveSymbol));
            if drop_symbol && !drop_weight {
                // `^`: the symbol goes, its points move to the composite.
                let composite = requests.first().map(|(_, c)| c.clone()).unwrap_or_default();
                if weight(&composite) != 0.0 {
                    *carried.entry(composite).or_default() +=
                        weight(&symbol.name) * symbol.strength;
                    return false;
                }
                return true;
            }
            if drop_weight && !drop_symbol {
                symbol.strength = 0.0;
            }
            !(drop_weight && drop_symbol)
        });
        for symbol in &mut symbols {
            if let Some(points) = carried.get(&symbol.name) {
                symbol.strength += points / weight(&symbol.name);
            }
        }
        symbols.retain(|s| !self.hidden.contains(&s.name));
        symbols
    }
}

#[cfg(test)]
mod tests;
