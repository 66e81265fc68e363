//! The lists an admin edits (the web UI's Lists page): every allow/deny
//! map the rules declare and every local URL list, with their entries, and
//! the one way to change one — checked as the loader reads it, then
//! written atomically, so a bad edit never reaches a scan. The caller
//! reloads the rules after a save (the daemon's SIGHUP path), which is when
//! the next scan sees it.

use std::path::PathBuf;

use super::Engine;
use crate::verdict::Action;

/// One editable list.
#[derive(Debug, Clone)]
pub struct EditableList {
    /// The map's symbol, or the URL list's name in `[url_lists]`.
    pub name: String,
    /// `map` or `url_list`.
    pub kind: &'static str,
    /// What a map's entries are compared with (`ip`, `mail_from`, …;
    /// `url` for a URL list).
    pub matches: &'static str,
    pub symbol: String,
    pub path: PathBuf,
    pub action: Option<Action>,
    pub weight: Option<f64>,
    pub description: Option<String>,
    /// The file's text now (empty when it cannot be read).
    pub text: String,
}

/// Why a list was not saved.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("no list named {0}")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Engine {
    /// Every map and URL list, maps first, each in declaration order.
    pub fn editable_lists(&self) -> Vec<EditableList> {
        let active = self.active();
        let read = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        let maps = active.rules.maps.specs().map(|spec| EditableList {
            name: spec.symbol.clone(),
            kind: "map",
            matches: spec.kind_name(),
            symbol: spec.symbol.clone(),
            path: spec.path.clone(),
            action: spec.action,
            weight: Some(spec.weight),
            description: spec.description.clone(),
            text: read(&spec.path),
        });
        let url_lists = self
            .config
            .url_lists
            .iter()
            .map(|(name, list)| EditableList {
                name: name.clone(),
                kind: "url_list",
                matches: "url",
                symbol: list.symbol.clone(),
                path: list.path.clone(),
                action: None,
                weight: list.weight,
                description: None,
                text: read(&list.path),
            });
        maps.chain(url_lists).collect()
    }

    /// Replaces list `name`'s entries with `text` if they read as that
    /// list's entries; returns the file written.
    pub fn save_list(&self, name: &str, text: &str) -> Result<PathBuf, ListError> {
        let active = self.active();
        let path = if let Some(spec) = active.rules.maps.specs().find(|s| s.symbol == name) {
            crate::rules::maps::validate_entries(spec, text)
                .map_err(|e| ListError::Invalid(e.to_string()))?;
            spec.path.clone()
        } else if let Some(list) = self.config.url_lists.get(name) {
            crate::lists::validate_url_list(text).map_err(|e| ListError::Invalid(e.to_string()))?;
            list.path.clone()
        } else {
            return Err(ListError::Unknown(name.to_owned()));
        };
        let text = if text.is_empty() || text.ends_with('\n') {
            text.to_owned()
        } else {
            format!("{text}\n")
        };
        crate::store::replace_file(&path, &[text.as_bytes()]).map_err(|source| ListError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}
