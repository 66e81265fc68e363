//! The memory-mapped model: format, journal, lock, compaction.
//!
//! This is the only module allowed `unsafe`, for two calls: mapping the
//! model file read-only, and mapping the policy journal for appends
//! (`append_map.rs`). Everything else reads the mapping through `bytemuck`'s checked casts.
//!
//! The shape (see ARCHITECTURE.md, "The model on disk"):
//! - `bayes.model`: immutable once written; a [`format::ModelHeader`] then an
//!   open-addressed token table and a sorted digest table, read in place. Opening
//!   costs a header check whatever the size, and every process shares the pages.
//! - `bayes.journal`: every acknowledged learn, appended and fsynced before it
//!   is acknowledged, replayed into an in-memory overlay on open.
//! - `bayes.lock`: one writer at a time; a second is told who holds it.
//! - `fuzzy.model`, `fuzzy.journal`, `fuzzy.lock`: the fuzzy store, built the
//!   same way (`fuzzy_file.rs`, `fuzzy_store.rs`), with its own lock. What
//!   the two share is written once: `mapped.rs` for the model files,
//!   `journaled.rs` for the lock, journal and generations around them.
//! - Compaction folds the journal into a new model (temp + fsync + rename +
//!   directory fsync) and then starts a journal of the next generation. The
//!   generation numbers make every crash point safe: a journal older than the
//!   model is already inside it and is ignored.

#![allow(unsafe_code)]

mod append_map;
mod atomic_file;
mod bayes_store;
pub mod format;
mod fuzzy_file;
mod fuzzy_store;
mod journal;
mod journaled;
mod lock;
mod mapped;
mod model_file;
mod overlay;

pub use append_map::AppendMap;
pub use atomic_file::replace as replace_file;
pub use bayes_store::{BayesStore, Change, Compacted, ONLINE_STEP, StoreStats};
pub use format::{Class, FORMAT_VERSION, OLDEST_SUPPORTED_VERSION};
pub use fuzzy_store::{
    FUZZY_JOURNAL_FILE, FUZZY_LOCK_FILE, FUZZY_MODEL_FILE, FuzzyMatch, FuzzyStats, FuzzyStore,
    LookupParams, MAX_PER_BAND, MAX_VERIFY, NewFuzzyEntry, write_fuzzy_model,
};
pub use journal::JournalSync;
pub use lock::{LockError, WriterLock};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::fuzzy::{MINHASH_VALUES, MinHash};

    /// CRC-32 of each file in `dir`, by name, sorted.
    fn file_crcs(dir: &std::path::Path) -> Vec<(String, u32)> {
        let mut crcs: Vec<(String, u32)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| !entry.file_name().to_string_lossy().ends_with(".lock"))
            .map(|entry| {
                let bytes = std::fs::read(entry.path()).unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    crc32fast::hash(&bytes),
                )
            })
            .collect();
        crcs.sort();
        crcs
    }

    fn signature(seed: u32) -> MinHash {
        let mut m = [0u32; MINHASH_VALUES];
        for (i, v) in m.iter_mut().enumerate() {
            *v = seed.wrapping_mul(2654435761).wrapping_add(i as u32 * 97);
        }
        m
    }

    /// The bytes a fixed sequence of learns, reports and compactions
    /// leaves on disk. Pinned so a change to the store's code cannot change
    /// its formats unnoticed: a deliberate format change updates these
    /// along with the version constants.
    #[test]
    fn files_on_disk_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let mut bayes = BayesStore::open_writer(dir.path()).unwrap();
        let mut state = 1u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state | 1
        };
        for message in 0..40u128 {
            let tokens: Vec<u64> = (0..30).map(|_| next()).collect();
            let grams: Vec<u32> = if message % 3 == 0 {
                (0..20).map(|_| (next() >> 41) as u32).collect()
            } else {
                Vec::new()
            };
            let to = if message % 2 == 0 {
                Class::Spam
            } else {
                Class::Ham
            };
            bayes
                .record(Change {
                    digest: message * 0x1234_5678_9abc_def1,
                    from: None,
                    to,
                    tokens: tokens[..].into(),
                    grams: grams[..].into(),
                    features: Default::default(),
                })
                .unwrap();
            if message == 20 {
                // Training's clock readings would make the file differ run to run.
                bayes
                    .compact_with(100, |samples| crate::classifier::train::Trained {
                        micros: 0,
                        trained_at: 0,
                        ..crate::classifier::train::train(
                            samples,
                            &crate::classifier::train::NoRules,
                            &Default::default(),
                        )
                    })
                    .unwrap();
            }
        }
        bayes.commit().unwrap();
        bayes
            .record(Change {
                digest: 0x1234_5678_9abc_def1,
                from: Some(Class::Ham),
                to: Class::Spam,
                tokens: (&[5, 6, 7][..]).into(),
                grams: (&[9][..]).into(),
                // Pins the journal's varint text too.
                features: crate::classifier::ModelFeatures {
                    text: vec![3, 700, 70_000, 4_000_000],
                    rules: vec![11],
                },
            })
            .unwrap();
        bayes.commit().unwrap();

        let mut fuzzy = FuzzyStore::open_writer(dir.path()).unwrap();
        for digest in 0..30u128 {
            let sig = signature(digest as u32);
            let minhash = (digest % 4 != 0).then_some(&sig);
            fuzzy
                .add(
                    digest << 70 | digest,
                    1 + (digest % 2) as u32,
                    1,
                    1000 + digest as u64,
                    minhash,
                )
                .unwrap();
            if digest == 15 {
                fuzzy.compact(1020, 0).unwrap();
            }
        }
        fuzzy.delete(3 << 70 | 3, 2, 2000).unwrap();
        fuzzy.commit().unwrap();
        drop((bayes, fuzzy));

        let crcs = file_crcs(dir.path());
        let pinned = [
            ("bayes.journal", 0x7468_e834),
            ("bayes.model", 0x6a4f_a5f8),
            ("fuzzy.journal", 0x3855_549e),
            ("fuzzy.model", 0xcfb2_3926),
        ]
        .map(|(name, crc)| (name.to_owned(), crc));
        assert_eq!(crcs, pinned, "{crcs:x?}");
    }
}
