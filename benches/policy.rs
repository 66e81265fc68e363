//! What the policy modules cost per message (issue #20: at most 20 µs for
//! every lookup together): the reply and known-sender look-ups before the
//! score, then rate limits (three buckets), the spam-burst bucket,
//! greylisting and remembering the reply after it, over a state of
//! 100,000 entries; each update appended to the journal as in the daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use chaff::config::Config;
use chaff::message::{Envelope, parse};
use chaff::policy::state::{Entry, Value};
use chaff::policy::{self, PolicyState, Profiles, ScanRequest};
use chaff::verdict;

const SENDERS: u64 = 10_000;

fn config() -> Config {
    Config::from_toml_over_defaults(
        r#"
        [ratelimit.buckets.user]
        key = "user"
        burst = 1000000
        rate = "1000 / 1s"
        [ratelimit.buckets.ip]
        key = "ip"
        burst = 1000000
        rate = "1000 / 1s"
        [ratelimit.buckets.rcpt]
        key = "rcpt"
        burst = 1000000
        rate = "1000 / 1s"
        [greylist]
        enabled = true
        "#,
    )
    .unwrap()
}

fn envelope(i: u64, authenticated: bool) -> Envelope {
    Envelope {
        client_ip: format!("198.51.{}.{}", (i / 250) % 250, i % 250)
            .parse()
            .ok(),
        mail_from: Some(format!("sender{i}@example.com")),
        recipients: vec![format!("user{}@example.org", i % 97)],
        user: authenticated.then(|| format!("user{}@example.org", i % 97)),
        ..Envelope::default()
    }
}

fn per_message(c: &mut Criterion) {
    let config = config();
    let profiles = Profiles::new(&config.profiles).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = PolicyState::open(dir.path(), 1_000_000, Duration::from_secs(1)).unwrap();
    let message = parse(
        b"From: a@example.com\r\nSubject: hi\r\nIn-Reply-To: <x@example.com>\r\n\
          Message-ID: <m@example.com>\r\n\r\nhello\r\n",
        &config.limits,
    );
    let base = verdict::combine(Vec::new(), config.scoring(), "");
    let mut now_ms = policy::unix_now_ms();
    // 100,000 other entries (senders the site's users wrote to), so the
    // look-ups run in a map of a real size.
    state
        .update(now_ms / 1000, |txn| {
            for i in 0..100_000 {
                txn.put(
                    &format!("known:filler{i}@example.net"),
                    Entry {
                        value: Value::Seen { count: 1 },
                        expires: now_ms / 1000 + 86_400,
                    },
                );
            }
        })
        .unwrap();
    // Every sender seen, in and out.
    let after = |i: u64, now_ms: u64| {
        let env = envelope(i % SENDERS, i.is_multiple_of(2));
        let applied = profiles.select(&env, &ScanRequest::default());
        let scoring = config.scoring().with_settings(&applied.settings);
        let mut verdict = base.clone();
        verdict.score = 5.0;
        let scanned = policy::Scanned {
            envelope: &env,
            applied: &applied,
            message_id: Some("m@x"),
            now_ms,
        };
        policy::after(
            &config.policy_modules(),
            &state,
            &scanned,
            &mut verdict,
            &scoring,
        );
        verdict
    };
    for i in 0..SENDERS * 5 {
        after(i, now_ms);
    }
    let mut i = 0u64;
    c.bench_function(
        "policy/before+after (3 buckets, greylist, replies; 100k entries)",
        |b| {
            b.iter(|| {
                i += 1;
                now_ms += 1;
                let env = envelope(i % SENDERS, i.is_multiple_of(2));
                let symbols = policy::before(
                    &config.policy_modules(),
                    &state,
                    &env,
                    &message,
                    now_ms / 1000,
                );
                let verdict = after(i, now_ms);
                (symbols, verdict)
            })
        },
    );
    println!("state entries: {:?}", state.stats(now_ms / 1000));
}

criterion_group!(benches, per_message);
criterion_main!(benches);
