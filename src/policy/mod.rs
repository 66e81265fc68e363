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
    let names: Vec<&str> = verdict.symbols.iter().map(|s| s.name.as_str()).collect();
    let score = verdict.score;
    let action = verdict.action;
    let greylist_threshold = scoring.threshold(Action::Greylist);
    let forced = verdict.forced_by.is_some();
    // One update for every module: one lock, one journal write, one Redis
    // transaction per message. On Redis it may run again (another node
    // changed what it read), so it only computes; the verdict changes after.
    let updated = state.update(now, |txn| {
        let rate = (applied.settings.ratelimit != Some(false)).then(|| {
            ratelimit::apply(
                config.ratelimit,
                txn,
                envelope,
                applied.profile.as_deref(),
                score,
                action,
                now_ms,
            )
        });
        let held = rate.as_ref().is_some_and(|r| r.hold.is_some());
        let grey = (config.greylist.enabled && applied.settings.greylist != Some(false) && !held)
            .then(|| {
                let scored = greylist::Scored {
                    score,
                    action,
                    greylist_threshold,
                    forced,
                    symbol_names: &names,
                };
                greylist::apply(config.greylist, txn, envelope, &scored, now)
            });
        let deferred = grey.as_ref().is_some_and(|g| g.defer.is_some());
        if !held && !deferred && !matches!(action, Action::Reject | Action::SoftReject) {
            replies::remember(config.replies, txn, envelope, message_id, now);
        }
        (rate, grey)
    });
    let (rate, grey) = match updated {
        Ok(decisions) => decisions,
        Err(error) => {
            tracing::warn!("policy state: {error}");
            verdict.add_symbol(
                Symbol::new("POLICY_STATE_ERROR").with_option(error.to_string()),
                scoring,
            );
            (None, None)
        }
    };
    if let Some(decision) = rate {
        counted.ratelimited = decision.symbols.iter().any(|s| s.name == "RATELIMITED");
        counted.spam_burst = decision.spam_burst;
        for symbol in decision.symbols {
            verdict.add_symbol(symbol, scoring);
        }
        if let Some((action, message)) = decision.hold {
            verdict.hold(action, message);
        }
    }
    if let Some(decision) = grey {
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
    if state.redis_up() == Some(false) {
        // Scored on this node's own state; the admin sees why.
        verdict.add_symbol(Symbol::new("POLICY_REDIS_DOWN"), scoring);
    }
    counted
}

/// Milliseconds since the epoch.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
