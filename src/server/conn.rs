//! Accepting connections: HTTP/1.x through hyper, or rspamd's older
//! `RSPAMC/1.3` text protocol (what Exim's rspamd variant speaks), told
//! apart by the request line.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use super::state::State;
use super::{Io, Role, routes, rspamc};

/// The longest request line we wait for before deciding the protocol.
const MAX_REQUEST_LINE: usize = 8192;

pub async fn accept_loop(listener: TcpListener, role: Role, state: Arc<State>) {
    let mut shutdown = state.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let permit = tokio::select! {
            permit = state.connection_permits(role).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    eprintln!("chaff serve: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let counter = match role {
            Role::Worker | Role::Spamd | Role::Milter => &state.counters.connections,
            Role::Controller => &state.counters.control_connections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            serve_connection(stream, peer, role, state).await;
        });
    }
}

/// Serves one connection until the peer closes it or the daemon stops.
pub async fn serve_connection<S: Io>(
    mut stream: S,
    peer: SocketAddr,
    role: Role,
    state: Arc<State>,
) {
    match role {
        Role::Spamd => return super::spamd::serve(stream, peer, state).await,
        Role::Milter => return super::milter::serve(stream, peer, state).await,
        Role::Worker | Role::Controller => {}
    }
    let config = state.config();
    let header_timeout = Duration::from_millis(config.server.header_timeout_ms);
    let mut prefix = Vec::with_capacity(1024);
    let mut shutdown = state.shutdown_signal();
    let first_line = tokio::select! {
        read = tokio::time::timeout(header_timeout, read_first_line(&mut stream, &mut prefix)) => read,
        // A client that has said nothing yet holds up no work: drop it at once.
        _ = shutdown.changed() => return,
    };
    match first_line {
        Ok(Ok(true)) => {}
        // Closed, failed or too slow before saying anything: nothing to answer.
        _ => return,
    }
    if is_legacy_request_line(&prefix) {
        rspamc::serve_rspamc(stream, prefix, peer, state).await;
        return;
    }
    let io = TokioIo::new(Rewind {
        prefix,
        position: 0,
        inner: stream,
    });
    let service_state = state.clone();
    let service =
        service_fn(move |request| routes::handle(request, peer, role, service_state.clone()));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Reads until the first `\n` (kept in `buffer`). `Ok(false)` if the peer
/// closed first or the line is too long to be a request line.
async fn read_first_line<S: Io>(stream: &mut S, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 1024];
    loop {
        if memchr::memchr(b'\n', buffer).is_some() {
            return Ok(true);
        }
        if buffer.len() >= MAX_REQUEST_LINE {
            // Let hyper answer it: it will refuse the oversized line with a 4xx.
            return Ok(true);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(!buffer.is_empty());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// `CHECK RSPAMC/1.3`, `SYMBOLS RSPAMC/1.2`, `REPORT SPAMC/1.2` …
fn is_legacy_request_line(prefix: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', prefix).unwrap_or(prefix.len());
    let line = String::from_utf8_lossy(&prefix[..line_end]);
    let mut words = line.split_whitespace();
    let (Some(_command), Some(protocol)) = (words.next(), words.next()) else {
        return false;
    };
    let protocol = protocol.to_ascii_uppercase();
    protocol.starts_with("RSPAMC/") || protocol.starts_with("SPAMC/")
}

/// A stream that first yields bytes already read from it.
struct Rewind<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S: Io> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.position < self.prefix.len() {
            let remaining = &self.prefix[self.position..];
            let n = remaining.len().min(buf.remaining());
            buf.put_slice(&remaining[..n]);
            self.position += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Io> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_request_lines_are_recognised() {
        assert!(is_legacy_request_line(
            b"CHECK RSPAMC/1.3\r\nContent-length: 5\r\n"
        ));
        assert!(is_legacy_request_line(b"SYMBOLS RSPAMC/1.2\r\n"));
        assert!(is_legacy_request_line(b"REPORT SPAMC/1.2\r\n"));
        assert!(!is_legacy_request_line(b"POST /checkv2 HTTP/1.1\r\n"));
        assert!(!is_legacy_request_line(b"garbage\r\n"));
    }
}
