#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Per-message cost of each pipeline stage, in messages per second:
//! parse, tokenize (`Features::extract`), classify (the count-based Bayes,
//! against a store trained on the same sample), the classifier's model
//! features and weight lookups, and the whole `Engine::scan`.
//!
//! The sample is the first 200 spam and 200 ham messages of the SpamAssassin
//! corpus that `tools/eval` extracts into `tools/.work/corpus/` when it is
//! there, else the fixtures in `corpus/`. Run with `cargo bench --bench
//! pipeline`; under `cargo test` each bench runs once as a smoke test.

use std::hint::black_box;
use std::path::PathBuf;

use chaff::Engine;
use chaff::bayes;
use chaff::classifier::{ModelFeatures, text_log_odds, text_log_odds_only};
use chaff::config::Config;
use chaff::extract::{Features, Tokenizer};
use chaff::mailbox::Messages;
use chaff::message::{self, Envelope, Message};
use chaff::store::{BayesStore, Class};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{corpus_dir, files_in, fixtures_dir};

const PER_CLASS: usize = 200;

/// The first `limit` messages found in `dirs`, in order.
fn read_messages(dirs: &[PathBuf], limit: usize) -> Vec<Vec<u8>> {
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| files_in(d)).collect();
    Messages::new(&files)
        .filter_map(Result::ok)
        .map(|m| m.bytes)
        .take(limit)
        .collect()
}

/// (message, class) pairs, and where they came from.
fn sample() -> (Vec<(Vec<u8>, Class)>, &'static str) {
    let work = corpus_dir();
    let spam = read_messages(&[work.join("spam"), work.join("spam_2")], PER_CLASS);
    let ham = read_messages(
        &[
            work.join("easy_ham"),
            work.join("easy_ham_2"),
            work.join("hard_ham"),
        ],
        PER_CLASS,
    );
    if !spam.is_empty() && !ham.is_empty() {
        let mut sample: Vec<(Vec<u8>, Class)> =
            spam.into_iter().map(|m| (m, Class::Spam)).collect();
        sample.extend(ham.into_iter().map(|m| (m, Class::Ham)));
        return (sample, "tools/.work/corpus");
    }
    let corpus = fixtures_dir();
    let sample = files_in(&corpus)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let class = if name.contains("spam") || name.contains("gtube") || name.contains("html")
            {
                Class::Spam
            } else {
                Class::Ham
            };
            (std::fs::read(&p).unwrap(), class)
        })
        .collect();
    (sample, "corpus/")
}

fn pipeline(c: &mut Criterion) {
    let (sample, source) = sample();
    assert!(!sample.is_empty(), "no messages to benchmark");
    let count = sample.len() as u64;
    let bytes: usize = sample.iter().map(|(m, _)| m.len()).sum();
    eprintln!("pipeline: {count} messages, {bytes} bytes, from {source}");

    // The classifier speaks from the first learn in each class, so the
    // fixture fallback exercises it too.
    let config = Config::from_toml_over_defaults("[bayes]\nmin_learns = 1\n").unwrap();
    // The count-based Bayes' counts are learned only while it scores, so
    // the learner turns the classifier off to give `classify` counts; the
    // classifier's samples are stored and trained either way.
    let counting =
        Config::from_toml_over_defaults("[bayes]\nmin_learns = 1\n[classifier]\nenabled = false\n")
            .unwrap();
    let data = tempfile::tempdir().unwrap();
    {
        let mut learner = Engine::open_for_learning(counting, data.path()).unwrap();
        for (raw, class) in &sample {
            // Fixtures that are not messages are skipped, as `learn` does.
            let _ = learner.learn(raw, *class);
        }
        learner.compact().unwrap();
    }
    let store = BayesStore::open_read_only(data.path()).unwrap();
    let engine = Engine::open(config.clone(), data.path()).unwrap();
    let tokenizer = Tokenizer::new(config.bayes.osb_window);
    let limits = config.limits.clone();
    let envelope = Envelope::default();

    let parsed: Vec<Message> = sample
        .iter()
        .map(|(m, _)| message::parse(m, &limits))
        .collect();
    let features: Vec<Features> = sample
        .iter()
        .zip(&parsed)
        .map(|((raw, _), m)| Features::extract(raw, m, &tokenizer))
        .collect();
    let classified = features
        .iter()
        .filter(|f| bayes::classify(&f.tokens, &f.grams, &store, &config.bayes).is_ok())
        .count();
    assert!(classified > 0, "the trained store classified nothing");

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(count));
    group.sample_size(20);

    group.bench_function("parse", |b| {
        b.iter(|| {
            for (raw, _) in &sample {
                black_box(message::parse(black_box(raw), &limits));
            }
        })
    });
    group.bench_function("tokenize", |b| {
        b.iter(|| {
            for ((raw, _), message) in sample.iter().zip(&parsed) {
                black_box(Features::extract(raw, black_box(message), &tokenizer));
            }
        })
    });
    group.bench_function("classify", |b| {
        b.iter(|| {
            for f in &features {
                let _ = black_box(bayes::classify(
                    black_box(&f.tokens),
                    black_box(&f.grams),
                    &store,
                    &config.bayes,
                ));
            }
        })
    });
    // The discriminative classifier's two stages: a message's feature
    // indices (tokens mapped, byte 4-grams of the head, sorted), then their
    // weights looked up in the mapped table.
    let model_features: Vec<ModelFeatures> = sample
        .iter()
        .zip(&features)
        .map(|((raw, _), f)| ModelFeatures::build(&f.tokens, raw, []))
        .collect();
    group.bench_function("model features", |b| {
        b.iter(|| {
            for ((raw, _), f) in sample.iter().zip(&features) {
                black_box(ModelFeatures::build(black_box(&f.tokens), raw, []));
            }
        })
    });
    // What a scan computes: the same set, unsorted, tokenized straight to
    // indices (so this stage includes the tokenizer), and only its sum.
    group.bench_function("tokens to model features (scan)", |b| {
        b.iter(|| {
            for ((raw, _), message) in sample.iter().zip(&parsed) {
                black_box(ModelFeatures::for_scan(black_box(message), raw, &tokenizer));
            }
        })
    });
    group.bench_function("classifier weights", |b| {
        b.iter(|| {
            for m in &model_features {
                black_box(text_log_odds(&store, black_box(m)));
            }
        })
    });
    group.bench_function("classifier sum (scan)", |b| {
        b.iter(|| {
            for m in &model_features {
                black_box(text_log_odds_only(&store, black_box(m)));
            }
        })
    });
    group.bench_function("scan", |b| {
        b.iter(|| {
            for (raw, _) in &sample {
                black_box(engine.scan(black_box(raw), &envelope));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
