//! Shared by `tests/server.rs` and `tests/rspamc.rs`: a `chaff serve`
//! daemon on ephemeral ports, a minimal HTTP/1.1 client over
//! `std::net::TcpStream`, and synthetic messages.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod webdriver;

/// Every wait in these tests ends: generous, only to turn a hang into a failure.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

pub fn corpus_bytes(name: &str) -> Vec<u8> {
    std::fs::read(corpus(name)).unwrap()
}

/// A temporary directory holding a data directory and, optionally, a config file.
pub struct Scratch {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    pub config: Option<PathBuf>,
}

impl Scratch {
    pub fn new() -> Scratch {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        Scratch {
            root,
            data,
            config: None,
        }
    }

    pub fn with_config(text: &str) -> Scratch {
        let mut scratch = Scratch::new();
        scratch.write_config(text);
        scratch
    }

    /// (Re)writes the config file the daemon is started with.
    pub fn write_config(&mut self, text: &str) {
        let path = self.root.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        self.config = Some(path);
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// A `chaff` command over this scratch's data directory and config.
    pub fn chaff(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chaff"));
        command
            .env_remove("CHAFF_DATA_DIR")
            .env_remove("CHAFF_CONFIG")
            .current_dir(self.root.path())
            .arg("--data-dir")
            .arg(&self.data)
            .stdin(Stdio::null());
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command
    }

    /// Starts `chaff serve` on ephemeral loopback ports.
    pub fn serve(&self) -> Daemon {
        self.serve_with(&["--bind", "127.0.0.1:0", "--controller-bind", "127.0.0.1:0"])
            .unwrap_or_else(|failure| panic!("chaff serve did not start\n{failure}"))
    }

    /// Starts `chaff serve` with these arguments; `Err` (with the exit status
    /// and stderr) if it exits before announcing its ports.
    pub fn serve_with(&self, args: &[&str]) -> Result<Daemon, String> {
        let stderr_path = self.root.path().join(format!(
            "serve-{}.stderr",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = self.chaff();
        command.arg("serve").args(args);
        // The milter's default port is fixed (11332); parallel tests each
        // take a free one unless the test names its own.
        if !args.contains(&"--milter-bind") {
            command.args(["--milter-bind", "127.0.0.1:0"]);
        }
        command
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = sender.send(line);
            // Keep reading so the daemon never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = receiver.recv_timeout(IO_TIMEOUT).unwrap_or_default();
        let parsed = parse_ready_line(&line);
        let Some(Ready {
            worker,
            controller,
            milter,
            spamd,
        }) = parsed
        else {
            let status = wait_timeout(&mut child, Duration::from_secs(10));
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(format!(
                "status {:?}\n--- stdout\n{line}\n--- stderr\n{}",
                status.map(|s| s.code()),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ));
        };
        Ok(Daemon {
            child,
            worker,
            controller,
            milter,
            spamd,
            stderr_path,
        })
    }
}

/// `chaff serve: worker on 127.0.0.1:PORT, controller on 127.0.0.1:PORT`,
/// then `, milter on ADDR` and `, spamd on ADDR` for the ports that are on.
struct Ready {
    worker: SocketAddr,
    controller: SocketAddr,
    milter: Option<SocketAddr>,
    spamd: Option<SocketAddr>,
}

fn parse_ready_line(line: &str) -> Option<Ready> {
    let rest = line.trim().strip_prefix("chaff serve: worker on ")?;
    let mut parts = rest.split(", ");
    let worker = parts.next()?.parse().ok()?;
    let controller = parts.next()?.strip_prefix("controller on ")?.parse().ok()?;
    let mut ready = Ready {
        worker,
        controller,
        milter: None,
        spamd: None,
    };
    for part in parts {
        if let Some(addr) = part.strip_prefix("milter on ") {
            ready.milter = Some(addr.parse().ok()?);
        } else if let Some(addr) = part.strip_prefix("spamd on ") {
            ready.spamd = Some(addr.parse().ok()?);
        } else {
            return None;
        }
    }
    Some(ready)
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `chaff serve`, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub worker: SocketAddr,
    pub controller: SocketAddr,
    /// The milter's address (on by default; tests move it to a free port).
    pub milter: Option<SocketAddr>,
    /// The spamd protocol's address, when `--spamd-bind` or the config
    /// turned it on.
    pub spamd: Option<SocketAddr>,
    stderr_path: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (panics after a generous limit).
    pub fn wait_exit(&mut self) -> ExitStatus {
        match wait_timeout(&mut self.child, IO_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "chaff serve did not exit within {IO_TIMEOUT:?}\n--- stderr\n{}",
                self.stderr()
            ),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client.

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "reply body is not JSON ({error}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads one response (Content-Length, chunked, or until close).
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a status line",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().unwrap();
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

/// A request head: request line, `Host`, the given headers, and `extra`
/// header lines (already formatted), then the blank line.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)], extra: &str) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(extra);
    out.push_str("\r\n");
    out.into_bytes()
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    try_exchange(addr, raw).unwrap_or_else(|error| panic!("no reply from {addr}: {error}"))
}

/// As [`exchange`], but connection failures are returned. The request is
/// written from another thread while the reply is read, since the server
/// may answer (and close) before it has read everything we send.
pub fn try_exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let raw = raw.to_vec();
    let writing = std::thread::spawn(move || writer.write_all(&raw));
    let mut reader = BufReader::new(stream);
    let reply = read_response(&mut reader);
    // Unblocks the writer if the server stopped reading.
    let _ = reader.get_ref().shutdown(std::net::Shutdown::Both);
    let _ = writing.join();
    reply
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    exchange(addr, &head("GET", path, headers, ""))
}

pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut raw = head(
        "POST",
        path,
        headers,
        &format!("Content-Length: {}\r\n", body.len()),
    );
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

/// The body as chunked transfer encoding, in pieces of the given sizes
/// (the last piece takes whatever is left).
pub fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        let size = size.max(1);
        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..size]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[size..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn post_chunked(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    sizes: &[usize],
) -> Response {
    let mut raw = head("POST", path, headers, "Transfer-Encoding: chunked\r\n");
    raw.extend_from_slice(&chunked(body, sizes));
    exchange(addr, &raw)
}

/// Polls `/ping` until it answers (the daemon is alive and serving).
pub fn assert_pings(addr: SocketAddr) {
    let reply = get(addr, "/ping", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, b"pong\r\n");
}

// ---------------------------------------------------------------------------
// Synthetic messages.

/// A tiny deterministic generator (xorshift), so runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub const SPAM_WORDS: &[&str] = &[
    "viagra",
    "cialis",
    "casino",
    "jackpot",
    "lottery",
    "winner",
    "bitcoin",
    "crypto",
    "investment",
    "guaranteed",
    "profit",
    "cheap",
    "pills",
    "pharmacy",
    "discount",
    "unsubscribe",
    "click",
    "offer",
    "limited",
    "exclusive",
    "bonus",
    "prize",
    "claim",
    "urgent",
    "wire",
    "transfer",
    "inheritance",
    "millions",
    "rolex",
    "replica",
    "loans",
    "credit",
    "debt",
    "refinance",
    "mortgage",
    "weight",
    "loss",
    "miracle",
    "free",
    "money",
    "rich",
    "fast",
    "risk",
    "deal",
    "act",
    "now",
];

pub const HAM_WORDS: &[&str] = &[
    "meeting",
    "agenda",
    "quarterly",
    "report",
    "project",
    "schedule",
    "review",
    "lunch",
    "team",
    "deadline",
    "draft",
    "minutes",
    "budget",
    "roadmap",
    "release",
    "notes",
    "kernel",
    "patch",
    "commit",
    "branch",
    "merge",
    "tests",
    "thanks",
    "regards",
    "tomorrow",
    "office",
    "conference",
    "slides",
    "presentation",
    "feedback",
    "colleague",
    "family",
    "weekend",
    "dinner",
    "birthday",
    "garden",
    "library",
    "homework",
    "seminar",
    "thesis",
    "invoice",
    "attached",
    "calendar",
    "call",
];

/// A distinct message made of words from `vocabulary`.
pub fn synthetic_message(kind: &str, index: usize, vocabulary: &[&str], rng: &mut Rng) -> Vec<u8> {
    let subject: Vec<&str> = (0..5)
        .map(|_| vocabulary[rng.below(vocabulary.len())])
        .collect();
    let mut body = String::new();
    for line in 0..8 {
        let words: Vec<&str> = (0..12)
            .map(|_| vocabulary[rng.below(vocabulary.len())])
            .collect();
        body.push_str(&words.join(" "));
        body.push_str(&format!(" {kind}{index}x{line}\n"));
    }
    format!(
        "Message-ID: <{kind}-{index}-{}@synthetic.example>\n\
         Date: Mon, 15 Jan 2024 10:47:00 +0000\n\
         From: sender{index}@{kind}.example\n\
         To: rcpt@example.org\n\
         Subject: {}\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         {body}",
        rng.next(),
        subject.join(" ")
    )
    .into_bytes()
}

/// Writes `count` synthetic messages into `dir` (created).
pub fn write_synthetic(dir: &Path, kind: &str, count: usize, vocabulary: &[&str], seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    for index in 0..count {
        let message = synthetic_message(kind, index, vocabulary, &mut rng);
        std::fs::write(dir.join(format!("{kind}-{index:04}.eml")), message).unwrap();
    }
}

/// A C `sscanf` subset (`%Ns`, `%lf`, `%n`, `%*s`, `%*u`, whitespace,
/// literals) with C's rules, to parse replies exactly as Exim does. Returns the conversions
/// made, the strings, the floats and the `%n` offset.
pub fn sscanf(input: &[u8], format: &[u8]) -> (usize, Vec<String>, Vec<f64>, Option<usize>) {
    let (mut i, mut f) = (0, 0);
    let (mut count, mut strings, mut floats, mut offset) = (0, Vec::new(), Vec::new(), None);
    let space = |b: u8| b" \t\n\r\x0b\x0c".contains(&b);
    while f < format.len() {
        let c = format[f];
        if space(c) {
            while f < format.len() && space(format[f]) {
                f += 1;
            }
            while i < input.len() && space(input[i]) {
                i += 1;
            }
            continue;
        }
        if c != b'%' {
            if input.get(i) != Some(&c) {
                break;
            }
            i += 1;
            f += 1;
            continue;
        }
        f += 1;
        // `%*…`: read, not stored, not counted.
        let suppress = format[f] == b'*';
        if suppress {
            f += 1;
        }
        let mut width = 0usize;
        while format[f].is_ascii_digit() {
            width = width * 10 + usize::from(format[f] - b'0');
            f += 1;
        }
        if format[f..].starts_with(b"lf") {
            f += 2;
            while i < input.len() && space(input[i]) {
                i += 1;
            }
            let start = i;
            while i < input.len() && (input[i].is_ascii_digit() || b"+-.eE".contains(&input[i])) {
                i += 1;
            }
            match std::str::from_utf8(&input[start..i])
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            {
                Some(value) if !suppress => floats.push(value),
                Some(_) => {}
                None => break,
            }
            count += usize::from(!suppress);
        } else if format[f] == b'u' {
            f += 1;
            while i < input.len() && space(input[i]) {
                i += 1;
            }
            let start = i;
            while i < input.len() && input[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                break;
            }
            count += usize::from(!suppress);
        } else if format[f] == b's' {
            f += 1;
            while i < input.len() && space(input[i]) {
                i += 1;
            }
            let start = i;
            let width = if width == 0 { usize::MAX } else { width };
            while i < input.len() && !space(input[i]) && i - start < width {
                i += 1;
            }
            if i == start {
                break;
            }
            if !suppress {
                strings.push(String::from_utf8_lossy(&input[start..i]).into_owned());
                count += 1;
            }
        } else if format[f] == b'n' {
            f += 1;
            offset = Some(i);
        } else {
            panic!("unsupported conversion in {format:?}");
        }
    }
    (count, strings, floats, offset)
}

/// The real rspamc client (Debian's `rspamd` package); tests that need it
/// fail, never skip, without it (the test command installs it).
pub fn rspamc_path() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .iter()
        .map(|dir| dir.join("rspamc"))
        .chain([PathBuf::from("/usr/bin/rspamc")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "rspamc is not installed: these tests drive the real rspamd client. \
                 Install the Debian package `rspamd` (apt-get install rspamd; .ci/run does)."
            )
        })
}

/// Runs `rspamc -h ADDR ARGS…` and returns its output (any exit status).
pub fn rspamc(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(rspamc_path())
        .arg("-h")
        .arg(addr.to_string())
        .arg("-t")
        .arg("60")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
