//! Compiling specs into a [`RuleSet`]: names checked, later SpamAssassin
//! definitions replacing earlier ones, patterns grouped per text into one
//! `MultiMatcher` each, metas checked against every known symbol (a
//! lenient meta naming a skipped one is skipped in turn) and ordered so
//! each runs after what it names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::domains::DomainGate;
use super::expr::{Expr, Policy};
use super::input::Target;
use super::matcher::{Compiled, Counter, MultiMatcher};
use super::spec::{LoadReport, Origin, RuleSpec, RulesError, SkipClass, SpecKind};
use super::{Meta, RuleSet, TargetRules};
use crate::verdict::SymbolConfig;

/// One target's patterns while compiling.
#[derive(Default)]
struct PatternGroup {
    compiled: Vec<Compiled>,
    sources: Vec<String>,
    /// Per pattern, the domain list its text must name, if any.
    lookups: Vec<Option<Arc<DomainGate>>>,
    /// Per pattern, its rule index and negation.
    rules: Vec<(usize, bool)>,
}

/// Compiles specs into a [`RuleSet`]. Chaff rules that cannot compile are
/// errors; lenient (SpamAssassin) ones are skipped and reported.
pub(super) fn compile(
    specs: Vec<RuleSpec>,
    configured: &[String],
    mut report: LoadReport,
    extra_symbols: &[String],
) -> Result<RuleSet, RulesError> {
    // Later definitions of a lenient rule replace earlier ones (as in
    // SpamAssassin); a strict rule defined twice is an error.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<Option<RuleSpec>> = Vec::new();
    for spec in specs {
        if !valid_symbol(&spec.symbol) {
            let message = format!("`{}` is not a symbol name ([A-Za-z0-9_])", spec.symbol);
            if spec.lenient {
                report.skip(&spec, SkipClass::BadName, message);
                continue;
            }
            return Err(RulesError::new(spec.origin, message));
        }
        match by_name.get(&spec.symbol) {
            Some(&at) => {
                let previous = kept[at].as_ref().map(|p| (p.origin.clone(), p.lenient));
                if let Some((previous_origin, false)) = &previous
                    && spec.lenient
                {
                    report.skip(
                        &spec,
                        SkipClass::Duplicate,
                        format!("a chaff rule of this name is at {previous_origin}"),
                    );
                    continue;
                }
                if let Some((previous_origin, previous_lenient)) = previous
                    && !(spec.lenient && previous_lenient)
                {
                    return Err(RulesError::new(
                        spec.origin,
                        format!(
                            "symbol {} is already defined at {previous_origin}",
                            spec.symbol
                        ),
                    ));
                }
                kept[at] = Some(spec);
            }
            None => {
                by_name.insert(spec.symbol.clone(), kept.len());
                kept.push(Some(spec));
            }
        }
    }
    let specs: Vec<RuleSpec> = kept.into_iter().flatten().collect();

    let mut set = RuleSet::empty();
    let mut patterns: BTreeMap<Target, PatternGroup> = BTreeMap::new();
    let mut metas: Vec<(RuleSpec, Expr, Policy)> = Vec::new();
    let add_symbol = |set: &mut RuleSet, spec: &RuleSpec| {
        if spec.hidden {
            set.hidden.insert(spec.symbol.clone());
        } else {
            set.symbols.insert(
                spec.symbol.clone(),
                SymbolConfig {
                    weight: spec.weight,
                    description: spec.description.clone(),
                    group: spec.group.clone(),
                    force_action: spec.force_action,
                    pinned: false,
                },
            );
        }
    };
    for spec in specs {
        match &spec.kind {
            SpecKind::Pattern {
                target,
                source,
                negate,
                lookup,
            } => {
                let compiled = match Compiled::new(source) {
                    Ok(c) => c,
                    Err(error) if spec.lenient => {
                        report.skip(&spec, SkipClass::Regex, error.to_string());
                        continue;
                    }
                    Err(error) => {
                        return Err(RulesError::new(
                            spec.origin,
                            format!("bad regex for {}: {error}", spec.symbol),
                        ));
                    }
                };
                let entry = patterns.entry(target.clone()).or_default();
                entry.compiled.push(compiled);
                entry.sources.push(source.clone());
                entry.lookups.push(lookup.clone());
                if spec.max_hits > 1 && !*negate {
                    // Compiles: the matcher's copy above took the same source.
                    if let Ok(counter) = Counter::new(source) {
                        set.counters
                            .insert(set.names.len(), (counter, spec.max_hits));
                    }
                }
                entry.rules.push((set.names.len(), *negate));
                set.names.push(spec.symbol.clone());
                add_symbol(&mut set, &spec);
            }
            SpecKind::Exists { header, negate } => {
                set.exists.push((header.clone(), *negate, set.names.len()));
                set.names.push(spec.symbol.clone());
                add_symbol(&mut set, &spec);
            }
            SpecKind::Eval { function, negate } => {
                set.evals.push((*function, *negate, set.names.len()));
                set.names.push(spec.symbol.clone());
                add_symbol(&mut set, &spec);
            }
            SpecKind::Meta { expr, policy } => {
                let (expr, policy) = (expr.clone(), *policy);
                metas.push((spec, expr, policy));
            }
        }
    }
    for (target, group) in patterns {
        let PatternGroup {
            compiled,
            sources,
            lookups,
            rules,
        } = group;
        for _ in &rules {
            *report.loaded.entry(target.kind().to_owned()).or_default() += 1;
        }
        let matcher = MultiMatcher::build(compiled, &sources, lookups).map_err(|e| {
            RulesError::new(
                Origin {
                    file: "(rules)".into(),
                    line: 0,
                },
                format!("cannot build the {} matcher: {e}", target.kind()),
            )
        })?;
        let shape = matcher.shape();
        report.prefiltered += shape.prefiltered;
        report.in_set += shape.in_set;
        report.alone += shape.alone;
        report.fancy += shape.fancy;
        report.gated += shape.gated;
        report.looked_up += shape.looked_up;
        let negated = (0..rules.len() as u32)
            .filter(|&i| rules.get(i as usize).is_some_and(|r| r.1))
            .collect();
        set.targets.push(TargetRules {
            target,
            matcher,
            rules,
            negated,
        });
    }
    *report.loaded.entry("exists".into()).or_default() += set.exists.len();
    *report.loaded.entry("eval".into()).or_default() += set.evals.len();

    // Metas: every symbol named must exist; a lenient meta naming a skipped
    // or unknown symbol is skipped (and so, in turn, are metas naming it).
    let mut known: HashSet<String> = set.names.iter().cloned().collect();
    known.extend(configured.iter().cloned());
    known.extend(extra_symbols.iter().cloned());
    known.extend(metas.iter().map(|(spec, _, _)| spec.symbol.clone()));
    known.extend(report.not_run.iter().map(|rule| rule.symbol.clone()));
    loop {
        let mut removed = false;
        let mut still = Vec::new();
        for (spec, expr, policy) in metas {
            let missing = expr
                .symbols()
                .into_iter()
                .map(|(name, _, _)| name)
                .find(|name| !known.contains(*name))
                .map(str::to_owned);
            match missing {
                None => still.push((spec, expr, policy)),
                Some(name) if spec.lenient => {
                    known.remove(&spec.symbol);
                    report.skip(
                        &spec,
                        SkipClass::Meta,
                        format!("depends on unknown or skipped {name}"),
                    );
                    removed = true;
                }
                Some(name) => {
                    return Err(RulesError::new(
                        spec.origin,
                        format!("meta {}: unknown symbol {name}", spec.symbol),
                    ));
                }
            }
        }
        metas = still;
        if !removed {
            break;
        }
    }
    // Dependency order (metas naming metas), cycles refused.
    let index: HashMap<String, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, (spec, _, _))| (spec.symbol.clone(), i))
        .collect();
    let mut state = vec![0u8; metas.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(metas.len());
    for start in 0..metas.len() {
        visit(start, &metas, &index, &mut state, &mut order, &mut report)?;
    }
    let mut slots: Vec<Option<(RuleSpec, Expr, Policy)>> = metas.into_iter().map(Some).collect();
    for i in order {
        if let Some((spec, expr, policy)) = slots[i].take() {
            add_symbol(&mut set, &spec);
            *report.loaded.entry("meta".into()).or_default() += 1;
            let mut slot_of = |name: &str| {
                let next = set.meta_slots.len() as u32;
                *set.meta_slots.entry(name.to_owned()).or_insert(next)
            };
            let slotted = expr.slotted(&mut slot_of);
            let slot = slot_of(&spec.symbol);
            set.metas.push(Meta {
                symbol: spec.symbol,
                expr,
                policy,
                slotted,
                slot,
            });
        }
    }
    set.plan_metas();
    report.loaded.retain(|_, n| *n > 0);
    set.report = report;
    Ok(set)
}

fn visit(
    at: usize,
    metas: &[(RuleSpec, Expr, Policy)],
    index: &HashMap<String, usize>,
    state: &mut [u8],
    order: &mut Vec<usize>,
    report: &mut LoadReport,
) -> Result<bool, RulesError> {
    match state[at] {
        2 => return Ok(true),
        1 => {
            let spec = &metas[at].0;
            if spec.lenient {
                report.skip(spec, SkipClass::Meta, "dependency cycle");
                return Ok(false);
            }
            return Err(RulesError::new(
                spec.origin.clone(),
                format!("meta {} depends on itself", spec.symbol),
            ));
        }
        _ => {}
    }
    state[at] = 1;
    let mut ok = true;
    for (name, _, _) in metas[at].1.symbols() {
        if let Some(&dep) = index.get(name) {
            ok &= visit(dep, metas, index, state, order, report)?;
        }
    }
    state[at] = 2;
    if ok {
        order.push(at);
    }
    Ok(ok)
}

fn valid_symbol(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}
