//! Local URL and domain blocklists, read from files and reloaded when they
//! change.
//!
//! One entry a line; blank lines and `#` comments are skipped:
//!
//! - `example.com` — a host or registrable domain: matches a URL whose
//!   host is `example.com` or whose registrable domain is (so every
//!   subdomain of a registrable domain matches);
//! - `*.example.com` or `.example.com` — the host and every subdomain;
//! - `http://example.com/phish/` (anything with a `/`) — a URL prefix, as
//!   phishing feeds publish them: matches URLs on that host whose path and
//!   query start with the entry's (scheme ignored);
//! - `192.0.2.1` — an IP-literal URL host.
//!
//! Feeds as downloaded (PhishTank's CSV or JSON, URLhaus' CSV) are read
//! too: `feeds.rs` turns them into these lines.
//!
//! A file is checked for changes (modification time and size) at most every
//! [`RELOAD_CHECK`]; a file that cannot be read keeps its last contents and
//! says why on stderr once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::extract::Url;
use crate::extract::urls::extract_from_text;

use super::UrlListConfig;

/// The least time between two checks of one list file.
pub const RELOAD_CHECK: Duration = Duration::from_secs(3);

/// The parsed entries of one file.
#[derive(Debug, Default)]
struct Entries {
    /// Exact hosts and registrable domains.
    hosts: HashSet<String>,
    /// Wildcard suffixes (`example.com` for `*.example.com`).
    wildcards: HashSet<String>,
    /// Host → path prefixes (`/phish/`, `/login?x=`).
    prefixes: HashMap<String, Vec<String>>,
}

/// Whether every entry of `text` is one a URL list can hold: a host, a
/// `*.`/`.` wildcard or a URL prefix, one per line, without white space or
/// control characters inside (the loader is lenient; an edit in the web UI
/// is checked with this before it is saved).
pub fn validate(text: &str) -> Result<(), InvalidEntry> {
    for (number, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let bad = entry.chars().any(|c| c.is_whitespace() || c.is_control())
            || entry.len() > 2048
            || (entry.contains('/') && extract_from_text(entry).is_empty());
        if bad {
            return Err(InvalidEntry {
                line: number + 1,
                entry: entry.to_owned(),
            });
        }
    }
    Ok(())
}

/// A URL-list line that is not a host, wildcard or URL.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: `{entry}` is not a host, *.domain or URL")]
pub struct InvalidEntry {
    pub line: usize,
    pub entry: String,
}

impl Entries {
    fn parse(text: &str) -> Entries {
        let mut entries = Entries::default();
        for line in super::feeds::entry_lines(text) {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("*.").or_else(|| line.strip_prefix('.')) {
                entries
                    .wildcards
                    .insert(rest.trim_end_matches('.').to_ascii_lowercase());
            } else if line.contains('/') {
                // Parse as a URL so the host is normalised as URLs are.
                if let Some(url) = extract_from_text(line).into_iter().next() {
                    let path = url
                        .url
                        .split_once("://")
                        .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_owned()))
                        .unwrap_or_else(|| "/".to_owned());
                    entries.prefixes.entry(url.host).or_default().push(path);
                }
            } else {
                entries
                    .hosts
                    .insert(line.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        entries
    }

    /// The entry `url` matches, as text for the symbol's option.
    fn find(&self, url: &Url) -> Option<String> {
        if self.hosts.contains(&url.host) {
            return Some(url.host.clone());
        }
        if url.domain != url.host && self.hosts.contains(&url.domain) {
            return Some(url.domain.clone());
        }
        if !self.wildcards.is_empty() {
            let mut rest = url.host.as_str();
            loop {
                if self.wildcards.contains(rest) {
                    return Some(format!("*.{rest}"));
                }
                match rest.split_once('.') {
                    Some((_, parent)) => rest = parent,
                    None => break,
                }
            }
        }
        if let Some(paths) = self.prefixes.get(&url.host) {
            let path = url
                .url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
                .unwrap_or("/");
            if let Some(prefix) = paths.iter().find(|p| path.starts_with(p.as_str())) {
                return Some(format!("{}{prefix}", url.host));
            }
        }
        None
    }
}

/// What a file looked like when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

struct State {
    entries: Arc<Entries>,
    stamp: Option<Stamp>,
    checked: Instant,
    complained: bool,
}

/// One list file, its symbol and its current entries.
struct UrlList {
    name: String,
    path: PathBuf,
    symbol: String,
    state: RwLock<State>,
    /// Held by the one caller that re-reads the file.
    reloading: Mutex<()>,
}

impl UrlList {
    fn new(name: &str, config: &UrlListConfig) -> UrlList {
        let list = UrlList {
            name: name.to_owned(),
            path: config.path.clone(),
            symbol: config.symbol.clone(),
            state: RwLock::new(State {
                entries: Arc::new(Entries::default()),
                stamp: None,
                checked: Instant::now(),
                complained: false,
            }),
            reloading: Mutex::new(()),
        };
        list.reload(true);
        list
    }

    fn with_state(&self, f: impl FnOnce(&mut State)) {
        match self.state.write() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Re-reads the file if it changed (always when `force`).
    fn reload(&self, force: bool) {
        let Ok(_guard) = self.reloading.try_lock() else {
            return; // someone else is at it
        };
        let (old_stamp, complained) = match self.state.read() {
            Ok(state) => (state.stamp, state.complained),
            Err(poisoned) => {
                let state = poisoned.into_inner();
                (state.stamp, state.complained)
            }
        };
        let read = stamp(&self.path).and_then(|now| {
            if force || Some(now) != old_stamp {
                std::fs::read(&self.path).map(|bytes| Some((now, bytes)))
            } else {
                Ok(None)
            }
        });
        match read {
            Ok(Some((now, bytes))) => {
                let entries = Arc::new(Entries::parse(&String::from_utf8_lossy(&bytes)));
                self.with_state(|state| {
                    state.entries = entries;
                    state.stamp = Some(now);
                    state.checked = Instant::now();
                    state.complained = false;
                });
            }
            Ok(None) => self.with_state(|state| state.checked = Instant::now()),
            Err(error) => {
                if !complained {
                    tracing::warn!(
                        "url_lists.{}: cannot read {}: {error}; keeping the last contents",
                        self.name,
                        self.path.display()
                    );
                }
                self.with_state(|state| {
                    state.checked = Instant::now();
                    state.complained = true;
                });
            }
        }
    }

    fn entries(&self) -> Arc<Entries> {
        let (entries, due) = match self.state.read() {
            Ok(state) => (
                state.entries.clone(),
                state.checked.elapsed() >= RELOAD_CHECK,
            ),
            Err(poisoned) => {
                let state = poisoned.into_inner();
                (state.entries.clone(), true)
            }
        };
        if due {
            self.reload(false);
            if let Ok(state) = self.state.read() {
                return state.entries.clone();
            }
        }
        entries
    }
}

/// One match: the list's symbol and the entry that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlListMatch {
    pub symbol: String,
    pub entry: String,
}

/// Every configured local list.
#[derive(Default)]
pub struct UrlLists {
    lists: Vec<UrlList>,
}

impl UrlLists {
    /// Reads every enabled list of `lists` now.
    pub fn new<'a>(lists: impl IntoIterator<Item = (&'a String, &'a UrlListConfig)>) -> UrlLists {
        UrlLists {
            lists: lists
                .into_iter()
                .filter(|(_, config)| config.enabled)
                .map(|(name, config)| UrlList::new(name, config))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Every (list, entry) that one of `urls` matches, each once.
    pub fn find(&self, urls: &[Url]) -> Vec<UrlListMatch> {
        let mut out: Vec<UrlListMatch> = Vec::new();
        for list in &self.lists {
            let entries = list.entries();
            for url in urls {
                if let Some(entry) = entries.find(url) {
                    let found = UrlListMatch {
                        symbol: list.symbol.clone(),
                        entry,
                    };
                    if !out.contains(&found) {
                        out.push(found);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_match(list: &str, text: &str) -> Option<String> {
        let entries = Entries::parse(list);
        extract_from_text(text)
            .iter()
            .find_map(|url| entries.find(url))
    }

    #[test]
    fn hosts_domains_wildcards_and_prefixes() {
        let list = "# comment\nbad.example.com\nevil.co.uk\n*.wild.example.org\nhttp://phish.example.net/login/ # feed\n192.0.2.7\n";
        assert_eq!(
            entries_match(list, "http://bad.example.com/x").as_deref(),
            Some("bad.example.com")
        );
        assert_eq!(entries_match(list, "http://other.example.com/x"), None);
        assert_eq!(
            entries_match(list, "http://a.b.evil.co.uk/").as_deref(),
            Some("evil.co.uk")
        );
        assert_eq!(
            entries_match(list, "https://x.y.wild.example.org/").as_deref(),
            Some("*.wild.example.org")
        );
        assert_eq!(
            entries_match(list, "https://wild.example.org/").as_deref(),
            Some("*.wild.example.org")
        );
        assert_eq!(
            entries_match(list, "https://phish.example.net/login/step2?id=1").as_deref(),
            Some("phish.example.net/login/")
        );
        assert_eq!(entries_match(list, "https://phish.example.net/about"), None);
        assert_eq!(
            entries_match(list, "http://192.0.2.7/x").as_deref(),
            Some("192.0.2.7")
        );
    }
}
