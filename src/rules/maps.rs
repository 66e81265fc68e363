//! Maps: allow/deny lists in plain files, each bound to a symbol with a
//! weight, or to a forced action that ends the scan early (rspamd's
//! multimap prefilter).
//!
//! A map is declared in a rule file (`[[map]]`, see `rules/README.md`) and
//! its entries live in a file of one entry per line (`#` comments). Entries
//! are matched by kind: client IPs against addresses and CIDR networks (v4
//! and v6); names and addresses exactly, an entry `example.com` also
//! matching `mail.example.com` and `user@example.com`; or, with
//! `match = "regex"` / `"glob"`, by pattern. Maps are reloaded with the
//! rules when their file changes.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::input::Input;
use super::spec::{Origin, RulesError, line_of, with_flags};
use crate::message::fields::split_addresses;
use crate::symbol::Symbol;
use crate::verdict::Action;

/// What a map's entries are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// The connecting client's address (envelope).
    Ip,
    /// The HELO name (envelope).
    Helo,
    /// The client's reverse-DNS name (envelope).
    Hostname,
    /// MAIL FROM (envelope).
    MailFrom,
    /// Every RCPT TO (envelope).
    Rcpt,
    /// The From header's address.
    From,
    /// Every link's host.
    UrlHost,
}

impl MapKind {
    fn from_name(name: &str) -> Option<MapKind> {
        Some(match name {
            "ip" => MapKind::Ip,
            "helo" => MapKind::Helo,
            "hostname" => MapKind::Hostname,
            "mail_from" => MapKind::MailFrom,
            "rcpt" => MapKind::Rcpt,
            "from" => MapKind::From,
            "url_host" => MapKind::UrlHost,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchMode {
    Exact,
    Regex,
    Glob,
}

/// One `[[map]]` table of a rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapDef {
    symbol: Spanned<String>,
    kind: String,
    file: String,
    #[serde(default, rename = "match")]
    match_mode: Option<String>,
    #[serde(default)]
    weight: f64,
    /// A forced action (`reject`, `no action`, …): the scan stops at this map.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A map declaration, resolved.
#[derive(Debug, Clone)]
pub struct MapSpec {
    pub symbol: String,
    pub origin: Origin,
    kind: MapKind,
    mode: MatchMode,
    pub path: PathBuf,
    pub weight: f64,
    pub action: Option<Action>,
    pub description: Option<String>,
}

impl MapSpec {
    /// What the entries are compared with, as a rule file names it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            MapKind::Ip => "ip",
            MapKind::Helo => "helo",
            MapKind::Hostname => "hostname",
            MapKind::MailFrom => "mail_from",
            MapKind::Rcpt => "rcpt",
            MapKind::From => "from",
            MapKind::UrlHost => "url_host",
        }
    }

    pub fn from_def(
        file: &str,
        text: &str,
        def: MapDef,
        base: Option<&Path>,
    ) -> Result<MapSpec, RulesError> {
        let origin = Origin {
            file: file.to_owned(),
            line: line_of(text, def.symbol.span().start),
        };
        let symbol = def.symbol.into_inner();
        let Some(kind) = MapKind::from_name(&def.kind) else {
            return Err(RulesError::new(
                origin,
                format!(
                    "map {symbol}: kind `{}` is not ip, helo, hostname, mail_from, rcpt, from or url_host",
                    def.kind
                ),
            ));
        };
        let mode = match def.match_mode.as_deref() {
            None | Some("exact") => MatchMode::Exact,
            Some("regex") => MatchMode::Regex,
            Some("glob") => MatchMode::Glob,
            Some(other) => {
                return Err(RulesError::new(
                    origin,
                    format!("map {symbol}: match `{other}` is not exact, regex or glob"),
                ));
            }
        };
        let action = match &def.action {
            Some(name) => Some(Action::from_name(name).ok_or_else(|| {
                RulesError::new(
                    origin.clone(),
                    format!("map {symbol}: unknown action `{name}`"),
                )
            })?),
            None => None,
        };
        let path = PathBuf::from(&def.file);
        let path = match base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        };
        Ok(MapSpec {
            symbol,
            origin,
            kind,
            mode,
            path,
            weight: def.weight,
            action,
            description: def.description,
        })
    }
}

#[derive(Debug, Default)]
struct Entries {
    networks: Vec<IpNet>,
    exact: HashSet<String>,
    patterns: Option<regex::RegexSet>,
}

#[derive(Debug)]
struct Map {
    spec: MapSpec,
    entries: Entries,
    mtime: Option<SystemTime>,
}

/// Every map, loaded.
#[derive(Debug, Default)]
pub struct MapSet {
    maps: Vec<Map>,
}

/// What the maps found in a message.
#[derive(Debug, Default)]
pub struct MapHits {
    pub symbols: Vec<Symbol>,
    /// A map with a forced action matched: the scan ends here.
    pub stop: bool,
}

impl MapSet {
    pub fn load(specs: &[MapSpec]) -> Result<MapSet, RulesError> {
        let mut maps = Vec::new();
        for spec in specs {
            let text = std::fs::read_to_string(&spec.path).map_err(|e| {
                RulesError::new(
                    spec.origin.clone(),
                    format!(
                        "map {}: cannot read {}: {e}",
                        spec.symbol,
                        spec.path.display()
                    ),
                )
            })?;
            let entries = parse_entries(spec, &text)?;
            maps.push(Map {
                spec: spec.clone(),
                entries,
                mtime: std::fs::metadata(&spec.path)
                    .and_then(|m| m.modified())
                    .ok(),
            });
        }
        Ok(MapSet { maps })
    }

    pub fn watched(&self) -> Vec<(PathBuf, Option<SystemTime>)> {
        self.maps
            .iter()
            .map(|m| (m.spec.path.clone(), m.mtime))
            .collect()
    }

    pub fn specs(&self) -> impl Iterator<Item = &MapSpec> {
        self.maps.iter().map(|m| &m.spec)
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Matches every map; a map with a forced action that matches stops the
    /// scan (its symbol carries the action).
    pub fn check(&self, input: &Input<'_>) -> MapHits {
        let mut hits = MapHits::default();
        for map in &self.maps {
            let values = values(map.spec.kind, input);
            let found = values.iter().find(|v| map.matches(v));
            if let Some(value) = found {
                hits.symbols
                    .push(Symbol::new(map.spec.symbol.clone()).with_option(value.clone()));
                hits.stop |= map.spec.action.is_some();
            }
        }
        hits
    }
}

impl Map {
    fn matches(&self, value: &str) -> bool {
        let entries = &self.entries;
        if self.spec.kind == MapKind::Ip
            && let Ok(ip) = value.parse::<IpAddr>()
            && entries.networks.iter().any(|n| n.contains(&ip))
        {
            return true;
        }
        match self.spec.mode {
            MatchMode::Exact => {
                let value = value.to_ascii_lowercase();
                if entries.exact.contains(&value) {
                    return true;
                }
                // `user@example.com` and `mail.example.com` match `example.com`
                // (and `@example.com`).
                let domain = value.rsplit_once('@').map_or(value.as_str(), |(_, d)| d);
                if domain != value && entries.exact.contains(&format!("@{domain}")) {
                    return true;
                }
                let mut rest = domain;
                loop {
                    if rest != value && entries.exact.contains(rest) {
                        return true;
                    }
                    match rest.split_once('.') {
                        Some((_, parent)) if parent.contains('.') => rest = parent,
                        _ => return false,
                    }
                }
            }
            MatchMode::Regex | MatchMode::Glob => entries
                .patterns
                .as_ref()
                .is_some_and(|set| set.is_match(value)),
        }
    }
}

/// Whether `text` would load as the entries of map `spec` (the web UI
/// checks an edit with this before it saves it).
pub fn validate_entries(spec: &MapSpec, text: &str) -> Result<(), RulesError> {
    parse_entries(spec, text).map(|_| ())
}

fn parse_entries(spec: &MapSpec, text: &str) -> Result<Entries, RulesError> {
    let mut entries = Entries::default();
    let mut patterns = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = || Origin {
            file: spec.path.display().to_string(),
            line: number + 1,
        };
        if spec.kind == MapKind::Ip {
            match crate::setting::parse_network(line) {
                Some(network) => entries.networks.push(network),
                None if spec.mode == MatchMode::Exact => {
                    return Err(RulesError::new(
                        at(),
                        format!("`{line}` is not an IP address or CIDR network"),
                    ));
                }
                None => {}
            }
            if spec.mode == MatchMode::Exact {
                continue;
            }
        }
        match spec.mode {
            MatchMode::Exact => {
                entries.exact.insert(line.to_ascii_lowercase());
            }
            MatchMode::Regex => {
                let source = match line.strip_prefix('/').and_then(|l| l.rsplit_once('/')) {
                    Some((body, flags)) => {
                        with_flags(body, flags).map_err(|e| RulesError::new(at(), e.0))?
                    }
                    None => line.to_owned(),
                };
                regex::Regex::new(&source)
                    .map_err(|e| RulesError::new(at(), format!("bad regex: {e}")))?;
                patterns.push(source);
            }
            MatchMode::Glob => patterns.push(glob_to_regex(line)),
        }
    }
    if !patterns.is_empty() {
        entries.patterns = Some(
            regex::RegexSet::new(&patterns)
                .map_err(|e| RulesError::new(spec.origin.clone(), e.to_string()))?,
        );
    }
    Ok(entries)
}

/// `*.example.com` → `(?i)^.*\.example\.com$`; `?` is one character.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("(?i)^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

fn values(kind: MapKind, input: &Input<'_>) -> Vec<String> {
    let e = input.envelope;
    match kind {
        MapKind::Ip => e.client_ip.iter().map(ToString::to_string).collect(),
        MapKind::Helo => e.helo.iter().cloned().collect(),
        MapKind::Hostname => e.client_hostname.iter().cloned().collect(),
        MapKind::MailFrom => e.mail_from.iter().cloned().collect(),
        MapKind::Rcpt => e.recipients.clone(),
        MapKind::From => input
            .message
            .header("from")
            .map(|v| {
                split_addresses(v)
                    .into_iter()
                    .map(|(_, a)| a)
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        MapKind::UrlHost => input.context.url_hosts(),
    }
}
