//! Reading a request: header and query pairs (rspamd reads both), the body
//! under the size limit and the body timeout, a scan permit taken before
//! the body is read (so a flood waits in the kernel, not in memory), and
//! zstd decompression bounded by the same size limit.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::reply::ApiError;
use super::state::State;

/// Header pairs plus query-string pairs, as rspamd treats them alike.
pub fn request_pairs(request: &Request<Incoming>) -> Vec<(String, String)> {
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

pub fn percent_decode(text: &str) -> String {
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

pub fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
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
pub async fn permit_then_body(
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

pub fn is_zstd(pairs: &[(String, String)]) -> bool {
    header(pairs, "compression")
        .or_else(|| header(pairs, "content-encoding"))
        .is_some_and(|v| v.eq_ignore_ascii_case("zstd"))
}

/// A header that must be a non-negative integer; `default` when absent.
pub fn number_header(
    pairs: &[(String, String)],
    name: &str,
    default: u32,
) -> Result<u32, ApiError> {
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
