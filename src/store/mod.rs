//! The memory-mapped model: format, journal, lock, compaction.
//!
//! This is the only module allowed `unsafe`, for one call: mapping the model
//! file. Everything else reads the mapping through `bytemuck`'s checked casts.
//!
//! The shape (see ARCHITECTURE.md, "The model on disk"):
//! - `bayes.model`: immutable once written; a [`format::ModelHeader`] then an
//!   open-addressed token table and a sorted digest table, read in place. Opening
//!   costs a header check whatever the size, and every process shares the pages.
//! - `bayes.journal`: every acknowledged learn, appended and fsynced before it
//!   is acknowledged, replayed into an in-memory overlay on open.
//! - `bayes.lock`: one writer at a time; a second is told who holds it.
//! - `fuzzy.model`, `fuzzy.journal`, `fuzzy.lock`: the fuzzy store, built the
//!   same way (`fuzzy_file.rs`, `fuzzy_store.rs`), with its own lock.
//! - Compaction folds the journal into a new model (temp + fsync + rename +
//!   directory fsync) and then starts a journal of the next generation. The
//!   generation numbers make every crash point safe: a journal older than the
//!   model is already inside it and is ignored.

#![allow(unsafe_code)]

mod atomic_file;
mod bayes_store;
pub mod format;
mod fuzzy_file;
mod fuzzy_store;
mod journal;
mod lock;
mod model_file;
mod overlay;

pub use bayes_store::{BayesStore, Change, StoreStats};
pub use format::{Class, FORMAT_VERSION, OLDEST_SUPPORTED_VERSION};
pub use fuzzy_store::{
    FUZZY_JOURNAL_FILE, FUZZY_LOCK_FILE, FUZZY_MODEL_FILE, FuzzyMatch, FuzzyStats, FuzzyStore,
    LookupParams, MAX_PER_BAND, MAX_VERIFY, NewFuzzyEntry, write_fuzzy_model,
};
pub use lock::LockError;

use std::path::PathBuf;

/// File names inside a data directory.
pub const MODEL_FILE: &str = "bayes.model";
pub const JOURNAL_FILE: &str = "bayes.journal";
pub const LOCK_FILE: &str = "bayes.lock";

/// Why a store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a chaff model or damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path}: model format version {found} is not supported (this chaff reads {oldest} to {newest}); \
         re-learn into a fresh --data-dir"
    )]
    Incompatible {
        path: PathBuf,
        found: u32,
        oldest: u32,
        newest: u32,
    },
    #[error(
        "{path}: model was learned with tokenizer version {found}, this chaff tokenizes as version {expected}; \
         re-learn into a fresh --data-dir"
    )]
    TokenizerMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("this store was opened read-only")]
    ReadOnly,
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
