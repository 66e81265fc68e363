//! SpamAssassin's facts about a message that its rules test at scan time:
//! the Date-to-Received difference of `check_for_shifted_date`, the
//! envelope sender as its `EnvelopeFrom` finds it, the relay list with its
//! trust inference and the X-Spam-Relays pseudo-headers (`relays.rs`), and
//! its lenient Date parser (`date.rs`). Apart from the `.cf` reader
//! (`spamassassin/`, which runs at load time), so that the rule texts
//! (`input.rs`) and the named tests (`eval.rs`) use these while the reader
//! uses them, with no circle.

pub mod date;
mod relays;

use std::sync::LazyLock;

use regex::Regex;

pub use relays::relay_pseudo_headers;

use crate::message::fields::{split_addresses, unfold_as_spamassassin};
use crate::message::{Envelope, Message};

/// Seconds from the Received stamp nearest to the Date header to the
/// Date header, as SpamAssassin's HeaderEval computes it for
/// `check_for_shifted_date`: Resent-Date before Date; the stamps of every
/// Received line except the local delivery and fetchmail lines on top;
/// the oldest stamp dropped when it equals the Date exactly; 0 when
/// either side is missing. `fields`: the top-level header fields as written.
pub fn date_diff(fields: &[(String, String)]) -> i64 {
    let date = ["resent-date", "date"].iter().find_map(|name| {
        fields
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .find_map(|(_, value)| date::parse(&unfold_as_spamassassin(value)))
    });
    let Some(date) = date else {
        return 0;
    };
    let mut received: Vec<String> = fields
        .iter()
        .filter(|(field, _)| field.eq_ignore_ascii_case("received"))
        .map(|(_, value)| unfold_as_spamassassin(value))
        .filter(|value| !value.trim().is_empty())
        .collect();
    static LOCAL: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(
            r"\bfrom (?:localhost\s|(?:\S+ ){1,2}\S*\b127\.0\.0\.1\b)|qmail \d+ invoked by uid \d+",
        )
        .ok()
    });
    static FETCHMAIL: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\bby localhost with \w+ \(fetchmail-[\d.]+").ok());
    static STAMP: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+").ok());
    let matches =
        |re: &LazyLock<Option<Regex>>, text: &str| re.as_ref().is_some_and(|re| re.is_match(text));
    let top_is_local = received.first().is_some_and(|r| matches(&LOCAL, r));
    let mut skipped = usize::from(top_is_local);
    if received
        .get(skipped)
        .is_some_and(|r| matches(&FETCHMAIL, r))
    {
        skipped += 1;
    } else {
        // A local line without a fetchmail line after it counts.
        skipped = 0;
    }
    received.drain(..skipped);
    let mut diffs: Vec<i64> = received
        .iter()
        .filter_map(|line| {
            let stamp = STAMP.as_ref()?.find(line)?;
            date::parse(stamp.as_str())
        })
        .map(|stamp| date - stamp)
        .collect();
    if diffs.len() > 1 && diffs.last() == Some(&0) {
        diffs.pop();
    }
    // Stable, as Perl's sort: ties keep the newest stamp.
    diffs.sort_by_key(|diff| diff.unsigned_abs());
    diffs.first().copied().unwrap_or(0)
}

/// The envelope sender as SpamAssassin finds it (`EnvelopeFrom`): the
/// MTA's MAIL FROM when it passed one; else none when an X-Sender and a
/// fetchmail hop make headers untrustworthy; else the first
/// X-Envelope-From, Envelope-Sender or Return-Path address written above
/// every Received line (an X-Envelope-From below one ends the search).
pub fn envelope_from(
    message: &Message,
    envelope: &Envelope,
    fields: &[(String, String)],
) -> Option<String> {
    if let Some(from) = &envelope.mail_from {
        return Some(from.clone());
    }
    // The envelope sender the last untrusted hop recorded, or, when
    // every hop is trusted, the oldest trusted one.
    let relays = relays::relays(message, envelope);
    let last_hop = relays
        .iter()
        .find(|(_, trusted)| !trusted)
        .or_else(|| relays.last());
    if let Some(from) = last_hop.and_then(|(relay, _)| relay.envelope_from.as_ref())
        && (from.find('@').is_some_and(|at| at > 0) || from.is_empty())
    {
        return Some(from.clone());
    }
    let is = |field: &str, name: &str| field.eq_ignore_ascii_case(name);
    let fetched = fields
        .iter()
        .any(|(f, v)| is(f, "received") && v.contains("(fetchmail"));
    let x_sender = fields
        .iter()
        .any(|(f, v)| is(f, "x-sender") && v.contains('@'));
    if fetched && x_sender {
        return None;
    }
    let first_received = fields.iter().position(|(f, _)| is(f, "received"));
    for name in ["x-envelope-from", "envelope-sender", "return-path"] {
        let Some(at) = fields.iter().position(|(f, _)| is(f, name)) else {
            continue;
        };
        // SpamAssassin's test is `ALL =~ /^Received:.*?^Return-Path:/smi`:
        // any occurrence below any Received line, not only the first one
        // it reads (a list server's Return-Path under a local one's).
        let below_received = first_received
            .is_some_and(|received| fields[received..].iter().any(|(f, _)| is(f, name)));
        if !below_received {
            let address = split_addresses(&unfold_as_spamassassin(&fields[at].1))
                .into_iter()
                .map(|(_, address)| address)
                .next()?;
            return address.contains('@').then_some(address);
        }
        if name == "x-envelope-from" {
            return None;
        }
    }
    None
}
