//! Rules and maps through the engine and the command line: weights from
//! rule files and config, reload on file change, maps ending the scan,
//! `chaff rules check|stats`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use chaff::config::Config;
use chaff::message::Envelope;
use chaff::{Action, Engine};

const SPAMMY: &str =
    "From: x@y.example\nSubject: cheap pills\nMessage-ID: <a@b>\n\nbuy cheap pills now\n";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    // Make the change visible to an mtime check however fast the test runs.
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(rand_secs()))
        .unwrap();
}

fn rand_secs() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(10);
    NEXT.fetch_add(10, Ordering::Relaxed)
}

fn rule(symbol: &str, pattern: &str, weight: f64) -> String {
    format!(
        "[[rule]]\nsymbol = \"{symbol}\"\nkind = \"body\"\npattern = '''{pattern}'''\nweight = {weight}\n"
    )
}

fn config(extra: &str) -> Config {
    Config::from_toml_over_defaults(extra).unwrap()
}

fn engine(dir: &Path, config_text: &str) -> Engine {
    Engine::open(config(config_text), &dir.join("data")).unwrap()
}

fn symbols(engine: &Engine, raw: &str) -> Vec<(String, f64)> {
    engine
        .scan(raw.as_bytes(), &Envelope::default())
        .verdict
        .symbols
        .into_iter()
        .map(|s| (s.name, s.score))
        .collect()
}

#[test]
fn rule_weights_come_from_files_and_config_wins() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.toml");
    write(&rules, &rule("LOCAL_PILLS", "cheap pills", 2.5));
    let paths = format!("[rules]\nbuiltin = false\npaths = [{:?}]\n", rules);
    let found = symbols(&engine(dir.path(), &paths), SPAMMY);
    assert!(found.contains(&("LOCAL_PILLS".into(), 2.5)), "{found:?}");

    let overridden = format!("{paths}\n[symbols.LOCAL_PILLS]\nweight = 7.0\n");
    let found = symbols(&engine(dir.path(), &overridden), SPAMMY);
    assert!(found.contains(&("LOCAL_PILLS".into(), 7.0)), "{found:?}");

    let off = format!("[rules]\nenabled = false\npaths = [{:?}]\n", rules);
    assert!(symbols(&engine(dir.path(), &off), SPAMMY).is_empty());
}

#[test]
fn changed_rule_files_reload_and_broken_ones_keep_the_old_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.toml");
    write(&rules, &rule("OLD_RULE", "cheap", 1.0));
    let text = format!(
        "[rules]\nbuiltin = false\nreload_check_secs = 0\npaths = [{:?}]\n",
        rules
    );
    let engine = engine(dir.path(), &text);
    assert_eq!(symbols(&engine, SPAMMY)[0].0, "OLD_RULE");

    write(&rules, &rule("NEW_RULE", "pills", 1.0));
    assert_eq!(symbols(&engine, SPAMMY)[0].0, "NEW_RULE");

    write(&rules, &rule("BROKEN", "pills(", 1.0));
    assert_eq!(symbols(&engine, SPAMMY)[0].0, "NEW_RULE");
}

#[test]
fn reconfigure_swaps_rules_atomically_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("a.toml");
    write(&rules, &rule("FIRST", "cheap", 1.0));
    let text = format!("[rules]\nbuiltin = false\npaths = [{:?}]\n", rules);
    let mut engine = engine(dir.path(), &text);

    let bad = dir.path().join("bad.toml");
    write(
        &bad,
        "[[rule]]\nsymbol = \"M\"\nkind = \"meta\"\nexpression = \"FIRST && NOPE\"\n",
    );
    let broken = config(&format!(
        "[rules]\nbuiltin = false\npaths = [{:?}, {:?}]\n",
        rules, bad
    ));
    let err = engine.reconfigure(broken).unwrap_err().to_string();
    assert!(err.contains("bad.toml:2") && err.contains("NOPE"), "{err}");
    assert_eq!(symbols(&engine, SPAMMY)[0].0, "FIRST");

    write(&bad, &rule("SECOND", "pills", 1.0));
    engine
        .reconfigure(config(&format!(
            "[rules]\nbuiltin = false\npaths = [{:?}, {:?}]\n",
            rules, bad
        )))
        .unwrap();
    let names: Vec<String> = symbols(&engine, SPAMMY).into_iter().map(|s| s.0).collect();
    assert_eq!(names, vec!["FIRST", "SECOND"]);
}

#[test]
fn a_reload_keeps_the_byte_grams_off() {
    // Review found SIGHUP turned them on (the tokenizer was built in two
    // places). With the count-based Bayes scoring, a learn after a reload
    // must still write no gram table.
    let dir = tempfile::tempdir().unwrap();
    let config = config("[classifier]\nenabled = false\n");
    assert_eq!(config.bayes.max_grams, 0);
    let mut engine = Engine::open_for_learning(config.clone(), &dir.path().join("data")).unwrap();
    engine.reconfigure(config).unwrap();
    engine
        .learn(SPAMMY.as_bytes(), chaff::store::Class::Spam)
        .unwrap();
    engine.commit().unwrap();
    engine.compact().unwrap();
    let stats = engine.store_stats();
    assert!(stats.model_tokens > 0, "{stats:?}");
    assert_eq!(stats.gram_buckets, 0, "{stats:?}");
}

#[test]
fn maps_add_symbols_or_force_an_action_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("bad-ips.txt"),
        "# deny\n192.0.2.0/24\n2001:db8::/32\n",
    );
    write(&dir.path().join("friends.txt"), "example.org\n");
    write(&dir.path().join("hosts.txt"), "*.evil.example\n");
    let maps = dir.path().join("maps.toml");
    write(
        &maps,
        "[[map]]\nsymbol = \"DENY_IP\"\nkind = \"ip\"\nfile = \"bad-ips.txt\"\naction = \"reject\"\n\
         [[map]]\nsymbol = \"FRIEND\"\nkind = \"mail_from\"\nfile = \"friends.txt\"\nweight = -3.0\n\
         [[map]]\nsymbol = \"EVIL_LINK\"\nkind = \"url_host\"\nmatch = \"glob\"\nfile = \"hosts.txt\"\nweight = 4.0\n",
    );
    let text = format!("[rules]\nbuiltin = false\npaths = [{:?}]\n", maps);
    let engine = engine(dir.path(), &text);

    let mut envelope = Envelope {
        client_ip: Some("2001:db8::7".parse().unwrap()),
        ..Envelope::default()
    };
    let scan = engine.scan(SPAMMY.as_bytes(), &envelope);
    assert_eq!(scan.verdict.action, Action::Reject);
    assert_eq!(scan.verdict.forced_by.as_deref(), Some("DENY_IP"));
    assert!(scan.bayes.is_err());

    envelope.client_ip = Some("198.51.100.1".parse().unwrap());
    envelope.mail_from = Some("<bob@mail.example.org>".into());
    let raw = "Subject: x\n\nsee http://www.evil.example/x\n";
    let scan = engine.scan(raw.as_bytes(), &envelope);
    let found: Vec<(String, f64)> = scan
        .verdict
        .symbols
        .iter()
        .map(|s| (s.name.clone(), s.score))
        .collect();
    assert_eq!(
        found,
        vec![("EVIL_LINK".into(), 4.0), ("FRIEND".into(), -3.0)]
    );
}

fn chaff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn rules_check_reports_kinds_and_names_bad_lines() {
    let out = chaff(&["rules", "check"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("body") && text.contains("meta") && text.contains("total"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    write(
        &bad,
        &format!("# one rule\n\n{}", rule("BAD", "(unclosed", 1.0)),
    );
    let config = dir.path().join("chaff.toml");
    write(&config, &format!("[rules]\npaths = [{:?}]\n", bad));
    let out = chaff(&["--config", config.to_str().unwrap(), "rules", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6") && err.contains("bad regex for BAD"),
        "{err}"
    );
}

#[test]
fn rules_check_loads_spamassassin_files_and_counts_skips() {
    let dir = tempfile::tempdir().unwrap();
    let cf = dir.path().join("local.cf");
    write(
        &cf,
        "header LOCAL_SUBJ Subject =~ /cheap/i\nscore LOCAL_SUBJ 3\n\
         body LOCAL_EVAL eval:check_stuff()\nbody LOCAL_LOOK /cheap(?=\\s+pills)/\n\
         meta LOCAL_META LOCAL_SUBJ && LOCAL_EVAL\n",
    );
    let out = chaff(&["rules", "check", "--spamassassin", cf.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("eval: check_stuff") || text.contains("eval"),
        "{text}"
    );
    assert!(text.contains("1 by fancy-regex"), "{text}");
    assert!(text.contains("meta"), "{text}");

    let spam = dir.path().join("spam.eml");
    write(&spam, SPAMMY);
    let out = chaff(&[
        "rules",
        "stats",
        "--spamassassin",
        cf.to_str().unwrap(),
        spam.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LOCAL_SUBJ") && text.contains("LOCAL_LOOK"),
        "{text}"
    );
}

#[test]
fn network_evals_are_not_run_and_metas_naming_them_still_fire() {
    // As SpamAssassin in a score set without network tests (chaff's default
    // is set 2): the DNS eval never fires, and a meta over it reads it as 0.
    let dir = tempfile::tempdir().unwrap();
    let cf = dir.path().join("local.cf");
    write(
        &cf,
        "header LOCAL_SUBJ Subject =~ /cheap/i\n\
         header LOCAL_DNSBL eval:check_rbl('local', 'bl.example.')\ntflags LOCAL_DNSBL net\n\
         meta LOCAL_UNLISTED LOCAL_SUBJ && !LOCAL_DNSBL\nscore LOCAL_UNLISTED 1\n",
    );
    let out = chaff(&["rules", "check", "--spamassassin", cf.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not run: 1 network evals"), "{text}");
    assert!(!text.contains("depends on"), "{text}");

    let config = dir.path().join("chaff.toml");
    write(
        &config,
        &format!("[rules]\nspamassassin = [{:?}]\n", cf.to_str().unwrap()),
    );
    let spam = dir.path().join("spam.eml");
    write(&spam, SPAMMY);
    let data = dir.path().join("data");
    let out = chaff(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "scan",
        "--json",
        spam.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LOCAL_UNLISTED") && !text.contains("LOCAL_DNSBL"),
        "{text}"
    );
}

/// A pattern whose backtracking explodes on this text: `(a|aa)+` splits the
/// run of `a`s before the `x` every way, and none is followed by itself
/// and `b` (the run after the `x` is one longer). Its relaxed form, the
/// back-reference loosened to what its group matches (`(a|aa)+x(a|aa)+b`),
/// matches, so fancy-regex does run on it.
const EXPLODING: &str = r"((a|aa)+)x\1b";
const EXPLODING_TEXT: &str = "From: x@y.example\nSubject: hello\nMessage-ID: <a@b>\n\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaxaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n";

#[test]
fn a_pattern_past_the_backtracking_limit_is_reported_not_taken_as_no_match() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.toml");
    write(
        &rules,
        &format!(
            "{}{}",
            rule("EXPLODES", EXPLODING, 1.0),
            rule("HELLO", "aaaa", 1.0)
        ),
    );
    let paths = format!("[rules]\nbuiltin = false\npaths = [{:?}]\n", rules);
    let engine = engine(dir.path(), &paths);
    let scan = engine.scan(EXPLODING_TEXT.as_bytes(), &Envelope::default());
    let names: Vec<&str> = scan
        .verdict
        .symbols
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(names.contains(&"HELLO"), "{names:?}");
    assert!(!names.contains(&"EXPLODES"), "{names:?}");
    let incomplete = scan
        .verdict
        .symbols
        .iter()
        .find(|s| s.name == "CHAFF_RULES_INCOMPLETE")
        .expect("the undecided rule is reported");
    assert_eq!(incomplete.options, vec!["backtrack-limit:EXPLODES"]);
    assert_eq!(incomplete.score, 0.0);

    // `chaff rules stats` counts it per rule.
    let message = dir.path().join("message.eml");
    write(&message, EXPLODING_TEXT);
    let config = dir.path().join("chaff.toml");
    write(&config, &paths);
    let out = chaff(&[
        "--config",
        config.to_str().unwrap(),
        "rules",
        "stats",
        message.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CHAFF_RULES_INCOMPLETE(backtrack-limit:EXPLODES)"),
        "{text}"
    );
}

#[test]
fn rules_stats_timing_names_the_costliest_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local.toml");
    write(&rules, &rule("EXPLODES", EXPLODING, 1.0));
    let config = dir.path().join("chaff.toml");
    write(&config, &format!("[rules]\npaths = [{:?}]\n", rules));
    let message = dir.path().join("message.eml");
    write(&message, EXPLODING_TEXT);
    let out = chaff(&[
        "--config",
        config.to_str().unwrap(),
        "rules",
        "stats",
        "--timing",
        "5",
        message.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("rules: ") && lines[0].contains("over 1 messages"),
        "{text}"
    );
    // Header, then at most five entries; the exploding pattern costs most.
    let entries = lines
        .iter()
        .position(|l| l.starts_with("slowest messages"))
        .unwrap_or(lines.len());
    assert!(entries <= 7, "{text}");
    assert!(lines[2].ends_with("EXPLODES (body, fancy-regex)"), "{text}");
    // Then the slowest messages, the one message named.
    assert_eq!(lines.len(), entries + 2, "{text}");
    assert!(
        lines[entries + 1].ends_with(message.to_str().unwrap()),
        "{text}"
    );
}
