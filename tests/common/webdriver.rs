//! A real headless Chromium, driven through chromedriver's W3C WebDriver
//! protocol (JSON over HTTP), for the web UI's end-to-end tests. Both come
//! from Debian (`chromium`, `chromium-driver`; the test command installs
//! them); a test that needs them fails, never skips, without them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{exchange, head, post};

/// The key W3C WebDriver names an element with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page lasts before the test fails.
const PAGE_WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    names
        .iter()
        .flat_map(|name| {
            dirs.iter()
                .map(move |dir| dir.join(name))
                .chain([Path::new("/usr/bin").join(name)])
        })
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: the web UI's tests drive a real browser. Install Debian's \
                 `chromium` and `chromium-driver` (apt-get install chromium chromium-driver; \
                 .ci/run does).",
                names.join(" / ")
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` ×
    /// `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let driver_path = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < PAGE_WAIT, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--lang=en-GB",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let reply = browser.call("POST", "/session", Some(capabilities));
        browser.session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = match (method, body) {
            ("POST", body) => {
                let body = body.unwrap_or_else(|| json!({})).to_string();
                post(
                    self.addr,
                    path,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
            }
            (method, _) => exchange(self.addr, &head(method, path, &[], "")),
        };
        let value: Value = reply.json();
        if reply.status != 200 {
            panic!("WebDriver {method} {path}: {} {value}", reply.status);
        }
        let inner = value.get("value").cloned().unwrap_or(Value::Null);
        if path == "/session" {
            return inner;
        }
        inner
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.session_path("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The element `css` selects once it exists (waits for it).
    pub fn find(&self, css: &str) -> Element<'_> {
        let started = Instant::now();
        loop {
            let found = self.run(
                "return document.querySelector(arguments[0]) !== null;",
                json!([css]),
            );
            if found == Value::Bool(true) {
                let value = self.call(
                    "POST",
                    &self.session_path("/element"),
                    Some(json!({"using": "css selector", "value": css})),
                );
                let id = value[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("no element id in {value}"))
                    .to_owned();
                return Element { browser: self, id };
            }
            assert!(
                started.elapsed() < PAGE_WAIT,
                "no element `{css}` in the page after {PAGE_WAIT:?}; the page says: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `css`'s text contains `text`; returns the whole text.
    pub fn wait_text(&self, css: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            let now = self.run(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                json!([css]),
            );
            if let Some(now) = now.as_str()
                && now.contains(text)
            {
                return now.to_owned();
            }
            assert!(
                started.elapsed() < PAGE_WAIT,
                "`{css}` never said {text:?}; it says {now}; the page says: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn page_text(&self) -> String {
        self.run("return document.body.innerText;", json!([]))
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The browser's cookies for the current page (HttpOnly ones too).
    pub fn cookies(&self) -> Vec<Value> {
        self.call("GET", &self.session_path("/cookie"), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Saves a PNG of the window to `dir/name.png`.
    pub fn screenshot(&self, dir: &Path, name: &str) {
        let data = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = super::try_exchange(
                self.addr,
                &head("DELETE", &format!("/session/{}", self.session), &[], ""),
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        self.browser
            .session_path(&format!("/element/{}{rest}", self.id))
    }

    pub fn click(&self) {
        self.browser.call("POST", &self.path("/click"), None);
    }

    pub fn type_text(&self, text: &str) {
        self.browser
            .call("POST", &self.path("/value"), Some(json!({"text": text})));
    }

    pub fn clear(&self) {
        self.browser.call("POST", &self.path("/clear"), None);
    }

    pub fn text(&self) -> String {
        self.browser
            .call("GET", &self.path("/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}
