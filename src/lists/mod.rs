//! Lists a message is matched against: local URL/domain blocklists read
//! from files ([`UrlLists`]), and, over DNS, IP and URI blocklists
//! ([`dnsbl`]) through one resolver ([`dns::Network`]) that the sender
//! authentication checks share.
//!
//! Everything here is configuration plus lookups; the symbols are made in
//! `checks::uri`, `checks::dnsbl`, `checks::auth` and `checks::envelope`.

pub mod dns;
pub mod dnsbl;
pub mod received;
mod url_list;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Config, SymbolConfig};

pub use dns::{Lookup, Network};
pub use dnsbl::DnsblConfig;
pub use url_list::{UrlListMatch, UrlLists};

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

/// Adds `[symbols.X] weight` for lists that carry their own `weight` and
/// whose symbol has no entry yet.
pub fn register_symbols(config: &mut Config) {
    let mut weights: Vec<(String, f64)> = Vec::new();
    for list in config.url_lists.values() {
        if let Some(weight) = list.weight {
            weights.push((list.symbol.clone(), weight));
        }
    }
    for list in config
        .network
        .rbl
        .values()
        .chain(config.network.uribl.values())
    {
        if let Some(weight) = list.weight {
            weights.push((list.symbol.clone(), weight));
        }
    }
    for (symbol, weight) in weights {
        config
            .symbols
            .entry(symbol)
            .or_insert_with(|| SymbolConfig {
                weight,
                description: None,
                group: None,
                force_action: None,
                pinned: false,
            });
    }
}

/// Checks the sections this module owns.
pub fn validate(config: &Config) -> Result<(), String> {
    let network = &config.network;
    for server in &network.nameservers {
        if dns::parse_nameserver(server).is_none() {
            return Err(format!(
                "network.nameservers: `{server}` is not an address or address:port"
            ));
        }
    }
    for net in &network.trusted_networks {
        if crate::config::parse_network(net).is_none() {
            return Err(format!(
                "network.trusted_networks: `{net}` is not an address or CIDR network"
            ));
        }
    }
    if network.budget_ms == 0 || network.query_timeout_ms == 0 || network.attempts == 0 {
        return Err("network.budget_ms, query_timeout_ms and attempts must be > 0".into());
    }
    for (kind, lists) in [("rbl", &network.rbl), ("uribl", &network.uribl)] {
        for (name, list) in lists {
            list.validate()
                .map_err(|e| format!("network.{kind}.{name}: {e}"))?;
        }
    }
    for (name, list) in &config.url_lists {
        if list.symbol.is_empty() {
            return Err(format!("url_lists.{name}.symbol is empty"));
        }
    }
    Ok(())
}

/// The lists and the resolver of one configuration, built when the engine
/// is opened or reconfigured.
pub struct Lists {
    pub urls: UrlLists,
    /// `None` when `[network] enabled = false`; `Err` when the resolver
    /// could not be built (every network check then says so).
    pub network: Option<Result<Network, String>>,
    /// `network.trusted_networks`, parsed.
    pub trusted: Vec<ipnet::IpNet>,
}

impl Lists {
    pub fn new(config: &Config) -> Lists {
        let network = config
            .network
            .enabled
            .then(|| Network::new(&config.network));
        Lists {
            urls: UrlLists::new(&config.url_lists),
            network,
            trusted: config
                .network
                .trusted_networks
                .iter()
                .filter_map(|n| crate::config::parse_network(n))
                .collect(),
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
