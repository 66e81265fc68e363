#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `chaff serve` over real TCP with hand-written HTTP/1.1 (and the older
//! `RSPAMC/1.3` text protocol): framing, limits, auth, timeouts, signals.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{
    HAM_WORDS, IO_TIMEOUT, Response, Rng, SPAM_WORDS, Scratch, assert_pings, connect, corpus_bytes,
    exchange, get, head, post, post_chunked, read_response, try_exchange,
};
use serde_json::{Value, json};

const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#[track_caller]
fn assert_status(reply: &Response, status: u16) {
    assert_eq!(
        reply.status,
        status,
        "reason {:?} body {:?}",
        reply.reason,
        reply.text()
    );
}

/// A refusal: the status and a JSON object with a non-empty `error`.
#[track_caller]
fn assert_json_error(reply: &Response, status: u16) {
    assert_status(reply, status);
    let value = reply.json();
    assert!(
        value["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no `error` string in {value}"
    );
}

#[track_caller]
fn assert_gtube_verdict(reply: &Response) {
    assert_status(reply, 200);
    let value = reply.json();
    assert_eq!(value["action"], "reject", "{value}");
    assert!(value["symbols"]["GTUBE"].is_object(), "{value}");
}

/// A distinct message of about `size` bytes.
fn big_message(tag: &str, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(size as u64 ^ tag.len() as u64);
    let mut out = format!(
        "Message-ID: <big-{tag}@example.org>\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\
         Subject: big {tag}\r\nContent-Type: text/plain\r\n\r\n"
    );
    let mut line = 0;
    while out.len() < size {
        let words: Vec<&str> = (0..10)
            .map(|_| HAM_WORDS[rng.below(HAM_WORDS.len())])
            .collect();
        out.push_str(&format!("{} {tag} line{line}\r\n", words.join(" ")));
        line += 1;
    }
    out.into_bytes()
}

fn action_value(actions: &Value, name: &str) -> Value {
    actions
        .as_array()
        .unwrap_or_else(|| panic!("/actions is not an array: {actions}"))
        .iter()
        .find(|row| row["action"] == name)
        .unwrap_or_else(|| panic!("no {name} in {actions}"))["value"]
        .clone()
}

#[test]
fn ping_answers_pong_on_both_ports() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    for addr in [daemon.worker, daemon.controller] {
        let reply = get(addr, "/ping", &[]);
        assert_status(&reply, 200);
        assert_eq!(reply.body, b"pong\r\n");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{reply:?}"
        );
    }
}

#[test]
fn checkv2_with_every_header_and_history() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let headers = [
        ("From", "<sender@example.net>"),
        ("Rcpt", "<first@example.org>"),
        ("Rcpt", "<second@example.org>"),
        ("IP", "192.0.2.77"),
        ("Helo", "mx.example.net"),
        ("Hostname", "mail.example.net"),
        ("Queue-Id", "4AbC123"),
        ("User", "someone"),
        ("Deliver-To", "first@example.org"),
        ("Pass", "all"),
        ("Flags", "pass_all,milter"),
        ("Settings-ID", "default"),
        ("Log-Tag", "tag42"),
        ("Raw", "no"),
    ];
    let reply = post(
        daemon.worker,
        "/checkv2",
        &headers,
        &corpus_bytes("gtube.eml"),
    );
    assert_gtube_verdict(&reply);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
    let value = reply.json();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Every top-level key of rspamd.md §1.4, in rspamd's emission order.
    let expected = [
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
    ];
    let present: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| expected.contains(k))
        .collect();
    assert_eq!(present, expected, "top-level keys {keys:?}");
    assert_eq!(value["is_skipped"], false);
    assert_eq!(value["score"].as_f64(), Some(15.0), "{value}");
    assert_eq!(value["required_score"].as_f64(), Some(15.0), "{value}");
    assert_eq!(value["message-id"], "fixture-0107@example.org");
    assert!(value["time_real"].is_number());
    assert!(value["milter"].is_object());
    assert!(value["urls"].is_array() && value["emails"].is_array());
    let gtube = &value["symbols"]["GTUBE"];
    assert_eq!(gtube["name"], "GTUBE");
    assert!(gtube["score"].is_number() && gtube["metric_score"].is_number());

    let history = get(daemon.controller, "/history", &[]);
    assert_status(&history, 200);
    let history = history.json();
    let row = &history["rows"][0];
    assert_eq!(row["ip"], "192.0.2.77", "{history}");
    assert_eq!(row["sender_smtp"], "sender@example.net", "{history}");
    assert_eq!(
        row["rcpt_smtp"],
        json!(["first@example.org", "second@example.org"]),
        "{history}"
    );
    assert_eq!(row["subject"], "GTUBE test message", "{history}");
    assert_eq!(row["message-id"], "fixture-0107@example.org", "{history}");
    assert_eq!(row["score"].as_f64(), Some(15.0), "{history}");
    assert_eq!(row["action"], "reject", "{history}");

    // Query-string keys count as request headers.
    let reply = post(
        daemon.worker,
        "/checkv2?IP=192.0.2.78&from=%3Cq%40example.net%3E&rcpt=r%40example.org",
        &[],
        &corpus_bytes("ham-plain.eml"),
    );
    assert_status(&reply, 200);
    let history = get(daemon.controller, "/history", &[]).json();
    let row = &history["rows"][0];
    assert_eq!(row["ip"], "192.0.2.78", "{history}");
    assert_eq!(row["sender_smtp"], "q@example.net", "{history}");
    assert_eq!(row["rcpt_smtp"], json!(["r@example.org"]), "{history}");
}

#[test]
fn chunked_bodies_are_reassembled_byte_exact() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let c = daemon.controller;

    // Chunks of 1 byte, 12 KB, 64 KB, then random sizes.
    let message = big_message("chunked-first", 400 * 1024);
    let mut rng = Rng::new(5);
    let mut sizes = vec![1, 12 * 1024, 64 * 1024, 1, 1, 2];
    sizes.extend((0..200).map(|_| 1 + rng.below(9000)));
    let reply = post_chunked(c, "/learnspam", &[], &message, &sizes);
    assert_status(&reply, 200);
    assert_eq!(reply.json(), json!({"success": true}));
    // The same bytes with Content-Length: the same digest, already known.
    let reply = post(c, "/learnspam", &[], &message);
    assert_status(&reply, 208);
    // rspamd puts the reason in the status line too.
    assert!(
        reply
            .reason
            .contains("has been already learned as spam, ignore it"),
        "reason phrase {:?}",
        reply.reason
    );
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("has been already learned as spam"),
        "{reply:?}"
    );

    // The other way round, with another random split.
    let message = big_message("length-first", 150 * 1024);
    let reply = post(c, "/learnham", &[], &message);
    assert_status(&reply, 200);
    let sizes: Vec<usize> = (0..500).map(|_| 1 + rng.below(700)).collect();
    let reply = post_chunked(c, "/learnham", &[], &message, &sizes);
    assert_status(&reply, 208);

    // GTUBE split across chunk boundaries at many offsets.
    let gtube = corpus_bytes("gtube.eml");
    let at = gtube.windows(GTUBE.len()).position(|w| w == GTUBE).unwrap();
    for split in [1, 2, 10, 33, 34, 50, GTUBE.len() - 1] {
        let sizes = [at + split, 1, 3, 7];
        let reply = post_chunked(daemon.worker, "/checkv2", &[], &gtube, &sizes);
        assert_gtube_verdict(&reply);
    }
    // Every byte its own chunk.
    let reply = post_chunked(
        daemon.worker,
        "/checkv2",
        &[],
        &gtube,
        &vec![1; gtube.len()],
    );
    assert_gtube_verdict(&reply);
}

#[test]
fn zstd_bodies_scan_like_plain_ones() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    for name in ["gtube.eml", "spam-plain.eml", "ham-plain.eml"] {
        let plain = corpus_bytes(name);
        let compressed = zstd::encode_all(&plain[..], 3).unwrap();
        let expected = post(daemon.worker, "/checkv2", &[], &plain);
        assert_status(&expected, 200);
        let expected = expected.json();
        for header in ["Compression", "Content-Encoding"] {
            let reply = post(daemon.worker, "/checkv2", &[(header, "zstd")], &compressed);
            assert_status(&reply, 200);
            // As rspamd does, a zstd request gets a zstd reply, marked so.
            assert_eq!(
                reply.header("compression"),
                Some("zstd"),
                "{name} via {header}"
            );
            let body = zstd::decode_all(&reply.body[..]).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for key in ["action", "score", "required_score", "symbols", "message-id"] {
                assert_eq!(value[key], expected[key], "{name} via {header}: {key}");
            }
        }
    }
}

#[test]
fn over_limit_bodies_get_413() {
    let scratch = Scratch::with_config("[limits]\nmax_message_bytes = 100000\n");
    let daemon = scratch.serve();
    let w = daemon.worker;

    // Under the limit: fine.
    let reply = post(w, "/checkv2", &[], &big_message("small", 90_000));
    assert_status(&reply, 200);

    // The limit is inclusive: exactly max_message_bytes passes, one more does not.
    let mut exact = big_message("exact", 100_001);
    exact.truncate(100_000);
    assert_status(&post(w, "/checkv2", &[], &exact), 200);
    assert_status(&post_chunked(w, "/checkv2", &[], &exact, &[777; 200]), 200);
    let mut over = big_message("over", 100_001);
    over.truncate(100_001);
    assert_json_error(&post(w, "/checkv2", &[], &over), 413);
    assert_json_error(&post_chunked(w, "/checkv2", &[], &over, &[777; 200]), 413);

    let big = big_message("big", 250_000);
    assert_json_error(&post(w, "/checkv2", &[], &big), 413);
    assert_json_error(&post(daemon.controller, "/learnspam", &[], &big), 413);
    assert_json_error(&post_chunked(w, "/checkv2", &[], &big, &[4096; 100]), 413);

    // A zstd bomb: 64 MB of one byte compresses to a few KB.
    let bomb = zstd::encode_all(std::io::repeat(b'a').take(64 << 20), 19).unwrap();
    assert!(bomb.len() < 100_000, "bomb is {} bytes", bomb.len());
    assert_json_error(&post(w, "/checkv2", &[("Compression", "zstd")], &bomb), 413);
    // Just over the limit once decompressed.
    let mut just_over = big_message("just-over", 100_001);
    just_over.truncate(100_001);
    let compressed = zstd::encode_all(&just_over[..], 3).unwrap();
    assert_json_error(
        &post(w, "/checkv2", &[("Compression", "zstd")], &compressed),
        413,
    );
    assert_pings(w);
}

#[test]
fn empty_body_is_400() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    assert_json_error(&post(daemon.worker, "/checkv2", &[], b""), 400);
    assert_json_error(&post(daemon.controller, "/learnspam", &[], b""), 400);
    assert_json_error(&post_chunked(daemon.worker, "/checkv2", &[], b"", &[]), 400);
}

#[test]
fn malformed_http_gets_4xx_and_the_daemon_keeps_serving() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let w = daemon.worker;
    let cases: [(&str, &[u8]); 5] = [
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        (
            "garbage with spaces",
            b"\x01\x02 \xff\xfe what\r\nHost: x\r\n\r\n",
        ),
        (
            "bad header line",
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nthis is not a header\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "invalid chunk size",
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than announced",
            b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        let reply =
            try_exchange(w, raw).unwrap_or_else(|error| panic!("{what}: no status line ({error})"));
        assert!(
            (400..500).contains(&reply.status),
            "{what}: status {} body {:?}",
            reply.status,
            reply.text()
        );
        assert_pings(w);
    }
    assert_pings(daemon.controller);
}

#[test]
fn fuzzy_add_catches_a_mutated_copy_until_fuzzy_del() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let text = "Dear friend, our pharmacy ships genuine medication without prescription \
        to every country. Order now and save up to ninety percent on all brand products, \
        fast discreet delivery guaranteed, satisfaction or your money back, visit today";
    let original =
        format!("Subject: offer\nMessage-ID: <a@x>\n\n{text}\nhttp://pills.example/a?id=1\n");
    let copy = format!(
        "Subject: offer\nMessage-ID: <b@x>\nContent-Type: text/html\n\n<p>{}</p><a href=x>http://other.example/b?id=2</a>\n",
        text.replace("genuine", "real").replace("ninety", "eighty")
    );
    let reply = post(
        daemon.controller,
        "/fuzzyadd",
        &[("Flag", "1"), ("Weight", "5")],
        original.as_bytes(),
    );
    assert_status(&reply, 200);
    assert_eq!(reply.json(), json!({"success": true}));
    let scan = post(daemon.worker, "/checkv2", &[], copy.as_bytes()).json();
    let options = scan["symbols"]["FUZZY_DENIED"]["options"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no FUZZY_DENIED in {scan}"))
        .to_owned();
    assert!(
        options.starts_with("1:") && options.ends_with('%'),
        "{options}"
    );
    assert!(
        scan["symbols"]["FUZZY_DENIED"]["score"].as_f64().unwrap() > 5.0,
        "{scan}"
    );
    assert_eq!(
        get(daemon.controller, "/stat", &[]).json()["fuzzy_hashes"]["local"],
        1
    );

    // Unknown list, nothing long enough to hash, a bad weight.
    assert_json_error(
        &post(
            daemon.controller,
            "/fuzzyadd",
            &[("Flag", "9")],
            original.as_bytes(),
        ),
        400,
    );
    assert_json_error(
        &post(
            daemon.controller,
            "/fuzzyadd",
            &[],
            b"Subject: x\n\nshort\n",
        ),
        404,
    );
    assert_json_error(
        &post(
            daemon.controller,
            "/fuzzyadd",
            &[("Weight", "-3")],
            original.as_bytes(),
        ),
        400,
    );

    let reply = post(
        daemon.controller,
        "/fuzzydel",
        &[("Flag", "1")],
        original.as_bytes(),
    );
    assert_status(&reply, 200);
    let scan = post(daemon.worker, "/checkv2", &[], copy.as_bytes()).json();
    assert!(scan["symbols"].get("FUZZY_DENIED").is_none(), "{scan}");
}

#[test]
fn unknown_path_is_404() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    for addr in [daemon.worker, daemon.controller] {
        assert_json_error(&get(addr, "/no/such/thing", &[]), 404);
        assert_json_error(&post(addr, "/nosuchcommand", &[], b"x"), 404);
    }
    // Controller-only paths are not on the worker.
    assert_json_error(
        &post(daemon.worker, "/learnspam", &[], &corpus_bytes("gtube.eml")),
        404,
    );
}

#[test]
fn legacy_check_and_symbols_nest_under_default() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    for path in ["/check", "/symbols", "/CHECK"] {
        let reply = post(daemon.worker, path, &[], &corpus_bytes("gtube.eml"));
        assert_status(&reply, 200);
        let value = reply.json();
        let metric = &value["default"];
        assert_eq!(metric["is_spam"], true, "{path}: {value}");
        assert_eq!(metric["action"], "reject", "{path}: {value}");
        assert_eq!(metric["score"].as_f64(), Some(15.0), "{path}: {value}");
        assert_eq!(
            metric["required_score"].as_f64(),
            Some(15.0),
            "{path}: {value}"
        );
        assert_eq!(metric["is_skipped"], false, "{path}: {value}");
        assert_eq!(metric["GTUBE"]["name"], "GTUBE", "{path}: {value}");
        assert!(value.get("symbols").is_none(), "{path}: {value}");
        assert!(value.get("action").is_none(), "{path}: {value}");
        assert!(value["rmilter"].is_object(), "{path}: {value}");
        assert_eq!(value["message-id"], "fixture-0107@example.org");
    }
    let reply = post(daemon.worker, "/check", &[], &corpus_bytes("ham-plain.eml"));
    assert_eq!(reply.json()["default"]["is_spam"], false);
}

#[test]
fn rspamc_1_3_text_protocol_as_exim_sends_it() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let scan = |message: &[u8]| -> Vec<u8> {
        let mut request = format!(
            "CHECK RSPAMC/1.3\r\nContent-length: {}\r\nQueue-Id: 1rXyZ-000abc-De\r\n\
             From: <sender@example.net>\r\nRecipient-Number: 1\r\nRcpt: <rcpt@example.org>\r\n\
             Helo: mx.example.net\r\nIP: 192.0.2.1\r\n\r\n",
            message.len()
        )
        .into_bytes();
        request.extend_from_slice(message);
        let mut stream = connect(daemon.worker);
        stream.write_all(&request).unwrap();
        // Exim reads until the server closes.
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        reply
    };

    let reply = scan(&corpus_bytes("gtube.eml"));
    let text = String::from_utf8_lossy(&reply).into_owned();
    // Exim's rspamd variant (src/spam.c).
    let (count, strings, floats, offset) = common::sscanf(
        &reply,
        b"RSPAMD/%7s 0 EX_OK\r\nMetric: default; %7s %lf / %lf / %lf\r\n%n",
    );
    assert_eq!(count, 5, "Exim cannot parse the reply:\n{text}");
    assert_eq!(strings[0], "1.3", "{text}");
    assert_eq!(strings[1], "True;", "{text}");
    assert_eq!(floats[0], 15.0, "{text}");
    assert_eq!(floats[1], 15.0, "{text}");
    let offset = offset.unwrap();
    assert!(offset < reply.len(), "{text}");
    let rest = &text[offset..];
    assert!(rest.starts_with("Action: "), "{text}");
    let action: String = rest["Action: ".len()..]
        .chars()
        .take_while(|&c| c != '\r')
        .collect();
    assert_eq!(action, "reject", "{text}");
    assert!(text.contains("Symbol: GTUBE"), "{text}");

    let reply = scan(&corpus_bytes("ham-plain.eml"));
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (count, strings, _, offset) = common::sscanf(
        &reply,
        b"RSPAMD/%7s 0 EX_OK\r\nMetric: default; %7s %lf / %lf / %lf\r\n%n",
    );
    assert_eq!(count, 5, "{text}");
    assert_eq!(strings[1], "False;", "{text}");
    assert!(
        text[offset.unwrap()..].starts_with("Action: no action\r\n"),
        "{text}"
    );

    // A message larger than any single read, GTUBE at its end.
    let mut large = big_message("rspamc-large", 300_000);
    large.extend_from_slice(b"\r\n");
    large.extend_from_slice(GTUBE);
    large.extend_from_slice(b"\r\n");
    let reply = scan(&large);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (count, _, _, offset) = common::sscanf(
        &reply,
        b"RSPAMD/%7s 0 EX_OK\r\nMetric: default; %7s %lf / %lf / %lf\r\n%n",
    );
    assert_eq!(count, 5, "{text}");
    assert!(
        text[offset.unwrap()..].starts_with("Action: reject\r\n"),
        "{text}"
    );

    // The envelope lines were honoured.
    let history = get(daemon.controller, "/history", &[]).json();
    let row = &history["rows"][2];
    assert_eq!(row["ip"], "192.0.2.1", "{history}");
    assert_eq!(row["sender_smtp"], "sender@example.net", "{history}");
    assert_eq!(row["rcpt_smtp"], json!(["rcpt@example.org"]), "{history}");
}

#[test]
fn controller_passwords_when_loopback_is_not_secure() {
    let scratch = Scratch::with_config(
        "[server]\npassword = \"r\"\nenable_password = \"w\"\nsecure_ip = [\"192.0.2.0/24\"]\n",
    );
    let daemon = scratch.serve();
    let c = daemon.controller;
    assert_json_error(&get(c, "/stat", &[]), 401);
    assert_json_error(&get(c, "/stat", &[("Password", "wrong")]), 401);
    let reply = get(c, "/stat", &[("Password", "r")]);
    assert_status(&reply, 200);
    assert!(reply.json()["scanned"].is_number());
    assert_status(&get(c, "/stat", &[("Password", "w")]), 200);

    let message = corpus_bytes("spam-plain.eml");
    assert_json_error(&post(c, "/learnspam", &[], &message), 401);
    assert_json_error(&post(c, "/learnspam", &[("Password", "r")], &message), 401);
    let reply = post(c, "/learnspam", &[("Password", "w")], &message);
    assert_status(&reply, 200);
    assert_eq!(reply.json(), json!({"success": true}));
    // `?password=` works as the header does.
    assert_status(&get(c, "/stat?password=r", &[]), 200);
    assert_json_error(&post(c, "/learnham?password=r", &[], &message), 401);
    assert_status(&post(c, "/learnham?password=w", &[], &message), 200);
    // Scanning needs no password.
    assert_status(&post(daemon.worker, "/checkv2", &[], &message), 200);
}

#[test]
fn refuses_a_public_controller_without_password() {
    let scratch = Scratch::new();
    let stderr_path = scratch.path().join("refuse.stderr");
    let mut child = scratch
        .chaff()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--controller-bind",
            "0.0.0.0:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let status = common::wait_timeout(&mut child, IO_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("password"), "stderr:\n{stderr}");
}

#[test]
fn a_stalled_body_gets_408_or_a_close_never_a_hang() {
    let scratch = Scratch::with_config("[server]\nbody_timeout_ms = 500\n");
    let daemon = scratch.serve();
    let stalled = |raw: &[u8]| {
        let mut stream = connect(daemon.worker);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(raw).unwrap();
        // …and nothing more.
        let mut reader = BufReader::new(stream);
        match read_response(&mut reader) {
            Ok(reply) => assert_json_error(&reply, 408),
            Err(error) => assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server neither answered nor closed: {error}"
            ),
        }
    };
    let mut raw = head("POST", "/checkv2", &[], "Content-Length: 5000\r\n");
    raw.extend_from_slice(&corpus_bytes("gtube.eml")[..100]);
    stalled(&raw);
    let mut raw = head("POST", "/checkv2", &[], "Transfer-Encoding: chunked\r\n");
    raw.extend_from_slice(b"10\r\n0123456789abcdef\r\n");
    stalled(&raw);
    assert_pings(daemon.worker);
}

#[test]
fn a_silent_client_is_dropped_after_header_timeout() {
    let scratch = Scratch::with_config("[server]\nheader_timeout_ms = 500\n");
    let daemon = scratch.serve();
    let dropped = |raw: &[u8]| {
        let mut stream = connect(daemon.worker);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(raw).unwrap();
        let mut buffer = Vec::new();
        match stream.read_to_end(&mut buffer) {
            Ok(_) => {
                // Closed; at most a 4xx status on the way out.
                if !buffer.is_empty() {
                    let text = String::from_utf8_lossy(&buffer);
                    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
                }
            }
            Err(error) => assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the connection was not dropped: {error}"
            ),
        }
    };
    dropped(b"");
    // Half a request line, then half a head.
    dropped(b"POST /chec");
    dropped(b"POST /checkv2 HTTP/1.1\r\nHost: x\r\n");
    assert_pings(daemon.worker);
}

/// `chaff model stat --json` for a stopped daemon's data directory.
fn model_stat(scratch: &Scratch) -> Value {
    let output = scratch
        .chaff()
        .args(["model", "stat", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::describe(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn sigterm_drains_and_keeps_acknowledged_learns() {
    let scratch = Scratch::new();
    let mut daemon = scratch.serve();
    let acknowledged: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (w, c) = (daemon.worker, daemon.controller);
    let mut threads = Vec::new();
    for t in 0..6 {
        let acknowledged = acknowledged.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(1000 + t);
            for i in 0.. {
                let message =
                    common::synthetic_message(&format!("term{t}"), i, SPAM_WORDS, &mut rng);
                let mut raw = head(
                    "POST",
                    "/learnspam",
                    &[],
                    &format!("Content-Length: {}\r\n", message.len()),
                );
                raw.extend_from_slice(&message);
                match try_exchange(c, &raw) {
                    Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push(message),
                    _ => return,
                }
            }
        }));
    }
    for _ in 0..2 {
        threads.push(std::thread::spawn(move || {
            let gtube = corpus_bytes("gtube.eml");
            loop {
                let mut raw = head(
                    "POST",
                    "/checkv2",
                    &[],
                    &format!("Content-Length: {}\r\n", gtube.len()),
                );
                raw.extend_from_slice(&gtube);
                match try_exchange(w, &raw) {
                    Ok(reply) if reply.status == 200 => {}
                    _ => return,
                }
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 30 {
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "learns are not being acknowledged"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.signal("TERM");
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    for thread in threads {
        thread.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let stat = model_stat(&scratch);
    let learned = stat["spam_learns"].as_u64().unwrap();
    assert!(
        learned >= acknowledged.len() as u64,
        "{} learns acknowledged, the model has {learned}: {stat}",
        acknowledged.len()
    );
    // Each acknowledged message is known after a restart.
    let daemon = scratch.serve();
    for message in &acknowledged {
        let reply = post(daemon.controller, "/learnspam", &[], message);
        assert_status(&reply, 208);
    }
}

#[test]
fn kill_9_after_an_acknowledged_learn_loses_nothing() {
    let scratch = Scratch::new();
    let mut daemon = scratch.serve();
    let message = corpus_bytes("spam-plain.eml");
    let reply = post(daemon.controller, "/learnspam", &[], &message);
    assert_status(&reply, 200);
    daemon.signal("KILL");
    daemon.wait_exit();

    let daemon = scratch.serve();
    let reply = post(daemon.controller, "/learnspam", &[], &message);
    assert_status(&reply, 208);
    let reply = get(daemon.controller, "/stat", &[]).json();
    assert_eq!(reply["statfiles"][0]["symbol"], "BAYES_SPAM");
    assert_eq!(reply["statfiles"][0]["revision"], 1, "{reply}");
}

#[test]
fn sighup_reloads_without_dropping_keep_alive_connections() {
    let mut scratch = Scratch::with_config("[actions]\nreject = 15.0\n");
    let daemon = scratch.serve();
    let stream = connect(daemon.controller);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut actions = || {
        writer
            .write_all(&head("GET", "/actions", &[], ""))
            .expect("the keep-alive connection was dropped");
        let reply = read_response(&mut reader).expect("the keep-alive connection was dropped");
        assert_status(&reply, 200);
        reply.json()
    };
    assert_eq!(action_value(&actions(), "reject").as_f64(), Some(15.0));

    scratch.write_config("[actions]\nreject = 10.0\n");
    daemon.signal("HUP");
    let started = Instant::now();
    loop {
        let value = actions();
        if action_value(&value, "reject").as_f64() == Some(10.0) {
            break;
        }
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "/actions still says {value} after SIGHUP\nstderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same connection still works, and scans use the new threshold.
    assert_eq!(action_value(&actions(), "greylist").as_f64(), Some(4.0));
    let reply = post(daemon.worker, "/checkv2", &[], &corpus_bytes("gtube.eml")).json();
    assert_eq!(reply["required_score"].as_f64(), Some(10.0), "{reply}");

    // An invalid file is refused; the running configuration stays.
    scratch.write_config("[actions\nreject = 3.0\n");
    daemon.signal("HUP");
    let started = Instant::now();
    while !daemon.stderr().contains("reload failed") {
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "no `reload failed` on stderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(action_value(&actions(), "reject").as_f64(), Some(10.0));
}

#[test]
fn metrics_end_with_eof() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    post(daemon.worker, "/checkv2", &[], &corpus_bytes("gtube.eml"));
    for addr in [daemon.worker, daemon.controller] {
        let reply = get(addr, "/metrics", &[]);
        assert_status(&reply, 200);
        let text = reply.text();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("rspamd_scanned_total 1\n"), "{text}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/openmetrics-text")),
            "{reply:?}"
        );
    }
}

#[test]
fn controller_lists_are_json_arrays() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    post(daemon.worker, "/checkv2", &[], &corpus_bytes("gtube.eml"));
    let c = daemon.controller;

    let counters = get(c, "/counters", &[]);
    assert_status(&counters, 200);
    let counters = counters.json();
    let rows = counters.as_array().unwrap_or_else(|| panic!("{counters}"));
    let gtube = rows.iter().find(|r| r["symbol"] == "GTUBE").unwrap();
    assert_eq!(gtube["hits"], 1, "{counters}");
    for key in ["weight", "frequency", "time"] {
        assert!(gtube[key].is_number(), "{counters}");
    }

    let actions = get(c, "/actions", &[]);
    assert_status(&actions, 200);
    let actions = actions.json();
    assert_eq!(actions.as_array().unwrap().len(), 6, "{actions}");
    assert_eq!(action_value(&actions, "reject").as_f64(), Some(15.0));
    assert_eq!(action_value(&actions, "add header").as_f64(), Some(6.0));
    assert_eq!(action_value(&actions, "greylist").as_f64(), Some(4.0));
    assert_eq!(action_value(&actions, "soft reject"), Value::Null);

    let symbols = get(c, "/symbols", &[]);
    assert_status(&symbols, 200);
    let symbols = symbols.json();
    let groups = symbols.as_array().unwrap_or_else(|| panic!("{symbols}"));
    assert!(
        groups.iter().any(|g| g["rules"]
            .as_array()
            .is_some_and(|rules| rules.iter().any(|r| r["symbol"] == "GTUBE"))),
        "{symbols}"
    );
}

#[test]
fn a_flood_of_concurrent_scans_all_succeed() {
    let scratch = Scratch::with_config("[server]\nmax_scans_in_flight = 2\n");
    let daemon = scratch.serve();
    let barrier = Arc::new(Barrier::new(64));
    let worker: SocketAddr = daemon.worker;
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let message = if i % 2 == 0 {
                    corpus_bytes("gtube.eml")
                } else {
                    big_message(&format!("flood{i}"), 200_000)
                };
                let mut raw = head(
                    "POST",
                    "/checkv2",
                    &[],
                    &format!("Content-Length: {}\r\n", message.len()),
                );
                raw.extend_from_slice(&message);
                barrier.wait();
                let reply = exchange(worker, &raw);
                assert_status(&reply, 200);
                let action = reply.json()["action"].clone();
                if i % 2 == 0 {
                    assert_eq!(action, "reject");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stat = get(daemon.controller, "/stat", &[]).json();
    assert_eq!(stat["scanned"], 64, "{stat}");
}
