//! Paths to handlers, for both ports.
//!
//! As rspamd does, the path is matched case-insensitively and the query
//! string's keys count as request headers (`/checkv2?ip=…`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaff::engine::{LearnError, Scan};
use chaff::message::Envelope;
use chaff::store::Class;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::Role;
use super::auth::{Privilege, allowed};
use super::protocol::{checkv2_json, envelope_from_headers, legacy_json};
use super::state::{ACTIONS, HistoryEntry, State, unix_now};

type Reply = Response<Full<Bytes>>;

/// The result of handing a message to the engine.
pub enum ScanOutcome {
    Done(Scan, f64),
    /// The scan ran past `scan_timeout_ms`; a defined temporary-failure verdict.
    TimedOut(Scan),
    Failed(String),
}

pub async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    role: Role,
    state: Arc<State>,
) -> Result<Reply, Infallible> {
    let path = request
        .uri()
        .path()
        .trim_start_matches('/')
        .to_ascii_lowercase();
    let is_post = request.method() == hyper::Method::POST;
    let reply = match (role, path.as_str()) {
        (_, "ping") => text(StatusCode::OK, "pong\r\n"),
        (_, "metrics") => metrics(&state),
        (_, "checkv2") if is_post => scan_request(request, peer, &state, ReplyShape::V2).await,
        (Role::Controller, "symbols") if !is_post => {
            guarded(&request, peer, &state, Privilege::ReadOnly, || {
                symbols_list(&state)
            })
        }
        (_, "check" | "symbols" | "scan" | "process" | "report" | "report_ifspam") if is_post => {
            scan_request(request, peer, &state, ReplyShape::Legacy).await
        }
        (_, "skip") => json_reply(
            StatusCode::OK,
            &json!({"is_skipped": true, "score": 0.0, "required_score": state.config().actions.reject.unwrap_or(0.0),
                    "action": "no action", "symbols": {}, "messages": {}}),
        ),
        (Role::Controller, "learnspam") => learn_request(request, peer, &state, Class::Spam).await,
        (Role::Controller, "learnham") => learn_request(request, peer, &state, Class::Ham).await,
        (Role::Controller, "fuzzyadd") => fuzzy_request(request, peer, &state, true).await,
        (Role::Controller, "fuzzydel") => fuzzy_request(request, peer, &state, false).await,
        (Role::Controller, "fuzzydelhash") => fuzzy_delhash_request(request, peer, &state).await,
        (Role::Controller, "stat" | "auth") => {
            guarded(&request, peer, &state, Privilege::ReadOnly, || stat(&state))
        }
        (Role::Controller, "statreset") => {
            guarded(&request, peer, &state, Privilege::Write, || {
                let reply = stat(&state);
                state.reset_counters();
                reply
            })
        }
        (Role::Controller, "counters") => {
            guarded(&request, peer, &state, Privilege::ReadOnly, || {
                counters(&state)
            })
        }
        (Role::Controller, "actions") => {
            guarded(&request, peer, &state, Privilege::ReadOnly, || {
                actions(&state)
            })
        }
        (Role::Controller, "history") => {
            guarded(&request, peer, &state, Privilege::ReadOnly, || {
                history(&state)
            })
        }
        (Role::Controller, "historyreset") => {
            guarded(&request, peer, &state, Privilege::Write, || {
                if let Ok(mut history) = state.history.lock() {
                    history.clear();
                }
                json_reply(StatusCode::OK, &json!({"success": true}))
            })
        }
        _ => error_reply(StatusCode::NOT_FOUND, "invalid command"),
    };
    Ok(reply)
}

#[derive(Clone, Copy)]
enum ReplyShape {
    V2,
    Legacy,
}

/// Header pairs plus query-string pairs, as rspamd treats them alike.
fn request_pairs(request: &Request<Incoming>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if let Some(query) = request.uri().query() {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((percent_decode(name), percent_decode(value)));
        }
    }
    pairs
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the request body within the size limit and body timeout,
/// decompressing zstd when the client says so.
async fn read_body(request: Request<Incoming>, state: &State) -> Result<Vec<u8>, ApiError> {
    let config = state.config();
    let max_bytes = config.limits.max_message_bytes;
    let pairs = request_pairs(&request);
    let zstd = is_zstd(&pairs);
    if let Some(length) = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > max_bytes
    {
        return Err(too_large(max_bytes));
    }
    let body = Limited::new(request.into_body(), max_bytes);
    let deadline = Duration::from_millis(config.server.body_timeout_ms);
    let collected = match tokio::time::timeout(deadline, body.collect()).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the message body did not arrive in time",
            ));
        }
        Ok(Err(error)) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(max_bytes));
            }
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the message body: {error}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let body = if zstd {
        decompress_zstd(&collected, max_bytes)?
    } else {
        collected.to_vec()
    };
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Empty body is not permitted",
        ));
    }
    Ok(body)
}

/// Takes a scan permit, then reads the body. The permit comes first so that
/// waiting requests stay in the kernel's buffers, not in memory; every
/// handler that hands a body to the engine goes through here.
async fn permit_then_body(
    request: Request<Incoming>,
    state: &State,
) -> Result<(tokio::sync::OwnedSemaphorePermit, Vec<u8>), ApiError> {
    let permit = state
        .scan_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let body = read_body(request, state).await?;
    Ok((permit, body))
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("message exceeds the {max_bytes}-byte limit (limits.max_message_bytes)"),
    )
}

/// Decompresses at most `max_bytes`; a zstd bomb is refused, not inflated.
fn decompress_zstd(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad zstd body: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad zstd body: {e}")))?;
    if out.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(out)
}

async fn scan_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
    shape: ReplyShape,
) -> Reply {
    let pairs = request_pairs(&request);
    let (envelope, _options) =
        envelope_from_headers(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let compressed_request = is_zstd(&pairs);
    let (permit, body) = match permit_then_body(request, state).await {
        Ok(taken) => taken,
        Err(error) => return error.into_reply(),
    };
    let outcome = run_scan_with_permit(state, body, envelope, peer, permit).await;
    let (scan, seconds) = match outcome {
        ScanOutcome::Done(scan, seconds) => (scan, seconds),
        ScanOutcome::TimedOut(scan) => {
            (scan, state.config().server.scan_timeout_ms as f64 / 1000.0)
        }
        ScanOutcome::Failed(reason) => {
            return error_reply(StatusCode::INTERNAL_SERVER_ERROR, &reason);
        }
    };
    let body = match shape {
        ReplyShape::V2 => checkv2_json(&scan, seconds),
        ReplyShape::Legacy => legacy_json(&scan, seconds),
    };
    if compressed_request {
        // As rspamd does: a zstd request gets a zstd reply, marked so.
        if let Ok(compressed) = zstd::bulk::compress(&body, 1) {
            let mut reply = bytes_reply(StatusCode::OK, "application/json", compressed);
            reply.headers_mut().insert(
                "compression",
                hyper::header::HeaderValue::from_static("zstd"),
            );
            return reply;
        }
    }
    bytes_reply(StatusCode::OK, "application/json", body)
}

fn is_zstd(pairs: &[(String, String)]) -> bool {
    header(pairs, "compression")
        .or_else(|| header(pairs, "content-encoding"))
        .is_some_and(|v| v.eq_ignore_ascii_case("zstd"))
}

/// Scans on the blocking pool within the scan time limit (used by the
/// legacy text protocol too).
pub async fn run_scan(
    state: &Arc<State>,
    body: Vec<u8>,
    envelope: Envelope,
    peer: SocketAddr,
) -> ScanOutcome {
    let permit = match state.scan_permits.clone().acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => return ScanOutcome::Failed("shutting down".into()),
    };
    run_scan_with_permit(state, body, envelope, peer, permit).await
}

async fn run_scan_with_permit(
    state: &Arc<State>,
    body: Vec<u8>,
    envelope: Envelope,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> ScanOutcome {
    let config = state.config();
    let task_state = state.clone();
    let pool_state = state.clone();
    let task = pool_state.run_cpu(move || {
        // The permit lives as long as the scan, even one that outlives its
        // deadline, so runaway scans still count against the bound.
        let _permit = permit;
        let started = Instant::now();
        let engine = task_state
            .engine
            .read()
            .map_err(|_| "engine lock poisoned".to_owned())?;
        let scan = engine.scan(&body, &envelope);
        drop(engine);
        let seconds = started.elapsed().as_secs_f64();
        let entry = HistoryEntry {
            message_id: scan.message_id.clone().unwrap_or_default(),
            unix_time: unix_now(),
            ip: envelope
                .client_ip
                .map_or_else(|| peer.ip().to_string(), |ip| ip.to_string()),
            sender_smtp: envelope.mail_from.clone().unwrap_or_default(),
            rcpt_smtp: envelope.recipients.clone(),
            subject: scan.subject.clone(),
            score: scan.verdict.score,
            required_score: scan.verdict.required_score,
            action: scan.verdict.action.name().to_owned(),
            symbols: scan
                .verdict
                .symbols
                .iter()
                .map(|s| (s.name.clone(), s.score))
                .collect(),
            size: body.len(),
            time_real: seconds,
        };
        task_state.record_scan(entry, &scan.verdict, seconds);
        Ok::<_, String>((scan, seconds))
    });
    let deadline = Duration::from_millis(config.server.scan_timeout_ms);
    match tokio::time::timeout(deadline, task).await {
        Ok(Some(Ok((scan, seconds)))) => ScanOutcome::Done(scan, seconds),
        Ok(Some(Err(reason))) => ScanOutcome::Failed(reason),
        Ok(None) => ScanOutcome::Failed("scan failed".to_owned()),
        Err(_) => ScanOutcome::TimedOut(Scan::timed_out(&config)),
    }
}

async fn learn_request(
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
    let learned = match result {
        Some(Ok(learned)) => learned,
        Some(Err(reason)) => return error_reply(StatusCode::BAD_REQUEST, &reason),
        None => {
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

/// `/fuzzyadd` (`add`) and `/fuzzydel`: the `Flag` and `Weight` headers as
/// `rspamc fuzzy_add -f N -w W` sends them; committed before the reply.
async fn fuzzy_request(
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
    fuzzy_change(state, move |engine| {
        let _permit = permit;
        if add {
            engine.fuzzy_add(&body, flag, weight)
        } else {
            engine.fuzzy_del(&body, flag)
        }
    })
    .await
}

/// `rspamc fuzzy_delhash -f FLAG HASH...`: one `Hash` header per hash, no
/// body (rspamc sends it as a GET).
async fn fuzzy_delhash_request(
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

/// A header that must be a non-negative integer; `default` when absent.
fn number_header(pairs: &[(String, String)], name: &str, default: u32) -> Result<u32, ApiError> {
    match header(pairs, name).map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => text.parse::<u32>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{name} must be a non-negative integer, not `{text}`"),
            )
        }),
    }
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

fn guarded(
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
/// `privilege`; `None` when they do.
fn refusal(
    pairs: &[(String, String)],
    peer: SocketAddr,
    state: &State,
    privilege: Privilege,
) -> Option<Reply> {
    (!allowed(
        &state.config().server,
        peer.ip(),
        header(pairs, "password"),
        privilege,
    ))
    .then(|| error_reply(StatusCode::UNAUTHORIZED, "Unauthorized"))
}

fn stat(state: &State) -> Reply {
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

fn counters(state: &State) -> Reply {
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

fn actions(state: &State) -> Reply {
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
    .map(|a| json!({"action": a.name(), "value": a.threshold(&config)}))
    .collect();
    json_reply(StatusCode::OK, &json!(rows))
}

fn symbols_list(state: &State) -> Reply {
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

fn history(state: &State) -> Reply {
    let rows: Vec<HistoryEntry> = match state.history.lock() {
        Ok(history) => history.iter().cloned().collect(),
        Err(_) => Vec::new(),
    };
    json_reply(StatusCode::OK, &json!({"version": 2, "rows": rows}))
}

fn metrics(state: &State) -> Reply {
    let c = &state.counters;
    let scanned = c.scanned.load(Ordering::Relaxed);
    let mut out = String::new();
    out.push_str(
        "# HELP rspamd_scanned_total Scanned messages.\n# TYPE rspamd_scanned_total counter\n",
    );
    out.push_str(&format!("rspamd_scanned_total {scanned}\n"));
    out.push_str(
        "# HELP rspamd_learned_total Learned messages.\n# TYPE rspamd_learned_total counter\n",
    );
    out.push_str(&format!(
        "rspamd_learned_total {}\n",
        c.learned.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP rspamd_actions_total Scans per action.\n# TYPE rspamd_actions_total counter\n",
    );
    for (i, action) in ACTIONS.iter().enumerate() {
        out.push_str(&format!(
            "rspamd_actions_total{{type=\"{}\"}} {}\n",
            action.name(),
            c.actions[i].load(Ordering::Relaxed)
        ));
    }
    out.push_str("# HELP rspamd_scan_time_average Average scan time in seconds.\n# TYPE rspamd_scan_time_average gauge\n");
    let average = c.scan_micros.load(Ordering::Relaxed) as f64 / 1e6 / scanned.max(1) as f64;
    out.push_str(&format!("rspamd_scan_time_average {average}\n"));
    out.push_str(
        "# HELP rspamd_uptime_seconds Seconds since start.\n# TYPE rspamd_uptime_seconds gauge\n",
    );
    out.push_str(&format!(
        "rspamd_uptime_seconds {}\n",
        state.started.elapsed().as_secs()
    ));
    if let Some((down, failed_fast)) = state
        .engine
        .read()
        .ok()
        .and_then(|engine| engine.resolver_down())
    {
        out.push_str("# HELP chaff_dns_resolver_down 1 while nothing listens on the configured nameservers.\n# TYPE chaff_dns_resolver_down gauge\n");
        out.push_str(&format!("chaff_dns_resolver_down {}\n", u8::from(down)));
        out.push_str("# HELP chaff_dns_failed_fast_total Messages whose lookups failed at once because the resolver was down.\n# TYPE chaff_dns_failed_fast_total counter\n");
        out.push_str(&format!("chaff_dns_failed_fast_total {failed_fast}\n"));
    }
    out.push_str("# EOF\n");
    bytes_reply(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        out.into_bytes(),
    )
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    bytes_reply(status, "text/plain", body.as_bytes().to_vec())
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    bytes_reply(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// Every refusal is a status plus a JSON `error`.
fn error_reply(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({"error": message}))
}

/// A refusal on its way to becoming a reply.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn into_reply(self) -> Reply {
        error_reply(self.status, &self.message)
    }
}

fn bytes_reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    reply
}
