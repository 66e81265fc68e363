#![allow(clippy::unwrap_used, clippy::expect_used)]
//! URL extraction: never panics on arbitrary input, finds what a reader
//! would click, and the `/checkv2` reply lists the hosts.

use chaff::extract::urls::{extract, extract_from_text, registrable_domain, text_mail_uris};
use chaff::message::{Limits, parse};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let urls = extract_from_text(&text);
        prop_assert!(urls.len() <= chaff::extract::urls::MAX_URLS);
        for url in urls {
            prop_assert!(!url.host.is_empty());
            prop_assert!(url.url.contains("://"));
        }
    }

    #[test]
    fn url_like_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("http://".to_owned()), Just("hxxps://".to_owned()), Just("www.".to_owned()),
                Just("[.]".to_owned()), Just("(dot)".to_owned()), Just("%".to_owned()),
                Just("%2e".to_owned()), Just("@".to_owned()), Just("?url=".to_owned()),
                Just("&u=http%3A%2F%2F".to_owned()), Just("/".to_owned()), Just(":".to_owned()),
                Just("[".to_owned()), Just("]".to_owned()), Just("0x".to_owned()),
                Just(".co.uk".to_owned()), Just("&#46;".to_owned()), Just("é".to_owned()),
                "[a-z0-9.-]{0,12}",
            ],
            0..40,
        )
    ) {
        let text: String = parts.concat();
        let _ = extract_from_text(&text);
        let _ = registrable_domain(&text);
    }

    #[test]
    fn text_addresses_are_bounded_mailto_uris(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("@".to_owned()), Just("mailto:".to_owned()), Just("skype:".to_owned()),
                Just(".com".to_owned()), Just(".co.uk".to_owned()), Just(")".to_owned()),
                Just("(".to_owned()), Just(" ".to_owned()), Just("é".to_owned()),
                Just(",".to_owned()), Just("/".to_owned()), "[a-z0-9._-]{0,12}",
            ],
            0..40,
        ),
        max in 0usize..5,
    ) {
        let text: String = parts.concat();
        let uris = text_mail_uris(&text, max);
        prop_assert!(uris.len() <= max);
        for uri in uris {
            prop_assert!(uri.to_ascii_lowercase().starts_with("mailto:"));
            prop_assert!(uri.contains('@'));
            prop_assert!(!uri.contains(' '));
        }
    }

    #[test]
    fn arbitrary_messages_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let message = parse(&raw, &Limits::default());
        let _ = extract(&message);
        let _ = chaff::lists::received::client_ip(&message, &chaff::message::Envelope::default(), &[]);
    }

    #[test]
    fn received_and_srs_parsing_never_panic(value in "[ -~\\[\\]():.a-f0-9]{0,120}", sender in any::<String>()) {
        let raw = format!("Received: {value}\nSubject: x\n\nbody\n");
        let message = parse(raw.as_bytes(), &Limits::default());
        let _ = chaff::lists::received::received_ips(&message);
        let _ = chaff::auth::parse_srs(&sender);
    }
}

#[test]
fn html_and_text_links_with_obfuscation_and_redirectors() {
    let raw = concat!(
        "From: a@example.org\n",
        "Subject: links\n",
        "MIME-Version: 1.0\n",
        "Content-Type: multipart/alternative; boundary=b\n\n",
        "--b\nContent-Type: text/plain\n\n",
        "Visit hxxp://login[.]bank-secure[.]example[.]co[.]uk/verify or shop.example.com.ru/deal\n",
        "--b\nContent-Type: text/html\n\n",
        "<a href=\"https://www.google.com/url?q=http%3A%2F%2Fphish.example.net%2Fa&amp;sa=D\">x</a>",
        "<img src=\"http://img.example.org/p.gif\"> www.example.info\n",
        "--b--\n",
    );
    let message = parse(raw.as_bytes(), &Limits::default());
    let urls = extract(&message);
    let pairs: Vec<(&str, &str)> = urls
        .iter()
        .map(|u| (u.host.as_str(), u.domain.as_str()))
        .collect();
    for expected in [
        ("login.bank-secure.example.co.uk", "example.co.uk"),
        ("shop.example.com.ru", "example.com.ru"),
        ("www.google.com", "google.com"),
        ("phish.example.net", "example.net"),
        ("img.example.org", "example.org"),
        ("www.example.info", "example.info"),
    ] {
        assert!(pairs.contains(&expected), "{expected:?} not in {pairs:?}");
    }
}

#[test]
fn checkv2_reply_lists_url_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = chaff::Engine::open(chaff::config::Config::embedded(), dir.path()).unwrap();
    let raw = b"Subject: x\n\nsee http://a.example.com/1 and http://a.example.com/2 and www.b.example.org\n";
    let scan = engine.scan(raw, &chaff::message::Envelope::default());
    let reply = chaff::report::CheckV2Reply::new(&scan, 0.0);
    assert_eq!(reply.urls, vec!["a.example.com", "www.b.example.org"]);
}
