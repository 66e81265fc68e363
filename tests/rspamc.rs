#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `rspamc` client (Debian package `rspamd`) against `chaff serve`.
//! Only the client runs; never the rspamd daemon. Without rspamc these
//! tests fail (CI installs it): they do not skip.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Daemon, HAM_WORDS, SPAM_WORDS, Scratch, corpus, describe, get, rspamc};

/// Runs rspamc, expects exit status 0, returns stdout.
fn rspamc_ok(addr: SocketAddr, args: &[&str]) -> String {
    let output = rspamc(addr, args);
    assert!(
        output.status.success(),
        "rspamc {args:?} failed\n{}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn has_line(text: &str, wanted: &str) -> bool {
    text.lines().any(|line| line.trim_end() == wanted)
}

#[track_caller]
fn assert_line(text: &str, wanted: &str) {
    assert!(
        has_line(text, wanted),
        "expected the line {wanted:?} in rspamc's output:\n{text}"
    );
}

fn start() -> (Scratch, Daemon) {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    (scratch, daemon)
}

#[test]
fn rspamc_symbols_on_gtube() {
    let (_s, daemon) = start();
    let gtube = corpus("gtube.eml");
    // `symbols` is rspamc's default command.
    for args in [vec![path_str(&gtube)], vec!["symbols", path_str(&gtube)]] {
        let out = rspamc_ok(daemon.worker, &args);
        assert!(
            out.starts_with(&format!("Results for file: {} (", gtube.display())),
            "{out}"
        );
        assert_line(&out, "[Metric: default]");
        assert_line(&out, "Action: reject");
        assert_line(&out, "Spam: true");
        assert_line(&out, "Score: 15.00 / 15.00");
        assert_line(&out, "Symbol: GTUBE (0.00)");
        assert_line(&out, "Message-ID: fixture-0107@example.org");
    }
}

#[test]
fn rspamc_json_output() {
    let (_s, daemon) = start();
    let out = rspamc_ok(
        daemon.worker,
        &["-j", "symbols", path_str(&corpus("gtube.eml"))],
    );
    let value: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("rspamc -j printed invalid JSON ({e}):\n{out}"));
    assert_eq!(value["action"], "reject", "{out}");
    assert!(value["score"].is_number(), "{out}");
    assert_eq!(value["score"].as_f64(), Some(15.0), "{out}");
    assert!(value["symbols"]["GTUBE"].is_object(), "{out}");
}

#[test]
fn rspamc_learn_relearn_and_stat() {
    let (_s, daemon) = start();
    let c = daemon.controller;
    let message = corpus("spam-plain.eml");
    let file = path_str(&message);

    let out = rspamc_ok(c, &["learn_spam", file]);
    assert_line(&out, "success = true;");

    let out = rspamc_ok(c, &["learn_spam", file]);
    assert!(
        out.contains("has been already learned as spam, ignore it"),
        "second learn_spam:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("error = \"<") && l.ends_with("ignore it\";")),
        "{out}"
    );
    assert!(!has_line(&out, "success = true;"), "{out}");

    // The other class relearns.
    let out = rspamc_ok(c, &["learn_ham", file]);
    assert_line(&out, "success = true;");
    let out = rspamc_ok(c, &["learn_ham", file]);
    assert!(
        out.contains("has been already learned as ham, ignore it"),
        "second learn_ham:\n{out}"
    );
    let ham = corpus("ham-plain.eml");
    let out = rspamc_ok(c, &["learn_ham", path_str(&ham)]);
    assert_line(&out, "success = true;");
    let out = rspamc_ok(c, &["learn_spam", path_str(&corpus("gtube.eml"))]);
    assert_line(&out, "success = true;");

    // One scan so the counters move.
    rspamc_ok(daemon.worker, &[path_str(&corpus("gtube.eml"))]);

    let out = rspamc_ok(c, &["stat"]);
    assert!(out.starts_with("Results for command: stat ("), "{out}");
    assert_line(&out, "Messages scanned: 1");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Statfile: BAYES_SPAM") && l.contains("learned: 1;")),
        "stat should show BAYES_SPAM learned: 1\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("Statfile: BAYES_HAM") && l.contains("learned: 2;")),
        "stat should show BAYES_HAM learned: 2\n{out}"
    );
    assert_line(&out, "Total learns: 3");

    // stat_reset prints the figures, then zeroes the counters.
    let out = rspamc_ok(c, &["stat_reset"]);
    assert_line(&out, "Messages scanned: 1");
    let out = rspamc_ok(c, &["stat"]);
    assert_line(&out, "Messages scanned: 0");
    // …but not what the model learned.
    assert!(
        out.lines()
            .any(|l| l.starts_with("Statfile: BAYES_SPAM") && l.contains("learned: 1;")),
        "{out}"
    );
}

#[test]
fn rspamc_counters_and_uptime() {
    let (_s, daemon) = start();
    rspamc_ok(daemon.worker, &[path_str(&corpus("gtube.eml"))]);
    let out = rspamc_ok(daemon.controller, &["counters"]);
    assert!(out.starts_with("Results for command: counters ("), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("| GTUBE ") && l.trim_end().ends_with('|')),
        "counters should list GTUBE:\n{out}"
    );
    let out = rspamc_ok(daemon.controller, &["-j", "counters"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The default ruleset may add symbols of its own beside GTUBE.
    let gtube = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["symbol"] == "GTUBE")
        .unwrap_or_else(|| panic!("no GTUBE row: {out}"));
    assert_eq!(gtube["hits"], 1, "{out}");

    let out = rspamc_ok(daemon.controller, &["uptime"]);
    assert!(out.starts_with("Results for command: uptime ("), "{out}");
    // rspamc 3.4 prints a literal `%s` here (a client bug); check the labels.
    assert!(
        out.lines().any(|l| l.starts_with("Rspamd version:")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("Uptime: ")), "{out}");
}

/// `rspamc fuzzy_add -f 1 -w 10` of the spam fixture, which it returns.
fn report_spam_to_fuzzy_list_1(daemon: &Daemon) -> PathBuf {
    let spam = corpus("spam-plain.eml");
    let out = rspamc_ok(
        daemon.controller,
        &["fuzzy_add", "-f", "1", "-w", "10", path_str(&spam)],
    );
    assert_line(&out, "success = true;");
    spam
}

#[test]
fn rspamc_fuzzy_add_then_scan_then_fuzzy_del() {
    let (_s, mut daemon) = start();
    let spam = report_spam_to_fuzzy_list_1(&daemon);
    let out = rspamc_ok(daemon.worker, &["symbols", path_str(&spam)]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Symbol: FUZZY_DENIED (12.00)[1:") && l.ends_with(":100%]")),
        "{out}"
    );
    let out = rspamc_ok(
        daemon.controller,
        &["fuzzy_del", "-f", "1", path_str(&spam)],
    );
    assert_line(&out, "success = true;");
    let out = rspamc_ok(daemon.worker, &["symbols", path_str(&spam)]);
    assert!(!out.contains("FUZZY_DENIED"), "{out}");
    // A flag with no list is refused, and the daemon keeps serving.
    let output = rspamc(
        daemon.controller,
        &["fuzzy_add", "-f", "77", path_str(&spam)],
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert_line(&out, "HTTP error: 400, Bad Request");
    assert!(daemon.is_running());
    common::assert_pings(daemon.worker);
}

#[test]
fn rspamc_fuzzy_delhash_removes_the_hash_a_scan_showed() {
    let (_s, daemon) = start();
    let spam = report_spam_to_fuzzy_list_1(&daemon);
    // `Symbol: FUZZY_DENIED (12.00)[1:3f9a2c1b:100%]`: the admin copies the
    // hash prefix from the options.
    let out = rspamc_ok(daemon.worker, &["symbols", path_str(&spam)]);
    let prefix = out
        .lines()
        .find_map(|l| l.strip_prefix("Symbol: FUZZY_DENIED (12.00)[1:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no FUZZY_DENIED option in {out}"))
        .to_owned();
    assert_eq!(prefix.len(), 8, "{out}");
    // A malformed hash is refused, and nothing is deleted.
    let output = rspamc(
        daemon.controller,
        &["fuzzy_delhash", "-f", "1", "not-a-hash"],
    );
    assert_line(
        &String::from_utf8_lossy(&output.stdout),
        "HTTP error: 400, Bad Request",
    );
    let out = rspamc_ok(daemon.worker, &["symbols", path_str(&spam)]);
    assert!(out.contains("FUZZY_DENIED"), "{out}");
    let out = rspamc_ok(daemon.controller, &["fuzzy_delhash", "-f", "1", &prefix]);
    assert_line(&out, "success = true;");
    let out = rspamc_ok(daemon.worker, &["symbols", path_str(&spam)]);
    assert!(!out.contains("FUZZY_DENIED"), "{out}");
}

#[test]
fn rspamc_envelope_flags_reach_the_server() {
    let (_s, daemon) = start();
    let gtube = corpus("gtube.eml");
    let spam = corpus("spam-plain.eml");
    let out = rspamc_ok(
        daemon.worker,
        &[
            "-i",
            "192.0.2.44",
            "-F",
            "sender@example.net",
            "-r",
            "first@example.org",
            "-r",
            "second@example.org",
            "--helo",
            "mx.example.net",
            "--hostname",
            "mail.example.net",
            "-u",
            "someuser",
            "-d",
            "deliver@example.org",
            "-p",
            "-z",
            "-n",
            "2",
            "symbols",
            path_str(&gtube),
            path_str(&spam),
        ],
    );
    assert!(
        out.contains(&format!("Results for file: {} (", gtube.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("Results for file: {} (", spam.display())),
        "{out}"
    );
    assert_line(&out, "Action: reject");
    assert_line(&out, "Symbol: GTUBE (0.00)");
    assert_eq!(out.matches("[Metric: default]").count(), 2, "{out}");

    // The envelope arrived: the history shows it for both scans.
    let history = get(daemon.controller, "/history", &[]).json();
    let rows = history["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history}");
    for row in rows {
        assert_eq!(row["ip"], "192.0.2.44", "{row}");
        assert_eq!(row["sender_smtp"], "sender@example.net", "{row}");
        assert_eq!(
            row["rcpt_smtp"],
            serde_json::json!(["first@example.org", "second@example.org"]),
            "{row}"
        );
    }
    // -z compressed the bodies; the server saw the plain message.
    let gtube_row = rows
        .iter()
        .find(|r| r["message-id"] == "fixture-0107@example.org")
        .unwrap();
    assert_eq!(
        gtube_row["size"],
        std::fs::metadata(&gtube).unwrap().len(),
        "{gtube_row}"
    );
}

#[test]
fn rspamc_scans_a_directory() {
    let (_s, daemon) = start();
    let dir = corpus("maildir-sample/cur");
    let out = rspamc_ok(daemon.worker, &[path_str(&dir)]);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(
        out.matches("Results for file: ").count(),
        files.len(),
        "{out}"
    );
    for file in files {
        let path = file.unwrap().path();
        assert!(
            out.contains(&format!("Results for file: {} (", path.display())),
            "{out}"
        );
    }
    assert_line(&out, "Message-ID: maildir-cur-1@example.org");
    assert_line(&out, "Action: no action");
}

#[test]
fn rspamc_learn_is_seen_by_the_next_scan() {
    let (scratch, daemon) = start();
    let spam_dir = scratch.path().join("train-spam");
    let ham_dir = scratch.path().join("train-ham");
    common::write_synthetic(&spam_dir, "spam", 220, SPAM_WORDS, 1);
    common::write_synthetic(&ham_dir, "ham", 220, HAM_WORDS, 2);

    // Below min_learns nothing classifies yet.
    let probe = scratch.path().join("probe.eml");
    let mut rng = common::Rng::new(99);
    std::fs::write(
        &probe,
        common::synthetic_message("probe", 0, SPAM_WORDS, &mut rng),
    )
    .unwrap();
    let out = rspamc_ok(daemon.worker, &[path_str(&probe)]);
    assert!(!out.contains("BAYES_SPAM"), "{out}");

    let out = rspamc_ok(daemon.controller, &["learn_spam", path_str(&spam_dir)]);
    assert_eq!(out.matches("success = true;").count(), 220, "{out}");
    let out = rspamc_ok(daemon.controller, &["learn_ham", path_str(&ham_dir)]);
    assert_eq!(out.matches("success = true;").count(), 220, "{out}");

    let out = rspamc_ok(daemon.worker, &[path_str(&probe)]);
    assert!(
        out.lines().any(|l| l.starts_with("Symbol: BAYES_SPAM (")),
        "a new spammy message should get BAYES_SPAM right after the learns:\n{out}"
    );
    let mut rng = common::Rng::new(7);
    let hammy = scratch.path().join("hammy.eml");
    std::fs::write(
        &hammy,
        common::synthetic_message("hammy", 0, HAM_WORDS, &mut rng),
    )
    .unwrap();
    let out = rspamc_ok(daemon.worker, &[path_str(&hammy)]);
    assert!(
        out.lines().any(|l| l.starts_with("Symbol: BAYES_HAM (")),
        "{out}"
    );

    let out = rspamc_ok(daemon.controller, &["stat"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Statfile: BAYES_SPAM") && l.contains("learned: 220;")),
        "{out}"
    );
}
