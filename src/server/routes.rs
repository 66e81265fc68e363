//! Paths to handlers, for both ports.
//!
//! As rspamd does, the path is matched case-insensitively and the query
//! string's keys count as request headers (`/checkv2?ip=…`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use chaff::store::Class;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::Role;
use super::auth::Privilege;
use super::body::{header, request_pairs};
use super::controller::{
    actions, counters, fuzzy_delhash_request, fuzzy_request, guarded, history, learn_request,
    policy_list, policy_reset, stat, symbols_list,
};
use super::metrics::metrics;
use super::reply::{Reply, error_reply, json_reply, text};
use super::scan::{ReplyShape, scan_request, scan_v3};
use super::state::State;

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
    if role == Role::Controller && super::ui::is_ui_path(&path) {
        return Ok(super::ui::handle(request, peer, &state).await);
    }
    let reply = match (role, path.as_str()) {
        (_, "ping") => text(StatusCode::OK, "pong\r\n"),
        (_, "metrics") => metrics(&state),
        (_, "checkv2") if is_post => scan_request(request, peer, &state, ReplyShape::V2).await,
        (_, "checkv3") if is_post => scan_v3(request, peer, &state).await,
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
        (Role::Controller, "policy") => {
            let pairs = request_pairs(&request);
            let prefix = header(&pairs, "prefix").unwrap_or("").to_owned();
            guarded(&request, peer, &state, Privilege::ReadOnly, || {
                policy_list(&state, &prefix)
            })
        }
        (Role::Controller, "policyreset") if is_post => {
            let pairs = request_pairs(&request);
            let prefix = header(&pairs, "prefix").map(str::to_owned);
            guarded(&request, peer, &state, Privilege::Write, || {
                policy_reset(&state, prefix.as_deref())
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
