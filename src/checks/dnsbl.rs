//! DNS blocklists: the client address against every `[network.rbl.*]`,
//! the URLs' registrable domains against every `[network.uribl.*]`, all
//! queries in parallel within the message's DNS budget.
//!
//! A listing emits the list's symbol (or the return code's); a list that
//! cannot be asked emits `SYMBOL_FAIL` with the reason, and a query still
//! unanswered at the deadline adds `DNS_TIMEOUT` — a failed lookup is never
//! a silent pass.

use std::net::IpAddr;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::context::ScanContext;
use crate::extract::Url;
use crate::lists::{DnsblConfig, Lookup, Network, NetworkConfig};
use crate::symbol::Symbol;

struct Query<'a> {
    list: &'a DnsblConfig,
    name: String,
    /// What was asked about (the address or domain), for options.
    subject: String,
}

/// Looks `client` and `urls` up; symbols for listings and failures.
pub async fn check(
    network: &Network,
    config: &NetworkConfig,
    client: Option<IpAddr>,
    context: &ScanContext<'_>,
    deadline: Instant,
) -> Vec<Symbol> {
    let urls = context.urls();
    let mut queries: Vec<Query<'_>> = Vec::new();
    if let Some(ip) = client.filter(|ip| crate::lists::is_public(*ip)) {
        for list in config.rbl.values().filter(|l| l.enabled) {
            if let Some(name) = list.ip_query(ip) {
                queries.push(Query {
                    list,
                    name,
                    subject: ip.to_string(),
                });
            }
        }
    }
    let mut domains: Vec<&Url> = Vec::new();
    for url in urls.iter().chain(context.redirect_targets()) {
        if domains.len() >= config.max_uribl_domains {
            break;
        }
        if !domains.iter().any(|d| d.domain == url.domain) {
            domains.push(url);
        }
    }
    for list in config.uribl.values().filter(|l| l.enabled) {
        for url in &domains {
            let name = match url.ip {
                Some(ip) if list.check_ips && crate::lists::is_public(ip) => list.ip_query(ip),
                Some(_) => None,
                None => Some(list.domain_query(&url.domain)),
            };
            if let Some(name) = name {
                queries.push(Query {
                    list,
                    name,
                    subject: url.domain.clone(),
                });
            }
        }
    }
    let answers = join_all(queries.iter().map(|q| network.a(&q.name, deadline))).await;
    let mut symbols = Vec::new();
    for (query, answer) in queries.iter().zip(answers) {
        match answer {
            Lookup::NotFound => {}
            Lookup::Found(addresses) => match query.list.decode(&addresses) {
                Ok(names) => symbols.extend(
                    names
                        .into_iter()
                        .map(|name| Symbol::new(name).with_option(query.subject.clone())),
                ),
                Err(why) => symbols.push(
                    Symbol::new(format!("{}_FAIL", query.list.symbol))
                        .with_option(format!("{}: {why}", query.subject)),
                ),
            },
            failed => {
                let why = failed.failure_text().unwrap_or_default();
                if matches!(failed, Lookup::TimedOut) {
                    symbols.push(Symbol::new("DNS_TIMEOUT").with_option(query.list.zone.clone()));
                }
                symbols.push(
                    Symbol::new(format!("{}_FAIL", query.list.symbol))
                        .with_option(format!("{}: {why}", query.subject)),
                );
            }
        }
    }
    symbols
}
