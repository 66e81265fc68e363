//! Allow/deny maps (`src/maps`): client IPs and networks, HELO names,
//! senders, recipients, From addresses, link hosts. A map bound to a forced
//! action ends the scan (`MapHits::stop`), as rspamd's multimap prefilter.

use crate::rules::maps::MapHits;
use crate::rules::{Input, RuleSet};

/// Every map that matches, with the value that matched as the option.
pub fn check(rules: &RuleSet, input: &Input<'_>) -> MapHits {
    rules.maps.check(input)
}
