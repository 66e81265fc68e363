#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Profiles, rate limits, greylisting and trusted replies through the real
//! daemon, driven by the real `rspamc` (and `chaff policy` against the
//! controller); crash tests with `kill -9` between acknowledged updates.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use common::{Daemon, Scratch, describe, get, rspamc};

/// A plain message from `from` to `to` (its Message-ID given).
fn message(scratch: &Scratch, name: &str, from: &str, subject: &str, extra: &str) -> String {
    let path = scratch.path().join(name);
    std::fs::write(
        &path,
        format!(
            "From: {from}\r\nTo: someone@example.org\r\nSubject: {subject}\r\n\
             Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{name}@example.com>\r\n{extra}\r\n\
             Hello, the minutes of today's meeting are below.\r\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// rspamc's scan of `file` with these envelope arguments: (action, the
/// whole output).
fn scan(daemon: &Daemon, args: &[&str], file: &str) -> (String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.push(file);
    let output = rspamc(daemon.worker, &all);
    assert!(
        output.status.success(),
        "rspamc failed\n{}",
        describe(&output)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let action = text
        .lines()
        .find_map(|l| l.strip_prefix("Action: "))
        .unwrap_or("")
        .trim()
        .to_owned();
    (action, text)
}

fn has_symbol(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with(&format!("Symbol: {name} ")) || l.starts_with(&format!("Symbol: {name}("))
    })
}

fn policy(scratch: &Scratch, controller: SocketAddr, args: &[&str]) -> Output {
    scratch
        .chaff()
        .arg("policy")
        .arg("--controller")
        .arg(controller.to_string())
        .args(args)
        .output()
        .unwrap()
}

fn policy_ok(scratch: &Scratch, controller: SocketAddr, args: &[&str]) -> String {
    let output = policy(scratch, controller, args);
    assert!(
        output.status.success(),
        "chaff policy {args:?}\n{}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn settings_id_and_an_inline_settings_header_change_the_verdict() {
    let scratch = Scratch::with_config(
        "[profiles.strict]\napply.actions = { add_header = -50.0 }\n\
         [profiles.postmaster]\nmatch.rcpt = [\"postmaster@*\"]\napply.actions = { add_header = -50.0 }\n",
    );
    let daemon = scratch.serve();
    let file = message(&scratch, "m1", "alice@example.com", "Minutes", "");
    let (plain, text) = scan(&daemon, &["-i", "192.0.2.1"], &file);
    assert_eq!(plain, "no action", "{text}");
    assert!(!has_symbol(&text, "CHAFF_PROFILE"), "{text}");
    // By name.
    let (strict, text) = scan(&daemon, &["--header", "Settings-ID: strict"], &file);
    assert_eq!(strict, "add header", "{text}");
    assert!(
        text.contains("CHAFF_PROFILE") && text.contains("[strict]"),
        "{text}"
    );
    // By selector.
    let (by_rcpt, text) = scan(&daemon, &["-r", "postmaster@example.org"], &file);
    assert_eq!(by_rcpt, "add header", "{text}");
    // rspamd's inline JSON, `null` turning an action off, over the profile.
    let (inline, text) = scan(
        &daemon,
        &[
            "--header",
            "Settings-ID: strict",
            "--header",
            r#"Settings: {"actions": {"add header": null, "reject": -60}}"#,
        ],
        &file,
    );
    assert_eq!(inline, "reject", "{text}");
    // Settings that do not parse are refused with a JSON error, not ignored.
    let reply = common::post(
        daemon.worker,
        "/checkv2",
        &[("Settings", "{not json")],
        std::fs::read(&file).unwrap().as_slice(),
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"].as_str().unwrap().contains("Settings"),
        "{}",
        reply.text()
    );
}

#[test]
fn a_rate_limit_holds_past_its_burst_survives_kill_9_and_policy_reset_frees_it() {
    let scratch = Scratch::with_config(
        "[ratelimit.buckets.per_user]\nkey = \"user\"\nburst = 3\nrate = \"1 / 1h\"\n",
    );
    let mut daemon = scratch.serve();
    let file = message(&scratch, "m2", "bob@example.com", "Invoice", "");
    let args = ["--user", "bob@example.com", "-r", "carol@example.org"];
    for i in 0..3 {
        let (action, text) = scan(&daemon, &args, &file);
        assert_eq!(action, "no action", "message {i}\n{text}");
    }
    let (held, text) = scan(&daemon, &args, &file);
    assert_eq!(held, "soft reject", "{text}");
    assert!(
        text.contains("RATELIMITED") && text.contains("per_user:bob@example.com"),
        "{text}"
    );
    assert!(text.contains("Rate limit exceeded"), "{text}");
    // Another user has an allowance of their own.
    let (other, text) = scan(&daemon, &["--user", "dave@example.com"], &file);
    assert_eq!(other, "no action", "{text}");

    // Acknowledged updates survive kill -9: still held after a restart.
    daemon.signal("KILL");
    daemon.wait_exit();
    let daemon = scratch.serve();
    let (still, text) = scan(&daemon, &args, &file);
    assert_eq!(still, "soft reject", "after restart\n{text}");
    let listed = policy_ok(&scratch, daemon.controller, &["list", "rl:per_user:bob"]);
    assert!(
        listed.contains("rl:per_user:bob@example.com\tlevel 3.0"),
        "{listed}"
    );

    let reset = policy_ok(
        &scratch,
        daemon.controller,
        &["reset", "rl:per_user:bob@example.com"],
    );
    assert!(reset.contains("removed 1 entries"), "{reset}");
    let (freed, text) = scan(&daemon, &args, &file);
    assert_eq!(freed, "no action", "{text}");
    let metrics = get(daemon.controller, "/metrics", &[]).text();
    assert!(metrics.contains("chaff_ratelimited_total 1\n"), "{metrics}");
}

#[test]
fn policy_endpoints_need_the_controllers_passwords() {
    let scratch = Scratch::with_config(
        "[server]\nsecure_ip = []\npassword = \"reader\"\nenable_password = \"writer\"\n",
    );
    let daemon = scratch.serve();
    let refused = policy(&scratch, daemon.controller, &["list"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        describe(&refused)
    );
    policy_ok(
        &scratch,
        daemon.controller,
        &["--password", "reader", "list"],
    );
    let not_enough = policy(
        &scratch,
        daemon.controller,
        &["--password", "reader", "reset", "--all"],
    );
    assert!(!not_enough.status.success(), "{}", describe(&not_enough));
    let reset = policy_ok(
        &scratch,
        daemon.controller,
        &["--password", "writer", "reset", "--all"],
    );
    assert!(reset.contains("removed 0 entries"), "{reset}");
}

#[test]
fn greylisting_defers_a_new_triplet_passes_its_retry_and_remembers_it_across_kill_9() {
    // Every message is in the band: greylist threshold far below any score.
    let scratch = Scratch::with_config(
        "[actions]\ngreylist = -100.0\n\
         [greylist]\nenabled = true\ndelay_secs = 2\nretry_window_secs = 600\n",
    );
    let mut daemon = scratch.serve();
    let file = message(&scratch, "m3", "news@sender.example", "Offer", "");
    let args = [
        "-i",
        "203.0.113.9",
        "-F",
        "news@sender.example",
        "-r",
        "user@example.org",
    ];
    let (first, text) = scan(&daemon, &args, &file);
    assert_eq!(first, "soft reject", "{text}");
    assert!(
        text.contains("Try again later") && text.contains("new record"),
        "{text}"
    );
    let (early, text) = scan(&daemon, &args, &file);
    assert_eq!(early, "soft reject", "{text}");
    assert!(text.contains("too early"), "{text}");
    // An authenticated client is never greylisted (the outbound profile).
    let (authed, text) = scan(
        &daemon,
        &["--user", "u@example.org", "-i", "203.0.113.9"],
        &file,
    );
    assert_ne!(authed, "soft reject", "{text}");

    daemon.signal("KILL");
    daemon.wait_exit();
    let daemon = scratch.serve();
    std::thread::sleep(Duration::from_millis(2100));
    let (retry, text) = scan(&daemon, &args, &file);
    assert_eq!(
        retry, "no action",
        "the retry after the delay passes\n{text}"
    );
    assert!(
        text.contains("GREYLIST") && text.contains("[pass]"),
        "{text}"
    );
    let listed = policy_ok(&scratch, daemon.controller, &["list", "grey:"]);
    assert!(
        listed.contains("grey:203.0.113.0/24|news@sender.example|user@example.org"),
        "{listed}"
    );
    assert!(listed.contains("passed"), "{listed}");
}

#[test]
fn a_reply_to_mail_a_user_sent_is_trusted_and_its_sender_known() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let sent = message(&scratch, "out1", "alice@example.com", "Quote", "");
    let (action, text) = scan(
        &daemon,
        &[
            "--user",
            "alice@example.com",
            "-r",
            "client@partner.example",
        ],
        &sent,
    );
    assert_eq!(action, "no action", "{text}");
    assert!(text.contains("[outbound]"), "{text}");
    let reply = message(
        &scratch,
        "in1",
        "client@partner.example",
        "Re: Quote",
        "In-Reply-To: <out1@example.com>\r\n",
    );
    let incoming = ["-i", "198.51.100.20", "-F", "client@partner.example"];
    let (_, text) = scan(&daemon, &incoming, &reply);
    assert!(has_symbol(&text, "TRUSTED_REPLY"), "{text}");
    assert!(has_symbol(&text, "KNOWN_SENDER"), "{text}");
    // A stranger's reply to an unknown Message-ID gets neither.
    let stranger = message(
        &scratch,
        "in2",
        "x@else.example",
        "Re: ?",
        "In-Reply-To: <nope@example.com>\r\n",
    );
    let (_, text) = scan(
        &daemon,
        &["-i", "198.51.100.21", "-F", "x@else.example"],
        &stranger,
    );
    assert!(
        !text.contains("TRUSTED_REPLY") && !text.contains("KNOWN_SENDER"),
        "{text}"
    );
}

#[test]
fn a_compromised_account_is_held_and_flagged_while_its_ordinary_mail_passes() {
    // Spam of this campaign links to a listed domain (7 points).
    let scratch = Scratch::new();
    let list = scratch.path().join("campaign.txt");
    std::fs::write(&list, "pills-campaign.example\n").unwrap();
    let mut scratch = scratch;
    scratch.write_config(&format!(
        "[url_lists.CAMPAIGN]\npath = {:?}\nsymbol = \"CAMPAIGN_URL\"\nweight = 7.0\n",
        list
    ));
    let daemon = scratch.serve();
    let ordinary = message(&scratch, "ord", "mallory@example.com", "Lunch", "");
    let spam_path = scratch.path().join("spam");
    std::fs::write(
        &spam_path,
        "From: mallory@example.com\r\nTo: a@example.org\r\nSubject: cheap pills\r\n\
         Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <spam@example.com>\r\n\r\n\
         Buy now: http://pills-campaign.example/buy\r\n",
    )
    .unwrap();
    let spam = spam_path.to_str().unwrap();
    let user = ["--user", "mallory@example.com"];
    let mut many: Vec<String> = Vec::new();
    for i in 0..10 {
        many.push("-r".into());
        many.push(format!("victim{i}@example.net"));
    }
    let with = |extra: &[String]| -> Vec<String> {
        user.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect()
    };
    let spam_args = with(&many);
    let spam_args: Vec<&str> = spam_args.iter().map(String::as_str).collect();
    let ordinary_args = with(&["-r".into(), "friend@example.org".into()]);
    let ordinary_args: Vec<&str> = ordinary_args.iter().map(String::as_str).collect();

    let (action, text) = scan(&daemon, &ordinary_args, &ordinary);
    assert_eq!(action, "no action", "{text}");
    // 7 points × 10 recipients a message; the bucket holds 200.
    let mut held_at = None;
    for i in 0..5 {
        let (action, text) = scan(&daemon, &spam_args, spam);
        if has_symbol(&text, "USER_SPAM_BURST") {
            assert_eq!(action, "soft reject", "{text}");
            assert!(text.contains("mallory@example.com"), "{text}");
            held_at = Some(i);
            break;
        }
        // Outbound: tagged, never rejected by score.
        assert_ne!(action, "reject", "{text}");
    }
    // About 7 points × 10 recipients a message: the 200-point bucket lets
    // the first two through and trips within the next two.
    assert!(
        held_at.is_some_and(|i| (2..=3).contains(&i)),
        "held at {held_at:?}"
    );
    // The same user's ordinary mail still passes untouched.
    let (action, text) = scan(&daemon, &ordinary_args, &ordinary);
    assert_eq!(action, "no action", "{text}");
    assert!(!has_symbol(&text, "USER_SPAM_BURST"), "{text}");
    // The admin sees it in history and metrics.
    let history = get(daemon.controller, "/history", &[]).json();
    let flagged =
        history["rows"].as_array().unwrap().iter().any(|row| {
            row["symbols"].get("USER_SPAM_BURST").is_some() && row["profile"] == "outbound"
        });
    assert!(flagged, "{history}");
    let metrics = get(daemon.controller, "/metrics", &[]).text();
    assert!(metrics.contains("chaff_spam_burst_total 1\n"), "{metrics}");
    // The same spam from outside is judged by the inbound thresholds.
    let (inbound, text) = scan(&daemon, &["-i", "192.0.2.50"], spam);
    assert_eq!(inbound, "add header", "{text}");
}

/// Sends `count` scans from `threads` threads at once through `worker`,
/// each with the headers `headers_of(i)` gives, until the daemon dies;
/// returns the replies that arrived (action and options of interest).
fn burst(
    worker: SocketAddr,
    threads: usize,
    headers_of: impl Fn(usize) -> Vec<(String, String)> + Send + Sync + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>> {
    let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let headers_of = std::sync::Arc::new(headers_of);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..threads {
        let (replies, headers_of, next) = (replies.clone(), headers_of.clone(), next.clone());
        std::thread::spawn(move || {
            let body = b"From: a@example.com\r\nSubject: burst\r\n\r\nhello\r\n";
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let headers = headers_of(i);
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let Ok(reply) = common::try_exchange(
                    worker,
                    &[
                        common::head(
                            "POST",
                            "/checkv2",
                            &pairs,
                            &format!("Content-Length: {}\r\n", body.len()),
                        ),
                        body.to_vec(),
                    ]
                    .concat(),
                ) else {
                    return;
                };
                if reply.status != 200 {
                    return;
                }
                let action = reply.json()["action"].as_str().unwrap_or("").to_owned();
                replies.lock().unwrap().push((i, action));
            }
        });
    }
    replies
}

#[test]
fn kill_9_during_bursts_keeps_every_acknowledged_count_and_triplet() {
    let scratch = Scratch::with_config(
        "[ratelimit.buckets.per_user]\nkey = \"user\"\nburst = 100000\nrate = \"1 / 1h\"\n\
         [actions]\ngreylist = -100.0\n\
         [greylist]\nenabled = true\n",
    );
    let mut daemon = scratch.serve();
    const THREADS: usize = 4;
    // Even requests: an authenticated user's mail (counted in the bucket);
    // odd ones: a new greylist triplet each.
    let replies = burst(daemon.worker, THREADS, |i| {
        if i % 2 == 0 {
            vec![
                ("User".into(), "burst@example.com".into()),
                ("Rcpt".into(), "x@example.org".into()),
            ]
        } else {
            vec![
                ("IP".into(), "203.0.113.50".into()),
                ("From".into(), "s@sender.example".into()),
                ("Rcpt".into(), format!("r{i}@example.org")),
            ]
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    daemon.signal("KILL");
    daemon.wait_exit();
    std::thread::sleep(Duration::from_millis(300));
    let acknowledged = replies.lock().unwrap().clone();
    let counted = acknowledged
        .iter()
        .filter(|(i, action)| i % 2 == 0 && action != "soft reject")
        .count();
    let deferred = acknowledged
        .iter()
        .filter(|(i, action)| i % 2 == 1 && action == "soft reject")
        .count();
    assert!(
        counted > 10 && deferred > 10,
        "{counted} counted, {deferred} deferred"
    );

    let daemon = scratch.serve();
    let listed = policy_ok(&scratch, daemon.controller, &["list", "rl:per_user:"]);
    let level: f64 = listed
        .split("\tlevel ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    // Every acknowledged count is there; at most the requests in flight
    // when the daemon died (never acknowledged) may be there too.
    assert!(
        level + 0.5 >= counted as f64 && level <= (counted + THREADS) as f64 + 0.5,
        "bucket level {level} after {counted} acknowledged"
    );
    let triplets = policy_ok(&scratch, daemon.controller, &["list", "grey:"]);
    let stored = triplets.lines().filter(|l| l.starts_with("grey:")).count();
    assert!(
        stored >= deferred && stored <= deferred + THREADS,
        "{stored} triplets stored after {deferred} acknowledged deferrals"
    );
}
