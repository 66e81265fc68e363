//! The admin web UI on the controller port, where rspamd's WebUI is: a
//! page and its script and style embedded in the binary (no request leaves
//! the machine: many mail gateways have no internet), and the JSON requests
//! behind them (`api.rs`).
//!
//! Who may do what is the controller's rule (`auth.rs`): `password` reads,
//! `enable_password` changes, clients in `secure_ip` need neither. A
//! browser proves it with a session (`session.rs`) rather than a password
//! on every request, and every change also carries the session's CSRF
//! token and, when the browser names one, an `Origin` of this host, so a
//! page elsewhere cannot make the admin's browser change anything.
//! Beside the state: `timeline.rs` keeps what the dashboard's chart draws
//! and `kept.rs` the history's messages, so an entry can be learned from.

pub mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::auth::{Privilege, allowed, is_cross_origin, privilege_of};
use super::body::{header, permit_then_body, request_pairs};
use super::reply::{ApiError, Reply, error_reply, json_reply};
use super::session::{Session, same_token, set_cookie, token_in};
use super::state::State;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Whether `path` (lower-cased, without the leading `/`) is the UI's.
pub fn is_ui_path(path: &str) -> bool {
    path.is_empty() || path == "index.html" || path.starts_with("ui/")
}

/// Serves one UI request on the controller port.
pub async fn handle(request: Request<Incoming>, peer: SocketAddr, state: &Arc<State>) -> Reply {
    let path = request
        .uri()
        .path()
        .trim_start_matches('/')
        .to_ascii_lowercase();
    let method = request.method().clone();
    let mut reply = match (method.clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "" | "index.html") => {
            asset(INDEX_HTML, "text/html; charset=utf-8", false)
        }
        (Method::GET | Method::HEAD, "ui/app.js") => {
            asset(APP_JS, "text/javascript; charset=utf-8", true)
        }
        (Method::GET | Method::HEAD, "ui/app.css") => {
            asset(APP_CSS, "text/css; charset=utf-8", true)
        }
        (Method::POST, "ui/login") => login(request, peer, state).await,
        (Method::POST, "ui/logout") => logout(&request, state),
        (Method::GET, "ui/api/session") => session_info(&request, peer, state),
        (Method::GET, api_path) if api_path.starts_with("ui/api/") => {
            match access(&request, peer, state, Privilege::ReadOnly, false) {
                Err(refusal) => refusal.into_reply(),
                Ok(()) => read(api_path, &request, state).await,
            }
        }
        (Method::POST, api_path) if api_path.starts_with("ui/api/") => {
            let wanted = if api_path == "ui/api/scan" {
                Privilege::ReadOnly
            } else {
                Privilege::Write
            };
            match access(&request, peer, state, wanted, true) {
                Err(refusal) => refusal.into_reply(),
                Ok(()) => change(api_path.to_owned(), request, peer, state).await,
            }
        }
        _ => error_reply(StatusCode::NOT_FOUND, "no such page"),
    };
    secure_headers(reply.headers_mut());
    reply
}

async fn read(path: &str, request: &Request<Incoming>, state: &Arc<State>) -> Reply {
    let pairs = request_pairs(request);
    match path {
        "ui/api/dashboard" => api::dashboard(state),
        "ui/api/history" => api::history(state),
        "ui/api/message" => match api::id_of(&pairs) {
            Some(id) => api::message(state, id).await,
            None => error_reply(StatusCode::BAD_REQUEST, "id is missing"),
        },
        "ui/api/lists" => api::lists(state),
        "ui/api/symbols" => api::symbols(state),
        "ui/api/config" => api::configuration(state),
        _ => error_reply(StatusCode::NOT_FOUND, "no such request"),
    }
}

async fn change(
    path: String,
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<State>,
) -> Reply {
    let pairs = request_pairs(&request);
    match path.as_str() {
        "ui/api/learn" => match (api::id_of(&pairs), api::class_of(&pairs)) {
            (Some(id), Some(class)) => api::learn_entry(state, id, class).await,
            (None, _) => error_reply(StatusCode::BAD_REQUEST, "id is missing"),
            (_, None) => api::no_class(),
        },
        "ui/api/fuzzy" => {
            let number = |name: &str| header(&pairs, name).and_then(|v| v.parse::<u32>().ok());
            match api::id_of(&pairs) {
                Some(id) => {
                    api::fuzzy_entry(
                        state,
                        id,
                        number("flag").unwrap_or(1),
                        number("weight").unwrap_or(1),
                    )
                    .await
                }
                None => error_reply(StatusCode::BAD_REQUEST, "id is missing"),
            }
        }
        "ui/api/scan" => match permit_then_body(request, state).await {
            Ok((permit, body)) => {
                drop(permit);
                api::scan(state, peer, &pairs, body).await
            }
            Err(error) => error.into_reply(),
        },
        "ui/api/learnfile" => {
            let Some(class) = api::class_of(&pairs) else {
                return api::no_class();
            };
            match body_of(request, state).await {
                Ok(body) => api::learn_upload(state, body, class).await,
                Err(refusal) => refusal,
            }
        }
        "ui/api/lists" => {
            let Some(name) = header(&pairs, "name").map(str::to_owned) else {
                return error_reply(StatusCode::BAD_REQUEST, "name is missing");
            };
            match body_of(request, state).await {
                Ok(body) => match String::from_utf8(body) {
                    Ok(text) => api::save_list(state, &name, &text),
                    Err(_) => error_reply(StatusCode::BAD_REQUEST, "a list must be UTF-8 text"),
                },
                Err(refusal) => refusal,
            }
        }
        _ => error_reply(StatusCode::NOT_FOUND, "no such request"),
    }
}

/// A request's body within the message size limit.
async fn body_of(request: Request<Incoming>, state: &Arc<State>) -> Result<Vec<u8>, Reply> {
    match permit_then_body(request, state).await {
        Ok((permit, body)) => {
            drop(permit);
            Ok(body)
        }
        Err(error) => Err(error.into_reply()),
    }
}

/// The session a request's cookie names (only the real `Cookie` header:
/// query pairs count as headers elsewhere on this port, never here).
fn session_of(request: &Request<Incoming>, state: &State) -> Option<(String, Session)> {
    let cookies = request.headers().get_all(hyper::header::COOKIE);
    cookies
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(token_in)
        .find_map(|token| state.sessions.get(token).map(|s| (token.to_owned(), s)))
}

/// Whether the request's `X-CSRF-Token` is `session`'s.
fn carries_csrf_of(request: &Request<Incoming>, session: &Session) -> bool {
    let given = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    same_token(given, &session.csrf)
}

fn is_secure_client(state: &State, peer: SocketAddr) -> bool {
    allowed(&state.config().server, peer.ip(), None, Privilege::Write)
}

/// Whether the request may do what it asks: a session of enough privilege
/// (or, for reading, a client in `secure_ip`), and for a change the
/// session's CSRF token and no foreign `Origin`.
fn access(
    request: &Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    wanted: Privilege,
    is_change: bool,
) -> Result<(), ApiError> {
    if is_change && foreign_origin(request) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    let session = session_of(request, state);
    if is_change {
        let Some((_, session)) = session else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in first"));
        };
        if !carries_csrf_of(request, &session) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token",
            ));
        }
        if wanted == Privilege::Write && session.privilege != Privilege::Write {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this needs the enable password",
            ));
        }
        return Ok(());
    }
    match session {
        Some(_) => Ok(()),
        None if is_secure_client(state, peer) => Ok(()),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in first")),
    }
}

/// An `Origin` (or, without one, a `Referer`) naming another host than the
/// one the request was sent to.
fn foreign_origin(request: &Request<Incoming>) -> bool {
    let header =
        |name: hyper::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    let named = header(hyper::header::ORIGIN).or_else(|| header(hyper::header::REFERER));
    is_cross_origin(named, header(hyper::header::HOST))
}

/// Whether the browser reached us over TLS (through a proxy that says so):
/// the cookie is then `Secure`.
fn over_tls(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn privilege_name(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::Write => "write",
        Privilege::ReadOnly => "read",
    }
}

/// Who the browser is: its session, or (a client in `secure_ip`) a new
/// session made without a login, as such clients need no password.
fn session_info(request: &Request<Incoming>, peer: SocketAddr, state: &State) -> Reply {
    if let Some((_, session)) = session_of(request, state) {
        return json_reply(
            StatusCode::OK,
            &json!({"privilege": privilege_name(session.privilege), "csrf": session.csrf}),
        );
    }
    if is_secure_client(state, peer) {
        return new_session(over_tls(request), state, Privilege::Write);
    }
    json_reply(
        StatusCode::OK,
        &json!({"privilege": null, "login_required": true}),
    )
}

/// A new session of `privilege`: its CSRF token in the reply, its cookie
/// set.
fn new_session(tls: bool, state: &State, privilege: Privilege) -> Reply {
    match state.sessions.create(privilege) {
        Ok((token, session)) => {
            let mut reply = json_reply(
                StatusCode::OK,
                &json!({"privilege": privilege_name(privilege), "csrf": session.csrf}),
            );
            if let Ok(cookie) = HeaderValue::from_str(&set_cookie(Some(&token), tls)) {
                reply
                    .headers_mut()
                    .insert(hyper::header::SET_COOKIE, cookie);
            }
            reply
        }
        Err(error) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// `POST /ui/login` with the password in the body (a form field or JSON):
/// never in the URL.
async fn login(request: Request<Incoming>, peer: SocketAddr, state: &Arc<State>) -> Reply {
    if foreign_origin(&request) {
        return error_reply(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if !state.sessions.login_allowed(peer.ip()) {
        return error_reply(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; try again in a minute",
        );
    }
    let (parts, body) = request.into_parts();
    let probe = Request::from_parts(parts, body);
    let tls = over_tls(&probe);
    let body = match body_of(probe, state).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let password = password_in(&body);
    match privilege_of(&state.config().server, password.as_deref().unwrap_or("")) {
        Some(privilege) => {
            state.sessions.login_succeeded(peer.ip());
            new_session(tls, state, privilege)
        }
        None => {
            state.sessions.login_failed(peer.ip());
            error_reply(StatusCode::UNAUTHORIZED, "wrong password")
        }
    }
}

/// The password of a login body: `{"password": …}` or `password=…`.
fn password_in(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        return value.get("password")?.as_str().map(str::to_owned);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "password").then(|| super::body::percent_decode(value))
    })
}

fn logout(request: &Request<Incoming>, state: &State) -> Reply {
    if let Some((token, session)) = session_of(request, state) {
        if !carries_csrf_of(request, &session) {
            return error_reply(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
        state.sessions.remove(&token);
    }
    let mut reply = json_reply(StatusCode::OK, &json!({"success": true}));
    if let Ok(cookie) = HeaderValue::from_str(&set_cookie(None, over_tls(request))) {
        reply
            .headers_mut()
            .insert(hyper::header::SET_COOKIE, cookie);
    }
    reply
}

/// An embedded file. The page itself is never cached (it names the
/// others); the script and style are cached for a day and revalidated by
/// their ETag, which changes with the build.
fn asset(text: &'static str, content_type: &'static str, cacheable: bool) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let headers = reply.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    let cache = if cacheable {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static(cache),
    );
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(hyper::header::ETAG, etag);
    }
    reply
}

/// Headers on every UI reply: nothing but this origin's own script, style
/// and images may load (no CDN, and an injected script would not run), no
/// framing, no sniffing, no referrer.
fn secure_headers(headers: &mut hyper::HeaderMap) {
    let pairs: [(&str, &str); 5] = [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in pairs {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(hyper::header::CACHE_CONTROL) {
        headers.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_read_from_a_form_or_json_body() {
        assert_eq!(password_in(b"password=a%26b").as_deref(), Some("a&b"));
        assert_eq!(password_in(br#"{"password":"x"}"#).as_deref(), Some("x"));
        assert_eq!(password_in(b"user=x"), None);
    }
}
