#![allow(clippy::unwrap_used, clippy::expect_used)]
//! rspamd 4's `POST /checkv3` through the real daemon, with raw requests
//! (Debian's rspamc is rspamd 3.4's, which predates it): JSON and msgpack
//! metadata, a zstd message part, every reply representation `Accept`
//! can ask for, a zstd result part, and the refusals (400 with a JSON
//! `error`, 406 for an `Accept` nothing satisfies).

mod common;

use common::{Response, Scratch, corpus_bytes, post};

const BOUNDARY: &str = "chaffTestBoundary7";

/// A form part: its name, its headers, its data.
type Part<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8]);

fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, headers, data) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n")
                .as_bytes(),
        );
        for (header, value) in *headers {
            body.extend_from_slice(format!("{header}: {value}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn checkv3(worker: std::net::SocketAddr, extra: &[(&str, &str)], body: &[u8]) -> Response {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let mut headers = vec![("Content-Type", content_type.as_str())];
    headers.extend_from_slice(extra);
    post(worker, "/checkv3", &headers, body)
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `result` part of a multipart reply: its headers and data.
fn result_part(response: &Response) -> (String, Vec<u8>) {
    let content_type = header(response, "content-type").unwrap();
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    let body = &response.body;
    let start = format!("--{boundary}\r\n");
    assert!(
        body.starts_with(start.as_bytes()),
        "{}",
        String::from_utf8_lossy(body)
    );
    let rest = &body[start.len()..];
    let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
    let end = format!("\r\n--{boundary}--\r\n");
    assert!(body.ends_with(end.as_bytes()));
    let data = rest[head_end + 4..rest.len() - end.len()].to_vec();
    (head, data)
}

#[test]
fn json_metadata_and_every_representation() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let metadata = br#"{"from":"a@example.org","rcpt":["b@example.com","c@example.com"],"ip":"192.0.2.7","helo":"mx.example.org","queue_id":"Q42"}"#;
    let gtube = corpus_bytes("gtube.eml");
    let body = form(&[
        (
            "metadata",
            &[("Content-Type", "application/json")],
            metadata,
        ),
        ("message", &[], &gtube),
    ]);

    // Accept: application/json → the /checkv2 reply itself.
    let json = checkv3(daemon.worker, &[("Accept", "application/json")], &body);
    assert_eq!(json.status, 200);
    assert_eq!(header(&json, "content-type"), Some("application/json"));
    assert_eq!(header(&json, "vary"), Some("Accept, Accept-Encoding"));
    let reply = json.json();
    assert_eq!(reply["action"], "reject");
    assert!(reply["symbols"]["GTUBE"].is_object(), "{reply}");
    // The metadata's envelope reached the scan: history has both recipients.
    let history = common::get(daemon.controller, "/history", &[]).json();
    assert_eq!(
        history["rows"][0]["rcpt_smtp"].as_array().map(|a| a.len()),
        Some(2)
    );
    assert_eq!(history["rows"][0]["ip"], "192.0.2.7");

    // No Accept → multipart/form-data with a JSON `result` part.
    let form_reply = checkv3(daemon.worker, &[], &body);
    assert!(
        header(&form_reply, "content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    let (head, data) = result_part(&form_reply);
    assert!(
        head.contains("Content-Disposition: form-data; name=\"result\""),
        "{head}"
    );
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let result: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(result["action"], "reject");

    // message/rfc822 → multipart/mixed; Accept-Encoding: zstd → the part
    // compressed.
    let mixed = checkv3(
        daemon.worker,
        &[("Accept", "message/rfc822"), ("Accept-Encoding", "zstd")],
        &body,
    );
    assert!(
        header(&mixed, "content-type")
            .unwrap()
            .starts_with("multipart/mixed; boundary=")
    );
    let (head, data) = result_part(&mixed);
    assert!(head.contains("Content-Encoding: zstd"), "{head}");
    let result: serde_json::Value =
        serde_json::from_slice(&zstd::decode_all(data.as_slice()).unwrap()).unwrap();
    assert_eq!(result["action"], "reject");

    // application/msgpack → msgpack.
    let packed = checkv3(daemon.worker, &[("Accept", "application/msgpack")], &body);
    assert_eq!(header(&packed, "content-type"), Some("application/msgpack"));
    let result: serde_json::Value = rmp_serde::from_slice(&packed.body).unwrap();
    assert_eq!(result["action"], "reject");

    // Nothing acceptable → 406 listing what is.
    let refused = checkv3(daemon.worker, &[("Accept", "text/html")], &body);
    assert_eq!(refused.status, 406);
    assert_eq!(refused.json()["error"], "Not Acceptable");
}

#[test]
fn msgpack_metadata_and_a_zstd_message_part() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let metadata = rmp_serde::to_vec_named(&serde_json::json!({
        "from": "a@example.org",
        "rcpt": "b@example.com",
        "ip": "192.0.2.9",
    }))
    .unwrap();
    let message = corpus_bytes("ham-plain.eml");
    let compressed = zstd::encode_all(message.as_slice(), 3).unwrap();
    let body = form(&[
        (
            "metadata",
            &[("Content-Type", "application/msgpack")],
            &metadata,
        ),
        ("message", &[("Content-Encoding", "zstd")], &compressed),
    ]);
    let reply = checkv3(daemon.worker, &[], &body);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let (head, data) = result_part(&reply);
    // msgpack metadata → a msgpack result part.
    assert!(head.contains("Content-Type: application/msgpack"), "{head}");
    let result: serde_json::Value = rmp_serde::from_slice(&data).unwrap();
    // The same verdict as /checkv2 with the same envelope and bytes.
    let direct = post(
        daemon.worker,
        "/checkv2",
        &[
            ("From", "a@example.org"),
            ("Rcpt", "b@example.com"),
            ("IP", "192.0.2.9"),
        ],
        &message,
    )
    .json();
    assert_eq!(result["score"], direct["score"]);
    assert_eq!(
        result["symbols"].as_object().map(|s| s.len()),
        direct["symbols"].as_object().map(|s| s.len())
    );
}

#[test]
fn malformed_requests_are_400s_with_a_json_error() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let message = corpus_bytes("ham-plain.eml");
    let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
        (Some("multipart/form-data"), b"x".to_vec(), "boundary"),
        (None, b"x".to_vec(), "Content-Type"),
        (
            Some("multipart/form-data; boundary=chaffTestBoundary7"),
            b"--chaffTestBoundary7\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}\r\n".to_vec(),
            "cannot parse multipart",
        ),
        (
            Some("multipart/form-data; boundary=chaffTestBoundary7"),
            form(&[("message", &[], &message)]),
            "'metadata'",
        ),
        (
            Some("multipart/form-data; boundary=chaffTestBoundary7"),
            form(&[("metadata", &[], b"{not json"), ("message", &[], &message)]),
            "cannot parse metadata",
        ),
        (
            Some("multipart/form-data; boundary=chaffTestBoundary7"),
            form(&[("metadata", &[], b"{}"), ("message", &[("Content-Encoding", "zstd")], b"not zstd")]),
            "decompression",
        ),
    ];
    for (content_type, body, expected) in cases {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("Content-Type", ct))
            .into_iter()
            .collect();
        let reply = post(daemon.worker, "/checkv3", &headers, &body);
        assert_eq!(
            reply.status,
            400,
            "{expected}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}
