#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two chaff nodes sharing their policy state through a real `redis-server`
//! on loopback (Debian's package; the test command installs it, and these
//! tests fail without it): one rate limit across both, a greylisted
//! triplet retried on the other node, a reply remembered on one and
//! trusted on the other, and Redis killed and restarted mid-run with no
//! failed scan.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Scratch, post};

struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is not installed ({e}): apt-get install redis-server (tools/test does)")
            });
        // Up to 400 tries, 20 s: a start-up timeout, not a measure.
        let listening = (0..400).any(|_| {
            let up = TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !up {
                std::thread::sleep(Duration::from_millis(50));
            }
            up
        });
        assert!(listening, "redis-server did not listen on {port}");
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node(redis: &Redis, extra: &str) -> (Scratch, Daemon) {
    let scratch = Scratch::with_config(&format!(
        "[redis]\nservers = [\"127.0.0.1:{}\"]\nretry_secs = 1\n{extra}",
        redis.port
    ));
    let daemon = scratch.serve();
    (scratch, daemon)
}

const MESSAGE: &[u8] = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hello\r\n\
Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <shared-1@example.com>\r\n\r\nThe report you asked for.\r\n";

/// A `/checkv2` scan through `worker` with these request headers: the
/// action and the symbol names.
fn scan(worker: SocketAddr, headers: &[(&str, &str)], message: &[u8]) -> (String, Vec<String>) {
    let reply = post(worker, "/checkv2", headers, message);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    let names = json["symbols"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    (json["action"].as_str().unwrap().to_owned(), names)
}

#[test]
fn one_rate_limit_holds_across_two_nodes() {
    let redis = Redis::start();
    let bucket = "[ratelimit.buckets.per_user]\nkey = \"user\"\nburst = 50\nrate = \"1 / 1h\"\n";
    let (_a_dir, a) = node(&redis, bucket);
    let (_b_dir, b) = node(&redis, bucket);
    let headers = [("User", "carol@example.com"), ("Rcpt", "x@example.org")];
    let mut accepted = 0;
    for i in 0..100 {
        let worker = if i % 2 == 0 { a.worker } else { b.worker };
        let (action, names) = scan(worker, &headers, MESSAGE);
        if action != "soft reject" {
            accepted += 1;
        } else {
            assert!(names.contains(&"RATELIMITED".to_owned()), "{names:?}");
        }
        assert!(
            !names.contains(&"POLICY_REDIS_DOWN".to_owned()),
            "{names:?}"
        );
    }
    // 50 a burst: within 2% (one message) of it across both nodes.
    assert!(
        (49..=51).contains(&accepted),
        "{accepted} accepted across two nodes"
    );
}

#[test]
fn a_triplet_greylisted_on_one_node_passes_its_retry_on_the_other_and_replies_are_shared() {
    let redis = Redis::start();
    let config = "[actions]\ngreylist = -100.0\n\
                  [greylist]\nenabled = true\ndelay_secs = 1\nretry_window_secs = 600\n";
    let (_a_dir, a) = node(&redis, config);
    let (_b_dir, b) = node(&redis, config);
    let incoming = [
        ("IP", "203.0.113.7"),
        ("From", "news@sender.example"),
        ("Rcpt", "u@example.org"),
    ];
    let (first, _) = scan(a.worker, &incoming, MESSAGE);
    assert_eq!(first, "soft reject");
    std::thread::sleep(Duration::from_millis(1100));
    let (retry, names) = scan(b.worker, &incoming, MESSAGE);
    assert_ne!(retry, "soft reject", "{names:?}");
    assert!(names.contains(&"GREYLIST".to_owned()), "{names:?}");

    // A user's mail leaves through A; the reply comes in through B.
    let (sent, _) = scan(
        a.worker,
        &[
            ("User", "alice@example.com"),
            ("Rcpt", "partner@far.example"),
        ],
        MESSAGE,
    );
    assert_ne!(sent, "soft reject");
    let reply = b"From: partner@far.example\r\nTo: alice@example.com\r\nSubject: Re: hello\r\n\
In-Reply-To: <shared-1@example.com>\r\n\r\nThanks.\r\n";
    let (_, names) = scan(
        b.worker,
        &[("IP", "198.51.100.3"), ("From", "partner@far.example")],
        reply,
    );
    assert!(names.contains(&"TRUSTED_REPLY".to_owned()), "{names:?}");
    assert!(names.contains(&"KNOWN_SENDER".to_owned()), "{names:?}");
}

#[test]
fn redis_killed_and_restarted_mid_run_fails_no_scan_and_gets_what_was_written_meanwhile() {
    let mut redis = Redis::start();
    let bucket = "[classifier]\nmin_learns = 1\n\
                  [ratelimit.buckets.per_user]\nkey = \"user\"\nburst = 1000\nrate = \"1 / 1h\"\n";
    let (scratch, a) = node(&redis, bucket);
    let (_b_dir, b) = node(&redis, bucket);
    let headers = [("User", "dave@example.com"), ("Rcpt", "x@example.org")];
    for _ in 0..3 {
        let (_, names) = scan(a.worker, &headers, MESSAGE);
        assert!(
            !names.contains(&"POLICY_REDIS_DOWN".to_owned()),
            "{names:?}"
        );
    }
    redis.kill();
    // Every scan still answers, on the node's own state, and says so.
    for _ in 0..3 {
        let (action, names) = scan(a.worker, &headers, MESSAGE);
        assert_ne!(action, "soft reject");
        assert!(names.contains(&"POLICY_REDIS_DOWN".to_owned()), "{names:?}");
    }
    let metrics = common::get(a.controller, "/metrics", &[]).text();
    assert!(metrics.contains("chaff_redis_up 0\n"), "{metrics}");
    // Learns acknowledged while Redis is down wait in A's outbox.
    learn_spam_and_ham(a.controller);
    // A new, empty Redis on the same port: after retry_secs the node uses
    // it again and first sends what it wrote meanwhile.
    let port = redis.port;
    drop(redis);
    let _redis = Redis::start_on(port);
    std::thread::sleep(Duration::from_millis(1200));
    let (_, names) = scan(a.worker, &headers, MESSAGE);
    assert!(
        !names.contains(&"POLICY_REDIS_DOWN".to_owned()),
        "{names:?}"
    );
    let output = scratch
        .chaff()
        .args([
            "policy",
            "--controller",
            &a.controller.to_string(),
            "list",
            "rl:",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    // Seven counted: three before, three during (sent back), one after.
    assert!(
        listed.contains("rl:per_user:dave@example.com\tlevel 7.0"),
        "{listed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = common::get(a.controller, "/metrics", &[]).text();
    assert!(metrics.contains("chaff_redis_up 1\n"), "{metrics}");
    // ...and reach B once Redis is back: no learn lost.
    let spam = common::corpus_bytes("spam-plain.eml");
    until_symbol(b.worker, &spam, "BAYES_");
}

/// `rspamc learn_spam` and `learn_ham` of the fixtures on `controller`.
fn learn_spam_and_ham(controller: SocketAddr) {
    for (command, file) in [
        ("learn_spam", "spam-plain.eml"),
        ("learn_ham", "ham-plain.eml"),
    ] {
        let output = common::rspamc(
            controller,
            &[command, common::corpus(file).to_str().unwrap()],
        );
        assert!(output.status.success(), "{}", common::describe(&output));
    }
}

/// Scans `message` on `worker` until a symbol starting with `prefix`
/// shows (giving up after about 20 s); returns how long that took, for
/// the log (the 1 s figure of issue #20 is read there, not asserted).
fn until_symbol(worker: SocketAddr, message: &[u8], prefix: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..1000 {
        let (_, names) = scan(worker, &[("IP", "192.0.2.8")], message);
        if names.iter().any(|n| n.starts_with(prefix)) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {prefix}* on the other node after 1,000 scans");
}

#[test]
fn a_learn_and_a_fuzzy_report_on_one_node_reach_the_other() {
    let redis = Redis::start();
    let (a_dir, a) = node(&redis, "[classifier]\nmin_learns = 1\n");
    let (_b_dir, b) = node(&redis, "[classifier]\nmin_learns = 1\n");
    let spam = common::corpus_bytes("spam-plain.eml");
    let ham = common::corpus_bytes("ham-plain.eml");
    let (_, names) = scan(b.worker, &[("IP", "192.0.2.8")], &spam);
    assert!(!names.iter().any(|n| n.starts_with("BAYES_")), "{names:?}");
    // The real client learns on A's controller.
    learn_spam_and_ham(a.controller);
    let learned = until_symbol(b.worker, &spam, "BAYES_");
    eprintln!("the learns on A changed B's verdict after {learned:?}");
    let (_, names) = scan(b.worker, &[("IP", "192.0.2.8")], &ham);
    assert!(names.iter().any(|n| n.starts_with("BAYES_")), "{names:?}");

    let output = common::rspamc(
        a.controller,
        &[
            "-f",
            "1",
            "-w",
            "10",
            "fuzzy_add",
            common::corpus("spam-plain.eml").to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", common::describe(&output));
    let reported = until_symbol(b.worker, &spam, "FUZZY_DENIED");
    eprintln!("the fuzzy report on A matched on B after {reported:?}");
    drop(a_dir);
}

#[test]
fn a_scan_on_one_node_shows_in_the_others_history() {
    let redis = Redis::start();
    let (_a_dir, a) = node(&redis, "");
    let (_b_dir, b) = node(&redis, "");
    let message =
        b"From: x@example.com\r\nTo: y@example.org\r\nSubject: seen on node A\r\n\r\nbody\r\n";
    scan(a.worker, &[("IP", "192.0.2.9")], message);
    let seen = (0..1000).any(|_| {
        let history = common::get(b.controller, "/history", &[]).json();
        let rows = history["rows"].as_array().unwrap();
        let found = rows.iter().any(|row| row["subject"] == "seen on node A");
        if !found {
            std::thread::sleep(Duration::from_millis(20));
        }
        found
    });
    assert!(seen, "A's scan never showed in B's history");
}
