//! Envelope sanity: the HELO name (a bare IP, not a FQDN, not the client's
//! reverse name), the number of recipients, and — over DNS — a sender
//! domain with neither MX nor address records.

use tokio::time::Instant;

use crate::auth::EnvelopeConfig;
use crate::context::ScanContext;
use crate::lists::{Lookup, Network};
use crate::message::{Envelope, Message};
use crate::symbol::Symbol;

/// The checks that need no network.
pub fn check(context: &ScanContext<'_>, config: &EnvelopeConfig) -> Vec<Symbol> {
    let envelope = &context.envelope;
    let mut symbols = Vec::new();
    if let Some(helo) = envelope
        .helo
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let bare = helo.trim_start_matches('[').trim_end_matches(']');
        let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
        if bare.parse::<std::net::IpAddr>().is_ok() {
            symbols.push(Symbol::new("HFILTER_HELO_BAREIP").with_option(helo));
        } else if !helo.trim_end_matches('.').contains('.') {
            symbols.push(Symbol::new("HFILTER_HELO_NOT_FQDN").with_option(helo));
        } else if let Some(rdns) = envelope.client_hostname.as_deref() {
            let rdns = rdns.trim().trim_end_matches('.').to_ascii_lowercase();
            let helo_lower = helo.trim_end_matches('.').to_ascii_lowercase();
            if rdns.is_empty() || rdns == "unknown" {
                symbols.push(Symbol::new("HFILTER_HOSTNAME_UNKNOWN"));
            } else if rdns != helo_lower
                && crate::extract::urls::registrable_domain(&rdns)
                    != crate::extract::urls::registrable_domain(&helo_lower)
            {
                symbols.push(
                    Symbol::new("HFILTER_HELO_NOT_RDNS").with_option(format!("{helo} != {rdns}")),
                );
            }
        }
    }
    if envelope.recipients.len() > config.max_recipients {
        symbols.push(
            Symbol::new("RCPT_COUNT_MANY").with_option(envelope.recipients.len().to_string()),
        );
    }
    symbols
}

/// Over DNS: the sender's domain must have an MX or an address, and, when
/// the MTA did not say what the client's reverse name is, it is looked up
/// to compare with the HELO name.
pub async fn check_dns(
    network: &Network,
    context: &ScanContext<'_>,
    config: &EnvelopeConfig,
    deadline: Instant,
) -> Vec<Symbol> {
    let (message, envelope) = (&context.message, &context.envelope);
    let (mut sender, reverse) = tokio::join!(
        sender_domain(network, message, envelope, config, deadline),
        reverse_name(network, envelope, deadline)
    );
    sender.extend(reverse);
    sender
}

/// HELO against the client's PTR names, when the envelope has none.
async fn reverse_name(network: &Network, envelope: &Envelope, deadline: Instant) -> Vec<Symbol> {
    let (Some(ip), Some(helo), None) = (
        envelope.client_ip,
        envelope.helo.as_deref(),
        envelope.client_hostname.as_deref(),
    ) else {
        return Vec::new();
    };
    let helo = helo.trim().trim_end_matches('.').to_ascii_lowercase();
    if !helo.contains('.')
        || helo
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return Vec::new(); // already named by the local checks
    }
    if ip.is_loopback() {
        return Vec::new();
    }
    match network.ptr(ip, deadline).await {
        Lookup::Found(names) => {
            let helo_domain = crate::extract::urls::registrable_domain(&helo);
            let matches = names.iter().any(|name| {
                *name == helo || crate::extract::urls::registrable_domain(name) == helo_domain
            });
            if matches {
                Vec::new()
            } else {
                vec![
                    Symbol::new("HFILTER_HELO_NOT_RDNS")
                        .with_option(format!("{helo} != {}", names.join(","))),
                ]
            }
        }
        Lookup::NotFound => {
            vec![Symbol::new("HFILTER_HOSTNAME_UNKNOWN").with_option(ip.to_string())]
        }
        Lookup::TimedOut => vec![Symbol::new("DNS_TIMEOUT").with_option("ptr")],
        Lookup::Failed(_) => Vec::new(),
    }
}

/// The sender's domain (MAIL FROM, else the From header) must have an MX
/// or an address to be answerable.
async fn sender_domain(
    network: &Network,
    message: &Message,
    envelope: &Envelope,
    config: &EnvelopeConfig,
    deadline: Instant,
) -> Vec<Symbol> {
    if !config.sender_dns {
        return Vec::new();
    }
    let sender = envelope
        .mail_from
        .as_deref()
        .filter(|s| s.contains('@'))
        .unwrap_or(&message.from_address);
    let Some((_, domain)) = sender.rsplit_once('@') else {
        return Vec::new();
    };
    let domain = domain.trim_end_matches(['>', '.']).to_ascii_lowercase();
    if domain.is_empty() || domain.parse::<std::net::IpAddr>().is_ok() {
        return Vec::new();
    }
    let failed = |why: Option<String>| {
        let timed_out = why.as_deref() == Some("timeout");
        let mut out = vec![
            Symbol::new("HFILTER_FROMHOST_DNSFAIL")
                .with_option(format!("{domain}: {}", why.unwrap_or_default())),
        ];
        if timed_out {
            out.push(Symbol::new("DNS_TIMEOUT").with_option("sender"));
        }
        out
    };
    let mx = network.mx(&domain, deadline).await;
    match mx {
        Lookup::Found(_) => Vec::new(),
        Lookup::NotFound => match network.any_address(&domain, deadline).await {
            Lookup::Found(_) => Vec::new(),
            Lookup::NotFound => {
                vec![Symbol::new("HFILTER_FROMHOST_NORES_A_OR_MX").with_option(domain.clone())]
            }
            other => failed(other.failure_text()),
        },
        other => failed(other.failure_text()),
    }
}
