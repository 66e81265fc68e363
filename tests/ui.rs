#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web UI on the controller port, end to end: a real headless Chromium
//! (Debian's `chromium` through `chromium-driver`) against a real `chaff
//! serve`, messages scanned with the real `rspamc`. Also every UI request's
//! authorization over plain HTTP. The screenshots the browser test takes
//! are saved under `target/ui-screenshots/` (or `$CHAFF_SCREENSHOTS`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::webdriver::Browser;
use common::{Daemon, Scratch, describe, get, post, rspamc};
use serde_json::{Value, json};

const READ_PASSWORD: &str = "reader-pw";
const WRITE_PASSWORD: &str = "admin-pw";

/// A daemon with both passwords, no `secure_ip` (so loopback must log in),
/// a deny map of senders (forced reject), a map of partners (a symbol for
/// the ordinary message) and a map whose option is the HELO name (to carry
/// a hostile string into a symbol's options).
fn setup() -> (Scratch, Daemon) {
    let scratch = Scratch::new();
    let rules = scratch.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("deny-senders.txt"), "# senders to refuse\n").unwrap();
    std::fs::write(rules.join("marked.txt"), "/xss/\n").unwrap();
    std::fs::write(rules.join("partners.txt"), "partner.example\n").unwrap();
    std::fs::write(rules.join("bad-urls.txt"), "*.phish.example\n").unwrap();
    std::fs::write(
        rules.join("maps.toml"),
        "[[map]]\nsymbol = \"DENY_SENDER\"\nkind = \"mail_from\"\nfile = \"deny-senders.txt\"\naction = \"reject\"\n\
         description = \"Senders the admin refuses\"\n\
         [[map]]\nsymbol = \"KNOWN_PARTNER\"\nkind = \"mail_from\"\nfile = \"partners.txt\"\nweight = -1.0\n\
         [[map]]\nsymbol = \"MARKED_HELO\"\nkind = \"helo\"\nmatch = \"regex\"\nfile = \"marked.txt\"\nweight = 0.5\n",
    )
    .unwrap();
    let mut scratch = scratch;
    scratch.write_config(&format!(
        "[server]\npassword = \"{READ_PASSWORD}\"\nenable_password = \"{WRITE_PASSWORD}\"\nsecure_ip = []\n\
         [rules]\nreload_check_secs = 0\npaths = [{:?}]\n\
         [url_lists.local]\npath = {:?}\nsymbol = \"LOCAL_BAD_URL\"\nweight = 4.0\n",
        rules.display().to_string(),
        rules.join("bad-urls.txt").display().to_string()
    ));
    let daemon = scratch.serve();
    (scratch, daemon)
}

fn write_message(scratch: &Scratch, name: &str, from: &str, subject: &str) -> String {
    let path = scratch.path().join(name);
    std::fs::write(
        &path,
        format!(
            "From: {from}\r\nTo: someone@example.org\r\nSubject: {subject}\r\n\
             Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{name}@example.com>\r\n\r\n\
             Hello, the invoice for this quarter is attached as agreed on the phone.\r\n\r\n\
             We have added the two extra licences you asked for in October, and the support\r\n\
             contract now runs until the end of next year. The amounts are in the table at the\r\n\
             end of the attachment; payment is due within thirty days as usual.\r\n\r\n\
             If anything does not match your purchase order, write back and we will correct it.\r\n\r\n\
             Kind regards, the billing team\r\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// rspamc's scan of `file` from `sender`: its action.
fn scan(daemon: &Daemon, sender: &str, file: &str) -> String {
    scan_with(daemon, &["-F", sender, "-i", "198.51.100.7", file])
}

fn scan_with(daemon: &Daemon, args: &[&str]) -> String {
    let output = rspamc(daemon.worker, args);
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Action: "))
        .unwrap_or("")
        .trim()
        .to_owned()
}

fn ham_learns(daemon: &Daemon) -> u64 {
    let stat = get(daemon.controller, "/stat", &[("Password", READ_PASSWORD)]).json();
    stat["statfiles"][1]["revision"].as_u64().unwrap()
}

fn screenshots() -> PathBuf {
    std::env::var_os("CHAFF_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots"),
        PathBuf::from,
    )
}

fn session_cookie(browser: &Browser) -> String {
    let cookie = browser
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "chaff_session")
        .expect("the browser holds no session cookie");
    assert_eq!(cookie["httpOnly"], Value::Bool(true), "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    format!("chaff_session={}", cookie["value"].as_str().unwrap())
}

#[test]
fn an_admin_logs_in_finds_a_scan_learns_it_and_edits_a_deny_map_in_a_real_browser() {
    let (scratch, daemon) = setup();
    let base = format!("http://{}/", daemon.controller);
    let shots = screenshots();
    let browser = Browser::start(1280, 900);

    // A wrong password is refused, the right one lets the admin in.
    browser.goto(&base);
    browser.find("#password").type_text("not-the-password");
    browser.find("#login-button").click();
    browser.wait_text("#login-error", "Wrong password");
    browser.screenshot(&shots, "login");
    let password = browser.find("#password");
    password.clear();
    password.type_text(WRITE_PASSWORD);
    browser.find("#login-button").click();
    browser.wait_text("main h1", "Dashboard");
    let cookie = session_cookie(&browser);

    // A scan through rspamc shows in history, found by its subject.
    let invoice = write_message(
        &scratch,
        "invoice",
        "billing@partner.example",
        "Quarterly invoice 4711",
    );
    let action = scan(&daemon, "billing@partner.example", &invoice);
    assert_ne!(action, "reject");
    let hostile_subject = "<img src=x onerror=\"window.__xss=1\"> Quote";
    let hostile_helo = "<script>window.__xss=2</script>";
    let hostile = write_message(&scratch, "hostile", "someone@evil.example", hostile_subject);
    scan_with(
        &daemon,
        &[
            "-F",
            "<svg/onload=window.__xss=3>@evil.example",
            "--helo",
            hostile_helo,
            &hostile,
        ],
    );
    browser.goto(&format!("{base}#/history"));
    browser
        .find("#filter-text")
        .type_text("Quarterly invoice 4711");
    browser.wait_text("#history-count", "1 of 2");
    browser.screenshot(&shots, "history");
    let subject = browser.find("#history-body tr.history-row td.subject");
    assert_eq!(subject.text(), "Quarterly invoice 4711");
    subject.click();

    // Its verdict: every symbol with its weight.
    browser.wait_text("#message-subject", "Quarterly invoice 4711");
    let symbols = browser.run(
        "return Array.from(document.querySelectorAll('#symbols-table tbody tr')).map(r => r.dataset.symbol);",
        json!([]),
    );
    assert!(
        symbols
            .as_array()
            .unwrap()
            .contains(&json!("KNOWN_PARTNER")),
        "its symbols are not shown: {symbols}; the page says {}",
        browser.page_text()
    );
    browser.screenshot(&shots, "message");

    // Learned as ham from there: the controller's counts change.
    let before = ham_learns(&daemon);
    browser.find("#learn-ham").click();
    browser.wait_text("#action-status", "Learned as ham");
    assert_eq!(ham_learns(&daemon), before + 1);

    // A change without the CSRF token is refused, even with the session.
    let id = browser
        .run("return location.hash.split('/').pop();", json!([]))
        .as_str()
        .unwrap()
        .to_owned();
    let forged = post(
        daemon.controller,
        &format!("/ui/api/learn?id={id}&class=spam"),
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert!(forged.json()["error"].as_str().unwrap().contains("CSRF"));

    // Hostile text in history is shown as text: no script ran, no element
    // was made from it.
    browser.goto(&format!("{base}#/history"));
    let filter = browser.find("#filter-text");
    filter.clear();
    filter.type_text("Quote");
    browser.wait_text("#history-count", "1 of 2");
    let shown = browser.find("#history-body td.subject").text();
    assert_eq!(shown, hostile_subject);
    assert!(
        browser
            .find("#history-body td.sender")
            .text()
            .contains("evil.example")
    );
    browser.find("#history-body tr.history-row").click();
    browser.wait_text("#symbols-table", "MARKED_HELO");
    let options = browser.wait_text(
        "#symbols-table tr[data-symbol=MARKED_HELO] td.options",
        "<script>",
    );
    assert!(options.contains("window.__xss=2"), "{options}");
    let injected = browser.run(
        "return [window.__xss === undefined, document.querySelectorAll('main img, main script').length];",
        json!([]),
    );
    assert_eq!(injected, json!([true, 0]), "hostile text became markup");

    // A sender added to the deny map is rejected on its next scan.
    let rogue = write_message(&scratch, "rogue", "rogue@spam.example", "Hello again");
    assert_ne!(scan(&daemon, "rogue@spam.example", &rogue), "reject");
    browser.goto(&format!("{base}#/lists"));
    let list = browser.find("#list-DENY_SENDER");
    list.type_text("rogue@spam.example\n");
    browser.find("button[data-list=DENY_SENDER]").click();
    browser.wait_text("main", "Saved and reloaded");
    browser.screenshot(&shots, "lists");
    assert_eq!(scan(&daemon, "rogue@spam.example", &rogue), "reject");
    browser.goto(&format!("{base}#/history"));
    let filter = browser.find("#filter-text");
    filter.clear();
    filter.type_text("rogue@spam.example");
    browser.wait_text("#history-body", "reject");

    // An invalid entry is refused before it is saved.
    browser.goto(&format!("{base}#/lists"));
    browser.find("#list-MARKED_HELO").type_text("/unclosed(/\n");
    browser.find("button[data-list=MARKED_HELO]").click();
    browser.wait_text("main", "regex");
    let kept = std::fs::read_to_string(scratch.path().join("rules/marked.txt")).unwrap();
    assert!(!kept.contains("unclosed"), "{kept}");

    // The other pages render, and the dashboard counts what was scanned.
    browser.goto(&base);
    browser.wait_text("#scanned", "4");
    browser.screenshot(&shots, "dashboard");
    for (page, heading) in [
        ("scan", "Scan a message"),
        ("learn", "Learn"),
        ("symbols", "Symbols"),
        ("config", "Configuration"),
    ] {
        browser.goto(&format!("{base}#/{page}"));
        browser.wait_text("main h1", heading);
        browser.screenshot(&shots, page);
    }
    browser.goto(&format!("{base}#/symbols"));
    browser.wait_text("main table", "DENY_SENDER");
    browser.goto(&format!("{base}#/config"));
    let config = browser.find("#config-text").text();
    assert!(!config.contains(WRITE_PASSWORD) && !config.contains(READ_PASSWORD));

    // An mbox uploaded as spam is learned message by message.
    browser.goto(&format!("{base}#/learn"));
    let mbox = common::corpus("mbox-sample.mbox");
    browser
        .find("#learn-files")
        .type_text(mbox.to_str().unwrap());
    browser.find("#learn-button").click();
    let learned = browser.wait_text("#learn-status", "learned");
    assert!(learned.contains("The model now holds"), "{learned}");
    let spam_learns = get(daemon.controller, "/stat", &[("Password", READ_PASSWORD)]).json()
        ["statfiles"][0]["revision"]
        .as_u64()
        .unwrap();
    assert!(spam_learns >= 2, "{learned}");
    browser.screenshot(&shots, "learn-done");

    // Scan a pasted message from the browser.
    browser.goto(&format!("{base}#/scan"));
    let pasted = std::fs::read_to_string(&invoice).unwrap();
    browser.run(
        "document.getElementById('scan-message').value = arguments[0];",
        json!([pasted]),
    );
    browser
        .find("#scan-from")
        .type_text("billing@partner.example");
    browser.find("#scan-button").click();
    browser.wait_text("#scan-result", "Symbols");
    browser.screenshot(&shots, "scan-result");

    // On a narrow screen the history is still usable.
    browser.set_size(390, 844);
    browser.goto(&format!("{base}#/history"));
    browser.wait_text("#history-count", "of");
    browser.screenshot(&shots, "history-narrow");

    // Logging out ends the session.
    browser.find("#logout").click();
    browser.find("#password");
    let after = get(daemon.controller, "/ui/api/history", &[("Cookie", &cookie)]);
    assert_eq!(after.status, 401);
}

fn login(controller: SocketAddr, password: &str) -> (String, String) {
    let reply = post(
        controller,
        "/ui/login",
        &[("Content-Type", "application/json")],
        json!({"password": password}).to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let cookie = reply.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, reply.json()["csrf"].as_str().unwrap().to_owned())
}

#[test]
fn every_ui_request_checks_who_asks() {
    let (scratch, daemon) = setup();
    let file = write_message(&scratch, "m", "a@partner.example", "Hello");
    scan(&daemon, "a@partner.example", &file);
    let id = get(
        daemon.controller,
        "/ui/api/history",
        &[("Cookie", &login(daemon.controller, READ_PASSWORD).0)],
    )
    .json()["rows"][0]["id"]
        .as_u64()
        .unwrap();
    let reads = [
        "/ui/api/dashboard",
        "/ui/api/history",
        &format!("/ui/api/message?id={id}"),
        "/ui/api/lists",
        "/ui/api/symbols",
        "/ui/api/config",
    ];
    let learn = format!("/ui/api/learn?id={id}&class=ham");
    let fuzzy = format!("/ui/api/fuzzy?id={id}&flag=1&weight=1");
    let changes: [(&str, &[u8]); 4] = [
        (&learn, b""),
        (&fuzzy, b""),
        (
            "/ui/api/learnfile?class=spam",
            b"Subject: x\r\n\r\nbody\r\n",
        ),
        ("/ui/api/lists?name=DENY_SENDER", b"x@y.example\n"),
    ];
    let c = daemon.controller;
    // No session: nothing but the page and its assets.
    for path in ["/", "/ui/app.js", "/ui/app.css"] {
        let reply = get(c, path, &[]);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply
                .header("content-security-policy")
                .unwrap()
                .contains("script-src 'self'")
        );
    }
    assert!(get(c, "/ui/app.js", &[]).header("etag").is_some());
    for path in reads {
        assert_eq!(get(c, path, &[]).status, 401, "{path}");
        assert_eq!(
            get(c, path, &[("Cookie", "chaff_session=forged")]).status,
            401,
            "{path}"
        );
    }
    for (path, body) in changes {
        assert_eq!(post(c, path, &[], body).status, 401, "{path}");
    }
    // A session made with the read password reads, and changes nothing.
    let (reader, reader_csrf) = login(c, READ_PASSWORD);
    for path in reads {
        assert_eq!(get(c, path, &[("Cookie", &reader)]).status, 200, "{path}");
    }
    for (path, body) in changes {
        let reply = post(
            c,
            path,
            &[("Cookie", &reader), ("X-CSRF-Token", &reader_csrf)],
            body,
        );
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
    }
    // The admin's session changes, but only with its CSRF token and from
    // its own origin.
    let (admin, admin_csrf) = login(c, WRITE_PASSWORD);
    for (path, body) in changes {
        let without = post(c, path, &[("Cookie", &admin)], body);
        assert_eq!(without.status, 403, "{path}");
        let wrong = post(
            c,
            path,
            &[("Cookie", &admin), ("X-CSRF-Token", &reader_csrf)],
            body,
        );
        assert_eq!(wrong.status, 403, "{path}");
        let foreign = post(
            c,
            path,
            &[
                ("Cookie", &admin),
                ("X-CSRF-Token", &admin_csrf),
                ("Origin", "http://evil.example"),
            ],
            body,
        );
        assert_eq!(foreign.status, 403, "{path}");
    }
    for (path, body) in changes {
        let reply = post(
            c,
            path,
            &[("Cookie", &admin), ("X-CSRF-Token", &admin_csrf)],
            body,
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    // A URL list is edited the same way, and checked before it is saved.
    let admin_headers = [
        ("Cookie", admin.as_str()),
        ("X-CSRF-Token", admin_csrf.as_str()),
    ];
    let lists = get(c, "/ui/api/lists", &[("Cookie", &admin)]).json();
    assert!(
        lists["lists"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "local" && l["type"] == "url_list"),
        "{lists}"
    );
    let bad = post(
        c,
        "/ui/api/lists?name=local",
        &admin_headers,
        b"not a host\n",
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.json()["error"].as_str().unwrap().contains("line 1"));
    let good = post(
        c,
        "/ui/api/lists?name=local",
        &admin_headers,
        b"*.phish.example\nlogin.bad.example\n",
    );
    assert_eq!(good.status, 200, "{}", good.text());
    let written = std::fs::read_to_string(scratch.path().join("rules/bad-urls.txt")).unwrap();
    assert!(written.contains("login.bad.example"), "{written}");
    assert_eq!(
        post(c, "/ui/api/lists?name=nosuch", &admin_headers, b"x\n").status,
        404
    );
    // Scanning from the UI reads only: either session may, with its token.
    let message = b"Subject: scan me\r\n\r\nhello\r\n";
    assert_eq!(post(c, "/ui/api/scan", &[], message).status, 401);
    assert_eq!(
        post(c, "/ui/api/scan", &[("Cookie", &reader)], message).status,
        403
    );
    let scanned = post(
        c,
        "/ui/api/scan?from=a%40partner.example",
        &[("Cookie", &reader), ("X-CSRF-Token", &reader_csrf)],
        message,
    );
    assert_eq!(scanned.status, 200, "{}", scanned.text());
    assert!(scanned.json()["verdict"]["action"].is_string());
    // Logins are rate-limited per client.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            post(
                c,
                "/ui/login",
                &[("Content-Type", "application/json")],
                br#"{"password":"guess"}"#,
            )
            .status,
        );
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert_eq!(statuses[6], 429);
    // The password never goes in a URL: a login by query string is not one.
    let by_query = post(c, &format!("/ui/login?password={WRITE_PASSWORD}"), &[], b"");
    assert_ne!(by_query.status, 200);
}

#[test]
fn a_client_in_secure_ip_needs_no_login() {
    let scratch = Scratch::with_config(&format!(
        "[server]\npassword = \"{READ_PASSWORD}\"\nenable_password = \"{WRITE_PASSWORD}\"\n"
    ));
    let daemon = scratch.serve();
    let session = get(daemon.controller, "/ui/api/session", &[]);
    assert_eq!(session.json()["privilege"], "write");
    assert!(session.header("set-cookie").unwrap().contains("HttpOnly"));
    assert_eq!(get(daemon.controller, "/ui/api/dashboard", &[]).status, 200);
    // Changes still need the session's token.
    let change = post(daemon.controller, "/ui/api/learnfile?class=spam", &[], b"x");
    assert_eq!(change.status, 401);
    // The rspamd-protocol endpoints need no password from here, but a page
    // elsewhere cannot make this machine's browser learn through them.
    let message = common::corpus_bytes("spam-plain.eml");
    let forged = post(
        daemon.controller,
        "/learnspam",
        &[("Origin", "http://evil.example")],
        &message,
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(
        post(daemon.controller, "/learnspam", &[], &message).status,
        200
    );
}
