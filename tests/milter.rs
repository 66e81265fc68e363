#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The milter, proven with a real Postfix (Debian's `postfix`, 3.7): a
//! private instance with its own config, queue and mail directories under a
//! temporary directory, listening on 127.0.0.1 only, never the system
//! service; `smtpd_milters` points at `chaff serve --milter-bind`. Mail is
//! submitted over SMTP and read back from the maildirs Postfix's `virtual`
//! delivers to. Postfix's master runs as root, as it must; without
//! Postfix (tools/test installs it) or root these tests fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Scratch, corpus_bytes, post};

/// A private Postfix, stopped when dropped.
struct Postfix {
    root: tempfile::TempDir,
    smtp: SocketAddr,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The uid of a system user, from /etc/passwd.
fn uid_of(user: &str) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&user)).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {user}: is postfix installed (tools/test)?"))
}

impl Postfix {
    fn start(milter: SocketAddr) -> Postfix {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "postfix is not installed: tools/test installs it"
        );
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        use std::os::unix::fs::PermissionsExt;
        // Postfix's daemons run as `postfix`, its deliveries as nobody.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        std::fs::set_permissions(dir.join("mail"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::os::unix::fs::chown(dir.join("data"), Some(uid_of("postfix")), None).unwrap();
        let smtp_port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {d}/queue\n\
                 data_directory = {d}/data\n\
                 command_directory = /usr/sbin\n\
                 daemon_directory = /usr/lib/postfix/sbin\n\
                 meta_directory = /etc/postfix\n\
                 shlib_directory = /usr/lib/postfix\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 myhostname = mx.chaff.test\n\
                 mydomain = chaff.test\n\
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 relay_domains =\n\
                 virtual_mailbox_domains = example.com\n\
                 virtual_mailbox_base = {d}/mail\n\
                 virtual_mailbox_maps = inline:{{ bob@example.com=bob/, carol@example.com=carol/, dave@example.com=dave/ }}\n\
                 virtual_uid_maps = static:65534\n\
                 virtual_gid_maps = static:65534\n\
                 smtpd_milters = inet:{milter}\n\
                 milter_default_action = tempfail\n\
                 milter_protocol = 6\n\
                 maillog_file = {d}/maillog\n\
                 maillog_file_prefixes = {d}\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\n\
                 message_size_limit = 20480000\n\
                 biff = no\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/master.cf"),
            format!(
                "127.0.0.1:{smtp_port} inet n - n - - smtpd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n\
                 qmgr unix n - n 300 1 qmgr\n\
                 rewrite unix - - n - - trivial-rewrite\n\
                 bounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\n\
                 trace unix - - n - 0 bounce\n\
                 verify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\n\
                 proxymap unix - - n - - proxymap\n\
                 smtp unix - - n - - smtp\n\
                 relay unix - - n - - smtp\n\
                 showq unix n - n - - showq\n\
                 error unix - - n - - error\n\
                 retry unix - - n - - error\n\
                 discard unix - - n - - discard\n\
                 local unix - n n - - local\n\
                 virtual unix - n n - - virtual\n\
                 anvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\n\
                 postlog unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let postfix = Postfix {
            smtp: SocketAddr::from(([127, 0, 0, 1], smtp_port)),
            root,
        };
        let started = postfix.command("start");
        assert!(
            started.status.success(),
            "postfix start failed: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            postfix.log()
        );
        // Ready when smtpd answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(postfix.smtp).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix never listened\n{}",
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        postfix
    }

    fn config_dir(&self) -> PathBuf {
        self.root.path().join("etc")
    }

    fn command(&self, what: &str) -> std::process::Output {
        Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.config_dir())
            .arg(what)
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("maillog")).unwrap_or_default()
    }

    /// The messages delivered to `user` so far.
    fn delivered(&self, user: &str) -> Vec<Vec<u8>> {
        let new = self.root.path().join("mail").join(user).join("new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(new)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    /// Waits until `user` has `count` messages.
    fn wait_for(&self, user: &str, count: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let messages = self.delivered(user);
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{user} got {} of {count} messages\n{}",
                messages.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command("abort");
    }
}

/// An SMTP submission: the reply to the end of DATA, or the first reply
/// that refuses or defers.
fn submit(server: SocketAddr, from: &str, to: &[&str], message: &[u8]) -> String {
    submit_session(server, from, to, &[message]).remove(0)
}

/// Several messages in one SMTP session (one milter connection): for each,
/// the reply to the end of its DATA, or the first reply that refuses or
/// defers it.
fn submit_session(server: SocketAddr, from: &str, to: &[&str], messages: &[&[u8]]) -> Vec<String> {
    let stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return text;
            }
        }
    };
    let say = |writer: &mut TcpStream, line: &str| {
        writer.write_all(line.as_bytes()).unwrap();
        writer.write_all(b"\r\n").unwrap();
    };
    let greeting = reply();
    if !greeting.starts_with("220") {
        return vec![greeting; messages.len()];
    }
    say(&mut writer, "EHLO client.chaff.test");
    let hello = reply();
    if !hello.starts_with("250") {
        return vec![hello; messages.len()];
    }
    let mut replies = Vec::new();
    'messages: for message in messages {
        let mut commands = vec![format!("MAIL FROM:<{from}>")];
        commands.extend(to.iter().map(|r| format!("RCPT TO:<{r}>")));
        commands.push("DATA".to_owned());
        for command in &commands {
            say(&mut writer, command);
            let answer = reply();
            if !(answer.starts_with('2') || answer.starts_with('3')) {
                replies.push(answer);
                say(&mut writer, "RSET");
                reply();
                continue 'messages;
            }
        }
        // Dot-stuffed, CRLF line ends.
        let mut data = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        writer.write_all(&data).unwrap();
        replies.push(reply());
    }
    say(&mut writer, "QUIT");
    replies
}

fn header_value(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\n\n").next().unwrap_or("");
    let mut value: Option<String> = None;
    for line in head.lines() {
        if let Some(current) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                current.push('\n');
                current.push_str(line);
                continue;
            }
            return value;
        }
        if let Some((field, rest)) = line.split_once(':')
            && field.eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_owned());
        }
    }
    value
}

/// The score and symbol names of an `X-Spamd-Result` value.
fn spamd_result(value: &str) -> (f64, Vec<String>) {
    let score = value
        .split('[')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let names = value
        .split(";\n")
        .skip(1)
        .map(|s| s.trim().split('(').next().unwrap().to_owned())
        .collect();
    (score, names)
}

fn chaff_with_milter() -> (Scratch, common::Daemon) {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    assert!(daemon.milter.is_some(), "the milter is on by default");
    (scratch, daemon)
}

#[test]
fn ham_passes_with_rspamds_headers_to_every_recipient() {
    let (_scratch, daemon) = chaff_with_milter();
    let postfix = Postfix::start(daemon.milter.unwrap());
    let ham = corpus_bytes("ham-plain.eml");
    let reply = submit(
        postfix.smtp,
        "dana@example.org",
        &["bob@example.com", "carol@example.com", "dave@example.com"],
        &ham,
    );
    assert!(reply.starts_with("250"), "{reply}");
    for user in ["bob", "carol", "dave"] {
        let delivered = postfix.wait_for(user, 1);
        let message = &delivered[0];
        assert_eq!(
            header_value(message, "X-Rspamd-Action").as_deref(),
            Some("no action")
        );
        assert!(header_value(message, "X-Rspamd-Queue-Id").is_some_and(|id| !id.is_empty()));
        assert!(
            header_value(message, "X-Spamd-Result")
                .is_some_and(|v| v.starts_with("default: False ["))
        );
        assert_eq!(header_value(message, "X-Spam"), None);
        // The body is untouched.
        let text = String::from_utf8_lossy(message);
        let body = text.split("\n\n").skip(1).collect::<Vec<_>>().join("\n\n");
        let sent = String::from_utf8_lossy(&ham).replace("\r\n", "\n");
        let sent_body = sent.split("\n\n").skip(1).collect::<Vec<_>>().join("\n\n");
        assert_eq!(body, sent_body);
    }
    // The scan saw all three recipients: history says so.
    let history = common::get(daemon.controller, "/history", &[]).json();
    let rcpts = history["rows"][0]["rcpt_smtp"].as_array().map(|a| a.len());
    assert_eq!(rcpts, Some(3), "{history}");
}

#[test]
fn gtube_is_rejected_with_5xx_and_spam_is_tagged() {
    let mut scratch = Scratch::new();
    // A low add-header threshold so a fixture spam is tagged, not rejected.
    scratch.write_config("[actions]\ngreylist = 0.2\nadd_header = 0.5\nreject = 15.0\n");
    let daemon = scratch.serve();
    let postfix = Postfix::start(daemon.milter.unwrap());
    let reply = submit(
        postfix.smtp,
        "a@example.org",
        &["bob@example.com"],
        &corpus_bytes("gtube.eml"),
    );
    assert!(reply.starts_with("554 5.7.1 "), "{reply}");

    // An old X-Spam header in the message is replaced, not repeated.
    let mut spam = b"X-Spam: No\r\n".to_vec();
    spam.extend_from_slice(&corpus_bytes("spam-plain.eml"));
    let reply = submit(postfix.smtp, "a@example.org", &["carol@example.com"], &spam);
    assert!(reply.starts_with("250"), "{reply}");
    let message = &postfix.wait_for("carol", 1)[0];
    assert_eq!(header_value(message, "X-Spam").as_deref(), Some("Yes"));
    let text = String::from_utf8_lossy(message);
    assert_eq!(
        text.matches("\nX-Spam:").count() + usize::from(text.starts_with("X-Spam:")),
        1,
        "{text}"
    );
    assert_eq!(
        header_value(message, "X-Rspamd-Action").as_deref(),
        Some("add header")
    );
}

#[test]
fn a_large_message_gets_the_verdict_checkv2_gives_the_same_bytes() {
    let (_scratch, daemon) = chaff_with_milter();
    let postfix = Postfix::start(daemon.milter.unwrap());
    // Several hundred KB: many BODY chunks of at most 64 KB.
    let mut message = corpus_bytes("ham-plain.eml");
    for i in 0..6000 {
        message.extend_from_slice(
            format!("line {i} of a long report, with some words in it.\r\n").as_bytes(),
        );
    }
    assert!(message.len() > 300_000);
    let reply = submit(
        postfix.smtp,
        "dana@example.org",
        &["bob@example.com"],
        &message,
    );
    assert!(reply.starts_with("250"), "{reply}");
    let delivered = &postfix.wait_for("bob", 1)[0];
    let (milter_score, milter_symbols) =
        spamd_result(&header_value(delivered, "X-Spamd-Result").unwrap());
    let queue_id = header_value(delivered, "X-Rspamd-Queue-Id").unwrap();
    // The same bytes and envelope through /checkv2.
    let direct = post(
        daemon.worker,
        "/checkv2",
        &[
            ("IP", "127.0.0.1"),
            ("Hostname", "localhost"),
            ("Helo", "client.chaff.test"),
            ("From", "dana@example.org"),
            ("Rcpt", "bob@example.com"),
            ("Queue-Id", &queue_id),
        ],
        &message,
    )
    .json();
    let mut direct_symbols: Vec<String> = direct["symbols"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    direct_symbols.sort();
    let mut milter_sorted = milter_symbols.clone();
    milter_sorted.sort();
    assert_eq!(milter_sorted, direct_symbols);
    assert!((milter_score - direct["score"].as_f64().unwrap()).abs() < 0.006);
}

#[test]
fn with_chaff_stopped_postfix_defers_and_keeps_running() {
    let (scratch, daemon) = chaff_with_milter();
    let milter = daemon.milter.unwrap();
    let postfix = Postfix::start(milter);
    drop(daemon);
    let reply = submit(
        postfix.smtp,
        "dana@example.org",
        &["bob@example.com"],
        &corpus_bytes("ham-plain.eml"),
    );
    assert!(reply.starts_with('4'), "{reply}");
    // Postfix is still there, and mail flows again once chaff is back.
    let port = milter.port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let _daemon = scratch
        .serve_with(&[
            "--bind",
            "127.0.0.1:0",
            "--controller-bind",
            "127.0.0.1:0",
            "--milter-bind",
            &addr,
        ])
        .unwrap();
    let reply = submit(
        postfix.smtp,
        "dana@example.org",
        &["bob@example.com"],
        &corpus_bytes("ham-plain.eml"),
    );
    assert!(reply.starts_with("250"), "{reply}");
    postfix.wait_for("bob", 1);
}

#[test]
fn one_session_several_messages_a_rewritten_subject_and_one_too_large_to_scan() {
    let mut scratch = Scratch::new();
    scratch.write_config(
        "[actions]\ngreylist = 0.2\nadd_header = 0.3\nrewrite_subject = 0.5\nreject = 15.0\n\
         [limits]\nmax_message_bytes = 100000\n",
    );
    let daemon = scratch.serve();
    let postfix = Postfix::start(daemon.milter.unwrap());
    let spam = corpus_bytes("spam-plain.eml");
    let mut large = corpus_bytes("ham-plain.eml");
    while large.len() < 150_000 {
        large.extend_from_slice(b"a line of a large attachment that pads the message out\r\n");
    }
    let replies = submit_session(
        postfix.smtp,
        "a@example.org",
        &["bob@example.com"],
        &[&spam, &spam, &large],
    );
    for reply in &replies {
        assert!(reply.starts_with("250"), "{replies:?}");
    }
    let delivered = postfix.wait_for("bob", 3);
    let mut queue_ids = Vec::new();
    let mut unscanned = 0;
    for message in &delivered {
        match header_value(message, "X-Rspamd-Queue-Id") {
            Some(id) => {
                // Scanned: the Subject rewritten by the template.
                let subject = header_value(message, "Subject").unwrap();
                assert!(subject.starts_with("***SPAM*** "), "{subject}");
                assert_eq!(
                    header_value(message, "X-Rspamd-Action").as_deref(),
                    Some("rewrite subject")
                );
                queue_ids.push(id);
            }
            None => {
                // Past limits.max_message_bytes: passed unscanned, untouched.
                assert!(header_value(message, "X-Spamd-Result").is_none());
                unscanned += 1;
            }
        }
    }
    assert_eq!(unscanned, 1);
    assert_eq!(queue_ids.len(), 2);
    assert_ne!(queue_ids[0], queue_ids[1], "each message its own queue id");
}

#[test]
fn a_scan_that_times_out_answers_milter_on_error() {
    // scan_timeout_ms = 0: every scan is past its time.
    for (on_error, expected) in [("tempfail", "451 4.7.1"), ("accept", "250")] {
        let mut scratch = Scratch::new();
        scratch.write_config(&format!(
            "[server]\nscan_timeout_ms = 0\nmilter_on_error = \"{on_error}\"\n"
        ));
        let daemon = scratch.serve();
        let postfix = Postfix::start(daemon.milter.unwrap());
        let reply = submit(
            postfix.smtp,
            "dana@example.org",
            &["bob@example.com"],
            &corpus_bytes("ham-plain.eml"),
        );
        assert!(reply.starts_with(expected), "{on_error}: {reply}");
        if on_error == "accept" {
            let message = &postfix.wait_for("bob", 1)[0];
            assert!(header_value(message, "X-Spamd-Result").is_none());
        }
    }
}

#[test]
fn greylisting_defers_through_postfix_and_the_retry_after_the_delay_is_delivered() {
    // Every message in the band; Postfix connects from loopback, which
    // greylisting skips unless told to check local clients.
    let scratch = Scratch::with_config(
        "[actions]\ngreylist = -100.0\n\
         [greylist]\nenabled = true\ncheck_local = true\ndelay_secs = 2\nretry_window_secs = 600\n",
    );
    let daemon = scratch.serve();
    let postfix = Postfix::start(daemon.milter.unwrap());
    let ham = corpus_bytes("ham-plain.eml");
    let first = submit(
        postfix.smtp,
        "news@sender.example",
        &["dave@example.com"],
        &ham,
    );
    assert!(first.starts_with("451 4.7.1 Try again later"), "{first}");
    std::thread::sleep(Duration::from_millis(2100));
    let retry = submit(
        postfix.smtp,
        "news@sender.example",
        &["dave@example.com"],
        &ham,
    );
    assert!(retry.starts_with("250"), "{retry}");
    let delivered = &postfix.wait_for("dave", 1)[0];
    let (_, names) = spamd_result(&header_value(delivered, "X-Spamd-Result").unwrap());
    assert!(names.iter().any(|n| n == "GREYLIST"), "{names:?}");
    // Another sender from the same client is a new triplet.
    let other = submit(
        postfix.smtp,
        "other@sender.example",
        &["dave@example.com"],
        &ham,
    );
    assert!(other.starts_with("451 4.7.1"), "{other}");
}
