#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rule matching cost against the number of rules: 50, 500 and 2,000
//! generated rules (body, Subject, URI and raw-body regexes, as rule files
//! hold them), and SpamAssassin's own ruleset where it is installed
//! (`spamassassin/all`; `tools/rules-growth` times real subsets of it),
//! over the same messages, through `RuleSet::check` (one
//! literal prefilter pass + one `RegexSet` pass per text, candidates
//! confirmed at the literal's position). `naive/2000` runs every one of the
//! 2,000 regexes on its text for comparison.
//!
//! The rules combine words drawn from a vocabulary of 6,000 distinct words
//! of the corpus itself (the most frequent 150 left out), so that, as in a
//! real ruleset, each rule's words occur in few messages and most rules do
//! not match most messages. One rule in twenty has no literal at all
//! (`\b[A-Z]{3}\d{2}\b` shapes) and goes into the `RegexSet`.
//!
//! Messages: the first 100 spam and 100 ham of the SpamAssassin corpus in
//! `tools/.work/corpus/` when `tools/eval` has extracted it (the vocabulary
//! comes from the next 600 of each class), else the fixtures in `corpus/`.
//! `cargo bench --bench rules`; under `cargo test` each bench runs once.
//!
//! Measured on 2 cores shared with a build (µs per message = time / 200):
//! 50 rules 20 µs, 500 rules 29 µs, 2,000 rules 54 µs; naive 2,000 rules
//! 1,900 µs. 40 times the rules cost 2.7 times as much, 500 → 2,000 rules
//! 1.9 times. Before candidates were confirmed at their literal's position
//! (each ran its regex over the whole text) the same bench gave 23, 52 and
//! 205 µs.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::PathBuf;

use chaff::config::Config;
use chaff::context::ScanContext;
use chaff::mailbox::Messages;
use chaff::message::{self, Envelope};
use chaff::rules::{Input, RuleSet, Target};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{corpus_dir, files_in, fixtures_dir};

const PER_CLASS: usize = 100;
/// How many messages per class, after the measured ones, the rule
/// vocabulary is drawn from.
const VOCABULARY_SOURCE: usize = 600;
/// The most frequent words (with, this, your, …) are left out: real rules
/// look for phrases, not stop words.
const SKIP_COMMON: usize = 150;
const VOCABULARY: usize = 6000;

/// The measured messages, and the messages the vocabulary comes from.
fn messages() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let work = corpus_dir();
    let (mut measured, mut source) = (Vec::new(), Vec::new());
    for dirs in [
        vec![work.join("spam"), work.join("spam_2")],
        vec![work.join("easy_ham"), work.join("hard_ham")],
    ] {
        let files: Vec<PathBuf> = dirs.iter().flat_map(|d| files_in(d)).collect();
        let mut all = Messages::new(&files)
            .filter_map(Result::ok)
            .map(|m| m.bytes)
            .take(PER_CLASS + VOCABULARY_SOURCE);
        measured.extend(all.by_ref().take(PER_CLASS));
        source.extend(all);
    }
    if measured.is_empty() {
        let files = files_in(&fixtures_dir());
        measured.extend(
            Messages::new(&files)
                .filter_map(Result::ok)
                .map(|m| m.bytes),
        );
    }
    (measured, source)
}

/// Distinct lowercase ASCII words of 4–14 letters from `raws`, commonest
/// first by the number of messages they occur in, without the
/// [`SKIP_COMMON`] commonest.
///
/// Drawn from a few dozen spam words instead, every rule's literal occurs
/// in nearly every message, the prefilter passes everything through, and
/// the bench measures the confirming regexes rather than the matcher.
fn vocabulary(raws: &[Vec<u8>]) -> Vec<String> {
    let mut document_frequency: HashMap<String, usize> = HashMap::new();
    for raw in raws {
        let seen: HashSet<String> = raw
            .split(|b| !b.is_ascii_alphabetic())
            .filter(|w| (4..=14).contains(&w.len()))
            .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
            .collect();
        for word in seen {
            *document_frequency.entry(word).or_default() += 1;
        }
    }
    let mut words: Vec<(usize, String)> = document_frequency
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(w, n)| (n, w))
        .collect();
    words.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<String> = words
        .into_iter()
        .skip(SKIP_COMMON)
        .take(VOCABULARY)
        .map(|(_, w)| w)
        .collect();
    if out.len() < 100 {
        out.extend(FALLBACK_WORDS.iter().map(|w| w.to_string()));
    }
    out
}

/// For a checkout without the extracted corpus (the fixtures are too few
/// to draw a vocabulary from).
const FALLBACK_WORDS: &[&str] = &[
    "free",
    "money",
    "click",
    "offer",
    "remove",
    "credit",
    "mortgage",
    "viagra",
    "cheap",
    "order",
    "limited",
    "guarantee",
    "income",
    "business",
    "opportunity",
    "million",
    "dollars",
    "transfer",
    "urgent",
    "winner",
    "prize",
    "discount",
    "casino",
    "lottery",
    "investment",
    "replica",
    "diploma",
    "herbal",
    "secret",
    "obligation",
];

/// A deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn generate(n: usize, words: &[String], seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    for i in 0..n {
        let (a, b) = (rng.pick(words), rng.pick(words));
        let (kind, extra, pattern) = match rng.next() % 20 {
            0..=11 => ("body", "", format!(r"\b{a}\s+(?:\w+\s+)?{b}\b")),
            12..=14 => (
                "header",
                "header = \"Subject\"\n",
                format!(r"\b{a}\W+{b}|{b}{}", "!".repeat(1 + i % 3)),
            ),
            15..=16 => ("uri", "", format!(r"^https?://[^/]*{a}[^/]*/.*{b}")),
            17..=18 => ("rawbody", "", format!(r"<[^>]*{a}[^>]*>\s*{b}")),
            // A few patterns with no usable literal (into the RegexSet).
            _ => (
                "body",
                "",
                format!(r"\b[A-Z]{{{}}}\d{{{}}}\b", 3 + i % 5, 2 + i % 4),
            ),
        };
        out.push_str(&format!(
            "[[rule]]\nsymbol = \"GEN_{i}\"\nkind = \"{kind}\"\n{extra}pattern = '''{pattern}'''\nflags = \"i\"\nweight = 1.0\n\n"
        ));
    }
    out
}

fn bench_rules(c: &mut Criterion) {
    let (raws, source) = messages();
    let words = vocabulary(&source);
    let limits = Config::embedded().limits;
    let envelope = Envelope::default();
    // Parsed once, outside the timing, as the engine does before the rules.
    let contexts: Vec<ScanContext> = raws
        .iter()
        .map(|r| ScanContext::of_message(r, &envelope, message::parse(r, &limits)))
        .collect();
    let config = Config::embedded();
    let bytes: u64 = raws.iter().map(|r| r.len() as u64).sum();

    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(raws.len() as u64));
    group.sample_size(10);
    eprintln!(
        "rules bench: {} messages, {} bytes, vocabulary of {} words",
        raws.len(),
        bytes,
        words.len()
    );
    for n in [50, 500, 2000] {
        let text = generate(n, &words, 0x9e37_79b9_7f4a_7c15);
        let set = RuleSet::from_toml(&[("generated.toml", &text)], &config.symbol_names()).unwrap();
        let report = &set.report;
        let fired = rules_fired(&set, &contexts);
        eprintln!(
            "{n} rules: {} prefiltered, {} in the no-literal set, {} fancy; {:.1} fire per message",
            report.prefiltered,
            report.in_set,
            report.fancy,
            fired as f64 / raws.len().max(1) as f64
        );
        group.bench_function(format!("check/{n}"), |b| {
            b.iter(|| black_box(rules_fired(&set, &contexts)))
        });
    }

    // Every regex on its own, as a matcher without a combined pass would.
    let text = generate(2000, &words, 0x9e37_79b9_7f4a_7c15);
    let naive: Vec<(Target, regex::Regex)> = text
        .split("[[rule]]")
        .filter_map(|block| {
            let kind = block.split("kind = \"").nth(1)?.split('"').next()?;
            let pattern = block.split("pattern = '''").nth(1)?.split("'''").next()?;
            let target = match kind {
                "body" => Target::Body,
                "uri" => Target::Uri,
                "rawbody" => Target::RawBody,
                _ => Target::Header("subject".into(), chaff::rules::HeaderForm::Decoded),
            };
            let source = format!(
                "(?im){}",
                chaff::rules::pattern::ascii_word_boundaries(pattern)
            );
            Some((target, regex::Regex::new(&source).unwrap()))
        })
        .collect();
    bench_spamassassin(&mut group, &contexts);

    group.bench_function("naive/2000", |b| {
        b.iter(|| {
            let mut fired = 0;
            for context in &contexts {
                let input = Input::new(context);
                let texts: Vec<(Target, String)> = [
                    Target::Body,
                    Target::Uri,
                    Target::RawBody,
                    Target::Header("subject".into(), chaff::rules::HeaderForm::Decoded),
                ]
                .into_iter()
                .map(|t| {
                    let text = input.text(&t).into_owned();
                    (t, text)
                })
                .collect();
                for (target, regex) in &naive {
                    let text = &texts.iter().find(|(t, _)| t == target).unwrap().1;
                    fired += usize::from(regex.is_match(text));
                }
            }
            black_box(fired)
        })
    });
    group.finish();
}

/// Rules of `set` that fire over all `contexts`: what every series runs.
fn rules_fired(set: &RuleSet, contexts: &[ScanContext]) -> usize {
    contexts
        .iter()
        .map(|context| set.check(&Input::new(context)).len())
        .sum()
}

/// SpamAssassin's own ruleset (`/usr/share/spamassassin`, or the directory
/// in `CHAFF_SPAMASSASSIN_RULES`), as an admin loads it, over the same
/// real messages: what issue #17's speed work is measured on. Skipped, with
/// a line saying so, where the rules are not installed.
fn bench_spamassassin(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    contexts: &[ScanContext],
) {
    let dir = std::env::var_os("CHAFF_SPAMASSASSIN_RULES")
        .map_or_else(|| PathBuf::from("/usr/share/spamassassin"), PathBuf::from);
    if !dir.is_dir() {
        eprintln!("{}: not installed, no spamassassin series", dir.display());
        return;
    }
    let mut config = Config::embedded();
    config.rules.builtin = false;
    config.rules.spamassassin = vec![dir];
    let set = RuleSet::load(&config.rules, &config.symbol_names()).unwrap();
    let report = &set.report;
    let fired = rules_fired(&set, contexts);
    eprintln!(
        "spamassassin: {} rules, {} prefiltered, {} in no-literal sets, {} gated fancy, {} fancy; {:.1} fire per message",
        set.len(),
        report.prefiltered,
        report.in_set,
        report.gated,
        report.fancy,
        fired as f64 / contexts.len().max(1) as f64
    );
    group.bench_function("spamassassin/all", |b| {
        b.iter(|| black_box(rules_fired(&set, contexts)))
    });
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
