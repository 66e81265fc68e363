#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `chaff` binary against temporary data directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// A `chaff` command over `data`, isolated from the caller's environment
/// and run from a scratch directory so nothing lands in the repository.
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

fn run(data: &Path, args: &[&str]) -> Output {
    chaff(data).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `learn` and returns its counts line, after checking its exit code.
fn learn(data: &Path, class: &str, files: &[PathBuf], code: i32) -> String {
    let mut command = chaff(data);
    command.arg("learn").arg(class).args(files);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
    let text = stdout(&output);
    text.lines()
        .find(|line| line.starts_with("learned "))
        .unwrap_or_else(|| panic!("no counts line\n{}", describe(&output)))
        .to_owned()
}

/// The counts part of a counts line, without the timing in parentheses.
fn counts(line: &str) -> &str {
    line.split(" (").next().unwrap()
}

struct Scratch {
    _root: tempfile::TempDir,
    data: PathBuf,
}

fn scratch() -> Scratch {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    Scratch { _root: root, data }
}

#[test]
fn learn_reports_learned_known_and_relearned() {
    let s = scratch();
    let spam = [corpus("spam-plain.eml"), corpus("gtube.eml")];
    let ham = [corpus("ham-plain.eml"), corpus("utf8.eml")];

    let line = learn(&s.data, "--spam", &spam, 0);
    assert_eq!(
        counts(&line),
        "learned 2 as spam, already known 0, relearned 0, failed 0",
        "{line}"
    );
    assert!(line.contains("(2 messages in "), "{line}");
    let line = learn(&s.data, "--ham", &ham, 0);
    assert_eq!(
        counts(&line),
        "learned 2 as ham, already known 0, relearned 0, failed 0"
    );

    let line = learn(&s.data, "--spam", &spam, 0);
    assert_eq!(
        counts(&line),
        "learned 0 as spam, already known 2, relearned 0, failed 0"
    );
    let line = learn(&s.data, "--ham", &ham, 0);
    assert_eq!(
        counts(&line),
        "learned 0 as ham, already known 2, relearned 0, failed 0"
    );

    let line = learn(&s.data, "--ham", &[corpus("spam-plain.eml")], 0);
    assert_eq!(
        counts(&line),
        "learned 0 as ham, already known 0, relearned 1, failed 0"
    );

    let stat = model_stat_json(&s.data);
    assert_eq!(stat["spam_learns"], 1, "{stat}");
    assert_eq!(stat["ham_learns"], 3, "{stat}");
    assert_eq!(stat["learned_messages"], 4, "{stat}");
}

#[test]
fn learning_binary_junk_fails_naming_the_file() {
    let s = scratch();
    let junk = corpus("binary-junk.bin");
    let mut command = chaff(&s.data);
    command.args(["learn", "--spam"]).arg(&junk);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|line| line.starts_with("failed: ") && line.contains(&*junk.to_string_lossy())),
        "{}",
        describe(&output)
    );
    assert!(text.contains("learned 0 as spam"), "{text}");
    assert!(text.contains("failed 1"), "{text}");
}

#[test]
fn learning_a_mix_of_good_and_bad_files_learns_the_good_ones() {
    let s = scratch();
    let line = learn(
        &s.data,
        "--ham",
        &[
            corpus("ham-plain.eml"),
            corpus("binary-junk.bin"),
            corpus("utf8.eml"),
        ],
        1,
    );
    assert_eq!(
        counts(&line),
        "learned 2 as ham, already known 0, relearned 0, failed 1"
    );
}

#[test]
fn learn_reads_mbox_and_maildir() {
    let s = scratch();
    let line = learn(&s.data, "--spam", &[corpus("mbox-sample.mbox")], 0);
    assert_eq!(
        counts(&line),
        "learned 3 as spam, already known 0, relearned 0, failed 0"
    );
    let line = learn(&s.data, "--ham", &[corpus("maildir-sample")], 0);
    assert_eq!(
        counts(&line),
        "learned 2 as ham, already known 0, relearned 0, failed 0"
    );
    let stat = model_stat_json(&s.data);
    assert_eq!(stat["learned_messages"], 5, "{stat}");
}

#[test]
fn scan_rejects_gtube() {
    let s = scratch();
    let gtube = corpus("gtube.eml");
    let output = run(&s.data, &["scan", &gtube.to_string_lossy()]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.lines().any(|l| l == "Action: reject"), "{text}");
    assert!(text.contains("Symbol: GTUBE"), "{text}");

    let ham = corpus("ham-plain.eml");
    let output = run(&s.data, &["scan", &ham.to_string_lossy()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !stdout(&output).contains("Action: reject"),
        "{}",
        stdout(&output)
    );
}

fn scan_json(data: &Path, file: &Path) -> serde_json::Map<String, serde_json::Value> {
    let output = run(data, &["scan", "--json", &file.to_string_lossy()]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one message, one JSON line: {text}");
    match serde_json::from_str(lines[0]).unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}

#[test]
fn scan_json_has_rspamds_keys() {
    let s = scratch();
    let reply = scan_json(&s.data, &corpus("gtube.eml"));
    for key in [
        "is_skipped",
        "score",
        "required_score",
        "action",
        "symbols",
        "messages",
        "urls",
        "emails",
        "message-id",
        "time_real",
        "milter",
    ] {
        assert!(reply.contains_key(key), "no {key:?} in {reply:?}");
    }
    assert_eq!(reply["action"], "reject");
    assert_eq!(reply["is_skipped"], false);
    assert_eq!(reply["message-id"], "fixture-0107@example.org");
    assert!(reply["symbols"]["GTUBE"].is_object(), "{reply:?}");
    assert!(reply["score"].as_f64().unwrap() >= reply["required_score"].as_f64().unwrap());
    assert!(reply["time_real"].is_number());
    assert!(reply["milter"].is_object());
    assert!(reply["urls"].is_array() && reply["emails"].is_array());
    assert!(reply["messages"].is_object());
}

#[test]
fn scan_json_omits_message_id_when_there_is_none() {
    let s = scratch();
    let root = s.data.parent().unwrap();
    let file = root.join("no-id.eml");
    std::fs::write(
        &file,
        "From: a@example.com\nSubject: no id\n\nhello there\n",
    )
    .unwrap();
    let reply = scan_json(&s.data, &file);
    assert!(!reply.contains_key("message-id"), "{reply:?}");
    assert_eq!(reply["action"], "no action");
}

#[test]
fn scan_dash_reads_stdin() {
    let s = scratch();
    let mut child = chaff(&s.data)
        .args(["scan", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(corpus("gtube.eml")).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("Results for file: stdin"), "{text}");
    assert!(text.lines().any(|l| l == "Action: reject"), "{text}");
    assert!(
        text.contains("Message-ID: fixture-0107@example.org"),
        "{text}"
    );
}

fn model_stat_json(data: &Path) -> serde_json::Value {
    let output = run(data, &["model", "stat", "--json"]);
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn model_stat_prints_the_format_version() {
    let s = scratch();
    learn(&s.data, "--spam", &[corpus("spam-plain.eml")], 0);
    let output = run(&s.data, &["model", "stat"]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let version = format!("format version:    {}", chaff::store::FORMAT_VERSION);
    assert!(text.lines().any(|l| l.starts_with(&version)), "{text}");
    assert!(text.contains("learned spam:      1"), "{text}");

    let stat = model_stat_json(&s.data);
    assert_eq!(stat["format_version"], chaff::store::FORMAT_VERSION);
    assert_eq!(stat["spam_learns"], 1);
    assert_eq!(stat["checksum_ok"], true);
}

/// A config file beside `data` that turns the classifier off, so the
/// count-based Bayes scores and its counts are learned (with `extra`).
fn counting_config(data: &Path, extra: &str) -> PathBuf {
    let config = data.parent().unwrap().join("counting.toml");
    std::fs::write(&config, format!("[classifier]\nenabled = false\n{extra}")).unwrap();
    config
}

#[test]
fn model_compact_folds_the_journal_and_trains() {
    let s = scratch();
    let mbox = corpus("mbox-sample.mbox");
    let output = run(
        &s.data,
        &["learn", "--no-compact", "--spam", &mbox.to_string_lossy()],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let before = model_stat_json(&s.data);
    assert_eq!(before["untrained_learns"], 3, "{before}");
    assert_eq!(before["spam_samples"], 3, "{before}");
    assert_eq!(before["trained_at"], 0, "{before}");
    // The classifier scores, so no count-based Bayes counts are learned.
    assert_eq!(before["overlay_tokens"], 0, "{before}");
    let output = run(&s.data, &["model", "compact"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).starts_with("compacted: "),
        "{}",
        describe(&output)
    );
    let after = model_stat_json(&s.data);
    assert_eq!(after["spam_learns"], before["spam_learns"]);
    assert_eq!(after["learned_messages"], 3);
    assert_eq!(after["spam_samples"], 3, "{after}");
    assert_eq!(after["untrained_learns"], 0, "{after}");
    assert!(after["trained_at"].as_u64().unwrap() > 0, "{after}");
    assert_eq!(after["model_tokens"], 0, "{after}");
}

#[test]
fn model_compact_keeps_the_counts_of_the_count_based_bayes() {
    let s = scratch();
    let config = counting_config(&s.data, "");
    let mbox = corpus("mbox-sample.mbox");
    let learn = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args(["learn", "--no-compact", "--spam", &mbox.to_string_lossy()])
        .output()
        .unwrap();
    assert!(learn.status.success(), "{}", describe(&learn));
    let before = model_stat_json(&s.data);
    assert!(before["overlay_tokens"].as_u64().unwrap() > 0, "{before}");
    assert_eq!(before["model_tokens"], 0, "{before}");
    let output = run(&s.data, &["model", "compact"]);
    assert!(output.status.success(), "{}", describe(&output));
    let after = model_stat_json(&s.data);
    assert_eq!(after["learned_messages"], 3);
    assert!(after["model_tokens"].as_u64().unwrap() > 0, "{after}");
    assert_eq!(after["overlay_tokens"], 0, "{after}");
    // Its samples are kept for the classifier all the same.
    assert_eq!(after["spam_samples"], 3, "{after}");
}

#[test]
fn learn_leaves_a_compacted_model() {
    let s = scratch();
    learn(&s.data, "--spam", &[corpus("mbox-sample.mbox")], 0);
    let stat = model_stat_json(&s.data);
    assert_eq!(stat["untrained_learns"], 0, "{stat}");
    assert_eq!(stat["spam_samples"], 3, "{stat}");
    assert!(stat["trained_at"].as_u64().unwrap() > 0, "{stat}");
    assert_eq!(stat["gram_buckets"], 0, "{stat}");

    // The count-based Bayes' byte grams, when it scores and asks for them.
    let grams = scratch();
    let config = counting_config(&grams.data, "[bayes]\nmax_grams = 25\n");
    learn_files(
        &grams.data,
        &config,
        "--spam",
        &[corpus("mbox-sample.mbox")],
    );
    let stat = model_stat_json(&grams.data);
    assert_eq!(stat["overlay_tokens"], 0, "{stat}");
    assert!(stat["model_tokens"].as_u64().unwrap() > 0, "{stat}");
    assert_eq!(
        stat["gram_buckets"],
        1u64 << chaff::extract::grams::GRAM_BITS
    );
    assert!(stat["gram_buckets_used"].as_u64().unwrap() > 0, "{stat}");
}

/// Learns two spam and two ham fixtures into `data` with `config`.
fn learn_two_of_each(data: &std::path::Path, config: &std::path::Path) {
    learn_files(
        data,
        config,
        "--spam",
        &[corpus("spam-plain.eml"), corpus("html-only.eml")],
    );
    learn_files(
        data,
        config,
        "--ham",
        &[corpus("ham-plain.eml"), corpus("utf8.eml")],
    );
}

#[test]
fn explain_shows_word_tokens_and_byte_grams_with_their_counts() {
    let s = scratch();
    let config = s.data.parent().unwrap().join("chaff.toml");
    std::fs::write(
        &config,
        "[classifier]\nenabled = false\n[bayes]\nmin_learns = 1\nmax_tokens = 5\nmax_grams = 5\n",
    )
    .unwrap();
    learn_two_of_each(&s.data, &config);
    let output = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args([
            "scan",
            "--explain",
            &corpus("spam-plain.eml").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("Statistics: spam probability"), "{text}");
    // Rows are `spam ham p text`; the strongest evidence for a learned spam
    // is what no ham has.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 4 && cols[2].starts_with("0."))
        .collect();
    let grams = rows
        .iter()
        .filter(|cols| cols[3].starts_with("header:") || cols[3].starts_with("body:"))
        .count();
    assert_eq!(rows.len(), 10, "{text}");
    assert_eq!(grams, 5, "{text}");
    assert!(
        rows.iter().all(|cols| cols[0] != "0" && cols[1] == "0"),
        "{text}"
    );
}

#[test]
fn explain_shows_the_classifiers_features_and_the_rules_fitted_weights() {
    let s = scratch();
    let config = s.data.parent().unwrap().join("chaff.toml");
    std::fs::write(&config, "[classifier]\nmin_learns = 1\n").unwrap();
    learn_two_of_each(&s.data, &config);
    let stat = model_stat_json(&s.data);
    assert_eq!(
        (stat["spam_samples"].as_u64(), stat["ham_samples"].as_u64()),
        (Some(2), Some(2)),
        "{stat}"
    );
    assert!(stat["trained_at"].as_u64().unwrap() > 0, "{stat}");
    let output = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args([
            "scan",
            "--explain",
            "--json",
            &corpus("spam-plain.eml").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let output = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args([
            "scan",
            "--explain",
            &corpus("spam-plain.eml").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("Classifier: spam probability"), "{text}");
    assert!(
        text.contains("BAYES_SPAM"),
        "a learned spam scores as spam: {text}"
    );
    // Rows are `points weight text`: features of both signs are listed
    // (with four samples the rules carry much of a learned spam's weight,
    // so its text features can lean either way), and byte grams are named
    // as such.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| {
            cols.len() >= 3
                && (cols[0].starts_with('+') || cols[0].starts_with('-'))
                && cols[0].contains('.')
        })
        .collect();
    assert!(!rows.is_empty(), "{text}");
    assert!(
        rows.windows(2).all(|w| {
            let points = |cols: &Vec<&str>| cols[0].parse::<f64>().unwrap().abs();
            points(&w[0]) >= points(&w[1])
        }),
        "rows are ranked by weight: {text}"
    );
    assert!(rows.iter().any(|cols| cols[2] == "bytes"), "{text}");
    assert!(
        rows.iter().all(|cols| {
            let (points, weight) = (cols[0].parse::<f64>(), cols[1].parse::<f64>());
            matches!((points, weight), (Ok(p), Ok(w)) if p == 0.0 || p.signum() == w.signum())
        }),
        "points and weight agree in sign: {text}"
    );
}

#[test]
fn an_unknown_config_key_fails_naming_it() {
    let s = scratch();
    let config = s.data.parent().unwrap().join("chaff.toml");
    std::fs::write(&config, "[actions]\nrejekt = 1\n").unwrap();
    let output = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args(["scan", &corpus("gtube.eml").to_string_lossy()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rejekt"), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}

#[test]
fn a_valid_config_file_is_used() {
    let s = scratch();
    let config = s.data.parent().unwrap().join("chaff.toml");
    // With GTUBE forcing nothing, the message is scored on its symbols alone.
    std::fs::write(
        &config,
        "[symbols.GTUBE]\nweight = 0.0\nforce_action = \"no action\"\n",
    )
    .unwrap();
    let output = chaff(&s.data)
        .arg("--config")
        .arg(&config)
        .args(["scan", &corpus("gtube.eml").to_string_lossy()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !stdout(&output).contains("Action: reject"),
        "{}",
        stdout(&output)
    );
}

/// One `chaff learn` run of `files` as `class` (`--spam` or `--ham`).
fn learn_files(data: &Path, config: &Path, class: &str, files: &[PathBuf]) {
    let output = chaff(data)
        .arg("--config")
        .arg(config)
        .arg("learn")
        .arg(class)
        .args(files)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

/// `scan --json` of the fixtures: each file's score and symbols.
fn scan_scores(data: &Path, config: &Path, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let output = chaff(data)
        .arg("--config")
        .arg(config)
        .args(["scan", "--json"])
        .args(files)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::json!({"score": record["score"], "symbols": record["symbols"]})
        })
        .collect()
}

#[test]
fn the_classifier_speaks_from_its_own_min_learns_not_count_bayes() {
    // `[bayes] min_learns` (200) is the count-based Bayes's; the
    // classifier's own, here 2, is what it waits for.
    let s = scratch();
    let config = s.data.parent().unwrap().join("chaff.toml");
    std::fs::write(&config, "[classifier]\nmin_learns = 2\n").unwrap();
    learn_two_of_each(&s.data, &config);
    for record in scan_scores(&s.data, &config, &[corpus("spam-plain.eml")]) {
        let symbols = record["symbols"].as_object().unwrap();
        assert!(
            symbols.contains_key("BAYES_SPAM") || symbols.contains_key("BAYES_HAM"),
            "{record}"
        );
    }
    std::fs::write(&config, "[classifier]\nmin_learns = 3\n").unwrap();
    for record in scan_scores(&s.data, &config, &[corpus("spam-plain.eml")]) {
        let symbols = record["symbols"].as_object().unwrap();
        assert!(!symbols.contains_key("BAYES_SPAM"), "{record}");
        assert!(!symbols.contains_key("BAYES_HAM"), "{record}");
    }
}

#[test]
fn a_young_model_scores_as_configured() {
    // Under min_learns (10 by default) the classifier is silent and every
    // rule scores its configured weight: the scores equal those of a data
    // dir that learned nothing.
    let learned = scratch();
    let empty = scratch();
    let config = learned.data.parent().unwrap().join("chaff.toml");
    std::fs::write(&config, "").unwrap();
    learn_two_of_each(&learned.data, &config);
    let files = [
        corpus("spam-plain.eml"),
        corpus("ham-plain.eml"),
        corpus("html-only.eml"),
    ];
    let young = scan_scores(&learned.data, &config, &files);
    let none = scan_scores(&empty.data, &config, &files);
    assert_eq!(young, none);
    for record in &young {
        let symbols = record["symbols"].as_object().unwrap();
        assert!(
            !symbols.contains_key("BAYES_SPAM") && !symbols.contains_key("BAYES_HAM"),
            "{record}"
        );
    }
}

#[test]
fn learn_order_through_the_cli_does_not_change_a_score() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("chaff.toml");
    std::fs::write(&config, "[classifier]\nmin_learns = 1\n").unwrap();
    let spam = [corpus("spam-plain.eml"), corpus("html-only.eml")];
    let ham = [corpus("ham-plain.eml"), corpus("utf8.eml")];
    let probe = [
        corpus("spam-plain.eml"),
        corpus("ham-plain.eml"),
        corpus("utf8.eml"),
    ];

    let spam_first = scratch();
    learn_files(&spam_first.data, &config, "--spam", &spam);
    learn_files(&spam_first.data, &config, "--ham", &ham);

    let ham_first = scratch();
    learn_files(&ham_first.data, &config, "--ham", &ham);
    learn_files(&ham_first.data, &config, "--spam", &spam);

    let interleaved = scratch();
    for (s, h) in spam.iter().zip(&ham).rev() {
        learn_files(&interleaved.data, &config, "--ham", std::slice::from_ref(h));
        learn_files(
            &interleaved.data,
            &config,
            "--spam",
            std::slice::from_ref(s),
        );
    }

    let expected = scan_scores(&spam_first.data, &config, &probe);
    assert!(
        expected[0]["symbols"]
            .as_object()
            .unwrap()
            .contains_key("BAYES_SPAM"),
        "the classifier speaks: {expected:?}"
    );
    assert_eq!(scan_scores(&ham_first.data, &config, &probe), expected);
    assert_eq!(scan_scores(&interleaved.data, &config, &probe), expected);
}
