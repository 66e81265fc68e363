//! rspamd's older text protocol on a connection (`CHECK RSPAMC/1.3`, and
//! spamc's spelling, which Exim's rspamd variant speaks): header lines to a
//! blank line, a `Content-length` body, one reply, close. The reply's
//! shape is `reply::rspamc_text`; this file is only the connection's I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Io;
use super::reply::envelope_from_headers;
use super::reply::rspamc_text;
use super::scan::{ScanOutcome, run_scan};
use super::state::State;

/// Serves one `RSPAMC/1.x` (or `SPAMC/1.x`) request: header lines up to a
/// blank line, a `Content-length` body, one reply, then close.
pub async fn serve_rspamc<S: Io>(
    mut stream: S,
    mut buffer: Vec<u8>,
    peer: SocketAddr,
    state: Arc<State>,
) {
    let config = state.config();
    let max_bytes = config.limits.max_message_bytes;
    let spamc_style = String::from_utf8_lossy(&buffer[..buffer.len().min(64)])
        .split_whitespace()
        .nth(1)
        .is_some_and(|p| p.to_ascii_uppercase().starts_with("SPAMC/"));
    let header_deadline = Duration::from_millis(config.server.header_timeout_ms);
    let header_end = tokio::time::timeout(header_deadline, async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find_header_end(&buffer) {
                return Some(end);
            }
            if buffer.len() > 64 * 1024 {
                return None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let Ok(Some(header_end)) = header_end else {
        write_and_close(&mut stream, b"RSPAMD/1.3 400 Bad request\r\n\r\n").await;
        return;
    };
    let header_text = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let pairs: Vec<(&str, &str)> = header_text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    let content_length = pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let Some(content_length) = content_length else {
        write_and_close(
            &mut stream,
            b"RSPAMD/1.3 400 Content-length is required\r\n\r\n",
        )
        .await;
        return;
    };
    if content_length > max_bytes {
        write_and_close(&mut stream, b"RSPAMD/1.3 413 Message too large\r\n\r\n").await;
        return;
    }
    let (envelope, options) = envelope_from_headers(pairs.iter().copied());
    let Ok(scan_request) = options.scan_request() else {
        write_and_close(
            &mut stream,
            b"RSPAMD/1.3 400 Settings header is not valid settings JSON\r\n\r\n",
        )
        .await;
        return;
    };
    let mut body = buffer.split_off(header_end);
    let body_deadline = Duration::from_millis(config.server.body_timeout_ms);
    let read = tokio::time::timeout(body_deadline, async {
        let mut chunk = vec![0u8; 64 * 1024];
        while body.len() < content_length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if read != Ok(true) {
        write_and_close(
            &mut stream,
            b"RSPAMD/1.3 408 Body not received in time\r\n\r\n",
        )
        .await;
        return;
    }
    body.truncate(content_length);
    let reply = match run_scan(&state, body, envelope, scan_request, peer).await {
        ScanOutcome::Done(scan, seconds) => {
            let _ = seconds;
            rspamc_text(&scan, spamc_style)
        }
        ScanOutcome::TimedOut(scan) => rspamc_text(&scan, spamc_style),
        ScanOutcome::Failed(reason) => format!("RSPAMD/1.3 500 {reason}\r\n\r\n").into_bytes(),
    };
    write_and_close(&mut stream, &reply).await;
}

fn find_header_end(buffer: &[u8]) -> Option<usize> {
    memchr::memmem::find(buffer, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(buffer, b"\n\n").map(|i| i + 2))
}
/// Writes `reply` and closes, as the legacy protocol expects.
pub async fn write_and_close<S: Io>(stream: &mut S, reply: &[u8]) {
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
}
