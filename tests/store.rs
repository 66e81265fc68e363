#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Bayes store through its public API: learn, commit, compact, reopen,
//! torn journals, the writer lock, idempotent learning and damaged models.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chaff::bayes::{self, LearnOutcome};
use chaff::extract::Features;
use chaff::extract::grams::GRAM_BITS;
use chaff::store::{BayesStore, Class, JOURNAL_FILE, LockError, MODEL_FILE, StoreError};

/// A small deterministic generator (SplitMix64), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One synthetic learned message: digest, class and distinct tokens (with
/// gram buckets derived from them, so grams are shared as tokens are).
#[derive(Clone)]
struct Sample {
    digest: u128,
    class: Class,
    features: Features,
}

fn gram_of(token: u64) -> u32 {
    (token >> (64 - GRAM_BITS)) as u32
}

/// `count` messages over a pool of 400 tokens, so tokens are shared.
fn samples(seed: u64, count: usize) -> (Vec<Sample>, Vec<u64>) {
    let mut rng = Rng(seed);
    let pool: Vec<u64> = (0..400).map(|_| rng.next() | 1).collect();
    let samples = (0..count)
        .map(|i| {
            let mut tokens: Vec<u64> = (0..40)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize])
                .collect();
            tokens.sort_unstable();
            tokens.dedup();
            let mut grams: Vec<u32> = tokens.iter().map(|&t| gram_of(t)).collect();
            grams.sort_unstable();
            grams.dedup();
            Sample {
                digest: (u128::from(rng.next()) << 64) | u128::from(rng.next()),
                class: if i % 3 == 0 { Class::Ham } else { Class::Spam },
                features: Features {
                    tokens,
                    grams,
                    ..Features::default()
                },
            }
        })
        .collect();
    (samples, pool)
}

/// What the store should say after learning `samples` once each.
#[derive(Debug, PartialEq)]
struct Expected {
    learns: (u64, u64),
    tokens: HashMap<u64, (u32, u32)>,
    grams: HashMap<u32, (u32, u32)>,
}

fn expected(samples: &[Sample]) -> Expected {
    let mut learns = (0, 0);
    let mut tokens: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut grams: HashMap<u32, (u32, u32)> = HashMap::new();
    for sample in samples {
        match sample.class {
            Class::Spam => learns.0 += 1,
            Class::Ham => learns.1 += 1,
        }
        for token in &sample.features.tokens {
            let entry = tokens.entry(*token).or_default();
            match sample.class {
                Class::Spam => entry.0 += 1,
                Class::Ham => entry.1 += 1,
            }
        }
        for gram in &sample.features.grams {
            let entry = grams.entry(*gram).or_default();
            match sample.class {
                Class::Spam => entry.0 += 1,
                Class::Ham => entry.1 += 1,
            }
        }
    }
    Expected {
        learns,
        tokens,
        grams,
    }
}

fn learn_all(store: &mut BayesStore, samples: &[Sample]) {
    for sample in samples {
        let outcome = bayes::learn(
            store,
            sample.digest,
            sample.class,
            &sample.features,
            Default::default(),
        )
        .unwrap();
        assert_eq!(outcome, LearnOutcome::Learned);
    }
}

/// Checks every token of the pool (and some never learned) and every digest.
fn assert_store_matches(store: &BayesStore, samples: &[Sample], pool: &[u64], context: &str) {
    let expected = expected(samples);
    assert_eq!(store.learns(), expected.learns, "{context}: learns");
    for token in pool {
        let want = expected.tokens.get(token).copied().unwrap_or((0, 0));
        assert_eq!(
            store.token_counts(*token),
            want,
            "{context}: token {token:#x}"
        );
    }
    let grams: Vec<u32> = pool.iter().map(|&t| gram_of(t)).collect();
    let mut counts = Vec::new();
    store.gram_counts_into(&grams, &mut counts);
    for (gram, got) in grams.iter().zip(counts) {
        let want = expected.grams.get(gram).copied().unwrap_or((0, 0));
        assert_eq!(got, want, "{context}: gram {gram}");
    }
    for unseen in [2u64, 4, 0xdead_beef_0000, u64::MAX - 1] {
        assert_eq!(
            store.token_counts(unseen),
            (0, 0),
            "{context}: unseen {unseen:#x}"
        );
    }
    for sample in samples {
        assert_eq!(
            store.learned_class(sample.digest),
            Some(sample.class),
            "{context}: digest {:#x}",
            sample.digest
        );
    }
    assert_eq!(
        store.learned_class(12345),
        None,
        "{context}: unknown digest"
    );
    assert_eq!(
        store.stats().learned_messages,
        samples.len() as u64,
        "{context}: learned_messages"
    );
}

#[test]
fn round_trip_through_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (samples, pool) = samples(1, 300);
    let (first, second) = samples.split_at(200);
    {
        let mut store = BayesStore::open_writer(dir.path()).unwrap();
        learn_all(&mut store, first);
        store.commit().unwrap();
        assert_store_matches(&store, first, &pool, "writer before compaction");
        store.compact().unwrap();
        assert!(dir.path().join(MODEL_FILE).is_file());
        assert_store_matches(&store, first, &pool, "writer after compaction");
        // More learns on top of the compacted model, folded in a second time.
        learn_all(&mut store, second);
        store.compact().unwrap();
        assert_store_matches(&store, &samples, &pool, "writer after second compaction");
    }
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, "reopened read-only");
    assert!(store.verify());
    let stats = store.stats();
    assert_eq!(stats.overlay_tokens, 0, "everything is in the model");
    assert_eq!(stats.journal_generation, 2);
    assert_eq!(stats.format_version, chaff::store::FORMAT_VERSION);
}

#[test]
fn journal_only_state_reopens_with_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (samples, pool) = samples(2, 150);
    {
        let mut store = BayesStore::open_writer(dir.path()).unwrap();
        learn_all(&mut store, &samples);
        store.commit().unwrap();
    }
    assert!(!dir.path().join(MODEL_FILE).exists(), "nothing compacted");
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, "journal only, read-only");
    assert!(store.stats().journal_bytes > 0);
    drop(store);
    let store = BayesStore::open_writer(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, "journal only, writer");
}

#[test]
fn uncommitted_learns_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (samples, pool) = samples(3, 60);
    let (acknowledged, unacknowledged) = samples.split_at(40);
    {
        let mut store = BayesStore::open_writer(dir.path()).unwrap();
        learn_all(&mut store, acknowledged);
        store.commit().unwrap();
        learn_all(&mut store, unacknowledged);
        // Dropped without commit: as if the process died here.
    }
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, acknowledged, &pool, "after an uncommitted batch");
    assert_eq!(store.learned_class(unacknowledged[0].digest), None);
}

fn append_to_journal(dir: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(JOURNAL_FILE))
        .unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn garbage_after_the_journal_is_ignored_and_cut_by_the_next_writer() {
    let garbage_tails: [&[u8]; 4] = [
        &[0xff; 37],
        // A plausible frame length with a wrong checksum.
        &[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9],
        &[7],
        b"not a journal record at all, just text appended by accident\n",
    ];
    for (i, tail) in garbage_tails.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (samples, pool) = samples(10 + i as u64, 80);
        let (acknowledged, later) = samples.split_at(60);
        {
            let mut store = BayesStore::open_writer(dir.path()).unwrap();
            learn_all(&mut store, acknowledged);
            store.commit().unwrap();
        }
        append_to_journal(dir.path(), tail);
        let context = format!("garbage tail {i}");
        let store = BayesStore::open_read_only(dir.path()).unwrap();
        assert_store_matches(&store, acknowledged, &pool, &context);
        drop(store);

        // A writer cuts the torn tail, so what it appends next is readable.
        {
            let mut store = BayesStore::open_writer(dir.path()).unwrap();
            assert_store_matches(&store, acknowledged, &pool, &context);
            learn_all(&mut store, later);
            store.commit().unwrap();
        }
        let store = BayesStore::open_read_only(dir.path()).unwrap();
        assert_store_matches(
            &store,
            &samples,
            &pool,
            &format!("{context}, then more learns"),
        );
    }
}

#[test]
fn a_journal_cut_inside_its_last_record_keeps_the_earlier_records() {
    let dir = tempfile::tempdir().unwrap();
    let (samples, pool) = samples(4, 31);
    let (acknowledged, last) = samples.split_at(30);
    let journal = dir.path().join(JOURNAL_FILE);
    let acknowledged_len;
    {
        let mut store = BayesStore::open_writer(dir.path()).unwrap();
        learn_all(&mut store, acknowledged);
        store.commit().unwrap();
        acknowledged_len = std::fs::metadata(&journal).unwrap().len();
        learn_all(&mut store, last);
        store.commit().unwrap();
    }
    let full_len = std::fs::metadata(&journal).unwrap().len();
    assert!(full_len > acknowledged_len + 16);
    // Every cut point inside the last record: a write torn at that byte.
    for cut in [
        acknowledged_len + 1,
        acknowledged_len + 8,
        full_len - 8,
        full_len - 1,
    ] {
        let copy = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(&journal).unwrap();
        std::fs::write(copy.path().join(JOURNAL_FILE), &bytes[..cut as usize]).unwrap();
        let store = BayesStore::open_read_only(copy.path()).unwrap();
        assert_store_matches(
            &store,
            acknowledged,
            &pool,
            &format!("journal cut at {cut}"),
        );
        assert_eq!(store.learned_class(last[0].digest), None);
    }
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let first = BayesStore::open_writer(dir.path()).unwrap();
    let error = match BayesStore::open_writer(dir.path()) {
        Ok(_) => panic!("a second writer was allowed while the first holds the lock"),
        Err(error) => error,
    };
    assert!(
        matches!(error, StoreError::Locked(LockError::Held { .. })),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "message does not name the holder: {text}"
    );
    // Readers are not blocked by the writer.
    BayesStore::open_read_only(dir.path()).unwrap();
    drop(first);
    BayesStore::open_writer(dir.path()).unwrap();
}

#[test]
fn learning_the_same_digest_twice_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (samples, pool) = samples(5, 20);
    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    learn_all(&mut store, &samples);
    for sample in &samples {
        let outcome = bayes::learn(
            &mut store,
            sample.digest,
            sample.class,
            &sample.features,
            Default::default(),
        )
        .unwrap();
        assert_eq!(outcome, LearnOutcome::AlreadyKnown);
    }
    assert_store_matches(&store, &samples, &pool, "learned twice before commit");
    store.commit().unwrap();
    store.compact().unwrap();
    // Still known after the digest moved into the model file.
    for sample in &samples {
        let outcome = bayes::learn(
            &mut store,
            sample.digest,
            sample.class,
            &sample.features,
            Default::default(),
        )
        .unwrap();
        assert_eq!(outcome, LearnOutcome::AlreadyKnown);
    }
    store.commit().unwrap();
    drop(store);
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, "learned three times, reopened");
}

fn relearn_moves_counts(compact_first: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut samples, pool) = samples(6, 30);
    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    learn_all(&mut store, &samples);
    store.commit().unwrap();
    if compact_first {
        store.compact().unwrap();
    }
    // Flip the class of every third message.
    for sample in samples.iter_mut().step_by(3) {
        sample.class = match sample.class {
            Class::Spam => Class::Ham,
            Class::Ham => Class::Spam,
        };
        let outcome = bayes::learn(
            &mut store,
            sample.digest,
            sample.class,
            &sample.features,
            Default::default(),
        )
        .unwrap();
        assert_eq!(outcome, LearnOutcome::Relearned);
    }
    let context = format!("relearned (compacted first: {compact_first})");
    assert_store_matches(&store, &samples, &pool, &context);
    store.commit().unwrap();
    drop(store);
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, &format!("{context}, reopened"));
    drop(store);
    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    store.compact().unwrap();
    drop(store);
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_store_matches(&store, &samples, &pool, &format!("{context}, compacted"));
}

#[test]
fn relearning_as_the_other_class_moves_counts() {
    relearn_moves_counts(false);
}

#[test]
fn relearning_a_compacted_message_moves_counts() {
    relearn_moves_counts(true);
}

#[test]
fn a_read_only_store_refuses_to_learn() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = BayesStore::open_read_only(dir.path()).unwrap();
    let error = bayes::learn(
        &mut store,
        1,
        Class::Spam,
        &Features {
            tokens: vec![3, 5],
            ..Features::default()
        },
        Default::default(),
    )
    .unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly), "{error:?}");
    assert!(store.commit().is_err());
}

/// A data directory with a compacted model, for damaging.
fn compacted_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (samples, _) = samples(7, 50);
    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    learn_all(&mut store, &samples);
    store.compact().unwrap();
    dir
}

/// Opens `dir` every way and returns the read-only error's text, after
/// checking the writer and the engine refuse it too.
fn open_error(dir: &Path) -> String {
    let read_only = match BayesStore::open_read_only(dir) {
        Ok(_) => panic!("a damaged model opened read-only"),
        Err(error) => error,
    };
    assert!(
        BayesStore::open_writer(dir).is_err(),
        "a damaged model opened for writing"
    );
    assert!(
        chaff::Engine::open(chaff::config::Config::embedded(), dir).is_err(),
        "the engine opened a damaged model"
    );
    let text = read_only.to_string();
    assert!(
        text.contains(MODEL_FILE),
        "error does not name the file: {text}"
    );
    text
}

fn damage(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(MODEL_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_model_with_bad_magic_is_refused_clearly() {
    let dir = compacted_store();
    damage(dir.path(), |bytes| bytes[0] = b'X');
    let text = open_error(dir.path());
    assert!(text.contains("bad magic"), "{text}");
}

#[test]
fn a_model_with_a_flipped_header_byte_is_refused_clearly() {
    let dir = compacted_store();
    // Offset 24 is inside spam_learns: only the header checksum notices.
    damage(dir.path(), |bytes| bytes[24] ^= 0x01);
    let text = open_error(dir.path());
    assert!(text.contains("checksum"), "{text}");
}

#[test]
fn a_model_from_another_format_version_is_refused_clearly() {
    let dir = compacted_store();
    damage(dir.path(), |bytes| bytes[8] = bytes[8].wrapping_add(7));
    let text = open_error(dir.path());
    assert!(text.contains("format version"), "{text}");
}

#[test]
fn a_truncated_model_is_refused_clearly() {
    for keep in [0usize, 10, 127, 128, 200] {
        let dir = compacted_store();
        damage(dir.path(), |bytes| bytes.truncate(keep));
        let text = open_error(dir.path());
        assert!(
            text.contains("not a chaff model or damaged"),
            "{keep} bytes: {text}"
        );
    }
}

#[test]
fn a_flipped_body_byte_is_found_by_verify() {
    let dir = compacted_store();
    let len = std::fs::metadata(dir.path().join(MODEL_FILE))
        .unwrap()
        .len() as usize;
    damage(dir.path(), |bytes| bytes[len - 5] ^= 0x40);
    // Opening checks only the header (its cost must not grow with the model);
    // the body checksum is verify's job.
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert!(!store.verify(), "a damaged body passed verify");
}

/// A scan sums a message's weights in one pass (`Weights::weight_sum`);
/// with learns since the model was written it must add each one's delta
/// exactly as the per-weight lookup does.
#[test]
fn a_weight_sum_is_the_sum_of_the_weights_with_the_learns_since() {
    use chaff::classifier::{ModelFeatures, Weights};
    let dir = tempfile::tempdir().unwrap();
    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    let message = |i: u64| {
        let tokens: Vec<u64> = (1..200u64).map(|t| t * 7919 + i * 31).collect();
        let raw = format!(
            "Subject: message {i}\n\nbody of message {i}, words {}\n",
            i * 3
        );
        ModelFeatures::build(&tokens, raw.as_bytes(), [])
    };
    let check = |store: &BayesStore, context: &str| {
        let probe = message(7).text;
        let mut each = Vec::new();
        store.weights_into(&probe, &mut each);
        let expected: f64 = each.iter().map(|&w| f64::from(w)).sum();
        assert!(expected != 0.0, "{context}: the learns moved these weights");
        assert_eq!(store.weight_sum(&probe), expected, "{context}");
    };
    for i in 0..20u64 {
        let class = if i % 2 == 0 { Class::Spam } else { Class::Ham };
        bayes::learn(
            &mut store,
            u128::from(i) + 1,
            class,
            &Features::default(),
            message(i),
        )
        .unwrap();
    }
    store.commit().unwrap();
    check(&store, "journal only");
    store.compact().unwrap();
    for i in 20..30u64 {
        bayes::learn(
            &mut store,
            u128::from(i) + 1,
            Class::Spam,
            &Features::default(),
            message(i),
        )
        .unwrap();
    }
    check(&store, "model and journal");
}

/// Rewrites a journal as version 3 wrote it: text features as `u32`s, the
/// count after the rules 0, no online step, and 3 in the header.
fn rewrite_as_version_3(journal: &Path) {
    let bytes = std::fs::read(journal).unwrap();
    let mut out = bytes[..24].to_vec();
    out[8..12].copy_from_slice(&3u32.to_le_bytes());
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut at = 24;
    while at < bytes.len() {
        let len = u32_at(&bytes, at) as usize;
        let payload = &bytes[at + 8..at + 8 + len];
        let (n_tokens, n_grams, n_text, text_bytes) = (
            u32_at(payload, 4) as usize,
            u32_at(payload, 24) as usize,
            u32_at(payload, 28) as usize,
            u32_at(payload, 36) as usize,
        );
        assert!(text_bytes > 0, "a learn's text is stored as varint gaps");
        let text_at = 40 + n_tokens * 8 + n_grams * 4;
        let mut text = Vec::new();
        let used =
            chaff::classifier::codec::decode(&payload[text_at..], n_text, &mut text).unwrap();
        assert_eq!(used, text_bytes);
        assert_eq!(payload[2], 1, "version 4 keeps the online step");
        let mut old = payload[..text_at].to_vec();
        old[2] = 0;
        old[36..40].copy_from_slice(&0u32.to_le_bytes());
        for index in &text {
            old.extend_from_slice(&index.to_le_bytes());
        }
        // The rules, without the step after them.
        old.extend_from_slice(&payload[text_at + text_bytes..payload.len() - 8]);
        out.extend_from_slice(&(old.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&old).to_le_bytes());
        out.extend_from_slice(&old);
        at += 8 + len;
    }
    std::fs::write(journal, out).unwrap();
}

#[test]
fn a_version_3_journal_is_read_and_raised_to_4_before_a_new_learn() {
    use chaff::classifier::{ModelFeatures, Weights};
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join(JOURNAL_FILE);
    let message = |i: u64| {
        let tokens: Vec<u64> = (1..300u64).map(|t| t * 104_729 + i * 17).collect();
        let raw = format!("Subject: note {i}\n\nwords of note {i}\n");
        ModelFeatures::build(&tokens, raw.as_bytes(), ["SOME_RULE"])
    };
    let learn = |store: &mut BayesStore, i: u64| {
        let class = if i.is_multiple_of(2) {
            Class::Spam
        } else {
            Class::Ham
        };
        bayes::learn(
            store,
            u128::from(i) + 1,
            class,
            &Features::default(),
            message(i),
        )
        .unwrap();
    };
    let probe = message(3).text;
    let live_sum = {
        let mut store = BayesStore::open_writer(dir.path()).unwrap();
        (0..12).for_each(|i| learn(&mut store, i));
        store.commit().unwrap();
        store.weight_sum(&probe)
    };
    assert_ne!(live_sum, 0.0);
    // The journal as written replays to the same weights.
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.weight_sum(&probe), live_sum, "varint text replayed");
    drop(store);

    rewrite_as_version_3(&journal);
    let version =
        || u32::from_le_bytes(std::fs::read(&journal).unwrap()[8..12].try_into().unwrap());
    assert_eq!(version(), 3);
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    // Its steps are computed again, and come out as the learns took them.
    assert_eq!(store.weight_sum(&probe), live_sum, "version 3 replayed");
    assert_eq!(store.learns(), (6, 6));
    drop(store);
    assert_eq!(version(), 3, "a reader leaves the journal as it is");

    let mut store = BayesStore::open_writer(dir.path()).unwrap();
    assert_eq!(version(), 4, "the writer raised the header first");
    learn(&mut store, 12);
    store.commit().unwrap();
    drop(store);
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.learns(), (7, 6), "old and new records both read");
}
