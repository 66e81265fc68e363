#![allow(clippy::unwrap_used, clippy::expect_used)]
//! DNS blocklists against a real DNS server on 127.0.0.1: return codes and
//! bits to symbols, failures and timeouts made visible, and the message's
//! DNS budget holding when the server is slow or silent.

mod dnsserver;

use std::time::Duration;

use chaff::config::Config;
use chaff::message::Envelope;
use chaff::{Engine, Scan};
use dnsserver::{DnsServer, Zones};

fn zones() -> Zones {
    let mut z = Zones::default();
    z.a("10.2.0.192.rbl.test", "127.0.0.2")
        .a("11.2.0.192.rbl.test", "127.0.0.4")
        .a("12.2.0.192.rbl.test", "127.0.0.9")
        .a("spamdomain.test.uribl.test", "127.0.1.2")
        .a("phishdomain.test.uribl.test", "127.0.1.4")
        .a("phishdomain.test.bits.test", "127.0.0.72")
        .a("10.2.0.192.refused-answer.test", "127.255.255.254")
        .mx("sender.test", "mx.sender.test.")
        .a("mx.sender.test", "192.0.2.25")
        .a("nomx.test", "192.0.2.26")
        .txt("unrelated.test", "x")
        .ptr("10.2.0.192.in-addr.arpa", "mail.sender.test.")
        .ptr("11.2.0.192.in-addr.arpa", "dynamic-11.isp.test.");
    z
}

fn config(server: &DnsServer, extra: &str) -> Config {
    let text = format!(
        r#"
[network]
enabled = true
nameservers = ["{addr}"]
query_timeout_ms = 400
attempts = 1
budget_ms = 1200
[network.rbl.SPAMHAUS_ZEN]
enabled = false
[network.uribl.SPAMHAUS_DBL]
enabled = false
[network.uribl.SURBL]
enabled = false
[network.rbl.TEST]
zone = "rbl.test"
symbol = "RBL_TEST"
weight = 1.0
returncodes = {{ "127.0.0.2" = "RBL_TEST_SPAM", "127.0.0.4" = "RBL_TEST_EXPLOIT" }}
[network.rbl.REFUSING]
zone = "refused-answer.test"
symbol = "RBL_REFUSING"
[network.uribl.TEST]
zone = "uribl.test"
symbol = "URIBL_TEST"
returncodes = {{ "127.0.1.2" = "URIBL_TEST_SPAM", "127.0.1.4" = "URIBL_TEST_PHISH" }}
[network.uribl.BITS]
zone = "bits.test"
symbol = "URIBL_BITS"
bits = {{ "8" = "URIBL_BITS_PH", "64" = "URIBL_BITS_ABUSE" }}
{auth}
{extra}
"#,
        addr = server.addr,
        auth = if extra.contains("[auth]") {
            ""
        } else {
            "[auth]\nspf = false\ndkim = false\ndmarc = false\narc = false\n"
        },
    );
    Config::from_toml_over_defaults(&text).unwrap()
}

fn scan(config: Config, raw: &str, envelope: &Envelope) -> Scan {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config, dir.path()).unwrap();
    engine.scan(raw.as_bytes(), envelope)
}

fn symbol<'a>(scan: &'a Scan, name: &str) -> Option<&'a chaff::verdict::ScoredSymbol> {
    scan.verdict.symbols.iter().find(|s| s.name == name)
}

fn names(scan: &Scan) -> Vec<String> {
    scan.verdict
        .symbols
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

fn envelope(ip: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        mail_from: Some("alice@sender.test".into()),
        helo: Some("mail.sender.test".into()),
        ..Envelope::default()
    }
}

const PLAIN: &str = "From: alice@sender.test\nSubject: hi\n\nhello\n";

#[test]
fn rbl_return_codes_map_to_symbols() {
    let server = DnsServer::start(zones());
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.10"));
    let found = symbol(&s, "RBL_TEST_SPAM").unwrap_or_else(|| panic!("{:?}", names(&s)));
    assert_eq!(found.options, vec!["192.0.2.10"]);
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.11"));
    assert!(symbol(&s, "RBL_TEST_EXPLOIT").is_some(), "{:?}", names(&s));
    // A code no map names: the list's own symbol, with its configured weight.
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.12"));
    assert_eq!(symbol(&s, "RBL_TEST").unwrap().weight, 1.0);
    // Not listed: nothing.
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.99"));
    assert!(
        !names(&s).iter().any(|n| n.starts_with("RBL_TEST")),
        "{:?}",
        names(&s)
    );
}

#[test]
fn a_refusal_answer_is_a_failure_not_a_listing() {
    let server = DnsServer::start(zones());
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.10"));
    assert!(symbol(&s, "RBL_REFUSING").is_none());
    assert!(symbol(&s, "RBL_REFUSING_FAIL").is_some(), "{:?}", names(&s));
}

#[test]
fn client_comes_from_received_when_envelope_has_none() {
    let server = DnsServer::start(zones());
    let raw = "Received: from x.sender.test (x.sender.test [192.0.2.10]) by mx.local; Mon, 1 Jan 2024 00:00:00 +0000\nFrom: alice@sender.test\nSubject: hi\n\nhello\n";
    let s = scan(config(&server, ""), raw, &Envelope::default());
    assert!(symbol(&s, "RBL_TEST_SPAM").is_some(), "{:?}", names(&s));
}

#[test]
fn uribl_by_registrable_domain_codes_and_bits() {
    let server = DnsServer::start(zones());
    let raw = "From: alice@sender.test\nSubject: links\n\nhttp://www.spamdomain.test/a and hxxp://login.phishdomain[.]test/x\n";
    let s = scan(config(&server, ""), raw, &envelope("192.0.2.99"));
    assert_eq!(
        symbol(&s, "URIBL_TEST_SPAM").unwrap().options,
        vec!["spamdomain.test"]
    );
    assert!(symbol(&s, "URIBL_TEST_PHISH").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "URIBL_BITS_PH").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "URIBL_BITS_ABUSE").is_some(), "{:?}", names(&s));
    assert!(server.asked("spamdomain.test.uribl.test"));
    assert!(!server.asked("www.spamdomain.test.uribl.test"));
}

#[test]
fn sender_domain_without_mx_or_address() {
    let server = DnsServer::start(zones());
    let mut env = envelope("192.0.2.99");
    let s = scan(config(&server, ""), PLAIN, &env);
    assert!(
        symbol(&s, "HFILTER_FROMHOST_NORES_A_OR_MX").is_none(),
        "{:?}",
        names(&s)
    );
    env.mail_from = Some("bob@nomx.test".into());
    let s = scan(config(&server, ""), PLAIN, &env);
    assert!(
        symbol(&s, "HFILTER_FROMHOST_NORES_A_OR_MX").is_none(),
        "A record suffices"
    );
    env.mail_from = Some("bob@nowhere.test".into());
    let s = scan(config(&server, ""), PLAIN, &env);
    assert!(
        symbol(&s, "HFILTER_FROMHOST_NORES_A_OR_MX").is_some(),
        "{:?}",
        names(&s)
    );
}

#[test]
fn failing_and_slow_lists_are_visible_and_bounded() {
    let server = DnsServer::start(zones());
    let extra = r#"
[network.rbl.BROKEN]
zone = "fail.test"
symbol = "RBL_BROKEN"
[network.rbl.SLOW]
zone = "slow.test"
symbol = "RBL_SLOW"
[network.uribl.SILENT]
zone = "silent.test"
symbol = "URIBL_SILENT"
"#;
    let raw = "From: alice@sender.test\nSubject: links\n\nhttp://www.spamdomain.test/a\n";
    let s = scan(config(&server, extra), raw, &envelope("192.0.2.10"));
    assert!(symbol(&s, "RBL_BROKEN_FAIL").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "RBL_SLOW_FAIL").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "URIBL_SILENT_FAIL").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "DNS_TIMEOUT").is_some(), "{:?}", names(&s));
    // The healthy lists still answered within the same budget.
    assert!(symbol(&s, "RBL_TEST_SPAM").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "URIBL_TEST_SPAM").is_some(), "{:?}", names(&s));
    // DNS_TIMEOUT above says the budget, not the silent lists, ended the
    // wait; speed itself is not asserted in tests.
}

#[test]
fn a_silent_server_costs_one_budget_and_says_so_everywhere() {
    let server = DnsServer::start(zones());
    server.go_silent();
    let extra = "[auth]\nspf = true\ndkim = true\ndmarc = true\narc = true\n";
    let raw = "From: alice@sender.test\nSubject: links\n\nhttp://www.spamdomain.test/a\n";
    let s = scan(config(&server, extra), raw, &envelope("192.0.2.10"));
    assert!(symbol(&s, "DNS_TIMEOUT").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "RBL_TEST_FAIL").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "URIBL_TEST_FAIL").is_some(), "{:?}", names(&s));
    assert!(symbol(&s, "R_SPF_DNSFAIL").is_some(), "{:?}", names(&s));
}

#[test]
fn network_off_means_no_queries() {
    let server = DnsServer::start(zones());
    let mut config = config(&server, "");
    config.network.enabled = false;
    let s = scan(config, PLAIN, &envelope("192.0.2.10"));
    assert!(symbol(&s, "RBL_TEST_SPAM").is_none());
    assert!(server.queries.lock().unwrap().is_empty());
}

#[test]
fn local_url_lists_match_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("phish.txt");
    std::fs::write(
        &list,
        "# feed\nhttp://phish.example.net/login/\n*.bad.example.org\n",
    )
    .unwrap();
    let text = format!(
        "[url_lists.PHISH]\npath = {:?}\nsymbol = \"LOCAL_PHISH\"\nweight = 7.0\n",
        list.display().to_string()
    );
    let config = Config::from_toml_over_defaults(&text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = Engine::open(config, data.path()).unwrap();
    let raw = "Subject: x\n\nhttps://phish.example.net/login/step?a=1 and www.x.bad.example.org/\n";
    let s = engine.scan(raw.as_bytes(), &Envelope::default());
    let found = symbol(&s, "LOCAL_PHISH").unwrap();
    assert_eq!(found.score, 7.0);
    assert_eq!(
        found.options,
        vec!["phish.example.net/login/", "*.bad.example.org"]
    );
    // Rewritten: a later scan, once the list's check interval has passed,
    // sees the new contents. Polled a bounded number of times (the interval
    // is a few seconds), so a list that never reloads fails the test.
    std::fs::write(&list, "other.example.com\n").unwrap();
    let reloaded = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        let s = engine.scan(raw.as_bytes(), &Envelope::default());
        symbol(&s, "LOCAL_PHISH").is_none()
    });
    assert!(reloaded, "list not reloaded");
}

#[test]
fn envelope_sanity_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(Config::embedded(), dir.path()).unwrap();
    let check = |helo: &str, hostname: Option<&str>, rcpts: usize| {
        let env = Envelope {
            helo: Some(helo.into()),
            client_hostname: hostname.map(str::to_owned),
            recipients: (0..rcpts).map(|i| format!("u{i}@example.com")).collect(),
            ..Envelope::default()
        };
        names(&engine.scan(PLAIN.as_bytes(), &env))
    };
    assert!(check("[192.0.2.1]", None, 1).contains(&"HFILTER_HELO_BAREIP".to_owned()));
    assert!(check("localhost", None, 1).contains(&"HFILTER_HELO_NOT_FQDN".to_owned()));
    assert!(
        check("mail.a.example", Some("mx1.other.example"), 1)
            .contains(&"HFILTER_HELO_NOT_RDNS".to_owned())
    );
    assert!(
        !check("mail.a.example", Some("mx1.a.example"), 1)
            .contains(&"HFILTER_HELO_NOT_RDNS".to_owned())
    );
    assert!(
        check("mail.a.example", Some("unknown"), 1)
            .contains(&"HFILTER_HOSTNAME_UNKNOWN".to_owned())
    );
    assert!(check("mail.a.example", None, 50).contains(&"RCPT_COUNT_MANY".to_owned()));
}

#[test]
fn helo_is_compared_with_the_looked_up_reverse_name() {
    let server = DnsServer::start(zones());
    // 192.0.2.10 reverses to mail.sender.test, the HELO: nothing.
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.10"));
    assert!(
        symbol(&s, "HFILTER_HELO_NOT_RDNS").is_none(),
        "{:?}",
        names(&s)
    );
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.11"));
    let found = symbol(&s, "HFILTER_HELO_NOT_RDNS").unwrap_or_else(|| panic!("{:?}", names(&s)));
    assert_eq!(
        found.options,
        vec!["mail.sender.test != dynamic-11.isp.test"]
    );
    let s = scan(config(&server, ""), PLAIN, &envelope("192.0.2.99"));
    assert!(
        symbol(&s, "HFILTER_HOSTNAME_UNKNOWN").is_some(),
        "{:?}",
        names(&s)
    );
}

#[test]
fn a_resolver_nothing_listens_on_fails_lookups_at_once_and_says_so() {
    // A port that was just free: nothing listens on it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[network]\nenabled = true\nnameservers = [\"127.0.0.1:{port}\"]\nquery_timeout_ms = 400\nattempts = 1\nbudget_ms = 1200\n[auth]\nspf = true\ndkim = true\ndmarc = true\narc = true\n"
    );
    let config = Config::from_toml_over_defaults(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config, dir.path()).unwrap();
    let raw = "From: alice@sender.test\nSubject: links\n\nhttp://www.spamdomain.test/a\n";
    for _ in 0..2 {
        let s = engine.scan(raw.as_bytes(), &envelope("192.0.2.10"));
        let unavailable =
            symbol(&s, "DNS_UNAVAILABLE").unwrap_or_else(|| panic!("{:?}", names(&s)));
        assert_eq!(unavailable.options, vec!["resolver down"]);
        // The lookups still show as failed.
        assert!(symbol(&s, "R_SPF_DNSFAIL").is_some(), "{:?}", names(&s));
        assert!(
            names(&s)
                .iter()
                .any(|n| n.starts_with("RBL_") && n.ends_with("_FAIL")),
            "{:?}",
            names(&s)
        );
    }
    assert_eq!(engine.resolver_down(), Some((true, 2)));
}

#[test]
fn a_listening_resolver_is_not_reported_down() {
    let server = DnsServer::start(zones());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(&server, ""), dir.path()).unwrap();
    let s = engine.scan(PLAIN.as_bytes(), &envelope("192.0.2.10"));
    assert!(symbol(&s, "DNS_UNAVAILABLE").is_none(), "{:?}", names(&s));
    assert!(symbol(&s, "RBL_TEST_SPAM").is_some(), "{:?}", names(&s));
    assert_eq!(engine.resolver_down(), Some((false, 0)));
}
