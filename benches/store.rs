//! Opening a large model: the mapped file makes it constant-time.
//!
//! Builds a model of one million tokens (and a full byte-gram table) once,
//! then measures `BayesStore::open_read_only` and lookups of 1,000 tokens
//! and 1,000 gram buckets in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use chaff::store::{BayesStore, Change, Class};

const TOKENS: u64 = 1_000_000;
const TOKENS_PER_MESSAGE: u64 = 1_000;

fn build_model(dir: &std::path::Path) {
    let mut store = BayesStore::open_writer(dir).unwrap();
    for message in 0..TOKENS / TOKENS_PER_MESSAGE {
        let tokens: Vec<u64> = (0..TOKENS_PER_MESSAGE)
            .map(|i| splitmix(message * TOKENS_PER_MESSAGE + i + 1))
            .collect();
        let grams: Vec<u32> = tokens.iter().map(|&t| gram_of(t)).collect();
        let class = if message % 2 == 0 {
            Class::Spam
        } else {
            Class::Ham
        };
        store
            .record(Change {
                digest: u128::from(message) + 1,
                from: None,
                to: class,
                tokens: tokens[..].into(),
                grams: grams[..].into(),
                features: Default::default(),
            })
            .unwrap();
    }
    store.compact().unwrap();
    assert_eq!(store.stats().model_tokens, TOKENS);
}

fn gram_of(token: u64) -> u32 {
    (token >> (64 - chaff::extract::grams::GRAM_BITS)) as u32
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)).max(1)
}

fn open_model(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    build_model(dir.path());
    let path = dir.path().to_path_buf();
    c.bench_with_input(
        BenchmarkId::new("open_read_only", "1M tokens"),
        &path,
        |b, path| b.iter(|| BayesStore::open_read_only(path).unwrap()),
    );
    let store = BayesStore::open_read_only(dir.path()).unwrap();
    let probe: Vec<u64> = (0..1000).map(|i| splitmix(i * 997 + 1)).collect();
    c.bench_function("lookup 1000 tokens in 1M", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(probe.len());
            store.token_counts_into(&probe, &mut out);
            out
        })
    });
    let gram_probe: Vec<u32> = probe.iter().map(|&t| gram_of(t)).collect();
    c.bench_function("lookup 1000 gram buckets", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(gram_probe.len());
            store.gram_counts_into(&gram_probe, &mut out);
            out
        })
    });
}

criterion_group!(benches, open_model);
criterion_main!(benches);
