//! Running a scan for a request: the envelope from its headers, the scan on
//! the CPU pool under `scan_timeout_ms`, the counters and history it
//! updates, and the reply in the shape the path asked for. The legacy
//! `RSPAMC` connection runs its scans through the same `run_scan`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaff::engine::Scan;
use chaff::message::Envelope;
use chaff::policy::ScanRequest;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::body::{header, is_zstd, permit_then_body, request_pairs};
use super::checkv3;
use super::reply::{ApiError, Reply, bytes_reply};
use super::reply::{checkv2_json, envelope_from_headers, legacy_json};
use super::state::{HistoryEntry, State, unix_now};

/// The result of handing a message to the engine.
pub enum ScanOutcome {
    Done(Scan, f64),
    /// The scan ran past `scan_timeout_ms`; a defined temporary-failure verdict.
    TimedOut(Scan),
    Failed(String),
}

#[derive(Clone, Copy)]
pub enum ReplyShape {
    V2,
    Legacy,
}

pub async fn scan_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
    shape: ReplyShape,
) -> Reply {
    let pairs = request_pairs(&request);
    let (envelope, options) =
        envelope_from_headers(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let scan_request = match options.scan_request() {
        Ok(scan_request) => scan_request,
        Err(error) => return error.into_reply(),
    };
    let compressed_request = is_zstd(&pairs);
    let (permit, body) = match permit_then_body(request, state).await {
        Ok(taken) => taken,
        Err(error) => return error.into_reply(),
    };
    let outcome = run_scan_with_permit(state, body, envelope, scan_request, peer, permit).await;
    let (scan, seconds) = match finished(outcome, state) {
        Ok(done) => done,
        Err(error) => return error.into_reply(),
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

/// `POST /checkv3` (rspamd 4): metadata and message in a multipart body,
/// the reply negotiated by `Accept` (`checkv3.rs`); the scan as
/// `/checkv2`'s.
pub async fn scan_v3(request: Request<Incoming>, peer: SocketAddr, state: &Arc<State>) -> Reply {
    let pairs = request_pairs(&request);
    let Some(representation) = checkv3::negotiate(header(&pairs, "accept")) else {
        return checkv3::not_acceptable();
    };
    let zstd = checkv3::wants_zstd(header(&pairs, "accept-encoding"));
    let content_type = header(&pairs, "content-type").map(str::to_owned);
    let (permit, body) = match permit_then_body(request, state).await {
        Ok(taken) => taken,
        Err(error) => return error.into_reply(),
    };
    let max_bytes = state.config().limits.max_message_bytes;
    let parsed = match checkv3::parse_request(content_type.as_deref(), &body, max_bytes) {
        Ok(parsed) => parsed,
        Err(error) => return error.into_reply(),
    };
    drop(body);
    let outcome = run_scan_with_permit(
        state,
        parsed.message,
        parsed.envelope,
        parsed.request,
        peer,
        permit,
    )
    .await;
    let (scan, seconds) = match finished(outcome, state) {
        Ok(done) => done,
        Err(error) => return error.into_reply(),
    };
    checkv3::reply(&scan, seconds, representation, parsed.msgpack, zstd)
}

/// A scan's outcome as an HTTP door answers it: the scan and its seconds
/// (a timed-out scan's verdict took the whole limit), or a 500.
fn finished(outcome: ScanOutcome, state: &State) -> Result<(Scan, f64), ApiError> {
    match outcome {
        ScanOutcome::Done(scan, seconds) => Ok((scan, seconds)),
        ScanOutcome::TimedOut(scan) => {
            Ok((scan, state.config().server.scan_timeout_ms as f64 / 1000.0))
        }
        ScanOutcome::Failed(reason) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, reason))
        }
    }
}

/// Scans on the blocking pool within the scan time limit (used by the
/// legacy text protocol too).
pub async fn run_scan(
    state: &Arc<State>,
    body: Vec<u8>,
    envelope: Envelope,
    request: ScanRequest,
    peer: SocketAddr,
) -> ScanOutcome {
    let permit = match state.scan_permits.clone().acquire_owned().await {
        Ok(permit) => permit,
        Err(_) => return ScanOutcome::Failed("shutting down".into()),
    };
    run_scan_with_permit(state, body, envelope, request, peer, permit).await
}

async fn run_scan_with_permit(
    state: &Arc<State>,
    body: Vec<u8>,
    envelope: Envelope,
    request: ScanRequest,
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
        let scan = engine.scan_request(&body, &envelope, &request);
        drop(engine);
        let seconds = started.elapsed().as_secs_f64();
        // The history shows the envelope as the checks saw it.
        let envelope = envelope.cleaned();
        let entry = HistoryEntry {
            id: 0,
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
            options: scan
                .verdict
                .symbols
                .iter()
                .filter(|s| !s.options.is_empty())
                .map(|s| (s.name.clone(), s.options.clone()))
                .collect(),
            size: body.len(),
            time_real: seconds,
            profile: scan.profile.clone(),
        };
        let id = task_state.record_scan(entry, &scan, seconds);
        task_state.keep_message(id, body, envelope);
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
