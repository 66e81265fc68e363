#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kill -9 during `chaff learn`: every acknowledged learn survives, nothing
//! is counted twice, and a re-run finishes the job.
//!
//! `learn` prints its counts only at the end, so "acknowledged" is a whole
//! earlier run: the first half of the messages is learned to completion, then
//! a run over all of them is killed with SIGKILL once the journal shows it has
//! committed some of the second half.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chaff::classifier::{ModelFeatures, Weights};
use chaff::config::Config;
use chaff::engine::message_digest;
use chaff::extract::Tokenizer;
use chaff::message::{Limits, parse};
use chaff::store::{BayesStore, JOURNAL_FILE};

const MESSAGES: usize = 6000;
const HALF: usize = MESSAGES / 2;

/// SplitMix64: a fixed seed gives the same corpus on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 600 pronounceable words, the same on every run.
fn vocabulary() -> Vec<String> {
    let onsets = [
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "st",
    ];
    let vowels = ["a", "e", "i", "o", "u"];
    let codas = ["", "n", "r", "s", "x", "nd", "rt"];
    let mut words = Vec::new();
    'outer: for o1 in onsets {
        for v1 in vowels {
            for o2 in onsets {
                for c in codas {
                    words.push(format!("{o1}{v1}{o2}{}{c}", vowels[words.len() % 5]));
                    if words.len() == 600 {
                        break 'outer;
                    }
                }
            }
        }
    }
    words
}

/// Writes `MESSAGES` distinct small messages: the first half under
/// `root/a`, the rest under `root/b`. Returns `root`.
fn write_corpus(root: &Path) -> PathBuf {
    let words = vocabulary();
    let mut rng = Rng(0x00c0_ffee);
    let corpus = root.join("corpus");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(corpus.join(sub)).unwrap();
    }
    for i in 0..MESSAGES {
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| words[rng.below(words.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let subject = pick(5);
        let body: Vec<String> = (0..4).map(|_| pick(12)).collect();
        let sender = pick(1);
        let message = format!(
            "From: \"{sender}\" <{sender}@example.test>\n\
             To: user@example.test\n\
             Subject: {subject}\n\
             Message-ID: <{i}.{sender}@example.test>\n\
             Date: Mon, 1 Jan 2024 00:00:00 +0000\n\
             \n\
             {}\n",
            body.join("\n")
        );
        let sub = if i < HALF { "a" } else { "b" };
        std::fs::write(corpus.join(sub).join(format!("{i:05}.eml")), message).unwrap();
    }
    corpus
}

fn chaff(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaff"));
    command
        .env_remove("CHAFF_DATA_DIR")
        .env_remove("CHAFF_CONFIG")
        .current_dir(data.parent().unwrap())
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null());
    command
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `(learned, already known, relearned, failed)` from a finished learn run.
fn learn(data: &Path, path: &Path) -> (u64, u64, u64, u64) {
    let output = chaff(data)
        .args(["learn", "--spam"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    parse_counts(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|| panic!("no counts line\n{}", describe(&output)))
}

fn stat(data: &Path) -> serde_json::Value {
    let output = chaff(data)
        .args(["model", "stat", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn journal_len(data: &Path) -> u64 {
    std::fs::metadata(data.join(JOURNAL_FILE)).map_or(0, |m| m.len())
}

/// `(learned, already known, relearned, failed)` from a counts line.
fn parse_counts(text: &str) -> Option<(u64, u64, u64, u64)> {
    // "learned N as spam, already known N, relearned N, failed N (...)"
    let line = text.lines().find(|l| l.starts_with("learned "))?;
    let numbers: Vec<u64> = line
        .split(" (")
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 4, "{line}");
    Some((numbers[0], numbers[1], numbers[2], numbers[3]))
}

/// How a learn run that was to be killed ended.
enum Ended {
    /// SIGKILLed while running.
    Killed,
    /// It finished first (or was killed after printing): these counts were
    /// acknowledged.
    Finished((u64, u64, u64, u64)),
}

/// Starts `learn --spam` over `path` and SIGKILLs it once the journal is no
/// longer `from` bytes long (a batch was committed, or a compaction started
/// a new journal) or once `limit` has passed, whichever is first.
fn learn_and_kill(data: &Path, path: &Path, from: u64, limit: Duration) -> Ended {
    let mut learn = chaff(data);
    learn.args(["learn", "--spam"]).arg(path);
    let (_, output) = run_and_kill(learn, limit, || journal_len(data) != from);
    match parse_counts(&String::from_utf8_lossy(&output.stdout)) {
        Some(counts) => Ended::Finished(counts),
        None => {
            assert!(!output.status.success(), "{}", describe(&output));
            Ended::Killed
        }
    }
}

/// Runs `command` and SIGKILLs it once `stop` says so or `limit` has
/// passed, whichever is first. Whether it was still running when killed,
/// and what it printed.
fn run_and_kill(
    mut command: Command,
    limit: Duration,
    mut stop: impl FnMut() -> bool,
) -> (bool, Output) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && !stop() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    let running = child.try_wait().unwrap().is_none();
    // `Child::kill` is SIGKILL on Unix: no destructors, no final commit.
    // It is a no-op if the child has already exited.
    child.kill().unwrap();
    (running, child.wait_with_output().unwrap())
}

/// Both stores must hold the same samples and, trained from them, give
/// every message the same weights: the same model as one uninterrupted run.
fn assert_same_model(resumed: &Path, reference: &Path, corpus: &Path) {
    let resumed = BayesStore::open_read_only(resumed).unwrap();
    let reference = BayesStore::open_read_only(reference).unwrap();
    assert_eq!(resumed.learns(), reference.learns());
    let (a, b) = (resumed.stats(), reference.stats());
    assert_eq!(
        (a.spam_samples, a.ham_samples, a.sample_bytes),
        (b.spam_samples, b.ham_samples, b.sample_bytes),
        "the samples kept"
    );
    let tokenizer = Tokenizer::new(Config::embedded().bayes.osb_window).without_grams();
    let (mut checked, mut weighed) = (0usize, 0usize);
    for sub in ["a", "b"] {
        for i in (0..MESSAGES).step_by(25) {
            let file = corpus.join(sub).join(format!("{i:05}.eml"));
            let Ok(raw) = std::fs::read(&file) else {
                continue;
            };
            let digest = message_digest(&raw);
            assert_eq!(
                resumed.learned_class(digest),
                reference.learned_class(digest)
            );
            let message = parse(&raw, &Limits::default());
            let features = ModelFeatures::of_message(&message, &raw, &tokenizer, []);
            let sum = resumed.weight_sum(&features.text);
            assert_eq!(
                sum,
                reference.weight_sum(&features.text),
                "weights of {}",
                file.display()
            );
            checked += 1;
            weighed += usize::from(sum != 0.0);
        }
    }
    assert!(checked > 50, "only {checked} messages compared");
    assert!(
        weighed > checked / 2,
        "only {weighed} of {checked} have weights"
    );
}

#[test]
fn kill_9_during_learn_loses_nothing_acknowledged_and_counts_nothing_twice() {
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let data = root.path().join("data");

    // 1. The first half, to completion: acknowledged.
    let (learned, known, relearned, failed) = learn(&data, &corpus.join("a"));
    assert_eq!((learned, known, relearned, failed), (HALF as u64, 0, 0, 0));

    // 2. Everything, killed part-way. Repeated, alternately right after a
    //    commit and at a fixed early moment (mid-batch, or before any
    //    commit), until the runs get through.
    let mut kills = 0;
    let mut last_learned = HALF as u64;
    let limits = [120_000, 60, 120_000, 200, 120_000, 500];
    for limit in limits.map(Duration::from_millis) {
        let ended = learn_and_kill(&data, &corpus, journal_len(&data), limit);
        let after = stat(&data);
        let learned = after["learned_messages"].as_u64().unwrap();
        match ended {
            Ended::Killed => kills += 1,
            Ended::Finished((new, known, relearned, failed)) => {
                assert_eq!((relearned, failed), (0, 0));
                assert_eq!(new + known, MESSAGES as u64);
                assert_eq!(learned, MESSAGES as u64, "{after}");
            }
        }
        assert!(
            learned >= last_learned,
            "learned messages went from {last_learned} to {learned} after a kill"
        );
        assert!(learned <= MESSAGES as u64, "{after}");
        assert_eq!(after["spam_learns"].as_u64().unwrap(), learned, "{after}");
        assert_eq!(after["ham_learns"], 0, "{after}");
        assert_eq!(after["checksum_ok"], true, "{after}");
        eprintln!("kill after at most {limit:?}: {} learned", learned);
        last_learned = learned;
        if learned == MESSAGES as u64 {
            break;
        }
    }
    eprintln!("killed {kills} runs; {last_learned} of {MESSAGES} learned before the re-run");
    assert!(
        kills > 0,
        "every run finished before it could be killed: nothing was tested"
    );

    // 3. The acknowledged half is all there, and known.
    let (learned, known, relearned, failed) = learn(&data, &corpus.join("a"));
    assert_eq!((learned, known, relearned, failed), (0, HALF as u64, 0, 0));

    // 4. A full re-run learns exactly what is missing.
    let (learned, known, relearned, failed) = learn(&data, &corpus);
    assert_eq!(relearned, 0);
    assert_eq!(failed, 0);
    assert_eq!(learned + known, MESSAGES as u64);
    assert_eq!(known, last_learned, "the re-run disagrees with model stat");
    let last = stat(&data);
    assert_eq!(last["learned_messages"], MESSAGES as u64, "{last}");
    assert_eq!(last["spam_learns"], MESSAGES as u64, "{last}");

    // 5. The same model as one uninterrupted run.
    let reference = root.path().join("reference");
    let (learned, ..) = learn(&reference, &corpus);
    assert_eq!(learned, MESSAGES as u64);
    assert_same_model(&data, &reference, &corpus);
}

/// Runs `chaff` with `args` to completion and returns its stdout.
fn run_ok(data: &Path, args: &[&str], path: Option<&Path>) -> String {
    let mut command = chaff(data);
    command.args(args);
    if let Some(path) = path {
        command.arg(path);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kill_9_during_training_loses_no_learn_and_a_rerun_trains() {
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let data = root.path().join("data");

    // Both halves learned and acknowledged, left in the journal so that
    // `model train` has all of them to fold and train on.
    let spam = run_ok(
        &data,
        &["learn", "--spam", "--no-compact"],
        Some(&corpus.join("a")),
    );
    assert_eq!(parse_counts(&spam), Some((HALF as u64, 0, 0, 0)));
    let ham = run_ok(
        &data,
        &["learn", "--ham", "--no-compact"],
        Some(&corpus.join("b")),
    );
    assert_eq!(parse_counts(&ham), Some((HALF as u64, 0, 0, 0)));

    // `model train`, SIGKILLed at growing moments until one run finishes.
    let mut kills = 0;
    let mut finished = false;
    for millis in [5, 30, 100, 300, 1000, 3000, 10_000, 600_000] {
        let mut train = chaff(&data);
        train.args(["model", "train"]);
        let (running, output) = run_and_kill(train, Duration::from_millis(millis), || false);
        if running {
            kills += 1;
        } else {
            assert!(output.status.success(), "{}", describe(&output));
            finished = true;
        }
        // Whatever the moment, every acknowledged learn is there, once.
        let after = stat(&data);
        assert_eq!(after["spam_learns"], HALF as u64, "{after}");
        assert_eq!(after["ham_learns"], HALF as u64, "{after}");
        assert_eq!(after["learned_messages"], MESSAGES as u64, "{after}");
        assert_eq!(after["checksum_ok"], true, "{after}");
        if finished {
            assert_eq!(after["spam_samples"], HALF as u64, "{after}");
            assert_eq!(after["ham_samples"], HALF as u64, "{after}");
            assert!(after["trained_at"].as_u64().unwrap() > 0, "{after}");
            break;
        }
    }
    assert!(finished, "no training run finished");
    assert!(
        kills > 0,
        "every training finished before it could be killed: nothing was tested"
    );

    // Re-learning changes nothing: every message is already known.
    let again = run_ok(&data, &["learn", "--spam"], Some(&corpus.join("a")));
    assert_eq!(parse_counts(&again), Some((0, HALF as u64, 0, 0)));
}
