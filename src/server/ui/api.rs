//! The UI's JSON requests. Each is a thin adapter: it reads what the
//! engine, the counters and the history already hold, or hands a message
//! to the same learn, fuzzy and scan paths the rspamd-protocol doors use,
//! so a learn from the browser is the learn `rspamc learn_ham` makes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chaff::store::Class;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::super::body::header;
use super::super::controller::{LearnFailure, apply_fuzzy, learn_message};
use super::super::kept::KeptMessage;
use super::super::reply::{Reply, error_reply, json_reply};
use super::super::scan::{ScanOutcome, run_scan};
use super::super::state::{ACTIONS, HistoryEntry, State, unix_now};

/// Features `scan --explain` shows, and the UI with it.
const EXPLAIN_FEATURES: usize = 25;

/// Minutes the dashboard's chart spans.
const CHART_MINUTES: u64 = 60;

pub fn dashboard(state: &State) -> Reply {
    let c = &state.counters;
    let now_minute = unix_now() / 60;
    let since = now_minute.saturating_sub(CHART_MINUTES - 1);
    let (minutes, percentiles) = match state.timeline.lock() {
        Ok(timeline) => (timeline.minutes_since(since), timeline.percentiles()),
        Err(_) => (Vec::new(), None),
    };
    // Every minute of the span, scans or not, so the chart's axis is time.
    let series: Vec<Value> = (since..=now_minute)
        .map(|minute| {
            let counts = minutes
                .iter()
                .find(|m| m.minute == minute)
                .map(|m| m.actions)
                .unwrap_or_default();
            let by_action: serde_json::Map<String, Value> = ACTIONS
                .iter()
                .zip(counts)
                .map(|(action, n)| (action.name().to_owned(), json!(n)))
                .collect();
            json!({"minute": minute * 60, "actions": by_action})
        })
        .collect();
    let last_minute: u64 = minutes
        .iter()
        .filter(|m| m.minute + 1 >= now_minute)
        .map(|m| m.actions.iter().map(|&n| u64::from(n)).sum::<u64>())
        .sum();
    let engine = state.engine.read().ok();
    let model = engine.as_ref().map(|engine| {
        let stats = engine.store_stats();
        json!({
            "spam_learns": stats.spam_learns, "ham_learns": stats.ham_learns,
            "model_bytes": stats.model_bytes, "tokens": stats.model_tokens + stats.overlay_tokens,
            "samples": stats.spam_samples + stats.ham_samples,
            "trained_at": stats.trained_at,
            "age_secs": (stats.trained_at > 0).then(|| unix_now().saturating_sub(stats.trained_at)),
        })
    });
    let redis = engine
        .as_ref()
        .and_then(|engine| engine.policy_state())
        .and_then(|policy| {
            Some(json!({"up": policy.redis_up()?, "failures": policy.redis_failures()}))
        });
    // With network checks on: whether the resolver answers, and how many
    // messages' lookups failed at once because it did not.
    let config = state.config();
    let dns = engine
        .as_ref()
        .and_then(|engine| engine.resolver_down())
        .map(|(down, failed_fast)| {
            json!({"up": !down, "failed_fast": failed_fast, "nameservers": config.network.nameservers})
        });
    drop(engine);
    let scanned = c.scanned.load(Ordering::Relaxed);
    json_reply(
        StatusCode::OK,
        &json!({
            "uptime": state.started.elapsed().as_secs(),
            "scanned": scanned,
            "learned": c.learned.load(Ordering::Relaxed),
            "actions": ACTIONS.iter().enumerate()
                .map(|(i, a)| (a.name().to_owned(), json!(c.actions[i].load(Ordering::Relaxed))))
                .collect::<serde_json::Map<String, Value>>(),
            "per_minute": series,
            "throughput_last_minute": last_minute,
            "latency_ms": percentiles.map(|[p50, p90, p99]| json!({
                "p50": p50 * 1000.0, "p90": p90 * 1000.0, "p99": p99 * 1000.0})),
            "mean_ms": (scanned > 0).then(|| c.scan_micros.load(Ordering::Relaxed) as f64 / scanned as f64 / 1000.0),
            "model": model,
            "redis": redis,
            "dns": dns,
            "ratelimited": c.ratelimited.load(Ordering::Relaxed),
            "greylisted": c.greylisted.load(Ordering::Relaxed),
            "spam_bursts": c.spam_bursts.load(Ordering::Relaxed),
            "kept_message_bytes": state.kept.lock().map_or(0, |kept| kept.bytes()),
        }),
    )
}

/// This node's history, newest first, with each entry's id (what the
/// message view and the learn buttons name) and whether its message is
/// still kept.
pub fn history(state: &State) -> Reply {
    let rows: Vec<HistoryEntry> = match state.history.lock() {
        Ok(history) => history.iter().cloned().collect(),
        Err(_) => Vec::new(),
    };
    json_reply(
        StatusCode::OK,
        &json!({"rows": rows, "size": state.config().server.history_size}),
    )
}

fn entry(state: &State, id: u64) -> Option<HistoryEntry> {
    state
        .history
        .lock()
        .ok()?
        .iter()
        .find(|e| e.id == id)
        .cloned()
}

fn kept(state: &State, id: u64) -> Option<Arc<KeptMessage>> {
    state.kept.lock().ok()?.get(id)
}

/// One history entry, with the explanation of its verdict when its
/// message is still kept.
pub async fn message(state: &Arc<State>, id: u64) -> Reply {
    let Some(row) = entry(state, id) else {
        return error_reply(StatusCode::NOT_FOUND, "no such history entry");
    };
    let explanation = match kept(state, id) {
        Some(kept) => explain(state, kept).await,
        None => Value::Null,
    };
    json_reply(
        StatusCode::OK,
        &json!({"entry": row, "kept": !explanation.is_null(), "explanation": explanation}),
    )
}

async fn explain(state: &Arc<State>, kept: Arc<KeptMessage>) -> Value {
    let task_state = state.clone();
    let explained = state
        .run_cpu(move || {
            let engine = task_state.engine.read().ok()?;
            Some(engine.explain_classifier(&kept.raw, &kept.envelope, EXPLAIN_FEATURES))
        })
        .await
        .flatten();
    let Some(explained) = explained else {
        return Value::Null;
    };
    json!({
        "log_odds": explained.log_odds,
        "bias_points": explained.bias_points,
        "features": explained.features.iter()
            .map(|f| json!({"text": f.text, "points": f.points}))
            .collect::<Vec<_>>(),
        "rules": explained.rules.iter()
            .map(|r| json!({"name": r.name, "configured": r.configured, "fitted": r.fitted, "pinned": r.pinned}))
            .collect::<Vec<_>>(),
    })
}

/// Learns a history entry's kept message as `class`.
pub async fn learn_entry(state: &Arc<State>, id: u64, class: Class) -> Reply {
    let Some(kept) = kept(state, id) else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "the message of this entry is no longer kept (history_messages_mb)",
        );
    };
    learn_one(state, kept.raw.clone(), class).await
}

async fn learn_one(state: &Arc<State>, raw: Vec<u8>, class: Class) -> Reply {
    match learn_counted(state, raw, class).await {
        None => error_reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        Some(Ok(known)) => json_reply(
            StatusCode::OK,
            &json!({"success": true, "already_learned": known, "class": class.name()}),
        ),
        Some(Err(LearnFailure::Refused(reason))) => error_reply(StatusCode::BAD_REQUEST, &reason),
        Some(Err(LearnFailure::Failed)) => {
            error_reply(StatusCode::INTERNAL_SERVER_ERROR, "learn failed")
        }
    }
}

/// One learn through the doors' `learn_message`, counted in `/stat` when
/// new; `Ok(true)` when the message was already learned, `None` when the
/// daemon is shutting down.
async fn learn_counted(
    state: &Arc<State>,
    raw: Vec<u8>,
    class: Class,
) -> Option<Result<bool, LearnFailure>> {
    let permit = state.scan_permits.clone().acquire_owned().await.ok()?;
    Some(
        learn_message(state, raw, permit, class, true)
            .await
            .map(|learned| {
                let known = matches!(learned.outcome, chaff::bayes::LearnOutcome::AlreadyKnown);
                if !known {
                    state.counters.learned.fetch_add(1, Ordering::Relaxed);
                }
                known
            }),
    )
}

/// Reports a history entry's kept message to fuzzy list `flag`.
pub async fn fuzzy_entry(state: &Arc<State>, id: u64, flag: u32, weight: u32) -> Reply {
    let Some(kept) = kept(state, id) else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "the message of this entry is no longer kept (history_messages_mb)",
        );
    };
    apply_fuzzy(state, kept.raw.clone(), flag, Some(weight)).await
}

/// Scans a pasted or uploaded message with the envelope fields given, as
/// `/checkv2` would, and explains the verdict.
pub async fn scan(
    state: &Arc<State>,
    peer: SocketAddr,
    pairs: &[(String, String)],
    raw: Vec<u8>,
) -> Reply {
    let (envelope, options) = super::super::reply::envelope_from_headers(
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let request = match options.scan_request() {
        Ok(request) => request,
        Err(error) => return error.into_reply(),
    };
    let kept = Arc::new(KeptMessage {
        raw: raw.clone(),
        envelope: envelope.clone().cleaned(),
    });
    let (scan, seconds) = match run_scan(state, raw, envelope, request, peer).await {
        ScanOutcome::Done(scan, seconds) => (scan, seconds),
        ScanOutcome::TimedOut(_) => {
            return error_reply(StatusCode::GATEWAY_TIMEOUT, "the scan ran out of time");
        }
        ScanOutcome::Failed(reason) => {
            return error_reply(StatusCode::INTERNAL_SERVER_ERROR, &reason);
        }
    };
    let verdict: Value = serde_json::from_slice(&super::super::reply::checkv2_json(&scan, seconds))
        .unwrap_or(Value::Null);
    let explanation = explain(state, kept).await;
    json_reply(
        StatusCode::OK,
        &json!({"verdict": verdict, "explanation": explanation}),
    )
}

/// Learns an uploaded file: one message, or an mbox of many.
pub async fn learn_upload(state: &Arc<State>, raw: Vec<u8>, class: Class) -> Reply {
    let messages = chaff::mailbox::split_upload(&raw);
    drop(raw);
    let (mut learned, mut known, mut refused) = (0u64, 0u64, Vec::new());
    for message in messages {
        match learn_counted(state, message, class).await {
            None => return error_reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            Some(Ok(true)) => known += 1,
            Some(Ok(false)) => learned += 1,
            Some(Err(LearnFailure::Refused(reason))) => refused.push(reason),
            Some(Err(LearnFailure::Failed)) => refused.push("learn failed".to_owned()),
        }
    }
    let counts = state.engine.read().ok().map(|engine| {
        let stats = engine.store_stats();
        json!({"spam": stats.spam_learns, "ham": stats.ham_learns})
    });
    json_reply(
        StatusCode::OK,
        &json!({"learned": learned, "already_learned": known, "refused": refused, "counts": counts}),
    )
}

/// Every allow/deny map and local URL list, with its entries.
pub fn lists(state: &State) -> Reply {
    let lists = match state.engine.read() {
        Ok(engine) => engine.editable_lists(),
        Err(_) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned"),
    };
    let rows: Vec<Value> = lists
        .into_iter()
        .map(|list| {
            json!({
                "name": list.name, "type": list.kind, "kind": list.matches, "symbol": list.symbol,
                "file": list.path.display().to_string(),
                "action": list.action.map(|a| a.name()), "weight": list.weight,
                "description": list.description, "text": list.text,
            })
        })
        .collect();
    json_reply(StatusCode::OK, &json!({"lists": rows}))
}

/// Replaces list `name`'s entries with `text` (checked and written by the
/// engine) and reloads the rules at once, so the next scan uses it.
pub fn save_list(state: &State, name: &str, text: &str) -> Reply {
    let saved = match state.engine.read() {
        Ok(engine) => engine.save_list(name, text),
        Err(_) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned"),
    };
    let path = match saved {
        Ok(path) => path,
        Err(error @ chaff::engine::ListError::Unknown(_)) => {
            return error_reply(StatusCode::NOT_FOUND, &error.to_string());
        }
        Err(error @ chaff::engine::ListError::Invalid(_)) => {
            return error_reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
        Err(error) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    };
    if let Err(error) = state.reload() {
        return error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("saved, but the reload failed: {error:#}"),
        );
    }
    json_reply(
        StatusCode::OK,
        &json!({"success": true, "file": path.display().to_string()}),
    )
}

/// Every symbol: its description and group, configured and fitted weight,
/// and how often it fired since start.
pub fn symbols(state: &State) -> Reply {
    let scanned = state.counters.scanned.load(Ordering::Relaxed);
    let hits: std::collections::BTreeMap<String, u64> = match state.symbol_counters.lock() {
        Ok(counters) => counters.iter().map(|(n, c)| (n.clone(), c.hits)).collect(),
        Err(_) => Default::default(),
    };
    let engine = match state.engine.read() {
        Ok(engine) => engine,
        Err(_) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned"),
    };
    // The rules' and maps' symbols with the configuration's, as scans
    // weigh them.
    let active = engine.active();
    let rows: Vec<Value> = active
        .config
        .symbols
        .iter()
        .map(|(name, symbol)| {
            let hits = hits.get(name).copied().unwrap_or(0);
            json!({
                "symbol": name, "group": symbol.group, "description": symbol.description,
                "weight": symbol.weight,
                "fitted": engine.fitted_weight(name),
                "hits": hits,
                "rate": (scanned > 0).then(|| hits as f64 / scanned as f64),
            })
        })
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({"symbols": rows, "scanned": scanned}),
    )
}

/// The configuration in force (passwords redacted), the model's and the
/// stores' figures, and the rules' check.
pub fn configuration(state: &State) -> Reply {
    let config = state.config();
    let engine = match state.engine.read() {
        Ok(engine) => engine,
        Err(_) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, "engine lock poisoned"),
    };
    let stats = engine.store_stats();
    let fuzzy = engine.fuzzy_stats();
    let active = engine.active();
    let report = &active.rules.report;
    let skipped: Vec<Value> = report
        .skipped_by_kind()
        .into_iter()
        .flat_map(|(kind, reasons)| {
            reasons
                .into_iter()
                .map(move |(reason, count)| json!({"kind": kind, "reason": reason, "count": count}))
        })
        .collect();
    let loaded: usize = report.loaded.values().sum();
    let policy = engine.policy_state().map(|p| p.stats(unix_now()));
    drop(engine);
    json_reply(
        StatusCode::OK,
        &json!({
            "file": state.config_path().map(|p| p.display().to_string()),
            "text": redact(&state.config_text()),
            "defaults": redact(chaff::config::EMBEDDED_DEFAULTS),
            "actions": {
                "reject": config.actions.reject, "add_header": config.actions.add_header,
                "greylist": config.actions.greylist, "rewrite_subject": config.actions.rewrite_subject,
            },
            "model": {
                "format_version": stats.format_version, "spam_learns": stats.spam_learns,
                "ham_learns": stats.ham_learns, "tokens": stats.model_tokens + stats.overlay_tokens,
                "model_bytes": stats.model_bytes, "journal_bytes": stats.journal_bytes,
                "samples": stats.spam_samples + stats.ham_samples, "trained_at": stats.trained_at,
                "train_millis": stats.train_millis,
            },
            "fuzzy": {"hashes": fuzzy.model_entries + fuzzy.overlay_entries},
            "policy": policy.map(|(live, journal)| json!({"entries": live, "journal_bytes": journal})),
            "rules": {"loaded": loaded, "skipped": skipped},
        }),
    )
}

/// The value of every `password`-like key, and Redis URLs' credentials,
/// replaced: the page is for reading the configuration, not its secrets.
pub fn redact(text: &str) -> String {
    text.lines()
        .map(|line| {
            let key = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let secret = ["password", "secret", "token", "key_file"]
                .iter()
                .any(|word| key.contains(word))
                && !key.starts_with('#');
            if secret && line.contains('=') {
                let name = line.split('=').next().unwrap_or("");
                format!("{name}= \"(redacted)\"")
            } else if line.contains("redis://") && line.contains('@') {
                "# (a Redis URL with credentials, redacted)".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The id in a request's `id` pair.
pub fn id_of(pairs: &[(String, String)]) -> Option<u64> {
    header(pairs, "id")?.parse().ok()
}

/// The class in a request's `class` pair.
pub fn class_of(pairs: &[(String, String)]) -> Option<Class> {
    match header(pairs, "class")? {
        "spam" => Some(Class::Spam),
        "ham" => Some(Class::Ham),
        _ => None,
    }
}

/// A learn refused for want of a class.
pub fn no_class() -> Reply {
    error_reply(StatusCode::BAD_REQUEST, "class must be spam or ham")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_redis_credentials_are_redacted() {
        let text = "[server]\npassword = \"hunter2\"\nenable_password=\"x\"\nbind = \"127.0.0.1:1\"\nservers = [\"redis://:pw@h:6379\"]";
        let out = redact(text);
        assert!(!out.contains("hunter2") && !out.contains("pw@"));
        assert!(out.contains("bind = \"127.0.0.1:1\""));
        assert!(out.contains("password = \"(redacted)\""));
    }
}
