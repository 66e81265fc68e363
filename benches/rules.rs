#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rule matching cost against the number of rules: 50, 500 and 2,000
//! generated rules (body, Subject, URI and raw-body regexes, as rule files
//! hold them) over the same messages, through `RuleSet::check` (one
//! literal prefilter pass + one `RegexSet` pass per text, candidates
//! confirmed). `naive/2000` runs every one of the 2,000 regexes on its text
//! for comparison.
//!
//! Messages: the first 100 spam and 100 ham of the SpamAssassin corpus in
//! `tools/.work/corpus/` when `tools/eval` has extracted it, else the
//! fixtures in `corpus/`. `cargo bench --bench rules`; under `cargo test`
//! each bench runs once.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use chaff::config::Config;
use chaff::mailbox::Messages;
use chaff::message::{self, Envelope, Message};
use chaff::rules::{Input, RuleSet, Target};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PER_CLASS: usize = 100;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && name != "cmds" && !name.ends_with(".toml")
        })
        .collect();
    files.sort();
    files
}

fn messages() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("tools/.work/corpus");
    let mut out = Vec::new();
    for dirs in [
        vec![work.join("spam"), work.join("spam_2")],
        vec![work.join("easy_ham"), work.join("hard_ham")],
    ] {
        let files: Vec<PathBuf> = dirs.iter().flat_map(|d| files_in(d)).collect();
        out.extend(
            Messages::new(&files)
                .filter_map(Result::ok)
                .map(|m| m.bytes)
                .take(PER_CLASS),
        );
    }
    if out.is_empty() {
        let files = files_in(&root.join("corpus"));
        out.extend(
            Messages::new(&files)
                .filter_map(Result::ok)
                .map(|m| m.bytes),
        );
    }
    out
}

/// A deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Words spam rules look for; the generated patterns combine them, so some
/// rules match and most do not, as in a real ruleset.
const WORDS: &[&str] = &[
    "free",
    "money",
    "click",
    "here",
    "offer",
    "remove",
    "list",
    "credit",
    "mortgage",
    "rates",
    "viagra",
    "pills",
    "cheap",
    "order",
    "now",
    "limited",
    "time",
    "guarantee",
    "income",
    "home",
    "business",
    "opportunity",
    "million",
    "dollars",
    "bank",
    "account",
    "transfer",
    "urgent",
    "reply",
    "winner",
    "prize",
    "claim",
    "discount",
    "save",
    "percent",
    "loan",
    "debt",
    "cash",
    "bonus",
    "casino",
    "lottery",
    "investment",
    "stock",
    "trading",
    "software",
    "cable",
    "watch",
    "replica",
    "degree",
    "diploma",
    "weight",
    "loss",
    "diet",
    "herbal",
    "natural",
    "secret",
    "amazing",
    "incredible",
    "risk",
    "no",
    "obligation",
    "act",
    "today",
    "call",
    "toll",
];

fn generate(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    for i in 0..n {
        let (a, b) = (rng.pick(WORDS), rng.pick(WORDS));
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
    let raws = messages();
    let limits = Config::embedded().limits;
    let parsed: Vec<Message> = raws.iter().map(|r| message::parse(r, &limits)).collect();
    let envelope = Envelope::default();
    let config = Config::embedded();
    let bytes: u64 = raws.iter().map(|r| r.len() as u64).sum();

    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(raws.len() as u64));
    group.sample_size(10);
    eprintln!("rules bench: {} messages, {} bytes", raws.len(), bytes);
    for n in [50, 500, 2000] {
        let text = generate(n, 0x9e37_79b9_7f4a_7c15);
        let set = RuleSet::from_toml(&[("generated.toml", &text)], &config).unwrap();
        let report = &set.report;
        eprintln!(
            "{n} rules: {} prefiltered, {} in the no-literal set, {} fancy",
            report.prefiltered, report.in_set, report.fancy
        );
        group.bench_function(format!("check/{n}"), |b| {
            b.iter(|| {
                let mut fired = 0;
                for (message, raw) in parsed.iter().zip(&raws) {
                    let input = Input::new(message, raw, &envelope);
                    fired += set.check(&input).len();
                }
                black_box(fired)
            })
        });
    }

    // Every regex on its own, as a matcher without a combined pass would.
    let text = generate(2000, 0x9e37_79b9_7f4a_7c15);
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
                chaff::rules::matcher::ascii_word_boundaries(pattern)
            );
            Some((target, regex::Regex::new(&source).unwrap()))
        })
        .collect();
    group.bench_function("naive/2000", |b| {
        b.iter(|| {
            let mut fired = 0;
            for (message, raw) in parsed.iter().zip(&raws) {
                let input = Input::new(message, raw, &envelope);
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

criterion_group!(benches, bench_rules);
criterion_main!(benches);
