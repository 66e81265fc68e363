//! rspamd's wire shapes: request headers → envelope; results → `/checkv2`
//! JSON, legacy `/check` JSON, and the `RSPAMC/1.3` text reply.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chaff::engine::Scan;
use chaff::message::Envelope;
use chaff::report::CheckV2Reply;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;

use super::conn::{Io, write_and_close};
use super::routes::{ScanOutcome, run_scan};
use super::state::State;

/// Request facts beyond the envelope that a scan honours or records.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// `Pass: all`: no early stop (chaff never stops early; accepted for compatibility).
    pub pass_all: bool,
    /// `Flags` (comma list) as sent.
    pub flags: Vec<String>,
    pub settings_id: Option<String>,
    pub log_tag: Option<String>,
    pub deliver_to: Option<String>,
    /// `Raw: yes`: the body is not MIME.
    pub raw: bool,
}

/// Builds the envelope from rspamd's request headers (case-insensitive
/// names; `Rcpt` repeated, one per recipient).
pub fn envelope_from_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Envelope, RequestOptions) {
    let mut envelope = Envelope::default();
    let mut options = RequestOptions::default();
    for (name, value) in headers {
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "from" => envelope.mail_from = Some(strip_angles(value).to_owned()),
            "rcpt" => envelope.recipients.push(strip_angles(value).to_owned()),
            "ip" => envelope.client_ip = value.parse::<IpAddr>().ok(),
            "helo" => envelope.helo = Some(value.to_owned()),
            "hostname" => envelope.client_hostname = Some(value.to_owned()),
            "user" => envelope.user = Some(value.to_owned()),
            "queue-id" => envelope.queue_id = Some(value.to_owned()),
            "pass" => options.pass_all = value.eq_ignore_ascii_case("all"),
            "flags" => options.flags.extend(
                value
                    .split(',')
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty()),
            ),
            "settings-id" => options.settings_id = Some(value.to_owned()),
            "log-tag" => options.log_tag = Some(value.to_owned()),
            "deliver-to" => options.deliver_to = Some(value.to_owned()),
            "raw" => options.raw = value.eq_ignore_ascii_case("yes") || value == "1",
            _ => {}
        }
    }
    (envelope, options)
}

fn strip_angles(value: &str) -> &str {
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
}

/// `/checkv2` reply body.
pub fn checkv2_json(scan: &Scan, seconds: f64) -> Vec<u8> {
    serde_json::to_vec(&CheckV2Reply::new(scan, seconds)).unwrap_or_default()
}

/// The legacy `/check`, `/symbols` reply: everything under `default`,
/// symbols beside the scalars, milter block named `rmilter` (§1.5).
pub fn legacy_json(scan: &Scan, seconds: f64) -> Vec<u8> {
    let reply = CheckV2Reply::new(scan, seconds);
    let mut metric = Map::new();
    metric.insert("is_spam".into(), json!(scan.verdict.action.is_spam()));
    metric.insert("is_skipped".into(), json!(false));
    metric.insert("score".into(), json!(reply.score));
    metric.insert("required_score".into(), json!(reply.required_score));
    metric.insert("action".into(), json!(reply.action));
    if let Some(subject) = &reply.subject {
        metric.insert("subject".into(), json!(subject));
    }
    for (name, symbol) in &reply.symbols {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(symbol.name));
        entry.insert("score".into(), json!(symbol.score));
        if !symbol.options.is_empty() {
            entry.insert("options".into(), json!(symbol.options));
        }
        metric.insert(name.clone(), Value::Object(entry));
    }
    let mut top = Map::new();
    top.insert("default".into(), Value::Object(metric));
    top.insert("messages".into(), json!(reply.messages));
    top.insert("urls".into(), json!(reply.urls));
    top.insert("emails".into(), json!(reply.emails));
    if let Some(id) = &reply.message_id {
        top.insert("message-id".into(), json!(id));
    }
    top.insert("time_real".into(), json!(reply.time_real));
    top.insert(
        "rmilter".into(),
        serde_json::to_value(&reply.milter).unwrap_or(Value::Null),
    );
    serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
}

/// The `RSPAMC/1.3` text reply, in the exact lines Exim's rspamd variant
/// parses: `RSPAMD/1.3 0 EX_OK`, then `Metric: default; True; S / R / 0.00`,
/// then `Action:` and one `Symbol:` line per symbol.
pub fn rspamc_text(scan: &Scan, spamc_style: bool) -> Vec<u8> {
    let verdict = &scan.verdict;
    let is_spam = if verdict.action.is_spam() {
        "True"
    } else {
        "False"
    };
    let mut out = String::new();
    if spamc_style {
        out.push_str("SPAMD/1.1 0 EX_OK\r\n");
        out.push_str(&format!(
            "Spam: {is_spam} ; {:.2} / {:.2}\r\n\r\n",
            verdict.score, verdict.required_score
        ));
        let names: Vec<&str> = verdict.symbols.iter().map(|s| s.name.as_str()).collect();
        out.push_str(&names.join(","));
        out.push_str("\r\n");
        return out.into_bytes();
    }
    out.push_str("RSPAMD/1.3 0 EX_OK\r\n");
    out.push_str(&format!(
        "Metric: default; {is_spam}; {:.2} / {:.2} / 0.00\r\n",
        verdict.score, verdict.required_score
    ));
    out.push_str(&format!("Action: {}\r\n", verdict.action.name()));
    if let Some(subject) = &verdict.subject {
        out.push_str(&format!("Subject: {subject}\r\n"));
    }
    for symbol in &verdict.symbols {
        out.push_str(&format!("Symbol: {}({:.2})", symbol.name, symbol.score));
        if !symbol.options.is_empty() {
            out.push_str("; ");
            out.push_str(&symbol.options.join(","));
        }
        out.push_str("\r\n");
    }
    if let Some(id) = &scan.message_id {
        out.push_str(&format!("Message-ID: {id}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

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
    let (envelope, _options) = envelope_from_headers(pairs.iter().copied());
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
    let reply = match run_scan(&state, body, envelope, peer).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_takes_every_rcpt_and_strips_angles() {
        let (envelope, options) = envelope_from_headers(
            [
                ("From", "<a@example.com>"),
                ("Rcpt", "<b@example.org>"),
                ("rcpt", "c@example.org"),
                ("IP", "192.0.2.1"),
                ("Helo", "mx.example.com"),
                ("Pass", "all"),
                ("Flags", "pass_all, milter"),
            ]
            .into_iter(),
        );
        assert_eq!(envelope.mail_from.as_deref(), Some("a@example.com"));
        assert_eq!(envelope.recipients, vec!["b@example.org", "c@example.org"]);
        assert_eq!(envelope.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(envelope.helo.as_deref(), Some("mx.example.com"));
        assert!(options.pass_all);
        assert_eq!(options.flags, vec!["pass_all", "milter"]);
    }
}
