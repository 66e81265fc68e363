//! rspamd 4's `POST /checkv3`: a multipart/form-data request with a
//! `metadata` part (JSON, or msgpack when its Content-Type says so) and a
//! `message` part (zstd when its Content-Encoding says so), answered as
//! rspamd 4.1's `rspamd_protocol_http_reply_v3` answers: by `Accept`, a
//! multipart/form-data reply (the default) or multipart/mixed
//! (`message/rfc822`) whose `result` part is the `/checkv2` reply — JSON,
//! or msgpack when the metadata was — zstd-compressed when
//! `Accept-Encoding` allows it; or the bare reply as `application/json` or
//! `application/msgpack`; 406 with the list of representations otherwise.
//! Errors are rspamd's 400s with a JSON `error`. The scan is `/checkv2`'s.
//!
//! Metadata keys read: `from`, `rcpt` (array or string), `ip`, `helo`,
//! `hostname`, `queue_id`, `user` — the envelope `/checkv2` takes from
//! headers — and `settings_id` and `settings` (an object, rspamd's settings
//! shape), as its `Settings-ID` and `Settings` headers; the rest are
//! accepted and not acted on.

use std::net::IpAddr;

use chaff::engine::Scan;
use chaff::message::Envelope;
use chaff::policy::{ScanRequest, Settings};
use chaff::report::CheckV2Reply;
use hyper::StatusCode;

use super::reply::{ApiError, Reply, bytes_reply};

/// A `/checkv3` request, read.
#[derive(Debug)]
pub struct V3Request {
    pub envelope: Envelope,
    /// `settings_id` and `settings`, as `/checkv2`'s headers carry them.
    pub request: ScanRequest,
    /// The metadata came as msgpack: the `result` part answers in kind.
    pub msgpack: bool,
    pub message: Vec<u8>,
}

/// How the reply is represented, by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    FormData,
    Mixed,
    Json,
    Msgpack,
}

/// The multipart parts at most: metadata and message.
const MAX_PARTS: usize = 2;

struct Part<'a> {
    name: String,
    content_type: String,
    content_encoding: String,
    data: &'a [u8],
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Reads the request body as rspamd does; `Err` is the refusal.
pub fn parse_request(
    content_type: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<V3Request, ApiError> {
    let content_type =
        content_type.ok_or_else(|| bad("missing Content-Type header for v3 request"))?;
    let boundary =
        boundary(content_type).ok_or_else(|| bad("cannot extract boundary from Content-Type"))?;
    let parts =
        parse_form(body, &boundary).ok_or_else(|| bad("cannot parse multipart/form-data body"))?;
    if parts.len() > MAX_PARTS {
        return Err(bad(format!(
            "v3 request must contain at most 2 parts (metadata + message), got {}",
            parts.len()
        )));
    }
    let find = |name: &str| parts.iter().find(|p| p.name == name);
    let metadata_part = find("metadata")
        .filter(|p| !p.data.is_empty())
        .ok_or_else(|| bad("missing 'metadata' part in v3 request"))?;
    let msgpack = metadata_part
        .content_type
        .to_ascii_lowercase()
        .contains("msgpack");
    let metadata: serde_json::Value = if msgpack {
        rmp_serde::from_slice(metadata_part.data)
            .map_err(|e| bad(format!("cannot parse metadata: {e}")))?
    } else {
        serde_json::from_slice(metadata_part.data)
            .map_err(|e| bad(format!("cannot parse metadata: {e}")))?
    };
    let metadata = metadata
        .as_object()
        .ok_or_else(|| bad("metadata is not a valid object"))?;
    let message_part = find("message")
        .filter(|p| !p.data.is_empty())
        .ok_or_else(|| bad("missing 'message' part in v3 request"))?;
    let message = if message_part
        .content_encoding
        .to_ascii_lowercase()
        .contains("zstd")
    {
        decompress(message_part.data, max_bytes)?
    } else {
        message_part.data.to_vec()
    };
    let settings = match metadata.get("settings") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            Some(Settings::from_rspamd_json(&value.to_string()).map_err(|e| bad(e.to_string()))?)
        }
    };
    let request = ScanRequest {
        settings_id: metadata
            .get("settings_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        settings,
        spamd_user: None,
    };
    Ok(V3Request {
        envelope: envelope(metadata),
        request,
        msgpack,
        message,
    })
}

fn decompress(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(data)
        .map_err(|e| bad(format!("message decompression error: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("message decompression error: {e}")))?;
    if out.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message decompression error: message too large",
        ));
    }
    Ok(out)
}

fn envelope(metadata: &serde_json::Map<String, serde_json::Value>) -> Envelope {
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let recipients = match metadata.get("rcpt") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Envelope {
        client_ip: text("ip").and_then(|ip| ip.trim().parse::<IpAddr>().ok()),
        client_hostname: text("hostname"),
        helo: text("helo"),
        mail_from: text("from"),
        recipients,
        user: text("user"),
        queue_id: text("queue_id"),
    }
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    let (kind, parameters) = content_type.split_once(';')?;
    if !kind.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    parameters.split(';').find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 200).then(|| value.to_owned())
    })
}

/// The parts of a multipart/form-data body; `None` when there is no
/// boundary line or no closing one.
fn parse_form<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let mut starts: Vec<usize> = finder.find_iter(body).collect();
    // Only delimiters at the start of a line count.
    starts.retain(|&at| at == 0 || body[at - 1] == b'\n');
    if starts.len() < 2 {
        return None;
    }
    let mut parts = Vec::new();
    let mut closed = false;
    for pair in starts.windows(2) {
        let after = pair[0] + delimiter.len();
        if body[after..].starts_with(b"--") {
            closed = true;
            break;
        }
        let mut section = &body[after..pair[1]];
        // The line end before the next delimiter belongs to it.
        section = section.strip_suffix(b"\n").unwrap_or(section);
        section = section.strip_suffix(b"\r").unwrap_or(section);
        parts.push(parse_part(section)?);
        if parts.len() > MAX_PARTS {
            return Some(parts);
        }
    }
    let last = *starts.last()?;
    closed |= body[last + delimiter.len()..].starts_with(b"--");
    closed.then_some(parts)
}

fn parse_part(section: &[u8]) -> Option<Part<'_>> {
    // The rest of the delimiter line, then headers to a blank line.
    let line_end = memchr::memchr(b'\n', section)?;
    let rest = &section[line_end + 1..];
    let (head, data) = match memchr::memmem::find(rest, b"\r\n\r\n") {
        Some(at) => (&rest[..at], &rest[at + 4..]),
        None => {
            let at = memchr::memmem::find(rest, b"\n\n")?;
            (&rest[..at], &rest[at + 2..])
        }
    };
    let mut part = Part {
        name: String::new(),
        content_type: String::new(),
        content_encoding: String::new(),
        data,
    };
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => {
                part.name = value
                    .split(';')
                    .find_map(|p| {
                        let (k, v) = p.split_once('=')?;
                        k.trim()
                            .eq_ignore_ascii_case("name")
                            .then(|| v.trim().trim_matches('"').to_owned())
                    })
                    .unwrap_or_default();
            }
            "content-type" => {
                part.content_type = value.split(';').next().unwrap_or("").trim().to_owned();
            }
            "content-encoding" | "content-transfer-encoding" => {
                part.content_encoding = value.to_owned();
            }
            _ => {}
        }
    }
    Some(part)
}

/// The representation `Accept` asks for: the highest quality among those
/// rspamd offers (ties in its order: form-data, rfc822, JSON, msgpack);
/// form-data without `Accept`; `None` when none is acceptable.
pub fn negotiate(accept: Option<&str>) -> Option<Representation> {
    const OFFERED: [(&str, Representation); 4] = [
        ("multipart/form-data", Representation::FormData),
        ("message/rfc822", Representation::Mixed),
        ("application/json", Representation::Json),
        ("application/msgpack", Representation::Msgpack),
    ];
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Representation::FormData);
    };
    let mut best: Option<(f64, usize)> = None;
    for range in accept.split(',') {
        let mut pieces = range.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = pieces
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == "q").then(|| v.trim().parse::<f64>().ok())?
            })
            .unwrap_or(1.0);
        if quality <= 0.0 {
            continue;
        }
        for (order, (offered, _)) in OFFERED.iter().enumerate() {
            let (kind, _) = offered.split_once('/').unwrap_or((offered, ""));
            let matches = media == *offered || media == "*/*" || media == format!("{kind}/*");
            let better = best.is_none_or(|(q, o)| quality > q || (quality == q && order < o));
            if matches && better {
                best = Some((quality, order));
            }
        }
    }
    best.map(|(_, order)| OFFERED[order].1)
}

/// Whether `Accept-Encoding` allows zstd.
pub fn wants_zstd(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').any(|coding| {
            let mut pieces = coding.split(';');
            let name = pieces.next().unwrap_or("").trim();
            let refused = pieces.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("zstd") && !refused
        })
    })
}

/// rspamd's 406 for an `Accept` it cannot satisfy.
pub fn not_acceptable() -> Reply {
    let body = br#"{"error":"Not Acceptable","supported":["application/json","application/msgpack","message/rfc822","multipart/form-data"]}"#;
    with_vary(bytes_reply(
        StatusCode::NOT_ACCEPTABLE,
        "application/json",
        body.to_vec(),
    ))
}

/// The reply for a finished scan.
pub fn reply(
    scan: &Scan,
    seconds: f64,
    representation: Representation,
    metadata_msgpack: bool,
    zstd: bool,
) -> Reply {
    let result = CheckV2Reply::new(scan, seconds);
    let encode = |msgpack: bool| {
        if msgpack {
            rmp_serde::to_vec_named(&result).unwrap_or_default()
        } else {
            serde_json::to_vec(&result).unwrap_or_default()
        }
    };
    let reply = match representation {
        Representation::Json => bytes_reply(StatusCode::OK, "application/json", encode(false)),
        Representation::Msgpack => bytes_reply(StatusCode::OK, "application/msgpack", encode(true)),
        Representation::FormData | Representation::Mixed => {
            let (data, part_type) = if metadata_msgpack {
                (encode(true), "application/msgpack")
            } else {
                (encode(false), "application/json")
            };
            let boundary = format!(
                "chaff-{:016x}",
                xxhash_rust::xxh3::xxh3_64(&data) ^ seconds.to_bits()
            );
            let body = multipart_body(&boundary, "result", part_type, &data, zstd);
            let subtype = if representation == Representation::Mixed {
                "multipart/mixed"
            } else {
                "multipart/form-data"
            };
            let mut reply = bytes_reply(StatusCode::OK, "application/octet-stream", body);
            if let Ok(value) =
                hyper::header::HeaderValue::from_str(&format!("{subtype}; boundary=\"{boundary}\""))
            {
                reply
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            reply
        }
    };
    with_vary(reply)
}

fn with_vary(mut reply: Reply) -> Reply {
    reply.headers_mut().insert(
        hyper::header::VARY,
        hyper::header::HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    reply
}

/// One part, as rspamd's multipart response writes it.
fn multipart_body(
    boundary: &str,
    name: &str,
    content_type: &str,
    data: &[u8],
    zstd: bool,
) -> Vec<u8> {
    let mut out = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {content_type}\r\n"
    )
    .into_bytes();
    let compressed = zstd.then(|| zstd::bulk::compress(data, 1).ok()).flatten();
    match compressed {
        Some(compressed) => {
            out.extend_from_slice(b"Content-Encoding: zstd\r\n\r\n");
            out.extend_from_slice(&compressed);
        }
        None => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, headers, data) in parts {
            body.extend_from_slice(
                format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{headers}\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn json_metadata_sets_the_envelope() {
        let body = form(&[
            (
                "metadata",
                "Content-Type: application/json\r\n",
                br#"{"from":"a@example.org","rcpt":["b@example.com","c@example.com"],"ip":"192.0.2.7","helo":"mx","queue_id":"Q1","user":"alice"}"#,
            ),
            ("message", "", b"Subject: hi\r\n\r\nbody\r\n"),
        ]);
        let request = parse_request(Some("multipart/form-data; boundary=XyZ"), &body, 1 << 20);
        let request = request
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.envelope.recipients.len(), 2);
        assert_eq!(request.envelope.client_ip, "192.0.2.7".parse().ok());
        assert_eq!(request.envelope.user.as_deref(), Some("alice"));
        assert_eq!(request.message, b"Subject: hi\r\n\r\nbody\r\n");
        assert!(!request.msgpack);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let refusal = |ct: Option<&str>, body: &[u8]| {
            parse_request(ct, body, 1 << 20)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let good_meta: (&str, &str, &[u8]) = ("metadata", "", b"{}");
        assert!(refusal(None, b"").contains("missing Content-Type"));
        assert!(refusal(Some("multipart/form-data"), b"").contains("boundary"));
        assert!(
            refusal(
                Some("multipart/form-data; boundary=XyZ"),
                b"--XyZ\r\nno end"
            )
            .contains("cannot parse")
        );
        let only_message = form(&[("message", "", b"x")]);
        assert!(
            refusal(Some("multipart/form-data; boundary=XyZ"), &only_message)
                .contains("'metadata'")
        );
        let only_metadata = form(&[good_meta]);
        assert!(
            refusal(Some("multipart/form-data; boundary=XyZ"), &only_metadata)
                .contains("'message'")
        );
        let not_object = form(&[("metadata", "", b"[1]"), ("message", "", b"x")]);
        assert!(
            refusal(Some("multipart/form-data; boundary=XyZ"), &not_object)
                .contains("not a valid object")
        );
        let three = form(&[good_meta, ("message", "", b"x"), ("extra", "", b"y")]);
        assert!(
            refusal(Some("multipart/form-data; boundary=XyZ"), &three).contains("at most 2 parts")
        );
    }

    #[test]
    fn accept_picks_the_representation() {
        assert_eq!(negotiate(None), Some(Representation::FormData));
        assert_eq!(
            negotiate(Some("application/json")),
            Some(Representation::Json)
        );
        assert_eq!(
            negotiate(Some("application/json;q=0.5, application/msgpack")),
            Some(Representation::Msgpack)
        );
        assert_eq!(
            negotiate(Some("message/rfc822")),
            Some(Representation::Mixed)
        );
        assert_eq!(negotiate(Some("*/*")), Some(Representation::FormData));
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(negotiate(Some("application/json;q=0")), None);
        assert!(wants_zstd(Some("gzip, zstd")));
        assert!(!wants_zstd(Some("zstd;q=0")));
        assert!(!wants_zstd(None));
    }
}
