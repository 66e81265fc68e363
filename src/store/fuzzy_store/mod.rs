//! The fuzzy store: mapped `fuzzy.model` + `fuzzy.journal` + overlay, with
//! the same design as the Bayes store (see `bayes_store.rs`): an immutable
//! mapped file, a journal fsynced before a report is acknowledged, an
//! in-memory overlay of what the journal changed, compaction into a new file
//! of the next generation, and a writer lock (`fuzzy.lock`, separate from
//! `bayes.lock` so fuzzy reports and Bayes learns do not wait on each other).
//!
//! Journal record payload (little-endian): `op: u8 (1 = add, 2 = delete),
//! has_minhash: u8, reserved: [u8; 2], flag: u32, weight: u32, reserved: u32,
//! time: u64, digest: u128, minhash: [u32; MINHASH_VALUES] if has_minhash`.
//!
//! Lookup never scans: an exact digest is found by (interpolated) binary
//! search in the sorted entry table; a near-copy by its LSH bands, each a
//! binary search in the sorted band table, at most [`MAX_PER_BAND`] rows
//! each, and at most [`MAX_VERIFY`] candidates whose stored signatures are
//! compared with the message's. The cost is bounded whatever the store size.

mod lookup;
mod record;

use std::path::Path;

use record::{OP_ADD, OP_DEL, Record, decode_record, encode_record};

use super::StoreError;
use super::format::{
    BandRow, FUZZY_FORMAT_VERSION, FUZZY_JOURNAL_MAGIC, FuzzyEntry, FuzzyHeader, NO_MINHASH,
};
use super::fuzzy_file::FuzzyFile;
use super::journaled::{Files, Journal};
use super::mapped::{self, Header};
use super::overlay::FastMap;
use crate::fuzzy::{BANDS, MinHash, band_key};

pub const FUZZY_MODEL_FILE: &str = "fuzzy.model";
pub const FUZZY_JOURNAL_FILE: &str = "fuzzy.journal";
pub const FUZZY_LOCK_FILE: &str = "fuzzy.lock";

const FILES: Files = Files {
    model: FUZZY_MODEL_FILE,
    journal: FUZZY_JOURNAL_FILE,
    lock: FUZZY_LOCK_FILE,
    journal_magic: FUZZY_JOURNAL_MAGIC,
    journal_version: FUZZY_FORMAT_VERSION,
    oldest_journal_version: FUZZY_FORMAT_VERSION,
};

/// Rows read per LSH band: a band key shared by very many stored messages
/// (a common phrase) says little, and must not make a lookup slow.
pub const MAX_PER_BAND: usize = 8;
/// Candidates whose signatures are compared, those sharing most bands first.
pub const MAX_VERIFY: usize = 16;

/// A stored digest that a message matched.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyMatch {
    pub flag: u32,
    /// The stored digest (the reported part's exact digest).
    pub digest: u128,
    /// Fraction of equal min-hash values; 1.0 for an exact match.
    pub similarity: f64,
    /// Reports summed.
    pub weight: u32,
}

/// What a lookup accepts.
#[derive(Debug, Clone, Copy)]
pub struct LookupParams {
    /// Unix time now.
    pub now: u64,
    /// Entries not reported for this long are ignored; 0 = never expire.
    pub expire_secs: u64,
    /// The least similarity that counts as a match.
    pub min_similarity: f64,
}

/// One entry as written by compaction (and by [`write_fuzzy_model`]).
#[derive(Debug, Clone)]
pub struct NewFuzzyEntry {
    pub digest: u128,
    pub flag: u32,
    pub weight: u32,
    pub last_seen: u64,
    pub minhash: Option<Box<MinHash>>,
}

/// Figures for `chaff fuzzy stat`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FuzzyStats {
    pub format_version: u32,
    pub digest_version: u32,
    pub model_entries: u64,
    pub model_signatures: u64,
    pub model_bytes: u64,
    pub overlay_entries: u64,
    pub journal_bytes: u64,
    pub journal_generation: u64,
}

/// An entry's state after the journal: weight, last report, signature.
#[derive(Debug, Clone)]
pub(super) struct Current {
    weight: u32,
    last_seen: u64,
    /// Only when the model does not hold the signature already.
    minhash: Option<Box<MinHash>>,
}

#[derive(Default)]
struct Overlay {
    /// Per digest, per flag: the new state, or `None` for deleted.
    entries: FastMap<u128, Vec<(u32, Option<Current>)>>,
    /// Band keys of the signatures held in `entries`.
    bands: FastMap<u32, Vec<u128>>,
}

/// Reported digests of one data directory.
pub struct FuzzyStore {
    model: FuzzyFile,
    overlay: Overlay,
    journal: Journal,
}

impl FuzzyStore {
    /// Opens for scanning: no lock, the journal replayed read-only.
    pub fn open_read_only(dir: &Path) -> Result<FuzzyStore, StoreError> {
        FuzzyStore::open(dir, false)
    }

    /// Opens for reporting: takes `fuzzy.lock`, replays the journal and cuts
    /// any torn tail off it.
    pub fn open_writer(dir: &Path) -> Result<FuzzyStore, StoreError> {
        FuzzyStore::open(dir, true)
    }

    fn open(dir: &Path, writable: bool) -> Result<FuzzyStore, StoreError> {
        let (model, journal, records) = Journal::open(dir, &FILES, writable, decode_record)?;
        let mut store = FuzzyStore {
            model,
            overlay: Overlay::default(),
            journal,
        };
        for record in records {
            store.apply(record);
        }
        Ok(store)
    }

    pub fn is_writable(&self) -> bool {
        self.journal.is_writable()
    }

    /// Records one report of `digest` under `flag` (weight added to any
    /// earlier reports, last-seen set to `time`). Durable after [`commit`].
    ///
    /// [`commit`]: FuzzyStore::commit
    pub fn add(
        &mut self,
        digest: u128,
        flag: u32,
        weight: u32,
        time: u64,
        minhash: Option<&MinHash>,
    ) -> Result<(), StoreError> {
        self.record(Record {
            op: OP_ADD,
            flag,
            weight,
            time,
            digest,
            minhash: minhash.map(|m| Box::new(*m)),
        })
    }

    /// The digests stored under `flag` (and not deleted) in `low..=high`:
    /// what a hash prefix an admin copied from a symbol's options names
    /// (`rspamc fuzzy_delhash`).
    pub fn digests_between(&self, low: u128, high: u128, flag: u32) -> Vec<u128> {
        let entries = self.model.entries();
        let mut found: Vec<u128> = self
            .model
            .digests_between(low, high)
            .map(|i| &entries[i])
            .filter(|entry| entry.flag == flag && self.view_of_model(entry).is_some())
            .map(|entry| entry.digest())
            .collect();
        for (&digest, list) in &self.overlay.entries {
            if (low..=high).contains(&digest)
                && list
                    .iter()
                    .any(|(listed, state)| *listed == flag && state.is_some())
            {
                found.push(digest);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Records the removal of `digest` from list `flag`; true if it was there.
    pub fn delete(&mut self, digest: u128, flag: u32, time: u64) -> Result<bool, StoreError> {
        let present = self.views_of(digest).iter().any(|v| v.flag == flag);
        self.record(Record {
            op: OP_DEL,
            flag,
            weight: 0,
            time,
            digest,
            minhash: None,
        })?;
        Ok(present)
    }

    fn record(&mut self, record: Record) -> Result<(), StoreError> {
        self.journal
            .writer()?
            .append_frame(|pending| encode_record(&record, pending));
        self.apply(record);
        Ok(())
    }

    fn apply(&mut self, record: Record) {
        let model_entry = self.model_entry(record.digest, record.flag).copied();
        let slot_state = self.overlay_state(record.digest, record.flag);
        let new_state = match record.op {
            OP_ADD => {
                let previous = match slot_state {
                    Some(state) => state.cloned(),
                    None => model_entry.map(|e| Current {
                        weight: e.weight,
                        last_seen: e.last_seen,
                        minhash: None,
                    }),
                };
                let model_has_minhash = model_entry.is_some_and(|e| e.minhash_index != NO_MINHASH);
                let (weight, last_seen, minhash) = match previous {
                    Some(p) => (
                        p.weight.saturating_add(record.weight),
                        p.last_seen.max(record.time),
                        p.minhash.or(record.minhash),
                    ),
                    None => (record.weight, record.time, record.minhash),
                };
                let minhash = if model_has_minhash { None } else { minhash };
                if let Some(signature) = &minhash
                    && !self.overlay_has_signature(record.digest)
                {
                    for band in 0..BANDS {
                        self.overlay
                            .bands
                            .entry(band_key(signature, band))
                            .or_default()
                            .push(record.digest);
                    }
                }
                Some(Current {
                    weight,
                    last_seen,
                    minhash,
                })
            }
            _ => None,
        };
        let list = self.overlay.entries.entry(record.digest).or_default();
        match list.iter_mut().find(|(flag, _)| *flag == record.flag) {
            Some(slot) => slot.1 = new_state,
            None => list.push((record.flag, new_state)),
        }
    }

    /// Makes every recorded report durable (one fsync).
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.journal.commit()
    }

    pub fn journal_bytes(&self) -> u64 {
        self.journal.bytes()
    }

    /// Folds the journal into a new model file, dropping deleted entries and
    /// entries not reported within `expire_secs` of `now` (0 = keep all),
    /// and starts the next journal generation.
    pub fn compact(&mut self, now: u64, expire_secs: u64) -> Result<(), StoreError> {
        self.commit()?;
        let keep = |weight: u32, last_seen: u64| {
            weight > 0 && (expire_secs == 0 || last_seen.saturating_add(expire_secs) >= now)
        };
        let mut entries = Vec::with_capacity(self.model.entries().len());
        for entry in self.model.entries() {
            if let Some(view) = self.view_of_model(entry)
                && keep(view.weight, view.last_seen)
            {
                entries.push(NewFuzzyEntry {
                    digest: entry.digest(),
                    flag: entry.flag,
                    weight: view.weight,
                    last_seen: view.last_seen,
                    minhash: view.minhash.map(|m| Box::new(*m)),
                });
            }
        }
        for (&digest, list) in &self.overlay.entries {
            for (flag, state) in list {
                if let Some(current) = state
                    && self.model_entry(digest, *flag).is_none()
                    && keep(current.weight, current.last_seen)
                {
                    entries.push(NewFuzzyEntry {
                        digest,
                        flag: *flag,
                        weight: current.weight,
                        last_seen: current.last_seen,
                        minhash: current.minhash.clone(),
                    });
                }
            }
        }
        let next_generation = self.model.header().journal_generation + 1;
        write_fuzzy_model(&self.journal.model_path(), next_generation, entries)?;
        self.model = self.journal.start_generation(next_generation)?;
        self.overlay = Overlay::default();
        Ok(())
    }

    /// Whether nothing was ever reported (nothing could match).
    pub fn is_empty(&self) -> bool {
        self.model.header().entry_count == 0 && self.overlay.entries.is_empty()
    }

    pub fn stats(&self) -> FuzzyStats {
        let header = self.model.header();
        FuzzyStats {
            format_version: header.format_version,
            digest_version: header.digest_version,
            model_entries: header.entry_count,
            model_signatures: header.minhash_count,
            model_bytes: self.model.file_len(),
            overlay_entries: self.overlay.entries.values().map(|l| l.len() as u64).sum(),
            journal_bytes: self.journal.bytes(),
            journal_generation: header.journal_generation,
        }
    }

    /// Re-reads the whole model file and checks its body checksum.
    pub fn verify(&self) -> bool {
        self.model.verify_body()
    }
}

/// Writes a complete `fuzzy.model` holding `entries` (temp, fsync, rename,
/// directory fsync). Used by compaction; public so benches and tools can
/// build large stores without a journal.
pub fn write_fuzzy_model(
    path: &Path,
    journal_generation: u64,
    mut entries: Vec<NewFuzzyEntry>,
) -> Result<(), StoreError> {
    entries.sort_unstable_by_key(|e| (e.digest, e.flag));
    entries.dedup_by_key(|e| (e.digest, e.flag));
    let too_many = || StoreError::Corrupt {
        path: path.to_owned(),
        reason: "more than 2^32 - 1 fuzzy entries".into(),
    };
    if entries.len() >= NO_MINHASH as usize {
        return Err(too_many());
    }
    let mut table = Vec::with_capacity(entries.len());
    let mut minhashes: Vec<MinHash> = Vec::new();
    let mut bands: Vec<BandRow> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let minhash_index = match &entry.minhash {
            Some(signature) => {
                for band in 0..BANDS {
                    bands.push(BandRow {
                        key: band_key(signature, band),
                        entry: index as u32,
                    });
                }
                minhashes.push(**signature);
                (minhashes.len() - 1) as u32
            }
            None => NO_MINHASH,
        };
        table.push(FuzzyEntry {
            digest_hi: (entry.digest >> 64) as u64,
            digest_lo: entry.digest as u64,
            flag: entry.flag,
            weight: entry.weight,
            last_seen: entry.last_seen,
            minhash_index,
            reserved: 0,
        });
    }
    drop(entries);
    bands.sort_unstable_by_key(|row| (row.key, row.entry));
    mapped::write(
        path,
        [
            bytemuck::cast_slice(&table),
            bytemuck::cast_slice(&minhashes),
            bytemuck::cast_slice(&bands),
        ],
        |layout| {
            let [entries_offset, minhashes_offset, bands_offset] = layout.offsets;
            FuzzyHeader {
                entry_count: table.len() as u64,
                minhash_count: minhashes.len() as u64,
                band_rows: bands.len() as u64,
                journal_generation,
                entries_offset,
                minhashes_offset,
                bands_offset,
                file_len: layout.file_len,
                body_crc: layout.body_crc,
                ..FuzzyHeader::empty()
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::fuzzy::{FuzzyDigests, MINHASH_VALUES, PartDigest};

    fn signature(seed: u32) -> MinHash {
        let mut m = [0u32; MINHASH_VALUES];
        for (i, v) in m.iter_mut().enumerate() {
            *v = seed.wrapping_mul(2654435761).wrapping_add(i as u32 * 97);
        }
        m
    }

    fn digests_of(exact: u128, minhash: MinHash) -> FuzzyDigests {
        FuzzyDigests {
            parts: vec![PartDigest {
                exact,
                minhash,
                words: 50,
            }],
            attachments: vec![],
        }
    }

    const PARAMS: LookupParams = LookupParams {
        now: 1_000_000,
        expire_secs: 1000,
        min_similarity: 0.3,
    };

    #[test]
    fn add_lookup_delete_compact_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FuzzyStore::open_writer(dir.path()).unwrap();
        let sig = signature(1);
        store.add(11, 1, 1, 999_500, Some(&sig)).unwrap();
        store.add(11, 1, 2, 999_600, Some(&sig)).unwrap();
        store.add(22, 2, 1, 999_600, Some(&signature(2))).unwrap();
        store.add(33, 1, 1, 999_600, None).unwrap();
        store.commit().unwrap();

        // A near copy: half the values changed (half the bands intact).
        let mut near = sig;
        for v in near.iter_mut().take(MINHASH_VALUES / 2) {
            *v ^= 0xdead;
        }
        let found = store.lookup(&digests_of(99, near), &PARAMS);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].flag, 1);
        assert_eq!(found[0].digest, 11);
        assert_eq!(found[0].weight, 3);
        assert!((found[0].similarity - 0.5).abs() < 1e-9);

        let exact = store.lookup(&digests_of(11, signature(7)), &PARAMS);
        assert_eq!(exact[0].similarity, 1.0);

        // Read-only view replays the journal.
        let reader = FuzzyStore::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.lookup(&digests_of(99, near), &PARAMS).len(), 1);

        store.compact(PARAMS.now, PARAMS.expire_secs).unwrap();
        assert_eq!(store.stats().model_entries, 3);
        assert_eq!(store.lookup(&digests_of(99, near), &PARAMS)[0].weight, 3);
        assert!(store.delete(11, 1, 999_700).unwrap());
        assert!(store.lookup(&digests_of(99, near), &PARAMS).is_empty());
        store.add(22, 2, 1, 999_800, None).unwrap();
        store.commit().unwrap();
        drop(store);

        let store = FuzzyStore::open_writer(dir.path()).unwrap();
        assert!(store.lookup(&digests_of(99, near), &PARAMS).is_empty());
        let allowed = store.lookup(&digests_of(5, signature(2)), &PARAMS);
        assert_eq!(allowed.len(), 1);
        assert_eq!((allowed[0].flag, allowed[0].weight), (2, 2));
        let attachment = FuzzyDigests {
            parts: vec![],
            attachments: vec![33],
        };
        assert_eq!(store.lookup(&attachment, &PARAMS).len(), 1);
        // Expired: last seen too long ago.
        let later = LookupParams {
            now: 2_000_000,
            ..PARAMS
        };
        assert!(store.lookup(&attachment, &later).is_empty());
    }

    #[test]
    fn compaction_drops_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FuzzyStore::open_writer(dir.path()).unwrap();
        store.add(1, 1, 1, 100, Some(&signature(1))).unwrap();
        store.add(2, 1, 1, 5000, Some(&signature(2))).unwrap();
        store.compact(5000, 1000).unwrap();
        assert_eq!(store.stats().model_entries, 1);
        assert_eq!(store.stats().model_signatures, 1);
    }

    #[test]
    fn torn_journal_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FuzzyStore::open_writer(dir.path()).unwrap();
        store.add(1, 1, 1, 100, Some(&signature(1))).unwrap();
        store.commit().unwrap();
        drop(store);
        let path = dir.path().join(FUZZY_JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let intact = bytes.len();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let store = FuzzyStore::open_writer(dir.path()).unwrap();
        assert_eq!(store.journal_bytes(), intact as u64);
        let params = LookupParams { now: 100, ..PARAMS };
        assert_eq!(store.lookup(&digests_of(1, signature(1)), &params).len(), 1);
    }
}
