#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SpamAssassin's spamd protocol, proven with the real client: Debian's
//! `spamc` (package `spamc`, SpamAssassin 4's) against `chaff serve
//! --spamd-bind`, in every mode spamc has — PROCESS (default), `-c`, `-y`,
//! `-R`, `-E`, `-K`, `-L` — plus raw requests (zlib bodies too: Debian's
//! spamc is built without `-z`) for the errors spamd
//! answers. Without spamc these tests fail (tools/test installs it).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{Scratch, corpus_bytes, post};

fn spamc_path() -> PathBuf {
    let path = PathBuf::from("/usr/bin/spamc");
    assert!(
        path.exists(),
        "spamc is not installed: `apt-get install spamc` (tools/test does it)"
    );
    path
}

fn spamc(addr: SocketAddr, args: &[&str], message: &[u8]) -> Output {
    let mut child = Command::new(spamc_path())
        .args([
            "-d",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-t",
            "30",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    child.wait_with_output().unwrap()
}

fn serve_spamd(config: &str) -> (Scratch, common::Daemon, SocketAddr) {
    let mut scratch = Scratch::new();
    scratch.write_config(config);
    let daemon = scratch
        .serve_with(&[
            "--bind",
            "127.0.0.1:0",
            "--controller-bind",
            "127.0.0.1:0",
            "--spamd-bind",
            "127.0.0.1:0",
        ])
        .unwrap();
    let spamd = daemon.spamd.expect("the ready line names the spamd port");
    (scratch, daemon, spamd)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ham_comes_back_with_x_spam_headers_and_every_other_byte_as_sent() {
    let (_scratch, _daemon, spamd) = serve_spamd("");
    let ham = corpus_bytes("ham-plain.eml");
    let out = spamc(spamd, &[], &ham);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rewritten = text(&out.stdout);
    // After the leading Return-Path, as SpamAssassin inserts them.
    assert!(
        rewritten.starts_with(
            "Return-Path: <dana.whitfield@example.org>\r\nX-Spam-Checker-Version: chaff "
        ),
        "{rewritten}"
    );
    assert!(
        rewritten.contains("\nX-Spam-Status: No, score="),
        "{rewritten}"
    );
    assert!(!rewritten.contains("X-Spam-Flag"), "{rewritten}");
    // Drop the added fields (with their folded lines): the rest is the
    // message, byte for byte.
    let mut kept = Vec::new();
    let mut in_added = false;
    for line in out.stdout.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"X-Spam-") {
            in_added = true;
            continue;
        }
        if in_added && line.starts_with(b"\t") {
            continue;
        }
        in_added = false;
        kept.extend_from_slice(line);
    }
    assert_eq!(text(&kept), text(&ham));

    // -E: exit 0 for ham; -c: score/threshold, exit 0.
    assert_eq!(spamc(spamd, &["-E"], &ham).status.code(), Some(0));
    let check = spamc(spamd, &["-c"], &ham);
    assert_eq!(check.status.code(), Some(0));
    assert!(
        text(&check.stdout).trim_end().ends_with("/6.0"),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn gtube_is_spam_in_every_mode() {
    let (_scratch, _daemon, spamd) = serve_spamd("");
    let gtube = corpus_bytes("gtube.eml");

    let check = spamc(spamd, &["-c"], &gtube);
    assert_eq!(check.status.code(), Some(1), "-c exits 1 for spam");
    let (score, threshold) = text(&check.stdout)
        .trim()
        .split_once('/')
        .map(|(s, t)| (s.parse::<f64>().unwrap(), t.parse::<f64>().unwrap()))
        .unwrap();
    assert_eq!(threshold, 6.0);
    assert!(score >= threshold);

    let symbols = spamc(spamd, &["-y"], &gtube);
    let names = text(&symbols.stdout);
    assert!(names.split(',').any(|n| n == "GTUBE"), "{names}");
    let mut sorted: Vec<&str> = names.split(',').collect();
    sorted.sort_unstable();
    assert_eq!(sorted.join(","), names, "sorted, comma-separated");

    let report = text(&spamc(spamd, &["-R"], &gtube).stdout);
    assert!(
        report.contains("has identified this incoming email as possible spam"),
        "{report}"
    );
    assert!(report.contains(" GTUBE "), "{report}");

    assert_eq!(spamc(spamd, &["-E"], &gtube).status.code(), Some(1));

    // -r (REPORT_IFSPAM): the report for spam, nothing for ham.
    let if_spam = text(&spamc(spamd, &["-r"], &gtube).stdout);
    assert!(if_spam.contains(" GTUBE "), "{if_spam}");
    let ham = text(&spamc(spamd, &["-r"], &corpus_bytes("ham-plain.eml")).stdout);
    assert!(!ham.contains("Content analysis details"), "{ham}");

    // HEADERS: the rewritten header block only.
    let headers = raw_request(
        spamd,
        &[
            format!(
                "HEADERS SPAMC/1.5\r\nContent-length: {}\r\n\r\n",
                gtube.len()
            )
            .as_bytes(),
            &gtube[..],
        ]
        .concat(),
    );
    assert!(headers.contains("X-Spam-Flag: YES"), "{headers}");
    assert!(!headers.contains("XJS*C4JDBQADN1"), "no body: {headers}");

    // PROCESS: SpamAssassin's report_safe wrapper, the original inside.
    let wrapped = spamc(spamd, &[], &gtube);
    let body = text(&wrapped.stdout);
    assert!(body.contains("X-Spam-Flag: YES"), "{body}");
    assert!(
        body.contains("Content-Type: message/rfc822; x-spam-type=original"),
        "{body}"
    );
    assert!(body.contains(&text(&gtube)), "the original, byte-identical");

    // zlib-compressed requests (spamc -z; Debian's spamc is built without
    // zlib, so the request is written here) get the same verdict.
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&gtube).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut request = format!(
        "CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: {}\r\n\r\n",
        compressed.len()
    )
    .into_bytes();
    request.extend_from_slice(&compressed);
    let reply = raw_request(spamd, &request);
    assert_eq!(
        reply,
        format!(
            "SPAMD/1.1 0 EX_OK\r\nSpam: True ; {} / 6.0\r\n\r\n",
            text(&check.stdout).trim().split('/').next().unwrap()
        )
    );
}

#[test]
fn the_verdict_is_the_one_checkv2_gives() {
    let (_scratch, daemon, spamd) = serve_spamd("");
    for fixture in [
        "ham-plain.eml",
        "phishing/lookalike-domain.eml",
        "gtube.eml",
    ] {
        let message = corpus_bytes(fixture);
        let reply = post(daemon.worker, "/checkv2", &[], &message).json();
        let score = reply["score"].as_f64().unwrap();
        let check = text(&spamc(spamd, &["-c"], &message).stdout);
        let spamd_score: f64 = check.split('/').next().unwrap().parse().unwrap();
        let is_spam = !matches!(
            reply["action"].as_str().unwrap(),
            "no action" | "greylist" | "soft reject"
        );
        // spamd shows a ham that rounds up to the threshold a tenth below.
        let expected = if !is_spam && (score * 10.0).round() / 10.0 >= 6.0 {
            5.9
        } else {
            (score * 10.0).round() / 10.0
        };
        assert!(
            (spamd_score - expected).abs() < 1e-9,
            "{fixture}: spamd {spamd_score}, checkv2 {score}"
        );
    }
}

#[test]
fn ping_and_tell_learn_once_and_say_so() {
    let (_scratch, _daemon, spamd) = serve_spamd("[server]\nspamd_allow_tell = true\n");
    let ping = spamc(spamd, &["-K"], b"");
    assert_eq!(ping.status.code(), Some(0));
    assert!(
        text(&ping.stdout).starts_with("SPAMD/1.5 0"),
        "{}",
        text(&ping.stdout)
    );

    let message = corpus_bytes("ham-plain.eml");
    let first = spamc(spamd, &["-L", "ham"], &message);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout).trim(),
        "Message successfully un/learned"
    );
    let again = spamc(spamd, &["-L", "ham"], &message);
    assert_eq!(text(&again.stdout).trim(), "Message was already un/learned");
    // Learned as the other class: it moves, which is a change.
    let moved = spamc(spamd, &["-L", "spam"], &message);
    assert_eq!(
        text(&moved.stdout).trim(),
        "Message successfully un/learned"
    );
}

#[test]
fn tell_is_refused_unless_allowed() {
    let (_scratch, _daemon, spamd) = serve_spamd("");
    let refused = spamc(spamd, &["-L", "spam"], &corpus_bytes("ham-plain.eml"));
    assert_ne!(
        text(&refused.stdout).trim(),
        "Message successfully un/learned"
    );
    let raw = raw_request(
        spamd,
        b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\nContent-length: 3\r\n\r\nhi\n",
    );
    assert!(
        raw.starts_with("SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled"),
        "{raw}"
    );
}

fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    text(&reply)
}

#[test]
fn bad_requests_get_spamds_own_errors_and_the_daemon_goes_on() {
    let (_scratch, _daemon, spamd) = serve_spamd("[limits]\nmax_message_bytes = 1000\n");
    let cases: [(&[u8], &str); 5] = [
        (
            b"HELLO SPAMC/1.5\r\n\r\n",
            "SPAMD/1.0 76 Bad header line: HELLO SPAMC/1.5",
        ),
        (
            b"CHECK SPAMC/1.5\r\nbroken\r\n\r\n",
            "SPAMD/1.0 76 Bad header line: (header not in 'Name: value' format)",
        ),
        (
            b"CHECK SPAMC/1.5\r\nContent-length: 10\r\n\r\nshort",
            "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 5 bytes)",
        ),
        (
            b"CHECK SPAMC/1.5\r\nContent-length: 5000\r\n\r\n",
            "SPAMD/1.0 65 Data error: message larger than 1000 bytes",
        ),
        (
            b"CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: 4\r\n\r\nnope",
            "SPAMD/1.0 69 Service Unavailable: zlib:",
        ),
    ];
    for (request, expected) in cases {
        let reply = raw_request(spamd, request);
        assert!(reply.starts_with(expected), "{}: {reply}", text(request));
    }
    // Still serving.
    let check = spamc(spamd, &["-c"], &corpus_bytes("gtube.eml"));
    assert_eq!(check.status.code(), Some(1));
}

/// Exim's default `spam =` (the spamd variant, src/spam.c): `REPORT
/// SPAMC/1.2` with `User` and `Content-length`, write side closed, the reply
/// read to EOF and parsed with Exim's own `sscanf` patterns — the SA 2.x
/// one first, then the one spamd 3 and 4 answer 1.2 clients with.
#[test]
fn exims_default_spam_condition_parses_the_reply() {
    let (_scratch, _daemon, spamd) = serve_spamd("");
    for (fixture, spam) in [("gtube.eml", true), ("ham-plain.eml", false)] {
        let message = corpus_bytes(fixture);
        let mut request = format!(
            "REPORT SPAMC/1.2\r\nUser: nobody\r\nContent-length: {}\r\n\r\n",
            message.len()
        )
        .into_bytes();
        request.extend_from_slice(&message);
        let reply = raw_request(spamd, &request);
        let bytes = reply.as_bytes();
        let (old, _, _, _) = common::sscanf(
            bytes,
            b"SPAMD/%7s 0 EX_OK\r\nContent-length: %*u\r\n\r\n%lf/%lf\r\n%n",
        );
        assert!(old < 3, "not the SA 2.x shape");
        let (count, strings, floats, offset) = common::sscanf(
            bytes,
            b"SPAMD/%7s 0 EX_OK\r\nSpam: %*s ; %lf / %lf\r\n\r\n%n",
        );
        assert_eq!(count, 3, "Exim cannot parse the reply:\n{reply}");
        assert_eq!(strings[0], "1.1");
        assert_eq!(floats[1], 6.0, "the add-header threshold");
        assert_eq!(floats[0] >= floats[1], spam, "{reply}");
        // The report follows, as Exim keeps it for $spam_report.
        let report = &reply[offset.unwrap()..];
        assert!(report.contains("Content analysis details:"), "{report}");
    }
}

#[test]
fn a_client_that_says_nothing_gets_spamds_timeout_and_the_connection_closes() {
    let (_scratch, _daemon, spamd) = serve_spamd("[server]\nheader_timeout_ms = 300\n");
    let mut stream = TcpStream::connect(spamd).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The request line, then silence: no headers, no body.
    stream.write_all(b"CHECK SPAMC/1.5\r\n").unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert!(
        text(&reply).starts_with("SPAMD/1.0 79 Timeout"),
        "{}",
        text(&reply)
    );
}

/// Each new port has its own bound of `max_connections`: with one allowed,
/// a second connection to the spamd port and to the milter port is
/// answered only once the first on that port goes; the other ports stay
/// free meanwhile.
#[test]
fn each_new_port_bounds_its_connections() {
    let (_scratch, daemon, spamd) = serve_spamd("[server]\nmax_connections = 1\n");
    let milter = daemon.milter.unwrap();
    let first_spamd = TcpStream::connect(spamd).unwrap();
    let first_milter = TcpStream::connect(milter).unwrap();
    // Once the daemon holds both, the ports are full.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let gtube = corpus_bytes("gtube.eml");
    let mut check =
        format!("CHECK SPAMC/1.5\r\nContent-length: {}\r\n\r\n", gtube.len()).into_bytes();
    check.extend_from_slice(&gtube);
    let mut second_spamd = TcpStream::connect(spamd).unwrap();
    second_spamd.write_all(&check).unwrap();
    let mut negotiation = vec![0, 0, 0, 13, b'O'];
    for word in [6u32, 0x1ff, 0x1fffff] {
        negotiation.extend_from_slice(&word.to_be_bytes());
    }
    let mut second_milter = TcpStream::connect(milter).unwrap();
    second_milter.write_all(&negotiation).unwrap();
    let silent = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "answered past the bound: {read:?}"
        );
    };
    silent(&mut second_spamd);
    silent(&mut second_milter);
    // The worker port is not held up by the full ones.
    let reply = post(daemon.worker, "/checkv2", &[], &gtube).json();
    assert_eq!(reply["action"], "reject");

    drop(first_spamd);
    drop(first_milter);
    for stream in [&mut second_spamd, &mut second_milter] {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
    }
    let mut head = [0u8; 5];
    second_milter.read_exact(&mut head).unwrap();
    assert_eq!(head[4], b'O', "the milter negotiates once the port frees");
    let _ = second_spamd.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    second_spamd.read_to_end(&mut reply).unwrap();
    assert!(
        text(&reply).starts_with("SPAMD/1.1 0 EX_OK\r\nSpam: True"),
        "{}",
        text(&reply)
    );
}
