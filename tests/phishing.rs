#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The phishing checks through the real daemon: every fixture of
//! `corpus/phishing/` (one per trick, and ham from each brand's own domain)
//! posted to `/checkv2`, its symbols held against `expect.toml`; an admin's
//! brand file; shortener links followed to a lookalike over real HTTP
//! (a redirecting site and a DNS server on 127.0.0.1); and arbitrary bytes as an attachment of every kind the
//! checks render.

mod common;
mod dnsserver;

use common::{Scratch, corpus_bytes, post};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectations {
    fixture: Vec<Expected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    file: String,
    #[serde(default)]
    raises: Vec<String>,
    #[serde(default)]
    never: Vec<String>,
}

fn symbols_of(reply: &serde_json::Value) -> Vec<String> {
    reply["symbols"]
        .as_object()
        .map(|symbols| symbols.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn every_trick_raises_its_symbol_and_brand_ham_raises_none() {
    let expect: Expectations =
        toml::from_str(&String::from_utf8(corpus_bytes("phishing/expect.toml")).unwrap()).unwrap();
    let listed: Vec<&str> = expect.fixture.iter().map(|f| f.file.as_str()).collect();
    // Every fixture written is checked.
    let dir = common::corpus("phishing");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".eml") {
            assert!(
                listed.contains(&name.as_str()),
                "{name} is not in expect.toml"
            );
        }
    }
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let mut failures = Vec::new();
    for fixture in &expect.fixture {
        let reply = post(
            daemon.worker,
            "/checkv2",
            &[],
            &corpus_bytes(&format!("phishing/{}", fixture.file)),
        );
        assert_eq!(reply.status, 200, "{}: {reply:?}", fixture.file);
        let symbols = symbols_of(&reply.json());
        for wanted in &fixture.raises {
            if !symbols.contains(wanted) {
                failures.push(format!(
                    "{}: {wanted} missing (got {symbols:?})",
                    fixture.file
                ));
            }
        }
        for unwanted in &fixture.never {
            if symbols.contains(unwanted) {
                failures.push(format!("{}: {unwanted} raised", fixture.file));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn options_say_which_brand_and_how_a_domain_imitates_it() {
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    let reply = post(
        daemon.worker,
        "/checkv2",
        &[],
        &corpus_bytes("phishing/lookalike-domain.eml"),
    )
    .json();
    let options = &reply["symbols"]["PHISH_URI_LOOKALIKE"]["options"];
    assert_eq!(
        options,
        &serde_json::json!(["paypa1.com ~ paypal (digits for letters)"]),
        "{reply}"
    );
    let from = &reply["symbols"]["PHISH_FROM_BRAND_NAME"]["options"];
    assert_eq!(
        from,
        &serde_json::json!(["PayPal from paypa1.com"]),
        "{reply}"
    );
}

#[test]
fn an_admins_brand_file_extends_the_list_and_the_switch_turns_it_off() {
    let message = b"From: \"Example Credit Union\" <alerts@ecu-alerts.example.net>\n\
                    Subject: Notice\n\n\
                    Please sign in at http://ecu-alerts.example.net/ to keep your account.\n";
    let scratch = Scratch::new();
    let brands = scratch.path().join("brands.toml");
    std::fs::write(
        &brands,
        "[[brand]]\nname = \"Example CU\"\nwords = [\"example credit union\"]\ndomains = [\"examplecu.test\"]\n",
    )
    .unwrap();
    let mut scratch = scratch;
    scratch.write_config(&format!(
        "[phishing]\nbrands = [\"{}\"]\n",
        brands.display()
    ));
    let daemon = scratch.serve();
    let reply = post(daemon.worker, "/checkv2", &[], message).json();
    assert_eq!(
        reply["symbols"]["PHISH_FROM_BRAND_NAME"]["options"],
        serde_json::json!(["Example CU from example.net"]),
        "{reply}"
    );
    drop(daemon);

    scratch.write_config("[phishing]\nenabled = false\n");
    let daemon = scratch.serve();
    let reply = post(
        daemon.worker,
        "/checkv2",
        &[],
        &corpus_bytes("phishing/lookalike-domain.eml"),
    )
    .json();
    let phishing: Vec<String> = symbols_of(&reply)
        .into_iter()
        .filter(|s| s.starts_with("PHISH_") && s != "PHISH_LURE")
        .collect();
    assert!(phishing.is_empty(), "{phishing:?}");
}

#[test]
fn a_broken_brand_file_is_a_config_error_naming_it() {
    let mut scratch = Scratch::new();
    let brands = scratch.path().join("my-brands.toml");
    std::fs::write(&brands, "[[brand]]\nname = \"No domains\"\n").unwrap();
    scratch.write_config(&format!(
        "[phishing]\nbrands = [\"{}\"]\n",
        brands.display()
    ));
    let output = scratch.chaff().args(["rules", "check"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("my-brands.toml"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// A PNG of a QR code holding `text`, `scale` pixels a module, with the
/// quiet zone a printer leaves (an independent encoder: the `qrcode` crate).
fn qr_png(text: &str, scale: u32) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let modules = u32::try_from(code.width()).unwrap();
    let colors = code.to_colors();
    let side = (modules + 8) * scale;
    let picture = image::GrayImage::from_fn(side, side, |x, y| {
        let (mx, my) = ((x / scale).wrapping_sub(4), (y / scale).wrapping_sub(4));
        let dark = mx < modules
            && my < modules
            && colors[(my * modules + mx) as usize] == qrcode::Color::Dark;
        image::Luma([if dark { 0 } else { 255 }])
    });
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[test]
fn a_qr_code_in_an_attached_png_or_a_data_uri_is_a_link_like_any_other() {
    let target = "https://login.paypal.com.verify.example.net/session";
    let png = qr_png(target, 6);
    let attached = format!(
        "From: \"Security\" <alerts@notice.example.net>\nSubject: Scan to keep your PayPal account\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"q\"\n\n--q\n\
         Content-Type: text/plain\n\nScan the code with your phone.\n--q\n\
         Content-Type: image/png; name=\"scan.png\"\nContent-Disposition: attachment; filename=\"scan.png\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--q--\n",
        base64(&png)
    );
    let inline = format!(
        "From: \"Security\" <alerts@notice.example.net>\nSubject: Scan to keep your PayPal account\n\
         MIME-Version: 1.0\nContent-Type: text/html\n\n\
         <html><body><p>Scan:</p><img src=\"data:image/png;base64,{}\"></body></html>\n",
        base64(&png).replace('\n', "")
    );
    let scratch = Scratch::new();
    let daemon = scratch.serve();
    for (how, message) in [("attached", attached), ("data: URI", inline)] {
        let reply = post(daemon.worker, "/checkv2", &[], message.as_bytes()).json();
        assert_eq!(
            reply["symbols"]["PHISH_QR_CODE_URL"]["options"],
            serde_json::json!(["login.paypal.com.verify.example.net"]),
            "{how}: {reply}"
        );
        // The code's link went through the URL checks like a written one.
        assert!(
            reply["symbols"]["PHISH_URI_BRAND_SUBDOMAIN"].is_object(),
            "{how}: {reply}"
        );
        assert!(
            reply["urls"].as_array().is_some_and(
                |urls| urls.contains(&serde_json::json!("login.paypal.com.verify.example.net"))
            ),
            "{how}: {reply}"
        );
    }
    // The same picture without a code: nothing.
    let blank = image::GrayImage::from_pixel(64, 64, image::Luma([255]));
    let mut png = Vec::new();
    blank
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let plain = format!(
        "From: a@example.net\nSubject: photo\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"q\"\n\n\
         --q\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n{}\n--q--\n",
        base64(&png)
    );
    let reply = post(daemon.worker, "/checkv2", &[], plain.as_bytes()).json();
    assert!(reply["symbols"]["PHISH_QR_CODE_URL"].is_null(), "{reply}");
}

/// Standard base64 in 76-column lines, as a mail client writes an attachment.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (index, chunk) in bytes.chunks(3).enumerate() {
        if index > 0 && index % 19 == 0 {
            out.push('\n');
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as an HTML, SVG or image attachment never panic the
    /// engine and never take it long.
    #[test]
    fn arbitrary_attachments_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        kind in prop_oneof![
            Just(("text/html", "a.html")),
            Just(("image/svg+xml", "a.svg")),
            Just(("application/octet-stream", "page.htm")),
            Just(("image/png", "a.png")),
        ],
    ) {
        let mut raw = format!(
            "From: a@example.net\nSubject: x\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
             Content-Type: text/plain\n\nhello\n--b\n\
             Content-Type: {}; name=\"{}\"\n\
             Content-Disposition: attachment; filename=\"{}\"\n\
             Content-Transfer-Encoding: base64\n\n",
            kind.0, kind.1, kind.1
        )
        .into_bytes();
        raw.extend_from_slice(base64(&bytes).as_bytes());
        raw.extend_from_slice(b"\n--b--\n");
        let dir = tempfile::tempdir().unwrap();
        let engine = chaff::Engine::open(chaff::config::Config::embedded(), dir.path()).unwrap();
        let scan = engine.scan(&raw, &chaff::message::Envelope::default());
        prop_assert!(scan.verdict.score.is_finite());
    }
}

/// A web site on 127.0.0.1 that answers every request from `routes`
/// (path → status line and extra header lines), one connection at a time,
/// and counts what it was asked.
struct WebSite {
    port: u16,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WebSite {
    /// `routes` gets the port the site listens on, for Locations that
    /// name it.
    fn start(routes: impl FnOnce(u16) -> Vec<(&'static str, String)>) -> WebSite {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = routes(port);
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                log.lock().unwrap().push(request_line.trim().to_owned());
                let path = request_line.split(' ').nth(1).unwrap_or("");
                let answer = routes
                    .iter()
                    .find(|(route, _)| *route == path)
                    .map(|(_, answer)| answer.clone())
                    .unwrap_or_else(|| "404 Not Found\r\n".to_owned());
                let _ = write!(
                    stream,
                    "HTTP/1.1 {answer}Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        WebSite { port, asked }
    }
}

#[test]
fn a_shortener_link_is_followed_to_the_lookalike_it_hides() {
    // short.test/abc -> hop.test/next -> paypa1.test/login (200): the
    // message shows only the shortener.
    let site = WebSite::start(|port| {
        vec![
            (
                "/abc",
                format!("301 Moved\r\nLocation: http://hop.test:{port}/next\r\n"),
            ),
            (
                "/next",
                format!("302 Found\r\nLocation: http://paypa1.test:{port}/login\r\n"),
            ),
            ("/login", "200 OK\r\n".to_owned()),
        ]
    });
    let port = site.port;
    let mut zones = dnsserver::Zones::default();
    zones
        .a("short.test", "127.0.0.1")
        .a("hop.test", "127.0.0.1")
        .a("paypa1.test", "127.0.0.1");
    let dns = dnsserver::DnsServer::start(zones);
    let mut scratch = Scratch::new();
    let shorteners = scratch.path().join("shorteners.txt");
    std::fs::write(&shorteners, "short.test\n").unwrap();
    let network = format!(
        "[network]\nenabled = true\nnameservers = [\"{}\"]\nbudget_ms = 3000\n[network.rbl.SPAMHAUS_ZEN]\nenabled = false\n[network.uribl.SPAMHAUS_DBL]\nenabled = false\n[network.uribl.SURBL]\nenabled = false\n",
        dns.addr
    );
    let message = format!(
        "From: PayPal <service@notices.example.net>\nSubject: Your account\n\nPlease confirm your account at http://short.test:{port}/abc today.\n"
    );

    // Off by default for private addresses: the chain stops at the first.
    scratch.write_config(&format!(
        "{network}[phishing]\nshorteners = [\"{}\"]\n",
        shorteners.display()
    ));
    let daemon = scratch.serve();
    let reply = post(daemon.worker, "/checkv2", &[], message.as_bytes()).json();
    let unfollowed = reply["symbols"]["URI_REDIRECT_UNFOLLOWED"]["options"].to_string();
    assert!(unfollowed.contains("private address 127.0.0.1"), "{reply}");
    assert!(reply["symbols"].get("URI_REDIRECT").is_none(), "{reply}");
    assert!(site.asked.lock().unwrap().is_empty());
    drop(daemon);

    scratch.write_config(&format!(
        "{network}[phishing]\nshorteners = [\"{}\"]\n[phishing.redirects]\nprivate_targets = true\n",
        shorteners.display()
    ));
    let daemon = scratch.serve();
    let reply = post(daemon.worker, "/checkv2", &[], message.as_bytes()).json();
    assert_eq!(
        reply["symbols"]["URI_REDIRECT"]["options"],
        serde_json::json!(["short.test -> paypa1.test (2 hops)"]),
        "{reply}"
    );
    assert!(
        reply["symbols"].get("URI_REDIRECT_UNFOLLOWED").is_none(),
        "{reply}"
    );
    let lookalike = reply["symbols"]["PHISH_URI_LOOKALIKE"]["options"].to_string();
    assert!(lookalike.contains("paypa1.test ~ paypal"), "{reply}");
    assert_eq!(
        *site.asked.lock().unwrap(),
        vec![
            "HEAD /abc HTTP/1.1",
            "HEAD /next HTTP/1.1",
            "HEAD /login HTTP/1.1"
        ]
    );
    // The same link again is answered from the cache: no new request.
    let again = post(daemon.worker, "/checkv2", &[], message.as_bytes()).json();
    assert!(again["symbols"].get("URI_REDIRECT").is_some(), "{again}");
    assert_eq!(site.asked.lock().unwrap().len(), 3);
}
