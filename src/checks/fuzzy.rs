//! FUZZY_DENIED / FUZZY_ALLOWED / …: the message is a (near-)copy of one
//! reported to a fuzzy list.
//!
//! One symbol per list flag (`[fuzzy.flags.N] symbol`), its options one
//! `flag:digest-prefix:match%` per matched stored digest (`1:3f9a2c1b:87%`),
//! as rspamd's fuzzy_check shows them. Strength, as rspamd's: the best
//! match's similarity × tanh(e × weight / max_score), so one report of a
//! list with `max_score = 1` counts almost fully and more reports saturate.

use crate::context::ScanContext;
use crate::fuzzy::FuzzyConfig;
use crate::store::{FuzzyStore, LookupParams};
use crate::symbol::Symbol;

/// Looks the message's digests up and turns matches into symbols.
pub fn check(
    context: &ScanContext<'_>,
    store: &FuzzyStore,
    config: &FuzzyConfig,
    now: u64,
) -> Vec<Symbol> {
    let features = &context.features;
    if features.fuzzy.is_empty() {
        return Vec::new();
    }
    let params = LookupParams {
        now,
        expire_secs: config.expire_secs(),
        min_similarity: config.min_similarity,
    };
    let mut matches = store.lookup(&features.fuzzy, &params);
    matches.sort_by(|a, b| {
        a.flag
            .cmp(&b.flag)
            .then(b.similarity.total_cmp(&a.similarity))
    });
    let mut symbols: Vec<(u32, Symbol)> = Vec::new();
    for found in matches {
        let Some(list) = config.flag(found.flag) else {
            continue;
        };
        let strength = found.similarity
            * (std::f64::consts::E * f64::from(found.weight) / list.max_score).tanh();
        let option = format!(
            "{}:{:08x}:{:.0}%",
            found.flag,
            (found.digest >> 96) as u32,
            found.similarity * 100.0
        );
        match symbols.iter_mut().find(|(flag, _)| *flag == found.flag) {
            Some((_, symbol)) => {
                symbol.strength = symbol.strength.max(strength);
                symbol.options.push(option);
            }
            None => symbols.push((
                found.flag,
                Symbol::new(list.symbol.clone())
                    .with_strength(strength)
                    .with_option(option),
            )),
        }
    }
    symbols.into_iter().map(|(_, symbol)| symbol).collect()
}
