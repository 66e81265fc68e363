//! POLICY: for whom a message is scanned and how often its sender may
//! send. Profiles (`settings.rs`) choose thresholds, weights and checks
//! per message from its envelope or the request; the stateful modules —
//! rate limits (`ratelimit.rs`), greylisting (`greylist.rs`), trusted
//! replies and known senders (`replies.rs`) — keep what they remember in
//! one embedded store in the data dir (`state.rs`).
//!
//! Only the daemon opens the state (`Engine::attach_policy`): a CLI scan or
//! a rescore runs profiles but never counts against a sender's allowance.
//! The engine calls [`before`] with the checks (its symbols score like any
//! other) and [`after`] once the verdict is known (rate limits and
//! greylisting read the score); neither reads another check's work.

pub mod entry;
pub mod greylist;
pub mod ratelimit;
pub mod replies;
pub mod settings;
pub mod shared;
pub mod state;

use serde::Deserialize;

pub use settings::{Applied, CheckName, ProfileConfig, Profiles, ScanRequest, Settings};
pub use state::{PolicyState, StateError};

use crate::message::{Envelope, Message};
use crate::symbol::Symbol;
use crate::verdict::{Action, Scoring, Verdict};

pub use shared::RedisConfig;

/// `[policy]`: the state store's bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Entries kept at most (buckets, triplets, Message-IDs, senders).
    pub max_entries: usize,
    /// How often the journal is fsynced (a `kill -9` loses nothing either
    /// way; this bounds what a power cut can take).
    pub sync_interval_ms: u64,
}

/// The policy modules' sections of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Modules<'a> {
    pub ratelimit: &'a ratelimit::RatelimitConfig,
    pub greylist: &'a greylist::GreylistConfig,
    pub replies: &'a replies::RepliesConfig,
}

/// Symbols from the state for a message before it is scored.
pub fn before(
    config: &Modules<'_>,
    state: &PolicyState,
    envelope: &Envelope,
    message: &Message,
    now: u64,
) -> Vec<Symbol> {
    replies::check(config.replies, state, envelope, message, now)
}

/// What [`after`] counted, for the daemon's metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counted {
    pub ratelimited: bool,
    pub greylisted: bool,
    pub spam_burst: bool,
}

/// What [`after`] reads of the scanned message.
pub struct Scanned<'a> {
    pub envelope: &'a Envelope,
    pub applied: &'a Applied,
    pub message_id: Option<&'a str>,
    pub now_ms: u64,
}

/// Rate limits, greylisting and remembering replies, once the verdict is
/// known; may hold or defer the message. A state that cannot be written
/// never fails the scan: the message is scored as it is, with
/// `POLICY_STATE_ERROR` saying why.
pub fn after(
    config: &Modules<'_>,
    state: &PolicyState,
    scanned: &Scanned<'_>,
    verdict: &mut Verdict,
    scoring: &Scoring<'_>,
) -> Counted {
    let Scanned {
        envelope,
        applied,
        message_id,
        now_ms,
    } = *scanned;
    let mut counted = Counted::default();
    let now = now_ms / 1000;
    let mut problems = Vec::new();
    if applied.settings.ratelimit != Some(false) {
        match ratelimit::apply(
            config.ratelimit,
            state,
            envelope,
            applied.profile.as_deref(),
            verdict.score,
            verdict.action,
            now_ms,
        ) {
            Ok(decision) => {
                counted.ratelimited = decision.symbols.iter().any(|s| s.name == "RATELIMITED");
                counted.spam_burst = decision.spam_burst;
                for symbol in decision.symbols {
                    verdict.add_symbol(symbol, scoring);
                }
                if let Some((action, message)) = decision.hold {
                    verdict.hold(action, message);
                }
            }
            Err(error) => problems.push(format!("ratelimit: {error}")),
        }
    }
    if config.greylist.enabled && applied.settings.greylist != Some(false) {
        let names: Vec<&str> = verdict.symbols.iter().map(|s| s.name.as_str()).collect();
        let scored = greylist::Scored {
            score: verdict.score,
            action: verdict.action,
            greylist_threshold: scoring.threshold(Action::Greylist),
            forced: verdict.forced_by.is_some(),
            symbol_names: &names,
        };
        match greylist::apply(config.greylist, state, envelope, &scored, now) {
            Ok(decision) => {
                if let Some((action, message)) = decision.defer {
                    counted.greylisted = true;
                    verdict.hold(action, message);
                } else if decision.passed && verdict.action == Action::Greylist {
                    // As rspamd: a passed triplet downgrades `greylist`.
                    verdict.action = Action::NoAction;
                }
                if let Some(symbol) = decision.symbol {
                    verdict.add_symbol(symbol, scoring);
                }
            }
            Err(error) => problems.push(format!("greylist: {error}")),
        }
    }
    let delivered = !matches!(verdict.action, Action::Reject | Action::SoftReject);
    if delivered
        && let Err(error) = replies::remember(config.replies, state, envelope, message_id, now)
    {
        problems.push(format!("replies: {error}"));
    }
    if state.redis_up() == Some(false) {
        // Scored on this node's own state; the admin sees why.
        verdict.add_symbol(Symbol::new("POLICY_REDIS_DOWN"), scoring);
    }
    if !problems.is_empty() {
        tracing::warn!("policy state: {}", problems.join("; "));
        let mut symbol = Symbol::new("POLICY_STATE_ERROR");
        symbol.options = problems;
        verdict.add_symbol(symbol, scoring);
    }
    counted
}

/// Milliseconds since the epoch.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
