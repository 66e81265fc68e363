#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The parser against the hand-made fixtures in `corpus/`, described in
//! `corpus/fixtures.toml`, plus the non-message fixtures, a generated 10 MB
//! message, and GTUBE through the whole engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chaff::message::{self, Limits, Message, ParseProblem};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    fixture: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    file: String,
    #[allow(dead_code)]
    charset: String,
    subject_contains: String,
    #[serde(default)]
    text_contains: Vec<String>,
    #[serde(default)]
    text_absent: Vec<String>,
    #[serde(default)]
    urls_contains: Vec<String>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn fixtures() -> Vec<Fixture> {
    let text = std::fs::read_to_string(corpus().join("fixtures.toml")).unwrap();
    let file: FixtureFile = toml::from_str(&text).unwrap();
    file.fixture
}

fn parse_file(name: &str) -> Message {
    let bytes = std::fs::read(corpus().join(name)).unwrap();
    message::parse(&bytes, &Limits::default())
}

/// Every way `fixture` is not met by the parser, one line each.
fn fixture_failures(fixture: &Fixture) -> Vec<String> {
    let message = parse_file(&fixture.file);
    let text = message.visible_text();
    let mut failures = Vec::new();
    if !message.subject.contains(&fixture.subject_contains) {
        failures.push(format!(
            "subject {:?} does not contain {:?}",
            message.subject, fixture.subject_contains
        ));
    }
    for wanted in &fixture.text_contains {
        if !text.contains(wanted.as_str()) {
            failures.push(format!("visible text lacks {wanted:?}"));
        }
    }
    for unwanted in &fixture.text_absent {
        if text.contains(unwanted.as_str()) {
            failures.push(format!("visible text contains {unwanted:?}"));
        }
    }
    for url in &fixture.urls_contains {
        if !message.links.iter().any(|link| link == url) {
            failures.push(format!("links {:?} lack {url:?}", message.links));
        }
    }
    failures
}

fn check_fixture(file: &str) {
    let all = fixtures();
    let fixture = all
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} is not in corpus/fixtures.toml"));
    let failures = fixture_failures(fixture);
    if !failures.is_empty() {
        let message = parse_file(file);
        panic!(
            "{file}:\n  {}\n--- visible text ---\n{}\n--- problems: {:?}",
            failures.join("\n  "),
            message.visible_text(),
            message.problems
        );
    }
}

/// One test per fixture, so a report names each failing file.
macro_rules! fixture_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check_fixture($file);
            }
        )*
        const TESTED_FIXTURES: &[&str] = &[$($file),*];
    };
}

fixture_tests! {
    fixture_utf8 => "utf8.eml",
    fixture_iso_8859_1 => "iso-8859-1.eml",
    fixture_iso_8859_2 => "iso-8859-2.eml",
    fixture_iso_8859_5 => "iso-8859-5.eml",
    fixture_iso_8859_15 => "iso-8859-15.eml",
    fixture_koi8_r => "koi8-r.eml",
    fixture_windows_1251 => "windows-1251.eml",
    fixture_gb2312 => "gb2312.eml",
    fixture_big5 => "big5.eml",
    fixture_shift_jis => "shift_jis.eml",
    fixture_iso_2022_jp => "iso-2022-jp.eml",
    fixture_euc_kr => "euc-kr.eml",
    fixture_html_only => "html-only.eml",
    fixture_base64_text => "base64-text.eml",
    fixture_nested_multipart => "nested-multipart.eml",
    fixture_empty_body => "empty-body.eml",
    fixture_headers_only => "headers-only.eml",
    fixture_malformed_mime => "malformed-mime.eml",
    fixture_gtube => "gtube.eml",
    fixture_ham_plain => "ham-plain.eml",
    fixture_spam_plain => "spam-plain.eml",
}

/// Every `.eml` in `corpus/` is described in fixtures.toml and has a test
/// above, and the descriptions name no missing file.
#[test]
fn every_eml_fixture_is_listed_and_tested() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    let listed: BTreeSet<String> = fixtures().into_iter().map(|f| f.file).collect();
    let tested: BTreeSet<String> = TESTED_FIXTURES.iter().map(|s| (*s).to_owned()).collect();
    assert!(!on_disk.is_empty());
    assert_eq!(on_disk, listed, "corpus/*.eml vs fixtures.toml");
    assert_eq!(listed, tested, "fixtures.toml vs the tests in this file");
}

/// The assertions above are not vacuous: a wrong expectation is caught.
#[test]
fn fixture_checks_detect_a_wrong_expectation() {
    let wrong = Fixture {
        file: "ham-plain.eml".into(),
        charset: "utf-8".into(),
        subject_contains: "no such subject".into(),
        text_contains: vec!["no such text".into()],
        text_absent: vec!["budget spreadsheet".into()],
        urls_contains: vec!["http://no.such.example/".into()],
    };
    assert_eq!(fixture_failures(&wrong).len(), 4);
}

#[test]
fn binary_junk_parses_without_panic_and_has_no_headers() {
    let message = parse_file("binary-junk.bin");
    assert!(
        message.headers.is_empty(),
        "binary junk yielded headers: {:?}",
        message.headers
    );
    assert_eq!(message.raw_size, 4096);
}

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn ten_megabyte_text_message_is_capped_at_max_text_bytes() {
    let limits = Limits::default();
    let mut raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: huge text\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        .to_vec();
    let words = ["alpha ", "bravo ", "charlie ", "delta ", "echo\r\n"];
    let mut i = 0;
    while raw.len() < TEN_MB {
        raw.extend_from_slice(words[i % words.len()].as_bytes());
        i += 1;
    }
    let message = message::parse(&raw, &limits);
    assert_eq!(message.subject, "huge text");
    let text = message.visible_text();
    assert!(
        text.len() <= limits.max_text_bytes,
        "visible text {} > max_text_bytes {}",
        text.len(),
        limits.max_text_bytes
    );
    // Capped, not dropped: the kept text is most of the cap.
    assert!(text.len() > limits.max_text_bytes / 2, "{}", text.len());
    assert!(text.starts_with("alpha bravo"));
    assert!(
        message.problems.contains(&ParseProblem::TooMuchText),
        "{:?}",
        message.problems
    );
    assert!(!message.problems.contains(&ParseProblem::Truncated));
}

#[test]
fn ten_megabyte_base64_attachment_parses() {
    let limits = Limits::default();
    let mut raw = b"From: a@example.com\r\nSubject: huge attachment\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n\
--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nsee the attached blob\r\n\
--BOUNDARY\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"blob.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    // 76-character base64 lines of 57 decoded bytes each.
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    let mut lines = 0usize;
    while raw.len() < TEN_MB {
        raw.extend_from_slice(line);
        lines += 1;
    }
    raw.extend_from_slice(b"--BOUNDARY--\r\n");
    let message = message::parse(&raw, &limits);
    assert_eq!(message.subject, "huge attachment");
    assert!(message.visible_text().contains("see the attached blob"));
    assert_eq!(message.attachments.len(), 1, "{:?}", message.attachments);
    let attachment = &message.attachments[0];
    assert_eq!(attachment.content_type, "application/octet-stream");
    assert_eq!(attachment.file_name.as_deref(), Some("blob.bin"));
    assert_eq!(attachment.size, lines * 54);
    assert!(message.visible_text().len() <= limits.max_text_bytes);
}

#[test]
fn gtube_is_rejected_by_the_engine() {
    let data = tempfile::tempdir().unwrap();
    let engine = chaff::Engine::open(chaff::config::Config::embedded(), data.path()).unwrap();
    let raw = std::fs::read(corpus().join("gtube.eml")).unwrap();
    let scan = engine.scan(&raw, &message::Envelope::default());
    assert_eq!(
        scan.verdict.action,
        chaff::Action::Reject,
        "{:?}",
        scan.verdict
    );
    assert!(scan.verdict.symbols.iter().any(|s| s.name == "GTUBE"));

    // And a message without the string is not.
    let ham = std::fs::read(corpus().join("ham-plain.eml")).unwrap();
    let scan = engine.scan(&ham, &message::Envelope::default());
    assert_ne!(scan.verdict.action, chaff::Action::Reject);
}
