//! Greylisting, as rspamd's module does it, on the embedded state: a
//! message whose score is in the greylist band (at least the greylist
//! threshold, short of reject) is deferred the first time its triplet —
//! client network (/24 or /64), envelope sender, recipient — is seen, and
//! passes once a retry comes after `delay_secs`. A passed triplet passes at
//! once for `pass_secs`; a network that has passed `auto_allow_after`
//! triplets skips greylisting for `auto_allow_secs`. Authenticated and
//! local clients, allowed networks and domains, and mail whose SPF passes
//! for a big provider's domain are never greylisted.

use serde::Deserialize;

use super::entry::{Entry, Txn, Value};
use super::ratelimit::network_of;
use super::settings::domain_of;
use crate::message::Envelope;
use crate::setting::InvalidSetting;
use crate::symbol::Symbol;
use crate::verdict::Action;

/// `[greylist]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreylistConfig {
    pub enabled: bool,
    /// Lowest score greylisted; default the greylist action's threshold.
    #[serde(default)]
    pub min_score: Option<f64>,
    pub delay_secs: u64,
    /// How long a deferred triplet waits for its retry.
    pub retry_window_secs: u64,
    /// How long a passed triplet passes without delay.
    pub pass_secs: u64,
    /// Passed triplets after which the client's network is let through.
    pub auto_allow_after: u32,
    pub auto_allow_secs: u64,
    /// The deferral's action (rspamd: `soft reject`) and SMTP text.
    pub action: Action,
    pub message: String,
    /// Greylist clients on private and loopback addresses too.
    pub check_local: bool,
    /// Networks never greylisted.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Sender domains (or the client's name's domain) never greylisted.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Sender domains never greylisted when their SPF passes (big
    /// providers retry from other addresses, so a triplet never matures).
    #[serde(default)]
    pub allow_spf_domains: Vec<String>,
}

impl GreylistConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        crate::setting::check_networks("allow_ips", &self.allow_ips)?;
        if self.retry_window_secs <= self.delay_secs {
            return Err(InvalidSetting::new(
                "retry_window_secs",
                "must be longer than delay_secs, or no retry could pass",
            ));
        }
        Ok(())
    }
}

/// What greylisting decided for one message.
#[derive(Debug, Default)]
pub struct Decision {
    pub symbol: Option<Symbol>,
    pub defer: Option<(Action, String)>,
    /// The `greylist` action no longer applies (the message passed).
    pub passed: bool,
}

/// What the verdict says of the message, as greylisting reads it.
pub struct Scored<'a> {
    pub score: f64,
    pub action: Action,
    pub greylist_threshold: Option<f64>,
    pub forced: bool,
    /// The symbols that fired (for SPF).
    pub symbol_names: &'a [&'a str],
}

/// Greylists in `txn` the message `scored` describes, or lets it pass.
pub fn apply(
    config: &GreylistConfig,
    txn: &mut Txn<'_>,
    envelope: &Envelope,
    scored: &Scored<'_>,
    now: u64,
) -> Decision {
    let Some(min_score) = config.min_score.or(scored.greylist_threshold) else {
        return Decision::default();
    };
    let Some(ip) = envelope.client_ip else {
        return Decision::default();
    };
    let from = envelope
        .mail_from
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let from_domain = domain_of(&from).to_owned();
    let skip = scored.score < min_score
        || scored.forced
        || matches!(scored.action, Action::Reject | Action::SoftReject)
        || envelope.user.as_deref().is_some_and(|u| !u.is_empty())
        || (!config.check_local && is_local(ip))
        || config
            .allow_ips
            .iter()
            .filter_map(|n| crate::setting::parse_network(n))
            .any(|n| n.contains(&ip))
        || allowed_domain(&config.allow_domains, &from_domain)
        || envelope
            .client_hostname
            .as_deref()
            .is_some_and(|h| allowed_domain(&config.allow_domains, &h.to_ascii_lowercase()))
        || (scored.symbol_names.contains(&"R_SPF_ALLOW")
            && allowed_domain(&config.allow_spf_domains, &from_domain));
    if skip || envelope.recipients.is_empty() {
        return Decision::default();
    }
    let network = network_of(ip);
    let net_key = format!("greynet:{network}");
    {
        if let Some(Entry {
            value: Value::Seen { count },
            ..
        }) = txn.get(&net_key)
            && count >= config.auto_allow_after
        {
            return Decision {
                symbol: Some(
                    Symbol::new("GREYLIST")
                        .with_option("pass")
                        .with_option("network"),
                ),
                defer: None,
                passed: true,
            };
        }
        let mut waiting: Option<(u64, &str)> = None;
        let mut newly_passed = 0;
        for rcpt in &envelope.recipients {
            let key = format!("grey:{network}|{from}|{}", rcpt.trim().to_ascii_lowercase());
            match txn.get(&key) {
                Some(Entry {
                    value:
                        Value::Grey {
                            passed: true,
                            first_seen,
                        },
                    ..
                }) => txn.put(&key, passed(first_seen, now + config.pass_secs)),
                Some(Entry {
                    value: Value::Grey { first_seen, .. },
                    expires,
                }) => {
                    let ready = first_seen + config.delay_secs;
                    if now >= ready {
                        newly_passed += 1;
                        txn.put(&key, passed(first_seen, now + config.pass_secs));
                    } else {
                        let _ = expires;
                        waiting = Some((ready, "too early"));
                    }
                }
                _ => {
                    txn.put(
                        &key,
                        Entry {
                            value: Value::Grey {
                                first_seen: now,
                                passed: false,
                            },
                            expires: now + config.retry_window_secs,
                        },
                    );
                    waiting = Some((now + config.delay_secs, "new record"));
                }
            }
        }
        if newly_passed > 0 {
            let count = match txn.get(&net_key) {
                Some(Entry {
                    value: Value::Seen { count },
                    ..
                }) => count,
                _ => 0,
            } + newly_passed;
            txn.put(
                &net_key,
                Entry {
                    value: Value::Seen { count },
                    expires: now + config.auto_allow_secs,
                },
            );
        }
        match waiting {
            Some((until, why)) => Decision {
                symbol: Some(
                    Symbol::new("GREYLIST")
                        .with_option("greylisted")
                        .with_option(format!("until {until}"))
                        .with_option(why),
                ),
                defer: Some((config.action, config.message.clone())),
                passed: false,
            },
            None => Decision {
                symbol: Some(Symbol::new("GREYLIST").with_option("pass")),
                defer: None,
                passed: true,
            },
        }
    }
}

/// A triplet a retry has passed, until `expires`.
fn passed(first_seen: u64, expires: u64) -> Entry {
    Entry {
        value: Value::Grey {
            first_seen,
            passed: true,
        },
        expires,
    }
}

fn allowed_domain(list: &[String], domain: &str) -> bool {
    !domain.is_empty()
        && list.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            domain == allowed || domain.ends_with(&format!(".{allowed}"))
        })
}

fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyState;
    use std::time::Duration;

    fn scored(score: f64) -> Scored<'static> {
        Scored {
            score,
            action: Action::Greylist,
            greylist_threshold: Some(4.0),
            forced: false,
            symbol_names: &[],
        }
    }

    #[test]
    fn a_triplet_is_deferred_then_passes_after_the_delay_and_its_network_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let state = PolicyState::open(dir.path(), 1000, Duration::from_secs(1)).unwrap();
        let mut config = crate::config::Config::embedded().greylist;
        config.enabled = true;
        config.auto_allow_after = 2;
        let run = |envelope: &Envelope, score: f64, t: u64| {
            state
                .update(t, |txn| apply(&config, txn, envelope, &scored(score), t))
                .unwrap()
        };
        let mut envelope = Envelope {
            client_ip: "192.0.2.10".parse().ok(),
            mail_from: Some("a@sender.example".into()),
            recipients: vec!["u@here.example".into()],
            ..Envelope::default()
        };
        let t = 1_000_000;
        let first = run(&envelope, 5.0, t);
        assert!(first.defer.is_some());
        // Under the band: never greylisted.
        assert!(run(&envelope, 1.0, t).symbol.is_none());
        let early = run(&envelope, 5.0, t + 10);
        assert!(early.defer.is_some());
        assert!(
            early
                .symbol
                .unwrap()
                .options
                .contains(&"too early".to_owned())
        );
        let retry = run(&envelope, 5.0, t + config.delay_secs);
        assert!(retry.defer.is_none() && retry.passed);
        // Another address of the same /24, a second triplet passing.
        envelope.client_ip = "192.0.2.99".parse().ok();
        envelope.recipients = vec!["v@here.example".into()];
        assert!(run(&envelope, 5.0, t + 400).defer.is_some());
        assert!(run(&envelope, 5.0, t + 800).passed);
        // Two passed triplets: the network is let through for a new one.
        envelope.recipients = vec!["w@here.example".into()];
        let allowed = run(&envelope, 5.0, t + 900);
        assert!(allowed.defer.is_none(), "{allowed:?}");
        // Authenticated and local clients are never greylisted.
        envelope.recipients = vec!["z@here.example".into()];
        envelope.client_ip = "198.51.100.1".parse().ok();
        envelope.user = Some("bob".into());
        assert!(run(&envelope, 5.0, t).symbol.is_none());
        envelope.user = None;
        envelope.client_ip = "10.0.0.1".parse().ok();
        assert!(run(&envelope, 5.0, t).symbol.is_none());
    }
}
