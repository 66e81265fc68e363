//! SpamAssassin's spamd protocol on its own port (`[server] spamd_bind`),
//! for what was written for SpamAssassin: `spamc` in Postfix pipes and
//! procmail, Exim's default `spam =`, MailScanner, Haraka's spamassassin
//! plugin. One request per connection: `METHOD SPAMC/1.x`, header lines to
//! a blank line, the message (`Content-length` bytes, or to the client's
//! half-close; zlib when `Compress: zlib`), one reply, close. The scan is
//! the engine's, with the same limits and counters as `/checkv2`'s; the
//! reply's shapes are `spamd_reply.rs`; errors are spamd's own lines
//! (`SPAMD/1.0 76 Bad header line: ...`), never a hang: every read has the
//! header or body timeout.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaff::class::Class;
use chaff::policy::ScanRequest;
use tokio::io::AsyncReadExt;

use super::Io;
use super::controller::{LearnFailure, learn_message};
use super::rspamc::write_and_close;
use super::scan::{ScanOutcome, run_scan};
use super::spamd_reply::{
    EX_DATAERR, EX_PROTOCOL, EX_SOFTWARE, EX_TIMEOUT, EX_UNAVAILABLE, Method, SpamdVerdict, error,
};
use super::state::{State, host_name};

/// Header lines a request may carry (spamd allows 255).
const MAX_HEADERS: usize = 255;
/// The request line and headers together.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A spamd request, read up to its message.
#[derive(Debug, Default, PartialEq)]
struct Request {
    method: Option<Method>,
    /// The client's protocol version (`SPAMC/1.5` → 1.5): the reply's shape
    /// depends on it.
    version: f64,
    content_length: Option<usize>,
    compressed: bool,
    message_class: Option<Class>,
    set_local: bool,
    remove_local: bool,
    /// `User`: the local user spamc scans for, which selects a profile
    /// (`match.spamd_user`).
    user: Option<String>,
}

/// Serves one spamd connection.
pub async fn serve<S: Io>(mut stream: S, peer: SocketAddr, state: Arc<State>) {
    let config = state.config();
    let header_timeout = Duration::from_millis(config.server.header_timeout_ms);
    let mut buffer = Vec::new();
    let head = tokio::time::timeout(header_timeout, read_head(&mut stream, &mut buffer)).await;
    let head_end = match head {
        Ok(Some(end)) => end,
        Ok(None) => {
            write_and_close(
                &mut stream,
                &error(EX_PROTOCOL, "Bad header line: (EOF during headers)"),
            )
            .await;
            return;
        }
        Err(_) => {
            write_and_close(
                &mut stream,
                &error(EX_TIMEOUT, "Timeout: (reading the request)"),
            )
            .await;
            return;
        }
    };
    let request = match parse_head(&buffer[..head_end]) {
        Ok(request) => request,
        Err(reply) => {
            write_and_close(&mut stream, &reply).await;
            return;
        }
    };
    let Some(method) = request.method else {
        return;
    };
    match method {
        Method::Ping => {
            write_and_close(&mut stream, b"SPAMD/1.5 0 PONG\r\n").await;
            return;
        }
        Method::Skip => {
            write_and_close(&mut stream, b"").await;
            return;
        }
        _ => {}
    }
    if method == Method::Tell && !config.server.spamd_allow_tell {
        write_and_close(
            &mut stream,
            &error(
                EX_UNAVAILABLE,
                "Service Unavailable: TELL commands are not enabled, set spamd_allow_tell = true.",
            ),
        )
        .await;
        return;
    }
    let max_bytes = config.limits.max_message_bytes;
    let body_timeout = Duration::from_millis(config.server.body_timeout_ms);
    let mut body = buffer.split_off(head_end);
    let read = tokio::time::timeout(
        body_timeout,
        read_body(&mut stream, &mut body, request.content_length, max_bytes),
    )
    .await;
    match read {
        Err(_) => {
            write_and_close(
                &mut stream,
                &error(EX_TIMEOUT, "Timeout: (reading the message)"),
            )
            .await;
            return;
        }
        Ok(Err(reply)) => {
            write_and_close(&mut stream, &reply).await;
            return;
        }
        Ok(Ok(())) => {}
    }
    if request.compressed {
        body = match inflate(&body, max_bytes) {
            Ok(message) => message,
            Err(reply) => {
                write_and_close(&mut stream, &reply).await;
                return;
            }
        };
    }
    let reply = if method == Method::Tell {
        tell(&state, &request, body).await
    } else {
        let settings = ScanRequest {
            spamd_user: request.user.clone(),
            ..ScanRequest::default()
        };
        scan(&state, method, request.version, body, settings, peer).await
    };
    write_and_close(&mut stream, &reply).await;
}

async fn scan(
    state: &Arc<State>,
    method: Method,
    version: f64,
    body: Vec<u8>,
    settings: ScanRequest,
    peer: SocketAddr,
) -> Vec<u8> {
    // The message is needed again for PROCESS and HEADERS.
    let message = matches!(method, Method::Process | Method::Headers).then(|| body.clone());
    let scan = match run_scan(
        state,
        body,
        chaff::message::Envelope::default(),
        settings,
        peer,
    )
    .await
    {
        ScanOutcome::Done(scan, _) => scan,
        ScanOutcome::TimedOut(_) => {
            return error(EX_TIMEOUT, "Timeout: (the scan ran past scan_timeout_ms)");
        }
        ScanOutcome::Failed(reason) => {
            return error(EX_SOFTWARE, &format!("Internal error: {reason}"));
        }
    };
    let config = state.config();
    let verdict = SpamdVerdict {
        required: config
            .actions
            .add_header
            .unwrap_or(scan.verdict.required_score),
        is_spam: scan.verdict.action.is_spam(),
        scan: &scan,
    };
    verdict.reply(
        method,
        version,
        message.as_deref().unwrap_or(&[]),
        host_name(),
    )
}

/// TELL: learn (`Set: local`) as `Message-class`; spamd's `DidSet: local`
/// only when something changed, so spamc can say "already learned".
/// `Remove: local` is answered without `DidRemove`: chaff does not forget
/// a learn (its journal is append-only), so spamc reports nothing done.
async fn tell(state: &Arc<State>, request: &Request, body: Vec<u8>) -> Vec<u8> {
    let mut did_set = false;
    if request.set_local {
        let Some(class) = request.message_class else {
            return error(
                EX_PROTOCOL,
                "Bad header line: (Message-class is required to Set)",
            );
        };
        let permit = match state.scan_permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return error(EX_UNAVAILABLE, "Service Unavailable: shutting down"),
        };
        match learn_message(state, body, permit, class, true).await {
            Ok(learned) => {
                did_set = !matches!(learned.outcome, chaff::bayes::LearnOutcome::AlreadyKnown);
            }
            Err(LearnFailure::Refused(reason)) => {
                return error(EX_DATAERR, &format!("Data error: {reason}"));
            }
            Err(LearnFailure::Failed) => {
                return error(EX_SOFTWARE, "Internal error: learn failed");
            }
        }
    }
    // spamd writes its headers, then "\r\n\r\n" (one blank line too many,
    // which spamc ignores).
    let headers = if did_set { "DidSet: local\r\n" } else { "" };
    format!("SPAMD/1.1 0 EX_OK\r\n{headers}\r\n\r\n").into_bytes()
}

/// Reads the request line and headers; the index just past the blank line,
/// or `None` if the client closed first or sent too much.
async fn read_head<S: Io>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(buffer) {
            return Some(end);
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // Before protocol 1.5, PING and SKIP came with no headers.
                let line_end = memchr::memchr(b'\n', buffer)?;
                return Some(line_end + 1);
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The end of the head: after the first empty line.
fn head_end(buffer: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\n', &buffer[start..]) {
        let line = &buffer[start..start + offset];
        if start > 0 && (line.is_empty() || line == b"\r") {
            return Some(start + offset + 1);
        }
        start += offset + 1;
    }
    None
}

/// The request line and headers, checked as spamd checks them; `Err` is
/// the error reply.
fn parse_head(head: &[u8]) -> Result<Request, Vec<u8>> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let bad = |why: &str| error(EX_PROTOCOL, &format!("Bad header line: {why}"));
    let mut words = first.split(' ');
    let method = words.next().unwrap_or("");
    let version = words
        .next()
        .and_then(|p| p.strip_prefix("SPAMC/"))
        .and_then(|v| v.parse::<f64>().ok());
    let (Some(method), Some(version)) = (Method::parse(method), version) else {
        return Err(bad(first));
    };
    let mut request = Request {
        method: Some(method),
        version,
        ..Request::default()
    };
    for (count, line) in lines.enumerate() {
        if line.is_empty() {
            break;
        }
        if count >= MAX_HEADERS {
            return Err(bad("(too many headers)"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("(header not in 'Name: value' format)"));
        };
        let value = value.trim();
        match name {
            "Content-length" => {
                request.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| bad("(Content-Length contains non-numeric bytes)"))?,
                );
            }
            "Compress" => {
                if !value.eq_ignore_ascii_case("zlib") {
                    return Err(bad("(Compress header contains an unknown method)"));
                }
                request.compressed = true;
            }
            "Message-class" => {
                request.message_class = match value.to_ascii_lowercase().as_str() {
                    "spam" => Some(Class::Spam),
                    "ham" => Some(Class::Ham),
                    _ => return Err(bad("(Message-class header contains invalid class)")),
                };
            }
            "Set" => request.set_local = value.to_ascii_lowercase().contains("local"),
            "Remove" => request.remove_local = value.to_ascii_lowercase().contains("local"),
            "User" if value.bytes().any(|b| b < 0x20) => {
                return Err(bad("(User header contains control chars)"));
            }
            "User" => request.user = Some(value.to_owned()),
            // Others are ignored, as spamd ignores them.
            _ => {}
        }
    }
    if request.set_local && request.remove_local {
        return Err(bad(
            "Unable to set local and remove local in the same operation.",
        ));
    }
    if request.compressed && request.content_length.is_none() {
        return Err(error(
            EX_UNAVAILABLE,
            "Service Unavailable: Compress requires Content-length header",
        ));
    }
    Ok(request)
}

/// Reads the message: `content_length` bytes, or to the client's
/// half-close; never more than `max_bytes`.
async fn read_body<S: Io>(
    stream: &mut S,
    body: &mut Vec<u8>,
    content_length: Option<usize>,
    max_bytes: usize,
) -> Result<(), Vec<u8>> {
    let too_large = || {
        error(
            EX_DATAERR,
            &format!("Data error: message larger than {max_bytes} bytes"),
        )
    };
    if content_length.is_some_and(|length| length > max_bytes) {
        return Err(too_large());
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(length) = content_length
            && body.len() >= length
        {
            body.truncate(length);
            return Ok(());
        }
        if body.len() > max_bytes {
            return Err(too_large());
        }
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(error(EX_PROTOCOL, &format!("Bad header line: ({e})"))),
        }
    }
    match content_length {
        Some(expected) if expected != body.len() => Err(error(
            EX_PROTOCOL,
            &format!(
                "Bad header line: (Content-Length mismatch: Expected {expected} bytes, got {} bytes)",
                body.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// A `Compress: zlib` body, inflated within the message size limit.
fn inflate(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, Vec<u8>> {
    let mut message = Vec::new();
    let mut decoder = flate2::read::ZlibDecoder::new(compressed).take(max_bytes as u64 + 1);
    decoder
        .read_to_end(&mut message)
        .map_err(|e| error(EX_UNAVAILABLE, &format!("Service Unavailable: zlib: {e}")))?;
    if message.len() > max_bytes {
        return Err(error(
            EX_DATAERR,
            &format!("Data error: message larger than {max_bytes} bytes"),
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_read_as_spamd_reads_them() {
        let head = b"TELL SPAMC/1.5\r\nContent-length: 12\r\nMessage-class: spam\r\nSet: local\r\nUser: bob\r\n\r\n";
        let request = parse_head(head).unwrap_or_default();
        assert_eq!(request.method, Some(Method::Tell));
        assert_eq!(request.content_length, Some(12));
        assert_eq!(request.message_class, Some(Class::Spam));
        assert!(request.set_local && !request.remove_local);
        assert_eq!(head_end(head), Some(head.len()));

        let refused = |head: &[u8]| {
            String::from_utf8(parse_head(head).err().unwrap_or_default()).unwrap_or_default()
        };
        assert!(
            refused(b"EXPLODE SPAMC/1.5\r\n\r\n")
                .starts_with("SPAMD/1.0 76 Bad header line: EXPLODE")
        );
        assert!(refused(b"CHECK SPAMC/1.5\r\nno colon\r\n\r\n").contains("'Name: value'"));
        assert!(refused(b"CHECK SPAMC/1.5\r\nContent-length: 1x\r\n\r\n").contains("non-numeric"));
        assert!(
            refused(b"TELL SPAMC/1.5\r\nSet: local\r\nRemove: local\r\n\r\n")
                .contains("same operation")
        );
        assert!(refused(b"CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\n").starts_with("SPAMD/1.0 69"));
    }

    #[test]
    fn zlib_bodies_inflate_within_the_limit() {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(&[b'a'; 1000]);
        let compressed = encoder.finish().unwrap_or_default();
        assert_eq!(inflate(&compressed, 1000).map(|m| m.len()), Ok(1000));
        assert!(inflate(&compressed, 999).is_err());
        assert!(inflate(b"not zlib", 1000).is_err());
    }
}
