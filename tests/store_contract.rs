//! One contract, every store kind: what the mapped-model-plus-journal shell
//! promises whichever store is inside it (the Bayes store with its
//! classifier samples, the fuzzy store). Each test is written once over
//! [`Kind`] and run for both by `contract!`; a new store kind implements
//! `Kind` and gets the whole suite.
//!
//! The promises: an empty directory opens empty; what is committed is
//! there after a reopen, for a writer and a reader; compaction keeps
//! everything and empties the journal; a torn journal tail costs only the
//! records it cut, and the next writer carries on after the last whole one;
//! one writer at a time; a damaged model header is refused, not read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chaff::classifier::ModelFeatures;
use chaff::store::{
    BayesStore, Change, Class, FUZZY_JOURNAL_FILE, FUZZY_MODEL_FILE, FuzzyStore, JOURNAL_FILE,
    MODEL_FILE, StoreError,
};

/// A store kind as the contract sees it: items are numbered, and each
/// kind decides what item `n` is (a learned message, a fuzzy report).
trait Kind: Sized {
    const MODEL: &'static str;
    const JOURNAL: &'static str;
    fn open_writer(dir: &Path) -> Result<Self, StoreError>;
    fn open_read_only(dir: &Path) -> Result<Self, StoreError>;
    fn put(&mut self, n: u32) -> Result<(), StoreError>;
    fn has(&self, n: u32) -> bool;
    fn commit(&mut self) -> Result<(), StoreError>;
    fn compact(&mut self) -> Result<(), StoreError>;
    fn journal_bytes(&self) -> u64;
    fn verify(&self) -> bool;
}

fn digest(n: u32) -> u128 {
    // Spread over the whole range, never 0.
    (u128::from(n) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
}

impl Kind for BayesStore {
    const MODEL: &'static str = MODEL_FILE;
    const JOURNAL: &'static str = JOURNAL_FILE;
    fn open_writer(dir: &Path) -> Result<Self, StoreError> {
        BayesStore::open_writer(dir)
    }
    fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        BayesStore::open_read_only(dir)
    }
    fn put(&mut self, n: u32) -> Result<(), StoreError> {
        self.record(Change {
            digest: digest(n),
            from: None,
            to: if n.is_multiple_of(2) {
                Class::Spam
            } else {
                Class::Ham
            },
            tokens: (&[][..]).into(),
            grams: (&[][..]).into(),
            features: ModelFeatures {
                text: vec![n, n + 1000],
                rules: Vec::new(),
            },
        })
    }
    fn has(&self, n: u32) -> bool {
        let class = if n.is_multiple_of(2) {
            Class::Spam
        } else {
            Class::Ham
        };
        self.learned_class(digest(n)) == Some(class)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        BayesStore::commit(self)
    }
    fn compact(&mut self) -> Result<(), StoreError> {
        BayesStore::compact(self).map(|_| ())
    }
    fn journal_bytes(&self) -> u64 {
        BayesStore::journal_bytes(self)
    }
    fn verify(&self) -> bool {
        BayesStore::verify(self)
    }
}

/// Reports far in the future of the stores' clock never expire here.
const NOW: u64 = 4_000_000_000;

impl Kind for FuzzyStore {
    const MODEL: &'static str = FUZZY_MODEL_FILE;
    const JOURNAL: &'static str = FUZZY_JOURNAL_FILE;
    fn open_writer(dir: &Path) -> Result<Self, StoreError> {
        FuzzyStore::open_writer(dir)
    }
    fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        FuzzyStore::open_read_only(dir)
    }
    fn put(&mut self, n: u32) -> Result<(), StoreError> {
        self.add(digest(n), 1, 1, NOW, None)
    }
    fn has(&self, n: u32) -> bool {
        let d = digest(n);
        self.digests_between(d, d, 1) == vec![d]
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        FuzzyStore::commit(self)
    }
    fn compact(&mut self) -> Result<(), StoreError> {
        FuzzyStore::compact(self, NOW, 0)
    }
    fn journal_bytes(&self) -> u64 {
        FuzzyStore::journal_bytes(self)
    }
    fn verify(&self) -> bool {
        FuzzyStore::verify(self)
    }
}

fn an_empty_directory_opens_empty<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    let writer = K::open_writer(dir.path()).unwrap();
    assert!((0..10).all(|n| !writer.has(n)));
    drop(writer);
    let reader = K::open_read_only(dir.path()).unwrap();
    assert!((0..10).all(|n| !reader.has(n)));
}

fn committed_items_are_there_after_a_reopen<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = K::open_writer(dir.path()).unwrap();
        for n in 0..20 {
            store.put(n).unwrap();
        }
        assert!(store.has(7), "the writer sees its own item before commit");
        store.commit().unwrap();
    }
    let writer = K::open_writer(dir.path()).unwrap();
    assert!((0..20).all(|n| writer.has(n)));
    assert!(!writer.has(20));
    drop(writer);
    let reader = K::open_read_only(dir.path()).unwrap();
    assert!((0..20).all(|n| reader.has(n)));
}

fn a_reader_cannot_write<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    drop(K::open_writer(dir.path()).unwrap());
    let mut reader = K::open_read_only(dir.path()).unwrap();
    let refused = reader.put(1).and_then(|()| reader.commit());
    assert!(matches!(refused, Err(StoreError::ReadOnly)), "{refused:?}");
}

fn compaction_keeps_everything_and_empties_the_journal<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    let journal_before;
    {
        let mut store = K::open_writer(dir.path()).unwrap();
        for n in 0..50 {
            store.put(n).unwrap();
        }
        store.commit().unwrap();
        journal_before = store.journal_bytes();
        store.compact().unwrap();
        assert!(store.journal_bytes() < journal_before);
        assert!((0..50).all(|n| store.has(n)), "after compaction, in place");
        // And learning goes on after it.
        store.put(50).unwrap();
        store.commit().unwrap();
    }
    assert!(dir.path().join(K::MODEL).exists());
    let store = K::open_read_only(dir.path()).unwrap();
    assert!(
        (0..=50).all(|n| store.has(n)),
        "after compaction and reopen"
    );
    assert!(store.verify(), "the compacted model's body checksum holds");
}

fn a_torn_journal_tail_costs_only_the_records_it_cut<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join(K::JOURNAL);
    let whole;
    {
        let mut store = K::open_writer(dir.path()).unwrap();
        store.put(1).unwrap();
        store.commit().unwrap();
        whole = std::fs::metadata(&journal).unwrap().len();
        store.put(2).unwrap();
        store.commit().unwrap();
    }
    // Cut the second record in its middle, as a crash during its write would.
    let full = std::fs::metadata(&journal).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(whole + (full - whole) / 2).unwrap();
    drop(file);
    {
        let mut store = K::open_writer(dir.path()).unwrap();
        assert!(store.has(1));
        assert!(!store.has(2), "a torn record is never half-applied");
        store.put(3).unwrap();
        store.commit().unwrap();
    }
    let store = K::open_read_only(dir.path()).unwrap();
    assert!(store.has(1) && store.has(3) && !store.has(2));
}

fn one_writer_at_a_time<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    let _first = K::open_writer(dir.path()).unwrap();
    let second = K::open_writer(dir.path());
    assert!(matches!(second, Err(StoreError::Locked(_))));
    // Readers are not excluded.
    assert!(K::open_read_only(dir.path()).is_ok());
}

fn a_damaged_model_header_is_refused<K: Kind>() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = K::open_writer(dir.path()).unwrap();
        store.put(1).unwrap();
        store.commit().unwrap();
        store.compact().unwrap();
    }
    let model = dir.path().join(K::MODEL);
    let mut bytes = std::fs::read(&model).unwrap();
    // Inside the header, past the magic and the version: only the
    // header checksum can tell.
    bytes[40] ^= 0x55;
    std::fs::write(&model, &bytes).unwrap();
    let opened = K::open_read_only(dir.path());
    assert!(
        matches!(opened, Err(StoreError::Corrupt { .. })),
        "{:?}",
        opened.err()
    );
}

macro_rules! contract {
    ($kind:ident, $module:ident) => {
        mod $module {
            use super::*;

            #[test]
            fn an_empty_directory_opens_empty() {
                super::an_empty_directory_opens_empty::<$kind>();
            }
            #[test]
            fn committed_items_are_there_after_a_reopen() {
                super::committed_items_are_there_after_a_reopen::<$kind>();
            }
            #[test]
            fn a_reader_cannot_write() {
                super::a_reader_cannot_write::<$kind>();
            }
            #[test]
            fn compaction_keeps_everything_and_empties_the_journal() {
                super::compaction_keeps_everything_and_empties_the_journal::<$kind>();
            }
            #[test]
            fn a_torn_journal_tail_costs_only_the_records_it_cut() {
                super::a_torn_journal_tail_costs_only_the_records_it_cut::<$kind>();
            }
            #[test]
            fn one_writer_at_a_time() {
                super::one_writer_at_a_time::<$kind>();
            }
            #[test]
            fn a_damaged_model_header_is_refused() {
                super::a_damaged_model_header_is_refused::<$kind>();
            }
        }
    };
}

contract!(BayesStore, bayes_store);
contract!(FuzzyStore, fuzzy_store);
