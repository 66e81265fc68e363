#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `chaff rescore` as a user runs it: the real binary over generated mbox
//! files (plain, gzip, zstd), maildirs and trees, with a small trained model
//! so that scores and symbols vary from message to message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A data directory with a model trained on generated spam and ham, and a
/// config that lets the classifier speak after a few learns.
struct Trained {
    root: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Trained {
    fn new() -> Trained {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let config = root.path().join("config.toml");
        std::fs::write(&config, "[classifier]\nmin_learns = 5\n").unwrap();
        let trained = Trained { root, data, config };
        let train = trained.dir("train");
        let spam: Vec<String> = (0..20).map(|i| message(1000 + 2 * i)).collect();
        let ham: Vec<String> = (0..20).map(|i| message(1001 + 2 * i)).collect();
        write_mbox(&train.join("spam.mbox"), &spam);
        write_mbox(&train.join("ham.mbox"), &ham);
        for (class, file) in [("--spam", "spam.mbox"), ("--ham", "ham.mbox")] {
            let output = trained
                .chaff()
                .arg("learn")
                .arg(class)
                .arg(train.join(file))
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", describe(&output));
        }
        trained
    }

    /// A `chaff` command over this data directory and config, isolated from
    /// the caller's environment.
    fn chaff(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chaff"));
        command
            .env_remove("CHAFF_DATA_DIR")
            .env_remove("CHAFF_CONFIG")
            .current_dir(self.root.path())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null());
        command
    }

    fn rescore(&self, args: &[&str], paths: &[&Path]) -> Output {
        self.chaff()
            .arg("rescore")
            .args(args)
            .args(paths)
            .output()
            .unwrap()
    }

    /// Rescores and checks for success, returning the JSON records.
    fn records(&self, args: &[&str], paths: &[&Path]) -> Vec<Value> {
        let output = self.rescore(args, paths);
        assert!(output.status.success(), "{}", describe(&output));
        json_records(&output)
    }

    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every stdout line is one JSON object; anything else on stdout fails.
fn json_records(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", describe(output)));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

/// Message `i`: even numbers read like spam, odd like ham, every 50th
/// carries GTUBE (a reject), and a few bodies have `From ` lines that an
/// mbox must quote.
fn message(i: usize) -> String {
    let spam_words = [
        "winner", "casino", "prize", "cheap", "pills", "offer", "money", "free", "click", "urgent",
    ];
    let ham_words = [
        "meeting", "agenda", "project", "review", "schedule", "patch", "release", "notes", "team",
        "lunch",
    ];
    let words = if i.is_multiple_of(2) {
        spam_words
    } else {
        ham_words
    };
    let mut body = String::new();
    let mut state = i as u64 * 2_654_435_761 + 12345;
    for n in 0..30 + i % 17 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let word = words[(state >> 33) as usize % words.len()];
        body.push_str(word);
        body.push(if n % 9 == 8 { '\n' } else { ' ' });
    }
    if i.is_multiple_of(7) {
        body.push_str("\nFrom the desk of the sender\n>From an old quote\n");
    }
    if i.is_multiple_of(50) {
        body.push_str(GTUBE);
        body.push('\n');
    }
    format!(
        "From: sender{i}@example.org\nTo: you@example.net\nSubject: message {i}\n\
         Message-ID: <{i}@test.example>\n\n{body}\n"
    )
}

/// Writes an mboxrd (each `From ` line in a body gets one more `>`) and
/// returns the byte offset of every message's `From ` line.
fn write_mbox(path: &Path, messages: &[String]) -> Vec<u64> {
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for message in messages {
        offsets.push(bytes.len() as u64);
        bytes.extend_from_slice(b"From sender@example.org Mon Jan  1 00:00:00 2024\n");
        for line in message.split_inclusive('\n') {
            if line.trim_start_matches('>').starts_with("From ") {
                bytes.push(b'>');
            }
            bytes.extend_from_slice(line.as_bytes());
        }
        bytes.push(b'\n');
    }
    std::fs::write(path, &bytes).unwrap();
    offsets
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn messages(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(message).collect()
}

#[test]
fn mbox_records_carry_offsets_and_message_ids_in_order() {
    let t = Trained::new();
    let mbox = t.dir("in").join("box.mbox");
    let offsets = write_mbox(&mbox, &messages(0..15));
    let records = t.records(&[], &[&mbox]);
    assert_eq!(records.len(), 15);
    let bytes = std::fs::read(&mbox).unwrap();
    for (i, record) in records.iter().enumerate() {
        let keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["path", "offset", "message_id", "score", "action", "symbols"]
        );
        assert_eq!(record["path"], mbox.to_str().unwrap());
        assert_eq!(record["offset"], offsets[i]);
        assert!(bytes[offsets[i] as usize..].starts_with(b"From "));
        assert_eq!(record["message_id"], format!("{i}@test.example"));
        let symbols = record["symbols"].as_object().unwrap();
        if !symbols.contains_key("GTUBE") {
            // A forced action (GTUBE) sets the score; otherwise it is the sum.
            let sum: f64 = symbols.values().map(|v| v.as_f64().unwrap()).sum();
            let score = record["score"].as_f64().unwrap();
            assert!((sum - score).abs() < 1e-9, "{record}");
        }
    }
    // The trained model tells the two kinds apart, and GTUBE rejects.
    assert!(records[0]["symbols"].get("GTUBE").is_some());
    assert_eq!(records[0]["action"], "reject");
    assert!(
        records[2]["symbols"].get("BAYES_SPAM").is_some(),
        "{}",
        records[2]
    );
    assert!(
        records[3]["symbols"].get("BAYES_HAM").is_some(),
        "{}",
        records[3]
    );
}

#[test]
fn gzip_and_zstd_mboxes_score_like_the_plain_one() {
    let t = Trained::new();
    let dir = t.dir("in");
    let plain = dir.join("box.mbox");
    write_mbox(&plain, &messages(0..40));
    let bytes = std::fs::read(&plain).unwrap();
    let gz = dir.join("box.mbox.gz");
    let zst = dir.join("box.mbox.zst");
    std::fs::write(&gz, gzip(&bytes)).unwrap();
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();

    let without_path = |mut records: Vec<Value>| {
        for record in &mut records {
            record.as_object_mut().unwrap().remove("path");
        }
        records
    };
    let expected = without_path(t.records(&[], &[&plain]));
    assert_eq!(expected.len(), 40);
    for compressed in [&gz, &zst] {
        let records = t.records(&[], &[compressed]);
        assert!(
            records
                .iter()
                .all(|r| r["path"] == compressed.to_str().unwrap())
        );
        assert_eq!(without_path(records), expected, "{}", compressed.display());
    }
}

#[test]
fn maildir_and_tree_records_have_no_offset_and_come_in_sorted_order() {
    let t = Trained::new();
    let maildir = t.dir("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(maildir.join("new/2"), message(3)).unwrap();
    std::fs::write(maildir.join("cur/1:2,S"), message(5)).unwrap();
    std::fs::write(maildir.join("tmp/3"), message(7)).unwrap();
    let tree = t.dir("tree");
    std::fs::create_dir_all(tree.join("b/deeper")).unwrap();
    std::fs::write(tree.join("b/deeper/z.eml"), message(9)).unwrap();
    std::fs::write(tree.join("b/a.eml"), message(11)).unwrap();
    std::fs::write(tree.join("a.eml"), message(13)).unwrap();

    let records = t.records(&[], &[&maildir, &tree]);
    let seen: Vec<(String, Value, Value)> = records
        .iter()
        .map(|r| {
            let path = Path::new(r["path"].as_str().unwrap());
            let relative = path
                .strip_prefix(t.root.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, r["offset"].clone(), r["message_id"].clone())
        })
        .collect();
    let expected = [
        ("maildir/cur/1:2,S", 5),
        ("maildir/new/2", 3),
        ("tree/a.eml", 13),
        ("tree/b/a.eml", 11),
        ("tree/b/deeper/z.eml", 9),
    ]
    .map(|(path, i)| {
        (
            path.to_owned(),
            Value::Null,
            Value::from(format!("{i}@test.example")),
        )
    });
    assert_eq!(seen, expected);
}

/// Splits one CSV record (RFC 4180; no embedded newlines in these tests).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    assert!(!quoted, "unterminated quote: {line}");
    fields
}

#[test]
fn csv_quotes_paths_and_matches_the_json_records() {
    let t = Trained::new();
    let dir = t.dir("odd, \"named\" dir");
    let file = dir.join("one.eml");
    std::fs::write(&file, message(4)).unwrap();
    let mbox = t.dir("in").join("box.mbox");
    let offsets = write_mbox(&mbox, &messages(20..23));

    let output = t.rescore(&["--format", "csv"], &[&file, &mbox]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,offset,message_id,score,action,symbols")
    );
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let first_row = text.lines().nth(1).unwrap();
    assert!(
        first_row.starts_with('"') && first_row.contains("odd, \"\"named\"\" dir/one.eml\","),
        "quoted, with quotes doubled: {text}"
    );
    assert_eq!(rows[0][0], file.to_str().unwrap());
    assert_eq!(rows[0][1], "");
    assert_eq!(rows[2][1], offsets[1].to_string());

    let json = t.records(&[], &[&file, &mbox]);
    for (row, record) in rows.iter().zip(&json) {
        assert_eq!(row.len(), 6, "{row:?}");
        assert_eq!(row[0], record["path"].as_str().unwrap());
        assert_eq!(row[2], record["message_id"].as_str().unwrap());
        // serde_json's float parsing is not correctly rounded (no
        // `float_roundtrip`): the same printed number may differ in the last bit.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
        assert!(
            close(
                row[3].parse::<f64>().unwrap(),
                record["score"].as_f64().unwrap()
            ),
            "{row:?} {record}"
        );
        assert_eq!(row[4], record["action"].as_str().unwrap());
        let symbols: Vec<(String, f64)> = row[5]
            .split(';')
            .map(|pair| {
                let (name, score) = pair.split_once('=').unwrap();
                (name.to_owned(), score.parse().unwrap())
            })
            .collect();
        let expected: Vec<(String, f64)> = record["symbols"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, score)| (name.clone(), score.as_f64().unwrap()))
            .collect();
        assert_eq!(symbols.len(), expected.len());
        for ((name, score), (expected_name, expected_score)) in symbols.iter().zip(&expected) {
            assert_eq!(name, expected_name);
            assert!(
                close(*score, *expected_score),
                "{name}: {score} {expected_score}"
            );
        }
    }
}

#[test]
fn one_thread_and_four_write_the_same_bytes_across_batches() {
    let t = Trained::new();
    let dir = t.dir("in");
    // More than one 512-message batch, so batch boundaries are crossed.
    write_mbox(&dir.join("a.mbox"), &messages(0..600));
    let tree = t.dir("in/tree");
    for i in 600..700 {
        std::fs::write(tree.join(format!("{i:04}.eml")), message(i)).unwrap();
    }
    for format in ["jsonl", "csv"] {
        let one = t.rescore(&["--format", format, "--threads", "1"], &[&dir]);
        let four = t.rescore(&["--format", format, "--threads", "4"], &[&dir]);
        assert!(one.status.success(), "{}", describe(&one));
        assert!(four.status.success(), "{}", describe(&four));
        assert!(one.stdout == four.stdout, "{format} output differs");
        let lines = String::from_utf8_lossy(&one.stdout).lines().count();
        assert_eq!(lines, 700 + usize::from(format == "csv"));
    }
}

#[test]
fn filters_select_records_and_limit_stops_early() {
    let t = Trained::new();
    let mbox = t.dir("in").join("box.mbox");
    write_mbox(&mbox, &messages(0..120));
    let all = t.records(&[], &[&mbox]);
    assert_eq!(all.len(), 120);

    let rejects = t.records(&["--only-action", "reject"], &[&mbox]);
    let expected: Vec<&Value> = all.iter().filter(|r| r["action"] == "reject").collect();
    assert_eq!(rejects.len(), 3, "GTUBE in messages 0, 50 and 100");
    assert_eq!(rejects.iter().collect::<Vec<_>>(), expected);

    let either = t.records(
        &["--only-action", "reject", "--only-action", "no_action"],
        &[&mbox],
    );
    let expected = all
        .iter()
        .filter(|r| r["action"] == "reject" || r["action"] == "no action")
        .count();
    assert_eq!(either.len(), expected);

    let high = t.records(&["--min-score", "1.5"], &[&mbox]);
    let expected: Vec<&Value> = all
        .iter()
        .filter(|r| r["score"].as_f64().unwrap() >= 1.5)
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(high.iter().collect::<Vec<_>>(), expected);

    let negative = t.records(&["--min-score", "-100"], &[&mbox]);
    assert_eq!(negative.len(), 120);

    let limited = t.records(&["--limit", "7"], &[&mbox]);
    assert_eq!(limited, all[..7]);
    // The limit counts messages, not records written.
    let limited = t.records(&["--limit", "60", "--only-action", "reject"], &[&mbox]);
    assert_eq!(limited.len(), 2);

    let output = t.rescore(&["--only-action", "spam-ish"], &[&mbox]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

#[test]
fn a_missing_path_fails_by_name_and_the_rest_is_scored() {
    let t = Trained::new();
    let dir = t.dir("in");
    let first = dir.join("first.eml");
    let last = dir.join("last.mbox");
    std::fs::write(&first, message(1)).unwrap();
    write_mbox(&last, &messages(2..5));
    let missing = dir.join("no-such-archive.mbox");

    let output = t.rescore(&[], &[&first, &missing, &last]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let records = json_records(&output);
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["path"], first.to_str().unwrap());
    assert!(
        records[1..]
            .iter()
            .all(|r| r["path"] == last.to_str().unwrap())
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no-such-archive.mbox"))
        .collect();
    assert!(
        named.len() >= 2,
        "reported when it happens and in the summary: {stderr}"
    );
    assert!(stderr.contains("1 failed"), "{stderr}");
    assert!(stderr.contains("failures:"), "{stderr}");
}

#[test]
fn the_summary_goes_to_stderr_and_output_to_a_file_when_asked() {
    let t = Trained::new();
    let mbox = t.dir("in").join("box.mbox");
    write_mbox(&mbox, &messages(0..30));

    let output = t.rescore(&[], &[&mbox]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(json_records(&output).len(), 30);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "rescored 30 messages",
        "messages/s",
        "actions:",
        "no action",
        "reject",
        "scores:",
        ">= 15",
        "top symbols:",
        "BAYES_SPAM",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing: {stderr}");
    }

    let file = t.root.path().join("out.csv");
    let output = t.rescore(
        &["--format", "csv", "--output", file.to_str().unwrap()],
        &[&mbox],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout.is_empty());
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 31);
}

#[test]
fn network_flag_is_accepted() {
    // With --network the DNS checks run against the system's resolver
    // (bounded by network.budget_ms); whatever it answers, or fails to,
    // every message still gets its record.
    let t = Trained::new();
    let file = t.dir("in").join("m.eml");
    std::fs::write(&file, message(1)).unwrap();
    let output = t.rescore(&["--network"], &[&file]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(json_records(&output).len(), 1);
}
