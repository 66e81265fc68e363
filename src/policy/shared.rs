//! Sharing the policy state through Redis (`[redis]`), so that several
//! chaff nodes behind a load balancer count one rate limit, one greylist
//! and one set of replies.
//!
//! An update runs the very function the embedded store runs (`Txn`), as an
//! optimistic transaction: each key it reads is `WATCH`ed and fetched, its
//! writes go in one `MULTI`/`EXEC` (`SET … EXAT`, `DEL` for a reset), and
//! if another node changed a watched key the function runs again on the
//! new values. What a node wrote on Redis it also writes to its own state
//! and journal, which is what it falls back on: when Redis cannot be
//! reached the scan goes on with the local state (a visible
//! `POLICY_REDIS_DOWN` and `chaff_redis_up 0`), Redis is tried again after
//! `retry_secs`, and the keys written meanwhile are sent then (`SET NX`:
//! what other nodes wrote during the outage wins). Values are the
//! journal's own records, with an empty key. `servers` are tried in order
//! (failover, not sharding).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::entry::{Entry, Txn, decode_value, encode_put};

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` of each server, tried in order; empty: no sharing.
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Put before every key chaff writes.
    pub key_prefix: String,
    /// Connect, read and write timeout.
    pub timeout_ms: u64,
    /// After a failure, Redis is tried again this much later.
    pub retry_secs: u64,
}

/// Transactions tried before an update falls back to the local state.
const ATTEMPTS: usize = 8;

/// Why Redis did not take an update.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no server could be reached")]
    NoServer,
    #[error("redis: {ATTEMPTS} transactions in a row lost to other nodes' writes")]
    Contended,
}

/// The connection to Redis and what this node owes it.
pub struct Shared {
    config: RedisConfig,
    clients: Vec<redis::Client>,
    idle: Mutex<Vec<redis::Connection>>,
    /// While set, Redis is not tried before this instant.
    down_until: Mutex<Option<Instant>>,
    up: AtomicBool,
    failures: AtomicU64,
    /// Keys written locally while Redis was down.
    pending: Mutex<HashSet<String>>,
}

impl Shared {
    /// Clients for the configured servers; nothing connects yet.
    pub fn new(config: &RedisConfig) -> Result<Shared, SharedError> {
        let clients = clients(config)?;
        Ok(Shared {
            config: config.clone(),
            clients,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
            up: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            pending: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the last attempt reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Failed attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether Redis should be tried now (not inside a retry pause).
    pub fn due(&self) -> bool {
        let down = match self.down_until.lock() {
            Ok(down) => *down,
            Err(poisoned) => *poisoned.into_inner(),
        };
        down.is_none_or(|until| Instant::now() >= until)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.config.key_prefix)
    }

    fn connection(&self) -> Result<redis::Connection, SharedError> {
        if let Some(connection) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(connection);
        }
        let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
        let mut last = SharedError::NoServer;
        for client in &self.clients {
            match client.get_connection_with_timeout(timeout) {
                Ok(connection) => {
                    connection.set_read_timeout(Some(timeout))?;
                    connection.set_write_timeout(Some(timeout))?;
                    return Ok(connection);
                }
                Err(error) => last = error.into(),
            }
        }
        Err(last)
    }

    fn give_back(&self, connection: redis::Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < 16
        {
            idle.push(connection);
        }
    }

    /// Records a failure: Redis is left alone for `retry_secs`.
    pub fn failed(&self, error: &SharedError) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!("{error}; policy state is local until Redis answers again");
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut down) = self.down_until.lock() {
            *down = Some(Instant::now() + Duration::from_secs(self.config.retry_secs));
        }
    }

    /// Remembers keys written locally while Redis was down.
    pub fn owe(&self, writes: &[(String, Entry)]) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend(writes.iter().map(|(key, _)| key.clone()));
        }
    }

    /// Runs `change` as a transaction on Redis; returns its result and the
    /// writes it made there. `local` gives the local entry of a key owed
    /// since an outage.
    pub fn update<R>(
        &self,
        now: u64,
        local: &dyn Fn(&str) -> Option<Entry>,
        mut change: impl FnMut(&mut Txn<'_>) -> R,
    ) -> Result<(R, Vec<(String, Entry)>), SharedError> {
        let mut connection = self.connection()?;
        self.pay_back(&mut connection, local)?;
        for _ in 0..ATTEMPTS {
            let mut error = None;
            let (result, writes) = {
                let mut read = |key: &str| -> Option<Entry> {
                    if error.is_some() {
                        return None;
                    }
                    let fetched: redis::RedisResult<(Option<Vec<u8>>,)> = redis::pipe()
                        .cmd("WATCH")
                        .arg(self.key(key))
                        .ignore()
                        .cmd("GET")
                        .arg(self.key(key))
                        .query(&mut connection);
                    match fetched {
                        Ok((value,)) => value.as_deref().and_then(decode_value),
                        Err(e) => {
                            error = Some(e);
                            None
                        }
                    }
                };
                let mut txn = Txn::new(&mut read, now);
                let result = change(&mut txn);
                (result, txn.into_writes())
            };
            if let Some(error) = error {
                return Err(error.into());
            }
            if writes.is_empty() {
                redis::cmd("UNWATCH").query::<()>(&mut connection)?;
                self.give_back(connection);
                return Ok((result, writes));
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (key, entry) in &writes {
                self.push_write(&mut pipe, key, entry, false);
            }
            // EXEC answers nil when a watched key changed under us.
            let done: redis::Value = pipe.query(&mut connection)?;
            if !matches!(done, redis::Value::Nil) {
                self.give_back(connection);
                return Ok((result, writes));
            }
        }
        Err(SharedError::Contended)
    }

    fn push_write(&self, pipe: &mut redis::Pipeline, key: &str, entry: &Entry, only_new: bool) {
        if entry.expires == 0 {
            pipe.cmd("DEL").arg(self.key(key)).ignore();
            return;
        }
        let mut value = Vec::with_capacity(40);
        encode_put(&mut value, "", entry);
        let command = pipe
            .cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("EXAT")
            .arg(entry.expires);
        if only_new {
            command.arg("NX");
        }
        command.ignore();
    }

    /// Sends the keys written locally during an outage, the first time
    /// Redis answers again.
    fn pay_back(
        &self,
        connection: &mut redis::Connection,
        local: &dyn Fn(&str) -> Option<Entry>,
    ) -> Result<(), SharedError> {
        let owed: Vec<String> = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => pending.drain().collect(),
            _ => {
                self.back_up();
                return Ok(());
            }
        };
        let mut pipe = redis::pipe();
        let mut sent = 0;
        for key in &owed {
            if let Some(entry) = local(key) {
                self.push_write(&mut pipe, key, &entry, true);
                sent += 1;
            }
        }
        if sent > 0
            && let Err(error) = pipe.query::<()>(connection)
        {
            self.owe_keys(owed);
            return Err(error.into());
        }
        tracing::info!("redis answers again: sent {sent} policy entries written meanwhile");
        self.back_up();
        Ok(())
    }

    fn owe_keys(&self, keys: Vec<String>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend(keys);
        }
    }

    fn back_up(&self) {
        self.up.store(true, Ordering::Relaxed);
        if let Ok(mut down) = self.down_until.lock() {
            *down = None;
        }
    }

    /// Live entries under `prefix` on Redis, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Entry)>, SharedError> {
        let mut connection = self.connection()?;
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let keys: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut connection)?
            .collect();
        let mut found = Vec::new();
        for chunk in keys.chunks(500) {
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("MGET").arg(chunk).query(&mut connection)?;
            for (key, value) in chunk.iter().zip(values) {
                let short = key.strip_prefix(&self.config.key_prefix).unwrap_or(key);
                if let Some(entry) = value.as_deref().and_then(decode_value) {
                    found.push((short.to_owned(), entry));
                }
            }
        }
        self.give_back(connection);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// One client per configured server, in order, the password escaped into
/// each URL (the daemon's learn stream connects with the same).
pub fn clients(config: &RedisConfig) -> Result<Vec<redis::Client>, redis::RedisError> {
    config
        .servers
        .iter()
        .map(|server| {
            let url = match &config.password {
                Some(password) => format!("redis://:{}@{server}/", url_escape(password)),
                None => format!("redis://{server}/"),
            };
            redis::Client::open(url)
        })
        .collect()
}

/// A password as a URL's user-info part.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A key prefix as a literal in a `SCAN MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_and_passwords_are_escaped() {
        assert_eq!(glob_escape("chaff:rl:a*b?[c]"), "chaff:rl:a\\*b\\?\\[c\\]");
        assert_eq!(url_escape("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn no_server_reachable_is_an_error_not_a_hang() {
        let config = RedisConfig {
            servers: vec!["127.0.0.1:1".into()],
            password: None,
            key_prefix: "chaff:".into(),
            timeout_ms: 200,
            retry_secs: 60,
        };
        let shared = Shared::new(&config).unwrap();
        let result = shared.update(1, &|_| None, |txn| txn.get("k"));
        assert!(result.is_err());
        shared.failed(&result.unwrap_err());
        assert!(!shared.is_up() && !shared.due());
    }
}
