//! Rate limits: leaky buckets keyed by authenticated user, sender address
//! or domain, client address or network, or recipient (rspamd's ratelimit
//! module, on the embedded state), and the spam-burst bucket that finds a
//! compromised account: an authenticated user whose mail suddenly scores
//! as spam, to many recipients.
//!
//! A bucket's level drains at its rate; a message adds 1, or one per
//! recipient. A message that would take a bucket past its burst is held
//! (soft reject with an SMTP text, by default) and adds nothing, so a
//! sender that slows down gets through again. Only delivered messages
//! count: a rejected one has not used the sender's allowance.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::entry::{Entry, Txn, Value};
use crate::message::Envelope;
use crate::setting::InvalidSetting;
use crate::symbol::Symbol;
use crate::verdict::Action;

/// `[ratelimit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatelimitConfig {
    /// What a message over a limit gets.
    pub action: Action,
    /// The SMTP text the MTA gives (`messages.smtp_message`).
    pub message: String,
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketConfig>,
    pub spam_burst: SpamBurstConfig,
}

/// `[ratelimit.buckets.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub key: KeyKind,
    /// How many messages (or recipients) may come at once.
    pub burst: f64,
    /// How fast the allowance comes back: `"100 / 1h"`, `"10 / 1m"`, `"1 / 1s"`.
    pub rate: Rate,
    /// Count each message once, or once per recipient.
    #[serde(default)]
    pub per: Per,
    /// Profiles it applies under (`"none"`: a scan under no profile);
    /// empty: all.
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// `[ratelimit.spam_burst]`: per authenticated user, a bucket fed by
/// recipients × score of the messages that score at least `min_score`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpamBurstConfig {
    pub enabled: bool,
    pub min_score: f64,
    /// Points (recipients × score) the bucket holds before it trips.
    pub burst: f64,
    pub rate: Rate,
    /// What a spam-scored message of a tripped user gets; its ordinary
    /// mail is never held by this bucket.
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    User,
    From,
    FromDomain,
    Ip,
    /// The client's /24 (IPv4) or /64 (IPv6).
    IpNet,
    Rcpt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    #[default]
    Message,
    Recipient,
}

/// A rate as written (`"100 / 1h"`), parsed once when the configuration
/// is read: a scan only reads the units per second.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    pub text: String,
    pub per_second: f64,
}

/// A rate that does not read as `"N / PERIOD"`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a rate like \"100 / 1h\"")]
pub struct InvalidRate(String);

impl TryFrom<String> for Rate {
    type Error = InvalidRate;

    fn try_from(text: String) -> Result<Rate, InvalidRate> {
        match parse_rate(&text) {
            Some(per_second) => Ok(Rate { text, per_second }),
            None => Err(InvalidRate(text)),
        }
    }
}

impl RatelimitConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (name, bucket) in &self.buckets {
            if bucket.burst.is_nan() || bucket.burst < 1.0 {
                return Err(InvalidSetting::new(
                    format!("buckets.{name}.burst"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// `"N / PERIOD"` (period `1s`, `10m`, `1h`, `1d`, or plain seconds) as
/// units per second; `None` for anything else.
pub fn parse_rate(text: &str) -> Option<f64> {
    let (count, period) = text.split_once('/')?;
    let count: f64 = count.trim().parse().ok()?;
    let period = period.trim();
    let (number, unit) = period
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((period, "s"), |at| period.split_at(at));
    let number: f64 = if number.trim().is_empty() {
        1.0
    } else {
        number.trim().parse().ok()?
    };
    let seconds = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    } * number;
    (count > 0.0 && seconds > 0.0 && count.is_finite()).then_some(count / seconds)
}

/// What the rate limits decided for one message.
#[derive(Debug, Default)]
pub struct Decision {
    pub symbols: Vec<Symbol>,
    /// The action and SMTP text to hold the message with, if held.
    pub hold: Option<(Action, String)>,
    /// A spam burst from this user was seen (for the metric).
    pub spam_burst: bool,
}

/// Checks and updates, in `txn`, the buckets that apply to this message,
/// given the verdict's `score` and `action` (a held or rejected message
/// adds nothing).
pub fn apply(
    config: &RatelimitConfig,
    txn: &mut Txn<'_>,
    envelope: &Envelope,
    profile: Option<&str>,
    score: f64,
    action: Action,
    now_ms: u64,
) -> Decision {
    let mut keys: Vec<(String, &str, &BucketConfig, f64)> = Vec::new();
    for (name, bucket) in &config.buckets {
        let applies = bucket.profiles.is_empty()
            || bucket
                .profiles
                .iter()
                .any(|p| Some(p.as_str()) == profile || (p == "none" && profile.is_none()));
        if !applies {
            continue;
        }
        let amount = match bucket.per {
            Per::Message => 1.0,
            Per::Recipient => envelope.recipients.len().max(1) as f64,
        };
        for key in key_values(bucket.key, envelope) {
            let amount = if bucket.key == KeyKind::Rcpt {
                1.0
            } else {
                amount
            };
            keys.push((format!("rl:{name}:{key}"), name, bucket, amount));
        }
    }
    let user = envelope.user.as_deref().filter(|u| !u.is_empty());
    let burst_feed = match user {
        Some(_) if config.spam_burst.enabled && score >= config.spam_burst.min_score => {
            score * envelope.recipients.len().max(1) as f64
        }
        _ => 0.0,
    };
    if keys.is_empty() && burst_feed == 0.0 {
        return Decision::default();
    }
    let delivered = !matches!(action, Action::Reject | Action::SoftReject);
    {
        let mut decision = Decision::default();
        let mut over = Vec::new();
        for (key, name, bucket, amount) in &keys {
            let rate = bucket.rate.per_second;
            let level = drained(txn, key, rate, now_ms);
            if level + amount > bucket.burst {
                over.push(format!(
                    "{name}:{} ({:.0}/{:.0})",
                    key.splitn(3, ':').nth(2).unwrap_or(""),
                    level,
                    bucket.burst
                ));
            }
        }
        if !over.is_empty() {
            let mut symbol = Symbol::new("RATELIMITED");
            symbol.options = over;
            decision.symbols.push(symbol);
            decision.hold = Some((config.action, config.message.clone()));
        } else if delivered {
            for (key, _, bucket, amount) in &keys {
                let rate = bucket.rate.per_second;
                let level = drained(txn, key, rate, now_ms) + amount;
                put_level(txn, key, level, rate, now_ms);
            }
        }
        if let (Some(user), true) = (user, burst_feed > 0.0) {
            let spam = &config.spam_burst;
            let rate = spam.rate.per_second;
            let key = format!("burst:{}", user.to_ascii_lowercase());
            let level = drained(txn, &key, rate, now_ms) + burst_feed;
            put_level(txn, &key, level, rate, now_ms);
            if level > spam.burst {
                decision.spam_burst = true;
                decision.symbols.push(
                    Symbol::new("USER_SPAM_BURST")
                        .with_option(user.to_owned())
                        .with_option(format!("{level:.0}/{:.0}", spam.burst)),
                );
                if decision.hold.is_none() {
                    decision.hold = Some((
                        spam.action,
                        "Account sending spam, held for review".to_owned(),
                    ));
                }
            }
        }
        decision
    }
}

/// The bucket's level now, drained since it was last written.
fn drained(txn: &mut Txn<'_>, key: &str, rate: f64, now_ms: u64) -> f64 {
    match txn.get(key) {
        Some(Entry {
            value: Value::Bucket { level, at_ms },
            ..
        }) => {
            let seconds = now_ms.saturating_sub(at_ms) as f64 / 1000.0;
            (level - seconds * rate).max(0.0)
        }
        _ => 0.0,
    }
}

/// Writes a bucket that expires once it would have drained empty.
fn put_level(txn: &mut Txn<'_>, key: &str, level: f64, rate: f64, now_ms: u64) {
    let empty_in = (level / rate).ceil().min(1e9) as u64 + 1;
    txn.put(
        key,
        Entry {
            value: Value::Bucket {
                level,
                at_ms: now_ms,
            },
            expires: now_ms / 1000 + empty_in,
        },
    );
}

/// The keys a message has of this kind (none when it lacks the field).
fn key_values(kind: KeyKind, envelope: &Envelope) -> Vec<String> {
    let lower = |s: &str| s.trim().to_ascii_lowercase();
    let from = envelope
        .mail_from
        .as_deref()
        .map(lower)
        .filter(|f| !f.is_empty());
    match kind {
        KeyKind::User => envelope.user.as_deref().map(lower).into_iter().collect(),
        KeyKind::From => from.into_iter().collect(),
        KeyKind::FromDomain => from
            .map(|f| super::settings::domain_of(&f).to_owned())
            .into_iter()
            .collect(),
        KeyKind::Ip => envelope
            .client_ip
            .map(|ip| ip.to_string())
            .into_iter()
            .collect(),
        KeyKind::IpNet => envelope.client_ip.map(network_of).into_iter().collect(),
        KeyKind::Rcpt => {
            let mut all: Vec<String> = envelope.recipients.iter().map(|r| lower(r)).collect();
            all.sort();
            all.dedup();
            all
        }
    }
}

/// The client's /24 or /64, as text.
pub fn network_of(ip: IpAddr) -> String {
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    ipnet::IpNet::new(ip, prefix)
        .map(|n| n.trunc().to_string())
        .unwrap_or_else(|_| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyState;
    use std::time::Duration;

    #[test]
    fn rates_parse_to_units_per_second() {
        assert_eq!(parse_rate("100 / 1h").unwrap(), 100.0 / 3600.0);
        assert_eq!(parse_rate("10/1m").unwrap(), 10.0 / 60.0);
        assert_eq!(parse_rate("1 / 1s").unwrap(), 1.0);
        assert_eq!(parse_rate("5 / 10").unwrap(), 0.5);
        for bad in ["", "100", "x / 1h", "1 / 0s", "1 / 1y", "-1 / 1s"] {
            assert!(parse_rate(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn networks_are_slash_24_and_64() {
        assert_eq!(network_of("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(network_of("2001:db8::1".parse().unwrap()), "2001:db8::/64");
    }

    fn config(text: &str) -> RatelimitConfig {
        let full = crate::config::Config::from_toml_over_defaults(text).unwrap();
        full.ratelimit
    }

    #[test]
    fn a_bucket_holds_past_its_burst_and_refills_at_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let state = PolicyState::open(dir.path(), 1000, Duration::from_secs(1)).unwrap();
        let config =
            config("[ratelimit.buckets.per_user]\nkey = \"user\"\nburst = 3\nrate = \"1 / 1m\"\n");
        let envelope = Envelope {
            user: Some("Bob".into()),
            recipients: vec!["a@x".into()],
            ..Envelope::default()
        };
        let t0 = 1_000_000_000u64;
        let run = |ms: u64| {
            state
                .update(ms / 1000, |txn| {
                    apply(&config, txn, &envelope, None, 0.0, Action::NoAction, ms)
                })
                .unwrap()
        };
        for i in 0..3 {
            assert!(run(t0 + i).hold.is_none(), "message {i}");
        }
        let held = run(t0 + 3);
        assert_eq!(held.hold.as_ref().map(|h| h.0), Some(Action::SoftReject));
        assert!(
            held.symbols[0].options[0].starts_with("per_user:bob"),
            "{:?}",
            held.symbols
        );
        // A minute later one message's allowance is back.
        assert!(run(t0 + 61_000).hold.is_none());
        assert!(run(t0 + 61_001).hold.is_some());
        // Without a user the bucket has no key.
        let anonymous = Envelope::default();
        let decision = state
            .update(t0 / 1000, |txn| {
                apply(&config, txn, &anonymous, None, 0.0, Action::NoAction, t0)
            })
            .unwrap();
        assert!(decision.hold.is_none());
    }
}
