#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Robustness properties: no input makes the parser, the tokenizer, the HTML
//! renderer, the engine or the mailbox reader panic, and a few invariants
//! that hold for any input.
//!
//! Case counts are kept moderate so the whole file runs in well under 30 s in
//! a debug build; raise `PROPTEST_CASES` locally for a deeper run.

use std::path::Path;

use chaff::Engine;
use chaff::config::Config;
use chaff::extract::{Features, Tokenizer};
use chaff::mailbox::Messages;
use chaff::message::{self, Envelope, Limits, Message};
use chaff::store::Class;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

const CASES: u32 = 512;

/// `CASES` cases unless `PROPTEST_CASES` says otherwise; a failing seed is
/// replayed with `PROPTEST_RNG_SEED`.
fn runner_config() -> RunnerConfig {
    let from_env = RunnerConfig::default();
    RunnerConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            CASES
        },
        failure_persistence: None,
        ..from_env
    }
}

/// Inputs the properties below once found to panic, kept as fixed cases.
const REGRESSIONS: &[&[u8]] = &[
    // mail-parser 0.11.9 hits `debug_assert!(false, "Invalid part ID, could
    // not find multipart.")` (parsers/message.rs:485) when a message/rfc822
    // part that is not a message is followed by one that is. Debug builds
    // (and so `cargo test`) panic; release builds recover.
    b"Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\nContent-Type: message/rfc822\n\n\
x\n--o\nContent-Type: message/rfc822\n\nA: b\n\nc\n--o--\n",
];

#[test]
fn regressions_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(Config::embedded(), dir.path()).unwrap();
    let limits = Limits::default();
    for raw in REGRESSIONS {
        let message = message::parse(raw, &limits);
        check_message(raw, &message, &limits).unwrap();
        check_features(raw, &message, &Tokenizer::new(5)).unwrap();
        engine.scan(raw, &Envelope::default());
    }
}

// ---------------------------------------------------------------- inputs

/// Header lines a mail parser has to take seriously.
const HEADER_LINES: &[&str] = &[
    "From: \"Alice\" <alice@example.com>\r\n",
    "From: =?utf-8?B?w6lsw6h2ZQ==?= <x@example.org>\n",
    "To: bob@example.com, \"Carol, C\" <carol@example.net>\n",
    "Subject: =?iso-8859-1?Q?caf=E9_au_lait?=\n",
    "Subject: =?utf-8?B?broken\n",
    "Subject: plain words here\r\n",
    "Message-ID: <abc@example.com>\n",
    "MIME-Version: 1.0\n",
    "Content-Type: text/plain; charset=utf-8\n",
    "Content-Type: text/plain; charset=\"x-unknown-charset\"\n",
    "Content-Type: text/html; charset=iso-2022-jp\n",
    "Content-Type: multipart/mixed; boundary=\"XYZ\"\n",
    "Content-Type: multipart/alternative; boundary=XYZ\n",
    "Content-Type: message/rfc822\n",
    "Content-Transfer-Encoding: base64\n",
    "Content-Transfer-Encoding: quoted-printable\n",
    "Content-Transfer-Encoding: 8bit\n",
    "Content-Disposition: attachment; filename*=utf-8''na%C3%AFve.pdf\n",
    "Received: from mx.example.net (mx.example.net [192.0.2.1]) by a.example.org; Mon, 1 Jan 2024 00:00:00 +0000\n",
    "Received: from [300.1.1.1] by\n",
    "X-Folded: a\n\tcontinued\n  again\n",
    "no colon on this line\n",
    ": empty name\n",
    "From sender@example.com Mon Jan  1 00:00:00 2024\n",
];

fn header_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(HEADER_LINES).prop_map(|s| s.as_bytes().to_vec()),
        1 => ("[A-Za-z-]{1,12}", "[ -~]{0,40}")
            .prop_map(|(name, value)| format!("{name}: {value}\n").into_bytes()),
    ]
}

/// Arbitrary bytes after a block of plausible header lines and a separator.
fn headers_then_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(header_line(), 0..10),
        prop::sample::select(vec![&b"\n"[..], b"\r\n", b""]),
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(headers, separator, body)| {
            let mut raw = headers.concat();
            raw.extend_from_slice(separator);
            raw.extend_from_slice(&body);
            raw
        })
}

/// Well-formed messages with nested multiparts, encodings and HTML, to be
/// mutated.
fn skeletons() -> Vec<Vec<u8>> {
    let nested = "From: a@example.com\nSubject: nested\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\n\
preamble\n--outer\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n\
--inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
caf=C3=A9 soft=\nbreak\n--inner\nContent-Type: text/html; charset=utf-8\n\n\
<html><head><style>p{}</style></head><body><p>Hi &amp; <a href=\"http://x.example/\">there</a>\
<img src=\"http://i.example/p.gif\"><script>hidden()</script></body></html>\n--inner--\n\
--outer\nContent-Type: application/pdf; name=\"r.pdf\"\nContent-Transfer-Encoding: base64\n\n\
JVBERi0xLjQKJcfsj6IK\n--outer\nContent-Type: message/rfc822\n\n\
From: b@example.com\nSubject: inner message\nContent-Type: text/plain\n\ninner body\n\
--outer--\nepilogue\n";
    let base64 = "From: a@example.com\r\nSubject: =?utf-8?B?w6l0w6k=?=\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
SGVsbG8gd29ybGQsIG5hw692ZSBjYWbDqQo=\r\n";
    let deep = {
        let mut s = String::from("Subject: deep\n");
        for level in 0..20 {
            s.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\n\n--b{level}\n"
            ));
        }
        s.push_str("Content-Type: text/plain\n\ninnermost\n");
        s
    };
    let iso2022 = b"Subject: =?ISO-2022-JP?B?GyRCJEYkOSRIGyhC?=\n\
Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s$K$A$O\x1b(B\n"
        .to_vec();
    vec![
        nested.as_bytes().to_vec(),
        base64.as_bytes().to_vec(),
        deep.into_bytes(),
        iso2022,
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        &b"--"[..],
        b"--outer",
        b"--inner--",
        b"\n\n",
        b"\r",
        b"=",
        b"=?",
        b"?=",
        b"<",
        b"&#",
        b"boundary=",
        b"\xff\xfe",
        b"\x1b$B",
    ]);
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                interesting.prop_map(|s| s.to_vec()),
                prop::collection::vec(any::<u8>(), 1..16)
            ]
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), 1usize..128).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(raw: &mut Vec<u8>, mutation: &Mutation) {
    if raw.is_empty() {
        if let Mutation::Insert(_, bytes) = mutation {
            raw.extend_from_slice(bytes);
        }
        return;
    }
    match mutation {
        Mutation::Flip(i, b) => {
            let at = i.index(raw.len());
            raw[at] ^= b | 1;
        }
        Mutation::Insert(i, bytes) => {
            let at = i.index(raw.len() + 1);
            raw.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i.index(raw.len());
            let end = (at + n).min(raw.len());
            raw.drain(at..end);
        }
        Mutation::Duplicate(i, n) => {
            let at = i.index(raw.len());
            let end = (at + n).min(raw.len());
            let copy = raw[at..end].to_vec();
            raw.splice(end..end, copy);
        }
        Mutation::Truncate(i) => {
            let at = i.index(raw.len());
            raw.truncate(at);
        }
    }
}

fn mutated_skeleton() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(skeletons()),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(|(mut raw, mutations)| {
            for m in &mutations {
                apply(&mut raw, m);
            }
            raw
        })
}

/// Every kind of message input above, and plain arbitrary bytes.
fn any_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        headers_then_bytes(),
        mutated_skeleton(),
    ]
}

fn html_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "<",
                    ">",
                    "</",
                    "<!--",
                    "-->",
                    "<a href=\"",
                    "<img src='",
                    "<script>",
                    "</script>",
                    "<style>",
                    "</style",
                    "<p>",
                    "<br/>",
                    "&amp;",
                    "&#",
                    "&#x",
                    "&#1114112;",
                    "&#xD800;",
                    "&nbsp",
                    "\"",
                    "'",
                    "=",
                    " ",
                    "\u{e9}",
                    "\u{1F600}",
                    "<title>",
                    "<head",
                    "</HEAD>",
                    "<ScRiPt",
                    "<a",
                    " href=",
                    "x",
                    "<font color=",
                    "</font>",
                    " style=\"",
                    "display:none;",
                    "color:#fff;",
                    "font-size:0",
                    " bgcolor=",
                    "rgb(",
                    "white",
                    "<td",
                    "</div>",
                    "<body text=",
                ])
                .prop_map(str::to_owned),
                "[a-z0-9 ]{0,8}",
            ],
            0..64
        )
        .prop_map(|pieces| pieces.concat()),
    ]
}

// ---------------------------------------------------------------- checks

/// Invariants of any parse result.
fn check_message(raw: &[u8], message: &Message, limits: &Limits) -> Result<(), TestCaseError> {
    prop_assert_eq!(message.raw_size, raw.len());
    let text = message.visible_text();
    let parts_len: usize = message.text_parts.iter().map(|p| p.text.len()).sum();
    prop_assert!(parts_len <= limits.max_text_bytes);
    prop_assert!(message.headers.len() <= limits.max_headers);
    let header_bytes: usize = message.mime_header_blocks.iter().map(String::len).sum();
    prop_assert!(header_bytes <= message::MAX_MIME_HEADER_BYTES);
    prop_assert!(text.len() >= parts_len);
    let mut problems = message.problems.clone();
    problems.dedup();
    prop_assert_eq!(
        problems.len(),
        message.problems.len(),
        "problems noted twice"
    );
    Ok(())
}

fn check_features(
    raw: &[u8],
    message: &Message,
    tokenizer: &Tokenizer,
) -> Result<(), TestCaseError> {
    let features = Features::extract(raw, message, tokenizer);
    let distinct_grams: std::collections::HashSet<u32> = features.grams.iter().copied().collect();
    prop_assert_eq!(distinct_grams.len(), features.grams.len(), "grams repeat");
    prop_assert!(
        features
            .grams
            .iter()
            .all(|&g| (g as usize) < chaff::extract::grams::GRAM_BUCKETS),
        "gram bucket out of range"
    );
    let distinct: std::collections::HashSet<u64> = features.tokens.iter().copied().collect();
    prop_assert_eq!(distinct.len(), features.tokens.len(), "tokens repeat");
    prop_assert!(
        !features.tokens.contains(&0),
        "token hash 0 is the empty-slot marker"
    );
    Ok(())
}

proptest! {
    #![proptest_config(runner_config())]

    #[test]
    fn parse_and_extract_never_panic(raw in any_message()) {
        let limits = Limits::default();
        let message = message::parse(&raw, &limits);
        check_message(&raw, &message, &limits)?;
        check_features(&raw, &message, &Tokenizer::new(5))?;
    }

    #[test]
    fn parse_within_tight_limits_never_panics(raw in any_message(), cap in 0usize..512) {
        let limits = Limits {
            max_message_bytes: cap * 4,
            max_mime_depth: 2,
            max_mime_parts: 4,
            max_headers: 3,
            max_text_bytes: cap,
            ..Limits::default()
        };
        let message = message::parse(&raw, &limits);
        check_message(&raw, &message, &limits)?;
        check_features(&raw, &message, &Tokenizer::new(1))?;
    }

    #[test]
    fn html_to_text_never_panics(html in html_ish()) {
        let rendered = message::html_to_text(&html);
        prop_assert!(rendered.links.iter().all(|l| !l.is_empty()));
        // Invisible letters are counted among the rendered ones, never beyond.
        let letters = rendered.text.chars().filter(|c| c.is_alphanumeric()).count();
        let invisible = rendered.invisible.hidden_chars + rendered.invisible.low_contrast_chars;
        prop_assert!(invisible <= letters, "{} invisible of {}", invisible, letters);
        if !html.contains('&') {
            // Without character references, a `<` before a letter always
            // starts a tag, so markup never reaches the visible text.
            let bytes = rendered.text.as_bytes();
            prop_assert!(
                !bytes.windows(2).any(|w| w[0] == b'<' && w[1].is_ascii_alphabetic()),
                "markup in text {:?}",
                rendered.text
            );
        }
    }

    #[test]
    fn html_without_markup_is_its_text_with_whitespace_folded(text in any::<String>()) {
        let text = text.replace(['<', '&'], "");
        let rendered = message::html_to_text(&text);
        let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(rendered.text.trim_end(), folded.as_str());
        prop_assert!(rendered.links.is_empty());
    }
}

/// A read-only engine over a store trained on the corpus fixtures with
/// `min_learns = 1`, so the classifier (not only its abstention) runs.
fn trained_engine(dir: &Path) -> Engine {
    let config = Config::from_toml_over_defaults("[classifier]\nmin_learns = 1\n").unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    {
        let mut learner = Engine::open_for_learning(config.clone(), dir).unwrap();
        for (file, class) in [
            ("spam-plain.eml", Class::Spam),
            ("html-only.eml", Class::Spam),
            ("ham-plain.eml", Class::Ham),
            ("utf8.eml", Class::Ham),
        ] {
            learner
                .learn(&std::fs::read(corpus.join(file)).unwrap(), class)
                .unwrap();
        }
        learner.commit().unwrap();
    }
    let engine = Engine::open(config, dir).unwrap();
    assert_eq!(engine.store_stats().spam_learns, 2);
    engine
}

#[test]
fn engine_scan_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let trained = trained_engine(dir.path());
    let empty_dir = tempfile::tempdir().unwrap();
    let untrained = Engine::open(Config::embedded(), empty_dir.path()).unwrap();
    let envelope = Envelope::default();
    let mut runner = TestRunner::new(runner_config());
    runner
        .run(&any_message(), |raw| {
            for engine in [&trained, &untrained] {
                let scan = engine.scan(&raw, &envelope);
                prop_assert!(scan.verdict.score.is_finite(), "{:?}", scan.verdict);
                if let Ok(classification) = &scan.bayes {
                    prop_assert!((0.0..=1.0).contains(&classification.probability));
                }
            }
            prop_assert!(untrained.scan(&raw, &envelope).bayes.is_err());
            let _ = trained.explain(&raw, 10);
            Ok(())
        })
        .unwrap();
}

/// File contents for the mailbox reader: arbitrary, mbox-shaped, or mbox
/// separators spliced into arbitrary bytes.
fn mailbox_content() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            &b"From a@b Mon Jan  1 00:00:00 2024\n"[..],
            b"\n",
            b"\r\n",
            b"\n\nFrom ",
            b">From x\n",
            b">>From y\n",
            b"Subject: s\n\nbody\n",
        ])
        .prop_map(|s| s.to_vec()),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::collection::vec(piece.clone(), 0..40).prop_map(|p| p.concat()),
        prop::collection::vec(piece, 0..40).prop_map(|p| {
            let mut raw = b"From ".to_vec();
            raw.extend(p.concat());
            raw
        }),
    ]
}

#[test]
fn mailbox_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(runner_config());
    runner
        .run(&mailbox_content(), |content| {
            let path = dir.path().join("input");
            std::fs::write(&path, &content).unwrap();
            let messages: Vec<_> = Messages::new(std::slice::from_ref(&path)).collect();
            let mut total = 0usize;
            for item in &messages {
                let raw = item
                    .as_ref()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&raw.origin.path, &path);
                total += raw.bytes.len();
            }
            // Unquoting only removes bytes; splitting never invents any.
            prop_assert!(total <= content.len());
            if content.starts_with(b"From ") {
                prop_assert!(!messages.is_empty());
                let all_start_with_from = messages
                    .iter()
                    .all(|m| m.as_ref().is_ok_and(|m| m.bytes.starts_with(b"From ")));
                prop_assert!(all_start_with_from, "an mbox message lost its From line");
            } else {
                // Not an mbox: the file is one message, byte for byte.
                prop_assert_eq!(messages.len(), 1);
                let only = messages[0].as_ref().unwrap();
                prop_assert_eq!(&only.bytes, &content);
            }
            Ok(())
        })
        .unwrap();
}

/// The same reader over a directory of arbitrary files, one of them an mbox.
#[test]
fn mailbox_reader_over_a_directory_never_panics() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 48,
        ..runner_config()
    });
    runner
        .run(&prop::collection::vec(mailbox_content(), 0..6), |files| {
            let dir = tempfile::tempdir().unwrap();
            for (i, content) in files.iter().enumerate() {
                std::fs::write(dir.path().join(format!("m{i:02}")), content).unwrap();
            }
            let messages: Vec<_> = Messages::new(&[dir.path().to_owned()]).collect();
            prop_assert!(messages.len() >= files.len());
            prop_assert!(messages.iter().all(Result::is_ok));
            Ok(())
        })
        .unwrap();
}
