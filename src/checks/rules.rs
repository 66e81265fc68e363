//! Weighted rules: regexes over headers, body, links, the raw message and
//! the envelope, and named `eval` tests (`src/rules`, `rules/README.md`).
//!
//! One symbol per rule that fired; its weight comes from the rule file
//! unless `[symbols.NAME]` in the config says otherwise. Metas and
//! composites run later, over every check's symbols (`RuleSet::finish`).

use crate::rules::{Input, RuleSet};
use crate::symbol::Symbol;

/// The pattern, exists and eval rules that fire on the message.
pub fn check(rules: &RuleSet, input: &Input<'_>) -> Vec<Symbol> {
    rules.check(input)
}
