//! The controller's handlers: learning (`/learnspam`, `/learnham`, committed
//! before the reply), fuzzy reports (`/fuzzyadd`, `/fuzzydel`,
//! `/fuzzydelhash`), and the admin views (`/stat`, `/counters`, `/actions`,
//! `/symbols`, `/history`, `/policy`), each behind its privilege;
//! `/metrics` is `metrics.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chaff::engine::LearnError;
use chaff::store::Class;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::auth::{Privilege, allowed, is_cross_origin};
use super::body::{header, number_header, permit_then_body, request_pairs};
use super::reply::{ApiError, Reply, error_reply, json_reply};
use super::state::{ACTIONS, HistoryEntry, State};

pub async fn learn_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
    class: Class,
) -> Reply {
    let pairs = request_pairs(&request);
    if let Some(refusal) = refusal(&pairs, peer, state, Privilege::Write) {
        return refusal;
    }
    let (permit, body) = match permit_then_body(request, state).await {
        Ok(taken) => taken,
        Err(error) => return error.into_reply(),
    };
    let learned = match learn_message(state, body, permit, class, true).await {
        Ok(learned) => learned,
        Err(LearnFailure::Refused(reason)) => {
            return error_reply(StatusCode::BAD_REQUEST, &reason);
        }
        Err(LearnFailure::Failed) => {
            return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "learn failed");
        }
    };
    match learned.outcome {
        chaff::bayes::LearnOutcome::AlreadyKnown => {
            let id = learned.message_id.unwrap_or_else(|| "message".to_owned());
            let reason = format!(
                "<{id}> has been already learned as {}, ignore it",
                class.name()
            );
            let mut reply = json_reply(StatusCode::ALREADY_REPORTED, &json!({"error": reason}));
            if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
                reply.extensions_mut().insert(phrase);
            }
            reply
        }
        _ => {
            state.counters.learned.fetch_add(1, Ordering::Relaxed);
            let mut reply = json_reply(StatusCode::OK, &json!({"success": true}));
            reply.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            reply
        }
    }
}

/// Why a learn did not happen.
pub enum LearnFailure {
    /// The message or the store refused it (the reason says which).
    Refused(String),
    /// The learn task itself failed.
    Failed,
}

/// Learns `body` as `class` and acknowledges only what is on disk; the
/// training it may make due runs after, beside scans. Every door that
/// learns (`/learnspam`, spamd's TELL, another node's learn from the
/// Redis stream) goes through here; with `publish`, a new learn is then
/// told to the other nodes.
pub async fn learn_message(
    state: &Arc<State>,
    body: Vec<u8>,
    permit: tokio::sync::OwnedSemaphorePermit,
    class: Class,
    publish: bool,
) -> Result<chaff::engine::Learned, LearnFailure> {
    let copy = (publish && state.replicator().is_some()).then(|| body.clone());
    // One learn (and the training it may start) at a time; scans never
    // wait for this.
    let learning = state.learning.clone().lock_owned().await;
    let task_state = state.clone();
    let result = state
        .run_cpu(move || {
            let _permit = permit;
            let describe = |error: LearnError| match error {
                LearnError::Store(store) => format!("cannot store the learn: {store}"),
                other => other.to_string(),
            };
            // Reading the message (parse, rules, features) needs only the
            // shared lock, so scans go on beside it; the exclusive one is
            // held only to record the learn and write it to the journal,
            // and the fsync runs after it is let go.
            let prepared = task_state
                .engine
                .read()
                .map_err(|_| "engine lock poisoned".to_owned())?
                .prepare_learn(&body)
                .map_err(describe)?;
            let mut engine = task_state
                .engine
                .write()
                .map_err(|_| "engine lock poisoned".to_owned())?;
            let learned = engine.record_learn(prepared, class).map_err(describe)?;
            let written = engine
                .write_learns()
                .map_err(|e| format!("cannot store the learn: {e}"))?;
            drop(engine);
            // Acknowledge only what is on disk.
            written
                .sync()
                .map_err(|e| format!("cannot store the learn: {e}"))?;
            Ok::<_, String>(learned)
        })
        .await;
    // Training runs after the reply, beside scans: it reads the engine
    // under a shared lock and takes the exclusive one only to switch models.
    let task_state = state.clone();
    tokio::spawn(async move {
        let training_state = task_state.clone();
        let trained = task_state
            .run_cpu(move || {
                let _learning = learning;
                training_state.train_if_due()
            })
            .await;
        if let Some(Err(error)) = trained {
            eprintln!("chaff serve: training failed (learns are safe in the journal): {error}");
        }
    });
    match result {
        Some(Ok(learned)) => {
            if let (Some(replicator), Some(body)) = (state.replicator(), copy)
                && !matches!(learned.outcome, chaff::bayes::LearnOutcome::AlreadyKnown)
            {
                let replicator = replicator.clone();
                let change = super::state::Change::Learn(class);
                tokio::task::spawn_blocking(move || replicator.publish(change, body));
            }
            Ok(learned)
        }
        Some(Err(reason)) => Err(LearnFailure::Refused(reason)),
        None => Err(LearnFailure::Failed),
    }
}

/// `/fuzzyadd` (`add`) and `/fuzzydel`: the `Flag` and `Weight` headers as
/// `rspamc fuzzy_add -f N -w W` sends them; committed before the reply.
pub async fn fuzzy_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
    add: bool,
) -> Reply {
    let pairs = request_pairs(&request);
    if let Some(refusal) = refusal(&pairs, peer, state, Privilege::Write) {
        return refusal;
    }
    let (flag, weight) = match (
        number_header(&pairs, "flag", 1),
        number_header(&pairs, "weight", 1),
    ) {
        (Ok(flag), Ok(weight)) => (flag, weight),
        (Err(error), _) | (_, Err(error)) => return error.into_reply(),
    };
    let (permit, body) = match permit_then_body(request, state).await {
        Ok(taken) => taken,
        Err(error) => return error.into_reply(),
    };
    // The permit bounds the work in flight until the reply.
    let _permit = permit;
    let copy = state.replicator().map(|_| body.clone());
    let reply = apply_fuzzy(state, body, flag, add.then_some(weight)).await;
    if let (Some(replicator), Some(body), true) =
        (state.replicator(), copy, reply.status() == StatusCode::OK)
    {
        let replicator = replicator.clone();
        let change = if add {
            super::state::Change::FuzzyAdd { flag, weight }
        } else {
            super::state::Change::FuzzyDel { flag }
        };
        tokio::task::spawn_blocking(move || replicator.publish(change, body));
    }
    reply
}

/// Adds `body` to fuzzy list `flag` with `weight`, or (`None`) removes it.
pub async fn apply_fuzzy(
    state: &Arc<State>,
    body: Vec<u8>,
    flag: u32,
    weight: Option<u32>,
) -> Reply {
    fuzzy_change(state, move |engine| match weight {
        Some(weight) => engine.fuzzy_add(&body, flag, weight),
        None => engine.fuzzy_del(&body, flag),
    })
    .await
}

/// `rspamc fuzzy_delhash -f FLAG HASH...`: one `Hash` header per hash, no
/// body (rspamc sends it as a GET).
pub async fn fuzzy_delhash_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
) -> Reply {
    let pairs = request_pairs(&request);
    if let Some(refusal) = refusal(&pairs, peer, state, Privilege::Write) {
        return refusal;
    }
    let flag = match number_header(&pairs, "flag", 1) {
        Ok(flag) => flag,
        Err(error) => return error.into_reply(),
    };
    let hashes: Vec<String> = pairs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("hash"))
        .map(|(_, value)| value.clone())
        .collect();
    if hashes.is_empty() {
        return error_reply(StatusCode::BAD_REQUEST, "no Hash header");
    }
    fuzzy_change(state, move |engine| {
        let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
        engine.fuzzy_del_hashes(&hashes, flag)
    })
    .await
}

/// Runs one change to the fuzzy store on the CPU pool, commits it before
/// replying (an acknowledged report survives a crash) and folds a large
/// journal; replies as rspamd does.
async fn fuzzy_change(
    state: &Arc<State>,
    change: impl FnOnce(&mut chaff::engine::Engine) -> Result<chaff::engine::FuzzyLearned, LearnError>
    + Send
    + 'static,
) -> Reply {
    let task_state = state.clone();
    let result = state
        .run_cpu(move || {
            let mut engine = task_state.engine.write().map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned")
            })?;
            let done = change(&mut engine).map_err(|e| match e {
                // As rspamd: nothing written is a 404.
                LearnError::NothingToHash => {
                    ApiError::new(StatusCode::NOT_FOUND, "No hashes have been written")
                }
                LearnError::Store(store) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store the fuzzy hashes: {store}"),
                ),
                other => ApiError::new(StatusCode::BAD_REQUEST, other.to_string()),
            })?;
            engine.commit().map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store the fuzzy hashes: {e}"),
                )
            })?;
            if let Err(error) = engine.compact_if_due() {
                eprintln!(
                    "chaff serve: compaction failed (reports are safe in the journal): {error}"
                );
            }
            Ok::<_, ApiError>(done)
        })
        .await;
    match result {
        // A delete of what is not stored succeeds, as rspamd's storage acks it.
        Some(Ok(_)) => json_reply(StatusCode::OK, &json!({"success": true})),
        Some(Err(error)) => error.into_reply(),
        None => error_reply(StatusCode::INTERNAL_SERVER_ERROR, "fuzzy request failed"),
    }
}

pub fn guarded(
    request: &Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    privilege: Privilege,
    respond: impl FnOnce() -> Reply,
) -> Reply {
    match refusal(&request_pairs(request), peer, state, privilege) {
        Some(refusal) => refusal,
        None => respond(),
    }
}

/// The 401 reply when the peer and the request's `Password` do not grant
/// `privilege`; `None` when they do. A change a browser was made to send
/// from another page (its `Origin` names another host) is refused first,
/// so a `secure_ip` client's browser cannot be used to learn or reset.
fn refusal(
    pairs: &[(String, String)],
    peer: SocketAddr,
    state: &State,
    privilege: Privilege,
) -> Option<Reply> {
    if privilege == Privilege::Write
        && is_cross_origin(
            header(pairs, "origin").or_else(|| header(pairs, "referer")),
            header(pairs, "host"),
        )
    {
        return Some(error_reply(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    (!allowed(
        &state.config().server,
        peer.ip(),
        header(pairs, "password"),
        privilege,
    ))
    .then(|| error_reply(StatusCode::UNAUTHORIZED, "Unauthorized"))
}

pub fn stat(state: &State) -> Reply {
    let c = &state.counters;
    let (spam_learns, ham_learns, model_bytes, tokens) = match state.engine.read() {
        Ok(engine) => {
            let stats = engine.store_stats();
            (
                stats.spam_learns,
                stats.ham_learns,
                stats.model_bytes,
                stats.model_tokens + stats.overlay_tokens,
            )
        }
        Err(_) => (0, 0, 0, 0),
    };
    let fuzzy_hashes = state.engine.read().map_or(0, |engine| {
        let stats = engine.fuzzy_stats();
        stats.model_entries + stats.overlay_entries
    });
    let actions: serde_json::Map<String, serde_json::Value> = ACTIONS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                a.name().to_owned(),
                json!(c.actions[i].load(Ordering::Relaxed)),
            )
        })
        .collect();
    let statfile = |symbol: &str, learned: u64| {
        json!({"revision": learned, "used": tokens, "total": tokens, "size": model_bytes,
               "symbol": symbol, "type": "mmap", "languages": 0, "users": 1})
    };
    json_reply(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_id": "",
            "uptime": state.started.elapsed().as_secs(),
            "read_only": false,
            "scanned": c.scanned.load(Ordering::Relaxed),
            "learned": c.learned.load(Ordering::Relaxed),
            "actions": actions,
            "spam_count": c.spam.load(Ordering::Relaxed),
            "ham_count": c.ham.load(Ordering::Relaxed),
            "connections": c.connections.load(Ordering::Relaxed),
            "control_connections": c.control_connections.load(Ordering::Relaxed),
            "pools_allocated": 0, "pools_freed": 0, "bytes_allocated": 0, "chunks_allocated": 0,
            "shared_chunks_allocated": 0, "chunks_freed": 0, "chunks_oversized": 0, "fragmented": 0,
            "total_learns": spam_learns + ham_learns,
            "statfiles": [statfile("BAYES_SPAM", spam_learns), statfile("BAYES_HAM", ham_learns)],
            "fuzzy_hashes": {"local": fuzzy_hashes},
        }),
    )
}

pub fn counters(state: &State) -> Reply {
    let config = state.config();
    let scanned = state.counters.scanned.load(Ordering::Relaxed).max(1) as f64;
    let rows: Vec<serde_json::Value> = match state.symbol_counters.lock() {
        Ok(counters) => counters
            .iter()
            .map(|(name, counter)| {
                json!({"symbol": name, "weight": config.weight(name),
                       "frequency": counter.hits as f64 / scanned, "hits": counter.hits,
                       "time": counter.total_seconds / counter.hits.max(1) as f64 * 1000.0})
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    json_reply(StatusCode::OK, &json!(rows))
}

pub fn actions(state: &State) -> Reply {
    let config = state.config();
    let rows: Vec<serde_json::Value> = [
        chaff::Action::Greylist,
        chaff::Action::AddHeader,
        chaff::Action::Reject,
        chaff::Action::SoftReject,
        chaff::Action::RewriteSubject,
        chaff::Action::NoAction,
    ]
    .iter()
    .map(|a| json!({"action": a.name(), "value": a.threshold(&config.actions)}))
    .collect();
    json_reply(StatusCode::OK, &json!(rows))
}

pub fn symbols_list(state: &State) -> Reply {
    let config = state.config();
    let mut groups: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for (name, symbol) in &config.symbols {
        groups
            .entry(symbol.group.clone().unwrap_or_else(|| "ungrouped".into()))
            .or_default()
            .push(
                json!({"symbol": name, "weight": symbol.weight, "description": symbol.description}),
            );
    }
    let rows: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|(group, rules)| json!({"group": group, "rules": rules}))
        .collect();
    json_reply(StatusCode::OK, &json!(rows))
}

/// `/history`: the last scans, every node's when the history is shared
/// through Redis (this node's own when Redis does not answer).
pub fn history(state: &State) -> Reply {
    if let Some(replicator) = state.replicator() {
        match replicator.history(state.config().server.history_size) {
            Ok(rows) => return json_reply(StatusCode::OK, &json!({"version": 2, "rows": rows})),
            Err(error) => tracing::warn!("redis history: {error}; answering this node's own"),
        }
    }
    let rows: Vec<HistoryEntry> = match state.history.lock() {
        Ok(history) => history.iter().cloned().collect(),
        Err(_) => Vec::new(),
    };
    json_reply(StatusCode::OK, &json!({"version": 2, "rows": rows}))
}

/// Entries `GET /policy` lists at most.
const POLICY_LIST_LIMIT: usize = 10_000;

/// `GET /policy?prefix=…`: the policy state's live entries whose key starts
/// with the prefix (`rl:BUCKET:KEY` rate-limit buckets, `burst:USER`,
/// `grey:NET|FROM|RCPT` triplets, `greynet:NET`, `reply:ID`, `known:ADDR`).
pub fn policy_list(state: &State, prefix: &str) -> Reply {
    let Ok(engine) = state.engine.read() else {
        return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned");
    };
    let Some(policy) = engine.policy_state() else {
        return error_reply(StatusCode::NOT_FOUND, "no policy state");
    };
    let now_ms = chaff::policy::unix_now_ms();
    let entries = policy.list(prefix, now_ms / 1000);
    let (live, journal_bytes) = policy.stats(now_ms / 1000);
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .take(POLICY_LIST_LIMIT)
        .map(|(key, entry)| policy_row(key, entry, now_ms))
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({"entries": rows, "matched": entries.len(), "live": live, "journal_bytes": journal_bytes}),
    )
}

fn policy_row(key: &str, entry: &chaff::policy::state::Entry, now_ms: u64) -> serde_json::Value {
    use chaff::policy::state::Value;
    let mut row = match entry.value {
        Value::Bucket { level, at_ms } => json!({"kind": "bucket", "level": level,
            "updated_secs_ago": now_ms.saturating_sub(at_ms) / 1000}),
        Value::Grey { first_seen, passed } => {
            json!({"kind": "greylist", "first_seen": first_seen, "passed": passed})
        }
        Value::Seen { count } => json!({"kind": "seen", "count": count}),
    };
    row["key"] = json!(key);
    row["expires"] = json!(entry.expires);
    row
}

/// `POST /policyreset?prefix=…`: removes the entries whose key starts with
/// the prefix (a bucket, a user's buckets, a triplet); the prefix is required.
pub fn policy_reset(state: &State, prefix: Option<&str>) -> Reply {
    let Some(prefix) = prefix else {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "policyreset needs a prefix (an empty one removes everything)",
        );
    };
    let Ok(engine) = state.engine.read() else {
        return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned");
    };
    let Some(policy) = engine.policy_state() else {
        return error_reply(StatusCode::NOT_FOUND, "no policy state");
    };
    match policy.reset(prefix, chaff::policy::state::unix_now()) {
        Ok(removed) => json_reply(
            StatusCode::OK,
            &json!({"success": true, "removed": removed}),
        ),
        Err(error) => error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write the policy journal: {error}"),
        ),
    }
}
