//! Lists a message is matched against: local URL/domain blocklists read
//! from files ([`UrlLists`]), and, over DNS, IP and URI blocklists
//! ([`dnsbl`]) through one resolver ([`dns::Network`]) that the sender
//! authentication checks share.
//!
//! Everything here is configuration plus lookups; the symbols are made in
//! `checks::uri`, `checks::dnsbl`, `checks::auth` and `checks::envelope`.

pub mod brands;
pub mod dns;
pub mod dnsbl;
mod feeds;
pub mod received;
pub mod redirects;
mod url_list;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::setting::{InvalidSetting, check_networks, parse_network};

pub use dns::{Lookup, Network};
pub use dnsbl::DnsblConfig;
pub use url_list::{UrlListMatch, UrlLists, validate as validate_url_list};

/// One local URL/domain list (`[url_lists.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlListConfig {
    /// The list file: one entry a line (see `url_list.rs` for the forms).
    pub path: PathBuf,
    /// The symbol a match emits.
    pub symbol: String,
    /// Its weight, when `[symbols.SYMBOL]` does not set one.
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Network checks: the one switch, the resolver, the blocklists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// `false` turns every DNS check off (RBL, URIBL, SPF, DKIM, DMARC, ARC,
    /// sender MX). The CLI's `scan` and `rescore` run without them unless
    /// given `--network`.
    pub enabled: bool,
    /// `address` or `address:port`; empty = the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// One DNS query's time limit (per attempt).
    pub query_timeout_ms: u64,
    /// Tries per query and nameserver.
    pub attempts: usize,
    /// All DNS work for one message ends by this deadline; what has not
    /// answered by then counts as failed (`DNS_TIMEOUT`).
    pub budget_ms: u64,
    /// Answers kept in the resolver's cache.
    pub cache_size: u64,
    /// Received hops from these networks are our own relays: the client is
    /// the first hop outside them.
    pub trusted_networks: Vec<String>,
    /// Registrable domains of a message's URLs looked up per URIBL.
    pub max_uribl_domains: usize,
    /// IP blocklists, queried with the client's address.
    #[serde(default)]
    pub rbl: BTreeMap<String, DnsblConfig>,
    /// URI blocklists, queried with URL registrable domains.
    #[serde(default)]
    pub uribl: BTreeMap<String, DnsblConfig>,
}

fn yes() -> bool {
    true
}

/// The `(symbol, weight)` of every list that carries its own `weight`:
/// the weight its symbol has unless `[symbols]` gives it one.
pub fn declared_weights(
    url_lists: &BTreeMap<String, UrlListConfig>,
    network: &NetworkConfig,
) -> Vec<(String, f64)> {
    let url = url_lists.values().map(|l| (&l.symbol, l.weight));
    let dns = network
        .rbl
        .values()
        .chain(network.uribl.values())
        .map(|l| (&l.symbol, l.weight));
    url.chain(dns)
        .filter_map(|(symbol, weight)| weight.map(|w| (symbol.clone(), w)))
        .collect()
}

impl NetworkConfig {
    /// Checks the section's values (keys relative to `[network]`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for server in &self.nameservers {
            if dns::parse_nameserver(server).is_none() {
                return Err(InvalidSetting::new(
                    "nameservers",
                    format!("`{server}` is not an address or address:port"),
                ));
            }
        }
        check_networks("trusted_networks", &self.trusted_networks)?;
        if self.budget_ms == 0 || self.query_timeout_ms == 0 || self.attempts == 0 {
            return Err(InvalidSetting::new(
                "budget_ms",
                "budget_ms, query_timeout_ms and attempts must be > 0",
            ));
        }
        for (kind, lists) in [("rbl", &self.rbl), ("uribl", &self.uribl)] {
            for (name, list) in lists {
                list.validate()
                    .map_err(|e| e.within(&format!("{kind}.{name}")))?;
            }
        }
        Ok(())
    }
}

impl UrlListConfig {
    /// Checks one `[url_lists.NAME]` section.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.symbol.is_empty() {
            return Err(InvalidSetting::new("symbol", "is empty"));
        }
        Ok(())
    }
}

/// The lists and the resolver of one configuration, built when the engine
/// is opened or reconfigured.
pub struct Lists {
    pub urls: UrlLists,
    /// The phishing check's brands and shorteners; `None` when
    /// `[phishing] enabled = false`.
    pub phishing: Option<brands::PhishingData>,
    /// `None` when `[network] enabled = false`; `Err` when the resolver
    /// could not be built (every network check then says so).
    pub network: Option<Result<Network, dns::ResolverError>>,
    /// `network.trusted_networks`, parsed.
    pub trusted: Vec<ipnet::IpNet>,
    /// Follows shorteners' links; `None` unless the phishing check and the
    /// network checks are on and `[phishing.redirects] follow`.
    pub redirector: Option<redirects::Redirector>,
}

impl Lists {
    pub fn new(
        url_lists: &BTreeMap<String, UrlListConfig>,
        network: &NetworkConfig,
        phishing: &brands::PhishingConfig,
    ) -> Lists {
        Lists {
            urls: UrlLists::new(url_lists),
            // The config's validation read these files already; one that
            // broke since leaves the check off, said once in the log.
            phishing: phishing
                .enabled
                .then(|| match phishing.load() {
                    Ok((brands, shorteners)) => Some(brands::PhishingData { brands, shorteners }),
                    Err(e) => {
                        tracing::warn!("phishing check off: {e}");
                        None
                    }
                })
                .flatten(),
            network: network.enabled.then(|| Network::new(network)),
            trusted: network
                .trusted_networks
                .iter()
                .filter_map(|n| parse_network(n))
                .collect(),
            redirector: (phishing.enabled && network.enabled && phishing.redirects.follow)
                .then(|| redirects::Redirector::new(&phishing.redirects)),
        }
    }
}

/// Whether `ip` is on the public internet: private, loopback, link-local
/// and unspecified addresses are never listed by a DNSBL, and a redirect
/// never leads the scanner to them.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified())
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Folds symbols of the same name into one (options appended, strongest
/// strength kept), first appearance first.
pub fn merge_symbols(symbols: Vec<crate::symbol::Symbol>) -> Vec<crate::symbol::Symbol> {
    let mut out: Vec<crate::symbol::Symbol> = Vec::new();
    for symbol in symbols {
        match out.iter_mut().find(|s| s.name == symbol.name) {
            Some(existing) => {
                existing.strength = existing.strength.max(symbol.strength);
                for option in symbol.options {
                    if !existing.options.contains(&option) {
                        existing.options.push(option);
                    }
                }
            }
            None => out.push(symbol),
        }
    }
    out
}
