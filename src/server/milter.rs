//! The milter door (`[server] milter_bind`, 127.0.0.1:11332 as rspamd's
//! proxy worker): Postfix's `smtpd_milters` and Sendmail's `INPUT_MAIL_FILTER`
//! point here. A session collects the envelope as it arrives (CONNECT,
//! HELO, MAIL FROM, every RCPT, the macros: `i` the queue id,
//! `{auth_authen}` the authenticated user), then the headers and body
//! chunks, reassembles the message, and at end-of-body scans it with the
//! same engine, envelope and limits as a `/checkv2` request built from the
//! same data. The verdict is applied as rspamd's proxy applies it, so sieve
//! filters and mail clients written for rspamd keep working: headers
//! (`X-Spamd-Result`, `X-Rspamd-*`, the reply's `milter` block, `X-Spam`),
//! the Subject for rewrite subject, an SMTP reply for reject and temporary
//! failures. The body and every other header are never touched.
//!
//! Several messages per connection; ABORT forgets the message, not the
//! connection. A scan that fails or times out answers `milter_on_error`
//! (tempfail by default); every read has a time limit, so a silent MTA
//! never holds a connection for long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaff::config::MilterOnError as OnError;
use chaff::engine::Scan;
use chaff::message::Envelope;
use chaff::policy::ScanRequest;
use chaff::report::CheckV2Reply;
use chaff::verdict::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Io;
use super::milter_wire::{self, ACTIONS, Command, PROTOCOL, Reply};
use super::scan::{ScanOutcome, run_scan};
use super::state::{State, host_name};

/// How long a connection may be silent: Postfix holds it open between SMTP
/// commands of a slow client (its own `smtpd_timeout` is 300 s).
const IDLE: Duration = Duration::from_secs(330);

/// No-reply bits (SMFIP_NR_*) per step.
const NR_CONNECT: u32 = 0x1000;
const NR_HELO: u32 = 0x2000;
const NR_MAIL: u32 = 0x4000;
const NR_RCPT: u32 = 0x8000;
const NR_DATA: u32 = 0x10000;
const NR_UNKNOWN: u32 = 0x20000;
const NR_EOH: u32 = 0x40000;
const NR_BODY: u32 = 0x80000;
const NR_HEADER: u32 = 0x80;

/// One SMTP session's state.
#[derive(Default)]
struct Session {
    /// The protocol flags agreed: which steps get no reply.
    no_reply: u32,
    client_ip: Option<std::net::IpAddr>,
    client_hostname: Option<String>,
    helo: Option<String>,
    macros: std::collections::HashMap<String, String>,
    message: Message,
}

/// One message's part of the session.
#[derive(Default)]
struct Message {
    mail_from: Option<String>,
    recipients: Vec<String>,
    /// Headers and body as reassembled so far.
    raw: Vec<u8>,
    /// Header names in order, for the index a change names.
    header_names: Vec<String>,
    /// Past the size limit: accepted unscanned.
    too_large: bool,
}

impl Session {
    fn envelope_for(&self, message: &Message) -> Envelope {
        let macro_value = |name: &str| {
            self.macros
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
        };
        Envelope {
            client_ip: self.client_ip,
            client_hostname: self.client_hostname.clone(),
            helo: self.helo.clone(),
            mail_from: message.mail_from.clone(),
            recipients: message.recipients.clone(),
            user: macro_value("{auth_authen}"),
            queue_id: macro_value("i"),
        }
    }

    fn append(&mut self, bytes: &[u8], max_bytes: usize) {
        if self.message.too_large {
            return;
        }
        if self.message.raw.len() + bytes.len() > max_bytes {
            self.message.too_large = true;
            self.message.raw = Vec::new();
            return;
        }
        self.message.raw.extend_from_slice(bytes);
    }
}

/// Serves one milter connection until QUIT, a protocol error or silence.
pub async fn serve<S: Io>(stream: S, peer: SocketAddr, state: Arc<State>) {
    // Postfix sends many small packets at once (a header each): read them
    // from a buffer, not one system call per length prefix.
    let mut stream = tokio::io::BufReader::new(stream);
    let mut session = Session::default();
    loop {
        let packet = match tokio::time::timeout(IDLE, read_packet(&mut stream)).await {
            Ok(Some(packet)) => packet,
            _ => return,
        };
        let command = match milter_wire::parse(&packet) {
            Ok(command) => command,
            Err(error) => {
                tracing::debug!("milter: {peer}: {error}");
                return;
            }
        };
        let max_bytes = state.config().limits.max_message_bytes;
        let step_reply = |flag: u32, session: &Session| {
            (session.no_reply & flag == 0).then_some(Reply::Continue)
        };
        let replies: Vec<Reply> = match command {
            Command::OptionNegotiation {
                version,
                actions,
                protocol,
            } => {
                if version < 2 {
                    return;
                }
                session.no_reply = protocol & PROTOCOL;
                vec![Reply::OptionNegotiation {
                    actions: actions & ACTIONS,
                    protocol: session.no_reply,
                }]
            }
            Command::Macros { pairs, .. } => {
                session.macros.extend(pairs);
                Vec::new()
            }
            Command::Connect { hostname, address } => {
                session.client_ip = address
                    .as_deref()
                    .map(|a| a.trim_start_matches("IPv6:"))
                    .and_then(|a| a.parse().ok());
                session.client_hostname =
                    Some(hostname).filter(|name| !name.starts_with('[') && name != "unknown");
                step_reply(NR_CONNECT, &session).into_iter().collect()
            }
            Command::Helo(helo) => {
                session.helo = Some(helo);
                step_reply(NR_HELO, &session).into_iter().collect()
            }
            Command::Mail(arguments) => {
                session.message = Message {
                    mail_from: arguments.first().map(|a| address(a)),
                    ..Message::default()
                };
                step_reply(NR_MAIL, &session).into_iter().collect()
            }
            Command::Rcpt(arguments) => {
                if let Some(recipient) = arguments.first() {
                    session.message.recipients.push(address(recipient));
                }
                step_reply(NR_RCPT, &session).into_iter().collect()
            }
            Command::Data => step_reply(NR_DATA, &session).into_iter().collect(),
            Command::Header { name, value } => {
                // Folded lines arrive joined by a bare LF: CRLF, as sent.
                let mut field = format!("{name}: ").into_bytes();
                for (index, line) in value.split(|&b| b == b'\n').enumerate() {
                    if index > 0 {
                        field.extend_from_slice(b"\r\n");
                    }
                    field.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                }
                field.extend_from_slice(b"\r\n");
                session.append(&field, max_bytes);
                session.message.header_names.push(name);
                step_reply(NR_HEADER, &session).into_iter().collect()
            }
            Command::EndOfHeaders => {
                session.append(b"\r\n", max_bytes);
                step_reply(NR_EOH, &session).into_iter().collect()
            }
            Command::Body(chunk) => {
                session.append(&chunk, max_bytes);
                step_reply(NR_BODY, &session).into_iter().collect()
            }
            Command::EndOfBody => {
                let message = std::mem::take(&mut session.message);
                verdict_replies(&state, &session, message, peer).await
            }
            Command::Abort => {
                session.message = Message::default();
                Vec::new()
            }
            Command::Quit => return,
            Command::QuitNewConnection => {
                let no_reply = session.no_reply;
                session = Session {
                    no_reply,
                    ..Session::default()
                };
                Vec::new()
            }
            Command::Unknown(_) => step_reply(NR_UNKNOWN, &session).into_iter().collect(),
        };
        let mut bytes = Vec::new();
        for reply in &replies {
            bytes.extend_from_slice(&reply.encode());
        }
        if !bytes.is_empty() && stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Reads one packet (without its length prefix); `None` at EOF or on a
/// length the format refuses.
async fn read_packet<S: Io>(stream: &mut S) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let length = milter_wire::packet_length(prefix).ok()?;
    let mut packet = vec![0u8; length];
    stream.read_exact(&mut packet).await.ok()?;
    Some(packet)
}

/// `<a@example.org>` → `a@example.org`.
fn address(argument: &str) -> String {
    argument
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Scans `message` with the session's envelope and says what to do.
async fn verdict_replies(
    state: &Arc<State>,
    session: &Session,
    message: Message,
    peer: SocketAddr,
) -> Vec<Reply> {
    if message.too_large {
        // As rspamd's proxy: a message past the scanner's limit passes
        // unscanned rather than bouncing.
        return vec![Reply::Accept];
    }
    let envelope = session.envelope_for(&message);
    let queue_id = envelope.queue_id.clone().unwrap_or_default();
    let on_error = state.config().server.milter_on_error;
    match run_scan(state, message.raw, envelope, ScanRequest::default(), peer).await {
        ScanOutcome::Done(scan, _) => apply(&scan, &message.header_names, &queue_id, host_name()),
        ScanOutcome::TimedOut(_) | ScanOutcome::Failed(_) => match on_error {
            OnError::Tempfail => vec![Reply::Smtp(
                "451 4.7.1 Spam scan unavailable, try again later".to_owned(),
            )],
            OnError::Accept => vec![Reply::Accept],
            OnError::Reject => vec![Reply::Smtp("554 5.7.1 Spam scan failed".to_owned())],
        },
    }
}

/// The replies that carry out `scan`'s verdict on a message whose header
/// names are `header_names`, as rspamd's proxy does.
fn apply(scan: &Scan, header_names: &[String], queue_id: &str, server: &str) -> Vec<Reply> {
    let verdict = &scan.verdict;
    let reply = CheckV2Reply::new(scan, 0.0);
    match verdict.action {
        Action::Reject => {
            let message = reply
                .messages
                .get("smtp_message")
                .cloned()
                .unwrap_or_else(|| "Spam message rejected".to_owned());
            return vec![Reply::Smtp(format!("554 5.7.1 {message}"))];
        }
        Action::SoftReject => {
            // A rate limit or greylisting says why; a timeout says nothing.
            let message = reply
                .messages
                .get("smtp_message")
                .cloned()
                .unwrap_or_else(|| "Try again later".to_owned());
            return vec![Reply::Smtp(format!("451 4.7.1 {message}"))];
        }
        // As rspamd's proxy: `greylist` alone is accepted; greylisting,
        // when on, defers with a soft reject.
        Action::NoAction | Action::Greylist | Action::AddHeader | Action::RewriteSubject => {}
    }
    let mut replies = Vec::new();
    // The reply's milter block: old copies of its headers go (every one
    // when it says 0, else the one it names), then its headers are added.
    for (name, which) in &reply.milter.remove_headers {
        let count = header_names
            .iter()
            .filter(|n| n.eq_ignore_ascii_case(name))
            .count() as u32;
        let indexes: Vec<u32> = if *which == 0 {
            // From the last, so no deletion moves the ones still to go.
            (1..=count).rev().collect()
        } else {
            vec![*which as u32]
                .into_iter()
                .filter(|i| *i <= count)
                .collect()
        };
        for index in indexes {
            replies.push(Reply::ChangeHeader {
                index,
                name: name.clone(),
                value: String::new(),
            });
        }
    }
    if let (Action::RewriteSubject, Some(subject)) = (verdict.action, &verdict.subject) {
        if header_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("subject"))
        {
            replies.push(Reply::ChangeHeader {
                index: 1,
                name: "Subject".to_owned(),
                value: subject.clone(),
            });
        } else {
            replies.push(Reply::AddHeader {
                name: "Subject".to_owned(),
                value: subject.clone(),
            });
        }
    }
    let mut result = format!(
        "default: {} [{:.2} / {:.2}]",
        if verdict.action.is_spam() {
            "True"
        } else {
            "False"
        },
        verdict.score,
        verdict.required_score
    );
    for symbol in &verdict.symbols {
        result.push_str(&format!(";\n\t{}({:.2})", symbol.name, symbol.score));
        if !symbol.options.is_empty() {
            result.push_str(&format!("[{}]", symbol.options.join(",")));
        }
    }
    for (name, value) in [
        ("X-Spamd-Result", result),
        ("X-Rspamd-Server", server.to_owned()),
        ("X-Rspamd-Queue-Id", queue_id.to_owned()),
        ("X-Rspamd-Action", verdict.action.name().to_owned()),
    ] {
        if !value.is_empty() {
            replies.push(Reply::AddHeader {
                name: name.to_owned(),
                value,
            });
        }
    }
    for (name, header) in &reply.milter.add_headers {
        replies.push(Reply::AddHeader {
            name: name.clone(),
            value: header.value.clone(),
        });
    }
    replies.push(Reply::Accept);
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_addresses_lose_their_brackets() {
        assert_eq!(address("<a@example.org>"), "a@example.org");
        assert_eq!(address("<>"), "");
    }
}
