#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SPF, DKIM, DMARC and forwarding against a real DNS server on 127.0.0.1
//! serving test zones; DKIM-signed fixtures are made here with a key
//! generated for the run.

mod dnsserver;

use chaff::config::Config;
use chaff::message::Envelope;
use chaff::{Engine, Scan};
use dnsserver::{DnsServer, Zones, base64};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

struct Fixture {
    server: DnsServer,
    key_der: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let key_der = Ed25519Key::generate_pkcs8().unwrap();
        let key = Ed25519Key::from_pkcs8_der(&key_der).unwrap();
        let record = format!("v=DKIM1; k=ed25519; p={}", base64(&key.public_key()));
        let mut z = Zones::default();
        z.txt("example.test", "v=spf1 ip4:192.0.2.10 -all")
            .txt("sel._domainkey.example.test", &record)
            .txt("_dmarc.example.test", "v=DMARC1; p=reject")
            .mx("example.test", "mx.example.test.")
            .txt("quar.test", "v=spf1 ip4:192.0.2.10 -all")
            .txt("_dmarc.quar.test", "v=DMARC1; p=quarantine")
            .txt("soft.test", "v=spf1 ip4:192.0.2.10 ~all")
            .txt("fwd.test", "v=spf1 ip4:192.0.2.50 -all")
            .txt("sel._domainkey.list.test", &record)
            .mx("fwd.test", "mx.fwd.test.");
        Fixture {
            server: DnsServer::start(z),
            key_der,
        }
    }

    fn engine(&self, extra: &str) -> (Engine, tempfile::TempDir) {
        self.engine_with_query_timeout(500, extra)
    }

    /// An engine whose single DNS query waits `query_timeout_ms` (the
    /// message's budget is 2 s).
    fn engine_with_query_timeout(
        &self,
        query_timeout_ms: u64,
        extra: &str,
    ) -> (Engine, tempfile::TempDir) {
        let text = format!(
            "[network]\nenabled = true\nnameservers = [\"{}\"]\nquery_timeout_ms = {query_timeout_ms}\nattempts = 1\nbudget_ms = 2000\n[network.rbl.SPAMHAUS_ZEN]\nenabled = false\n[network.uribl.SPAMHAUS_DBL]\nenabled = false\n[network.uribl.SURBL]\nenabled = false\n{extra}",
            self.server.addr
        );
        let config = Config::from_toml_over_defaults(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        (Engine::open(config, dir.path()).unwrap(), dir)
    }

    fn sign(&self, domain: &str, raw: &str) -> String {
        let key = Ed25519Key::from_pkcs8_der(&self.key_der).unwrap();
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector("sel")
            .headers(["From", "To", "Subject"])
            .sign(raw.as_bytes())
            .unwrap();
        format!("{}{raw}", signature.to_header())
    }
}

impl Fixture {
    /// `raw` as a mailing list at list.test resends it: subject tagged
    /// (which breaks the author's DKIM signature), ARC-sealed by the list
    /// after it verified the original.
    fn through_list(&self, raw: &str) -> String {
        use mail_auth::hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
        };
        use mail_auth::{AuthenticatedMessage, AuthenticationResults, MessageAuthenticator};
        let mut udp = ConnectionConfig::udp();
        udp.port = self.server.addr.port();
        let servers = vec![NameServerConfig::new(
            self.server.addr.ip(),
            true,
            vec![udp],
        )];
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let authenticator = MessageAuthenticator::new(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                ResolverOpts::default(),
            )
            .unwrap();
            let original = AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
            let dkim = authenticator.verify_dkim(&original).await;
            assert!(
                dkim.iter()
                    .any(|d| d.result() == &mail_auth::DkimResult::Pass)
            );
            let modified = raw.replace("Subject: ", "Subject: [list] ");
            let parsed = AuthenticatedMessage::parse(modified.as_bytes()).unwrap();
            let arc = authenticator.verify_arc(&parsed).await;
            let results = AuthenticationResults::new("list.test")
                .with_dkim_results(&dkim, "alice@example.test");
            let key = Ed25519Key::from_pkcs8_der(&self.key_der).unwrap();
            let set = mail_auth::arc::ArcSealer::from_key(key)
                .domain("list.test")
                .selector("sel")
                .headers(["From", "To", "Subject", "DKIM-Signature"])
                .seal(&parsed, &results, &arc)
                .unwrap();
            format!("{}{modified}", set.to_header())
        })
    }
}

fn message(from: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: bob@dest.test\r\nSubject: quarterly numbers\r\nMessage-ID: <1@example.test>\r\n\r\nHello Bob,\r\nthe numbers are attached.\r\n"
    )
}

fn envelope(ip: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some("mail.example.test".into()),
        mail_from: Some(mail_from.into()),
        recipients: vec!["bob@dest.test".into()],
        ..Envelope::default()
    }
}

fn names(scan: &Scan) -> Vec<String> {
    scan.verdict
        .symbols
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

fn has(scan: &Scan, name: &str) -> bool {
    scan.verdict.symbols.iter().any(|s| s.name == name)
}

#[test]
fn signed_mail_from_an_authorised_client_passes_everything() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("");
    let raw = f.sign("example.test", &message("alice@example.test"));
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.10", "alice@example.test"),
    );
    for expected in [
        "R_SPF_ALLOW",
        "R_DKIM_ALLOW",
        "DMARC_POLICY_ALLOW",
        "ARC_NA",
    ] {
        assert!(
            has(&scan, expected),
            "{expected} missing: {:?}",
            names(&scan)
        );
    }
    let dkim = scan
        .verdict
        .symbols
        .iter()
        .find(|s| s.name == "R_DKIM_ALLOW")
        .unwrap();
    assert_eq!(dkim.options, vec!["example.test:sel"]);
    assert!(dkim.score < 0.0);
}

#[test]
fn spoofed_mail_fails_spf_and_dmarc_reject() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("");
    let raw = message("alice@example.test");
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.99", "alice@example.test"),
    );
    for expected in ["R_SPF_FAIL", "R_DKIM_NA", "DMARC_POLICY_REJECT"] {
        assert!(
            has(&scan, expected),
            "{expected} missing: {:?}",
            names(&scan)
        );
    }
    let quarantined = engine.scan(
        message("carol@quar.test").as_bytes(),
        &envelope("192.0.2.99", "carol@quar.test"),
    );
    assert!(
        has(&quarantined, "DMARC_POLICY_QUARANTINE"),
        "{:?}",
        names(&quarantined)
    );
    let soft = engine.scan(
        message("dave@soft.test").as_bytes(),
        &envelope("192.0.2.99", "dave@soft.test"),
    );
    assert!(has(&soft, "R_SPF_SOFTFAIL"), "{:?}", names(&soft));
}

#[test]
fn a_tampered_body_breaks_dkim() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("");
    let raw = f
        .sign("example.test", &message("alice@example.test"))
        .replace("attached", "in the link below");
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.10", "alice@example.test"),
    );
    assert!(has(&scan, "R_DKIM_REJECT"), "{:?}", names(&scan));
    assert!(!has(&scan, "R_DKIM_ALLOW"));
    // SPF still aligns, so DMARC passes on SPF alone.
    assert!(has(&scan, "DMARC_POLICY_ALLOW"), "{:?}", names(&scan));
}

#[test]
fn a_key_behind_a_failing_server_is_a_tempfail() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("");
    let raw = f.sign("fail.test", &message("alice@example.test"));
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.10", "alice@example.test"),
    );
    assert!(has(&scan, "R_DKIM_TEMPFAIL"), "{:?}", names(&scan));
}

#[test]
fn srs_forwarded_mail_is_recognised_and_not_punished() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("");
    let raw = f.sign("example.test", &message("alice@example.test"));
    let srs = "SRS0=HHH=TT=example.test=alice@fwd.test";
    let scan = engine.scan(raw.as_bytes(), &envelope("192.0.2.50", srs));
    let forwarded = scan
        .verdict
        .symbols
        .iter()
        .find(|s| s.name == "FORWARDED_SRS")
        .unwrap();
    assert_eq!(forwarded.options, vec!["fwd.test", "alice@example.test"]);
    // SPF is the forwarder's and passes; DKIM carries DMARC.
    for expected in ["R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"] {
        assert!(
            has(&scan, expected),
            "{expected} missing: {:?}",
            names(&scan)
        );
    }
    assert!(!has(&scan, "R_SPF_FAIL"));
}

#[test]
fn authentication_can_be_switched_off_piecewise() {
    let f = Fixture::new();
    let (engine, _dir) = f.engine("[auth]\nspf = false\ndmarc = false\narc = false\n");
    let raw = message("alice@example.test");
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.99", "alice@example.test"),
    );
    let names = names(&scan);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("R_SPF") || n.starts_with("DMARC") || n.starts_with("ARC")),
        "{names:?}"
    );
    assert!(names.contains(&"R_DKIM_NA".to_owned()), "{names:?}");
}

#[test]
fn a_valid_arc_chain_from_a_trusted_list_is_honoured() {
    let f = Fixture::new();
    let raw = f.through_list(&f.sign("example.test", &message("alice@example.test")));
    // The list relays from its own address without SRS: SPF fails, the
    // author's signature is broken, DMARC says reject …
    let (engine, _dir) = f.engine("");
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.60", "alice@example.test"),
    );
    for expected in [
        "ARC_ALLOW",
        "R_SPF_FAIL",
        "R_DKIM_REJECT",
        "DMARC_POLICY_REJECT",
    ] {
        assert!(
            has(&scan, expected),
            "{expected} missing: {:?}",
            names(&scan)
        );
    }
    // … unless the list is trusted to vouch for what it forwards.
    let (engine, _dir) = f.engine("[auth]\ntrusted_arc_sealers = [\"list.test\"]\n");
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.60", "alice@example.test"),
    );
    for expected in [
        "ARC_ALLOW",
        "ARC_ALLOW_TRUSTED",
        "R_SPF_NEUTRAL",
        "DMARC_POLICY_ALLOW",
    ] {
        assert!(
            has(&scan, expected),
            "{expected} missing: {:?}",
            names(&scan)
        );
    }
    assert!(!has(&scan, "R_SPF_FAIL") && !has(&scan, "DMARC_POLICY_REJECT"));
    // A broken seal is not honoured.
    let broken = raw.replace("numbers are attached", "numbers are elsewhere");
    let scan = engine.scan(
        broken.as_bytes(),
        &envelope("192.0.2.60", "alice@example.test"),
    );
    assert!(has(&scan, "ARC_REJECT"), "{:?}", names(&scan));
    assert!(has(&scan, "DMARC_POLICY_REJECT"), "{:?}", names(&scan));
}

#[test]
fn an_spf_query_that_never_returns_does_not_cost_the_dmarc_verdict() {
    let f = Fixture::new();
    // The query outlasts the message's whole DNS budget, as a dead
    // authoritative server's does.
    let (engine, _dir) = f.engine_with_query_timeout(5000, "");
    let raw = f.sign("example.test", &message("alice@example.test"));
    let scan = engine.scan(
        raw.as_bytes(),
        &envelope("192.0.2.10", "bounce@lists.silent.test"),
    );
    assert!(has(&scan, "R_SPF_DNSFAIL"), "{:?}", names(&scan));
    assert!(has(&scan, "R_DKIM_ALLOW"), "{:?}", names(&scan));
    // Aligned DKIM alone passes DMARC.
    assert!(has(&scan, "DMARC_POLICY_ALLOW"), "{:?}", names(&scan));
    assert!(!has(&scan, "DMARC_DNSFAIL"), "{:?}", names(&scan));
}

/// A brand's mail sent through a mailing service: From names the brand, the
/// From domain is the service's, and the brand's own DKIM signature is what
/// says it is genuine. The same message signed by someone else is the
/// impersonation the phishing check exists for.
#[test]
fn a_brands_own_dkim_signature_clears_its_name_in_from() {
    let f = Fixture::new();
    let brands = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        brands.path(),
        "[[brand]]\nname = \"Example Bank\"\nwords = [\"example bank\"]\ndomains = [\"example.test\"]\n",
    )
    .unwrap();
    let (engine, _dir) = f.engine(&format!(
        "[phishing]\nbrands = [\"{}\"]\n",
        brands.path().display()
    ));
    let raw = "From: Example Bank <alerts@esp.test>\r\nTo: bob@dest.test\r\nSubject: your statement\r\nMessage-ID: <2@esp.test>\r\n\r\nYour statement is ready.\r\n";
    let by_brand = engine.scan(
        f.sign("example.test", raw).as_bytes(),
        &envelope("192.0.2.99", "bounce@esp.test"),
    );
    assert!(has(&by_brand, "R_DKIM_ALLOW"), "{:?}", names(&by_brand));
    assert!(
        !has(&by_brand, "PHISH_FROM_BRAND_NAME"),
        "{:?}",
        names(&by_brand)
    );
    let by_other = engine.scan(
        f.sign("list.test", raw).as_bytes(),
        &envelope("192.0.2.99", "bounce@esp.test"),
    );
    assert!(has(&by_other, "R_DKIM_ALLOW"), "{:?}", names(&by_other));
    let symbol = by_other
        .verdict
        .symbols
        .iter()
        .find(|s| s.name == "PHISH_FROM_BRAND_NAME");
    assert_eq!(
        symbol.map(|s| s.options.clone()),
        Some(vec!["Example Bank from esp.test".to_owned()]),
        "{:?}",
        names(&by_other)
    );
}
