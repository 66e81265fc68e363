//! Trusted replies and known senders (rspamd's replies module, on the
//! embedded state): the Message-IDs of mail the site's authenticated users
//! send are remembered for `reply_secs`, and the addresses they write to
//! for `known_secs`. Incoming mail whose In-Reply-To or References names a
//! remembered Message-ID gets TRUSTED_REPLY; mail from an address a user
//! wrote to gets KNOWN_SENDER. Both are symbols, so they weigh as
//! configured and, once learned mail carries them, as the classifier fits.

use serde::Deserialize;

use super::entry::{Entry, Txn, Value};
use super::state::PolicyState;
use crate::message::{Envelope, Message};
use crate::symbol::Symbol;

/// `[replies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    pub enabled: bool,
    pub reply_secs: u64,
    pub known_secs: u64,
    /// Recipients remembered per outgoing message, at most.
    pub max_recipients: usize,
}

/// The Message-IDs (or addresses) a header names: `<…>` tokens, brackets
/// off (or, as the parser may hand them back bare, the words with an `@`).
fn ids(text: &str) -> Vec<&str> {
    if text.contains('<') {
        text.split('<')
            .skip(1)
            .filter_map(|part| part.split_once('>').map(|(id, _)| id.trim()))
            .filter(|id| !id.is_empty())
            .collect()
    } else {
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|id| id.contains('@'))
            .collect()
    }
}

fn bare_id(id: &str) -> &str {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// For mail that comes in (no authenticated user): TRUSTED_REPLY when it
/// answers a remembered Message-ID, KNOWN_SENDER when its sender is an
/// address a user wrote to.
pub fn check(
    config: &RepliesConfig,
    state: &PolicyState,
    envelope: &Envelope,
    message: &Message,
    now: u64,
) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    if !config.enabled || envelope.user.as_deref().is_some_and(|u| !u.is_empty()) {
        return symbols;
    }
    let answered = ["In-Reply-To", "References"]
        .iter()
        .filter_map(|name| message.header(name))
        .flat_map(ids)
        .find(|id| state.get(&format!("reply:{id}"), now).is_some());
    if let Some(id) = answered {
        symbols.push(Symbol::new("TRUSTED_REPLY").with_option(id.to_owned()));
    }
    let sender = envelope
        .mail_from
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !sender.is_empty() && state.get(&format!("known:{sender}"), now).is_some() {
        symbols.push(Symbol::new("KNOWN_SENDER").with_option(sender));
    }
    symbols
}

/// The symbols of this module a learn records with its sample, so the
/// classifier fits their worth on the site's mail.
pub const LEARNED: [&str; 2] = ["TRUSTED_REPLY", "KNOWN_SENDER"];

/// What a learned message is, as [`check`] would say at a scan: a reply to
/// a remembered Message-ID, and a sender (its `Return-Path`, else its
/// `From`) the site's users wrote to. A learn has no envelope, so the
/// message's own headers stand in for it.
pub fn learned(
    config: &RepliesConfig,
    state: &PolicyState,
    message: &Message,
    now: u64,
) -> Vec<&'static str> {
    if !config.enabled {
        return Vec::new();
    }
    let mut found = Vec::new();
    let answered = ["In-Reply-To", "References"]
        .iter()
        .filter_map(|name| message.header(name))
        .flat_map(ids)
        .any(|id| state.get(&format!("reply:{id}"), now).is_some());
    if answered {
        found.push(LEARNED[0]);
    }
    let sender = ["Return-Path", "From"]
        .iter()
        .filter_map(|name| message.header(name))
        .flat_map(ids)
        .next()
        .map(str::to_ascii_lowercase);
    if sender.is_some_and(|s| state.get(&format!("known:{s}"), now).is_some()) {
        found.push(LEARNED[1]);
    }
    found
}

/// For mail an authenticated user sends and that is delivered: remembers,
/// in `txn`, its Message-ID and its recipients.
pub fn remember(
    config: &RepliesConfig,
    txn: &mut Txn<'_>,
    envelope: &Envelope,
    message_id: Option<&str>,
    now: u64,
) {
    if !config.enabled || envelope.user.as_deref().is_none_or(|u| u.is_empty()) {
        return;
    }
    {
        if let Some(id) = message_id.map(bare_id).filter(|id| !id.is_empty()) {
            txn.put(
                &format!("reply:{id}"),
                Entry {
                    value: Value::Seen { count: 1 },
                    expires: now + config.reply_secs,
                },
            );
        }
        for rcpt in envelope.recipients.iter().take(config.max_recipients) {
            let rcpt = rcpt.trim().to_ascii_lowercase();
            if rcpt.is_empty() {
                continue;
            }
            let key = format!("known:{rcpt}");
            let count = match txn.get(&key) {
                Some(Entry {
                    value: Value::Seen { count },
                    ..
                }) => count.saturating_add(1),
                _ => 1,
            };
            txn.put(
                &key,
                Entry {
                    value: Value::Seen { count },
                    expires: now + config.known_secs,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_references_lists() {
        assert_eq!(ids("<a@x> <b@y>\r\n <c@z>"), ["a@x", "b@y", "c@z"]);
        assert_eq!(ids("a@x b@y"), ["a@x", "b@y"]);
        assert!(ids("no ids here").is_empty());
        assert_eq!(bare_id(" <m@h> "), "m@h");
    }
}
