//! rspamd's wire shapes, pure: request headers → envelope; a scan →
//! `/checkv2` JSON, legacy `/check` JSON or the `RSPAMC/1.3` text reply;
//! and the HTTP replies (text, JSON, an error with its status) every
//! handler builds. No I/O here, so each shape is tested on its own.

use std::net::IpAddr;

use bytes::Bytes;
use chaff::engine::Scan;
use chaff::message::Envelope;
use chaff::policy::{ScanRequest, Settings};
use chaff::report::CheckV2Reply;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

/// Request facts beyond the envelope that a scan honours or records.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// `Pass: all`: no early stop (chaff never stops early; accepted for compatibility).
    pub pass_all: bool,
    /// `Flags` (comma list) as sent.
    pub flags: Vec<String>,
    pub settings_id: Option<String>,
    /// rspamd's `Settings` header: inline JSON settings, as sent.
    pub settings: Option<String>,
    pub log_tag: Option<String>,
    pub deliver_to: Option<String>,
    /// `Raw: yes`: the body is not MIME.
    pub raw: bool,
}

/// Builds the envelope from rspamd's request headers (case-insensitive
/// names; `Rcpt` repeated, one per recipient), values as sent: the engine
/// cleans the envelope once for every check (`Envelope::cleaned`).
pub fn envelope_from_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Envelope, RequestOptions) {
    let mut envelope = Envelope::default();
    let mut options = RequestOptions::default();
    for (name, value) in headers {
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "from" => envelope.mail_from = Some(value.to_owned()),
            "rcpt" => envelope.recipients.push(value.to_owned()),
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
            "settings" => options.settings = Some(value.to_owned()),
            "log-tag" => options.log_tag = Some(value.to_owned()),
            "deliver-to" => options.deliver_to = Some(value.to_owned()),
            "raw" => options.raw = value.eq_ignore_ascii_case("yes") || value == "1",
            _ => {}
        }
    }
    (envelope, options)
}

impl RequestOptions {
    /// What the scan needs of these options: the profile `Settings-ID`
    /// names and the parsed `Settings` (JSON that does not parse is a 400
    /// naming the problem, not a scan under other settings than asked).
    pub fn scan_request(&self) -> Result<ScanRequest, ApiError> {
        let settings = match &self.settings {
            Some(text) => Some(
                Settings::from_rspamd_json(text)
                    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
            ),
            None => None,
        };
        Ok(ScanRequest {
            settings_id: self.settings_id.clone(),
            settings,
            spamd_user: None,
        })
    }
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

pub type Reply = Response<Full<Bytes>>;

pub fn text(status: StatusCode, body: &'static str) -> Reply {
    bytes_reply(status, "text/plain", body.as_bytes().to_vec())
}

pub fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    bytes_reply(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// Every refusal is a status plus a JSON `error`.
pub fn error_reply(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({"error": message}))
}

/// A refusal on its way to becoming a reply.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn into_reply(self) -> Reply {
        error_reply(self.status, &self.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

pub fn bytes_reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_takes_every_rcpt_and_the_engine_strips_angles() {
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
        assert_eq!(envelope.recipients.len(), 2);
        let envelope = envelope.cleaned();
        assert_eq!(envelope.mail_from.as_deref(), Some("a@example.com"));
        assert_eq!(envelope.recipients, vec!["b@example.org", "c@example.org"]);
        assert_eq!(envelope.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(envelope.helo.as_deref(), Some("mx.example.com"));
        assert!(options.pass_all);
        assert_eq!(options.flags, vec!["pass_all", "milter"]);
    }
}
