//! The fuzzy store at one million entries: lookup cost per message and open
//! time, neither of which may grow with the store.
//!
//! Builds a `fuzzy.model` of 1,000,000 synthetic text-part entries (random
//! digests and min-hash signatures, plus the real digests of one fixture
//! message), then measures, beyond the parse: computing a message's digests
//! and looking them up (a miss, and a near-copy hit), the lookup alone, and
//! `FuzzyStore::open_read_only`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use chaff::fuzzy::{FuzzyDigests, FuzzyParams, MINHASH_VALUES};
use chaff::message::{Limits, parse};
use chaff::store::{FUZZY_MODEL_FILE, FuzzyStore, LookupParams, NewFuzzyEntry, write_fuzzy_model};

const ENTRIES: u64 = 1_000_000;
const NOW: u64 = 1_700_000_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn message_text(words: &[&str]) -> Vec<u8> {
    format!(
        "Subject: limited offer\nFrom: a@b.example\n\n{}\n",
        words.join(" ")
    )
    .into_bytes()
}

const SPAM: &str = "Dear friend, our online pharmacy ships genuine brand medication without any \
    prescription to every country in the world. Order today and save up to ninety percent on \
    all products, with fast and discreet delivery guaranteed, satisfaction or your money back. \
    Thousands of happy customers trust our licensed doctors and secure checkout every single day; \
    join them now and receive a free bonus pack with every order over fifty dollars, only while \
    stocks last, click the link below to visit the shop and see the full catalogue of offers.";

fn build(dir: &std::path::Path, reported: &FuzzyDigests) {
    let mut entries: Vec<NewFuzzyEntry> = (0..ENTRIES - 1)
        .map(|i| {
            let mut minhash = Box::new([0u32; MINHASH_VALUES]);
            for (j, value) in minhash.iter_mut().enumerate() {
                *value = splitmix(i * 131 + j as u64) as u32;
            }
            NewFuzzyEntry {
                digest: (u128::from(splitmix(i)) << 64) | u128::from(splitmix(!i)),
                flag: 1,
                weight: 1,
                last_seen: NOW,
                minhash: Some(minhash),
            }
        })
        .collect();
    let part = &reported.parts[0];
    entries.push(NewFuzzyEntry {
        digest: part.exact,
        flag: 1,
        weight: 3,
        last_seen: NOW,
        minhash: Some(Box::new(part.minhash)),
    });
    write_fuzzy_model(&dir.join(FUZZY_MODEL_FILE), 1, entries).unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let params = FuzzyParams::default();
    let original = parse(&message_text(&[SPAM]), &limits);
    let reported = FuzzyDigests::compute(&original, &params);
    build(dir.path(), &reported);
    let store = FuzzyStore::open_read_only(dir.path()).unwrap();
    assert_eq!(store.stats().model_entries, ENTRIES);
    let lookup = LookupParams {
        now: NOW,
        expire_secs: 90 * 86_400,
        min_similarity: 0.25,
    };

    let near_copy = parse(
        &message_text(&[&SPAM
            .replace("genuine", "real")
            .replace("ninety", "eighty")
            .replace("happy", "satisfied")
            .replace("fifty", "forty")]),
        &limits,
    );
    let unrelated = parse(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/ham-plain.eml")).unwrap(),
        &limits,
    );
    let near_digests = FuzzyDigests::compute(&near_copy, &params);
    let hits = store.lookup(&near_digests, &lookup);
    assert!(
        hits.iter().any(|m| m.digest == reported.parts[0].exact),
        "{hits:?}"
    );
    let unrelated_digests = FuzzyDigests::compute(&unrelated, &params);
    assert!(!unrelated_digests.parts.is_empty());

    let mut group = c.benchmark_group("fuzzy_1M");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("digests+lookup/near_copy", |b| {
        b.iter(|| {
            let digests = FuzzyDigests::compute(black_box(&near_copy), &params);
            black_box(store.lookup(&digests, &lookup))
        })
    });
    group.bench_function("digests+lookup/unrelated", |b| {
        b.iter(|| {
            let digests = FuzzyDigests::compute(black_box(&unrelated), &params);
            black_box(store.lookup(&digests, &lookup))
        })
    });
    group.bench_function("lookup_only/near_copy", |b| {
        b.iter(|| black_box(store.lookup(black_box(&near_digests), &lookup)))
    });
    group.bench_function("lookup_only/unrelated", |b| {
        b.iter(|| black_box(store.lookup(black_box(&unrelated_digests), &lookup)))
    });
    group.bench_function("open_read_only", |b| {
        b.iter(|| black_box(FuzzyStore::open_read_only(dir.path()).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
