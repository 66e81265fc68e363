//! Learns and fuzzy reports shared between nodes through a Redis stream
//! (`[redis]`): each node keeps its own mapped model and journal, so scans
//! stay local and deterministic, and what one node learns every node
//! applies to its own model.
//!
//! A change acknowledged here (committed to this node's journal first) is
//! appended to the stream `{key_prefix}changes` with the node's id; a
//! follower task reads the stream from the last entry this node applied
//! (kept in `redis.stream-id` in the data dir) and applies every other
//! node's changes through the same paths a request takes. Learns and
//! reports are idempotent by message digest, so an entry applied twice
//! changes nothing. When Redis cannot be reached, changes wait in
//! `redis.outbox` in the data dir (appended before the reply) and are sent
//! when it answers again, so no acknowledged learn is lost to other nodes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaff::config::RedisConfig;
use chaff::store::Class;

use super::controller::{apply_fuzzy, learn_message};
use super::state::{Change, Replication, State};

fn fields(change: &Change) -> (String, u32, u32) {
    match change {
        Change::Learn(Class::Spam) => ("learn_spam".into(), 0, 0),
        Change::Learn(Class::Ham) => ("learn_ham".into(), 0, 0),
        Change::FuzzyAdd { flag, weight } => ("fuzzy_add".into(), *flag, *weight),
        Change::FuzzyDel { flag } => ("fuzzy_del".into(), *flag, 0),
    }
}

fn change_of(kind: &str, flag: u32, weight: u32) -> Option<Change> {
    Some(match kind {
        "learn_spam" => Change::Learn(Class::Spam),
        "learn_ham" => Change::Learn(Class::Ham),
        "fuzzy_add" => Change::FuzzyAdd { flag, weight },
        "fuzzy_del" => Change::FuzzyDel { flag },
        _ => return None,
    })
}

/// This node's end of the stream.
pub struct Replicator {
    client: Vec<redis::Client>,
    stream: String,
    node: String,
    timeout: Duration,
    retry: Duration,
    outbox_path: PathBuf,
    id_path: PathBuf,
    /// Changes not yet on the stream, oldest first.
    outbox: Mutex<Vec<(Change, Vec<u8>)>>,
    /// Scan history rows (JSON) on their way to `{key_prefix}history`.
    history_queue: Mutex<Option<std::sync::mpsc::SyncSender<String>>>,
    history_key: String,
}

/// One stream entry: its id, the node that wrote it, the change, the message.
type Entry = (String, String, Change, Vec<u8>);

/// Entries the stream keeps at most (`XADD … MAXLEN ~`).
const STREAM_LENGTH: usize = 100_000;

impl Replicator {
    /// With `[redis] servers` set: the replicator, its outbox read back
    /// from the data dir.
    pub fn new(config: &RedisConfig, data_dir: &Path) -> anyhow::Result<Option<Replicator>> {
        if config.servers.is_empty() {
            return Ok(None);
        }
        // The policy state's clients: the same servers, the password
        // escaped the same way.
        let client = chaff::policy::shared::clients(config)?;
        let outbox_path = data_dir.join("redis.outbox");
        let outbox = read_outbox(&outbox_path);
        let node = format!(
            "{}:{}:{}",
            super::state::host_name(),
            std::process::id(),
            chaff::policy::unix_now_ms()
        );
        Ok(Some(Replicator {
            client,
            stream: format!("{}changes", config.key_prefix),
            node,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            retry: Duration::from_secs(config.retry_secs.max(1)),
            outbox_path,
            id_path: data_dir.join("redis.stream-id"),
            outbox: Mutex::new(outbox),
            history_queue: Mutex::new(None),
            history_key: format!("{}history", config.key_prefix),
        }))
    }

    /// Starts the thread that sends history rows in batches.
    fn start_history(self: &Arc<Self>, keep: usize) {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<String>(10_000);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("redis-history".into())
            .spawn(move || me.send_history(receiver, keep));
        match spawned {
            Ok(_) => {
                if let Ok(mut queue) = self.history_queue.lock() {
                    *queue = Some(sender);
                }
            }
            Err(error) => tracing::warn!("no shared history ({error})"),
        }
    }

    fn send_history(&self, receiver: std::sync::mpsc::Receiver<String>, keep: usize) {
        while let Ok(first) = receiver.recv() {
            let mut rows = vec![first];
            rows.extend(receiver.try_iter().take(999));
            let sent = self.connect().and_then(|mut connection| {
                connection.set_write_timeout(Some(self.timeout))?;
                connection.set_read_timeout(Some(self.timeout))?;
                redis::pipe()
                    .cmd("LPUSH")
                    .arg(&self.history_key)
                    .arg(&rows)
                    .ignore()
                    .cmd("LTRIM")
                    .arg(&self.history_key)
                    .arg(0)
                    .arg(keep.saturating_sub(1))
                    .ignore()
                    .query::<()>(&mut connection)
            });
            if let Err(error) = sent {
                tracing::warn!("redis history: {error}; {} rows dropped", rows.len());
            }
        }
    }

    fn read_history(&self, limit: usize) -> redis::RedisResult<Vec<serde_json::Value>> {
        let mut connection = self.connect()?;
        connection.set_read_timeout(Some(self.timeout))?;
        let rows: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.history_key)
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query(&mut connection)?;
        Ok(rows
            .iter()
            .filter_map(|row| serde_json::from_str(row).ok())
            .collect())
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut last = None;
        for client in &self.client {
            match client.get_connection_with_timeout(self.timeout) {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::IoError, "no redis server configured"))
        }))
    }

    /// Tells the other nodes about a change this node acknowledged; when
    /// Redis does not answer, the change waits in the outbox.
    fn send(&self, change: Change, message: Vec<u8>) {
        let Ok(mut outbox) = self.outbox.lock() else {
            return;
        };
        if let Err(error) = append_outbox(&self.outbox_path, &change, &message) {
            tracing::warn!("redis outbox: {error}");
        }
        outbox.push((change, message));
        if let Err(error) = self.flush_locked(&mut outbox) {
            tracing::warn!("redis: {error}; {} changes wait for it", outbox.len());
        }
    }

    fn flush_locked(&self, outbox: &mut Vec<(Change, Vec<u8>)>) -> redis::RedisResult<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        let mut connection = self.connect()?;
        connection.set_write_timeout(Some(self.timeout))?;
        connection.set_read_timeout(Some(self.timeout))?;
        let mut pipe = redis::pipe();
        for (change, message) in outbox.iter() {
            let (kind, flag, weight) = fields(change);
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("node")
                .arg(&self.node)
                .arg("kind")
                .arg(kind)
                .arg("flag")
                .arg(flag)
                .arg("weight")
                .arg(weight)
                .arg("message")
                .arg(message.as_slice())
                .ignore();
        }
        pipe.query::<()>(&mut connection)?;
        outbox.clear();
        std::fs::write(&self.outbox_path, b"").map_err(redis::RedisError::from)?;
        Ok(())
    }

    /// Sends what waits in the outbox and applies the other nodes'
    /// changes, for as long as the daemon runs.
    pub fn spawn(self: Arc<Self>, state: Arc<State>) {
        self.start_history(state.config().server.history_size);
        tokio::spawn(async move {
            let mut last_id = std::fs::read_to_string(&self.id_path)
                .map(|id| id.trim().to_owned())
                .ok()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| "0".to_owned());
            loop {
                if state.is_shutting_down() {
                    return;
                }
                let me = self.clone();
                let from = last_id.clone();
                let read = tokio::task::spawn_blocking(move || me.read_after(&from)).await;
                let entries = match read {
                    Ok(Ok(entries)) => entries,
                    Ok(Err(error)) => {
                        tracing::warn!("redis stream: {error}");
                        tokio::time::sleep(self.retry).await;
                        continue;
                    }
                    Err(_) => return,
                };
                for (id, node, change, message) in entries {
                    if node != self.node {
                        apply(&state, change, message).await;
                    }
                    last_id = id;
                }
                if let Err(error) = write_id(&self.id_path, &last_id) {
                    tracing::warn!("redis stream position: {error}");
                }
            }
        });
    }

    /// The entries after `from` (waits up to a second for new ones), and
    /// first whatever waits in the outbox.
    fn read_after(&self, from: &str) -> redis::RedisResult<Vec<Entry>> {
        if let Ok(mut outbox) = self.outbox.lock() {
            self.flush_locked(&mut outbox)?;
        }
        let mut connection = self.connect()?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        let reply: redis::Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(from)
            .query(&mut connection)?;
        Ok(parse_xread(reply))
    }
}

impl Replication for Replicator {
    fn publish(&self, change: Change, message: Vec<u8>) {
        self.send(change, message);
    }

    /// Rows are sent in batches by a thread of their own, and dropped
    /// (never waited for) when Redis falls behind.
    fn share_history(&self, row: String) {
        if let Ok(queue) = self.history_queue.lock()
            && let Some(sender) = queue.as_ref()
        {
            let _ = sender.try_send(row);
        }
    }

    fn history(&self, limit: usize) -> Result<Vec<serde_json::Value>, String> {
        self.read_history(limit).map_err(|e| e.to_string())
    }
}

/// Applies another node's change through the path a request takes.
async fn apply(state: &Arc<State>, change: Change, message: Vec<u8>) {
    match change {
        Change::Learn(class) => {
            let Ok(permit) = state.scan_permits.clone().acquire_owned().await else {
                return;
            };
            if learn_message(state, message, permit, class, false)
                .await
                .is_err()
            {
                tracing::warn!("a learn from another node was refused");
            }
        }
        Change::FuzzyAdd { flag, weight } => {
            apply_fuzzy(state, message, flag, Some(weight)).await;
        }
        Change::FuzzyDel { flag } => {
            apply_fuzzy(state, message, flag, None).await;
        }
    }
}

/// `XREAD`'s reply as (id, node, change, message) entries.
fn parse_xread(reply: redis::Value) -> Vec<Entry> {
    use redis::Value;
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for stream in streams {
        let Value::Array(parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.get(1) else {
            continue;
        };
        for entry in entries {
            let Value::Array(entry) = entry else { continue };
            let (Some(id), Some(Value::Array(fields))) =
                (entry.first().and_then(text), entry.get(1))
            else {
                continue;
            };
            let mut node = String::new();
            let mut kind = String::new();
            let (mut flag, mut weight) = (0, 0);
            let mut message = Vec::new();
            for pair in fields.chunks(2) {
                let [name, value] = pair else { continue };
                match text(name).as_deref() {
                    Some("node") => node = text(value).unwrap_or_default(),
                    Some("kind") => kind = text(value).unwrap_or_default(),
                    Some("flag") => flag = text(value).and_then(|v| v.parse().ok()).unwrap_or(0),
                    Some("weight") => {
                        weight = text(value).and_then(|v| v.parse().ok()).unwrap_or(0)
                    }
                    Some("message") => {
                        if let Value::BulkString(bytes) = value {
                            message = bytes.clone();
                        }
                    }
                    _ => {}
                }
            }
            if let Some(change) = change_of(&kind, flag, weight) {
                out.push((id, node, change, message));
            }
        }
    }
    out
}

fn write_id(path: &Path, id: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, id)?;
    std::fs::rename(&tmp, path)
}

// The outbox: per change a line `kind flag weight length\n` and the message.
fn append_outbox(path: &Path, change: &Change, message: &[u8]) -> std::io::Result<()> {
    let (kind, flag, weight) = fields(change);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut record = format!("{kind} {flag} {weight} {}\n", message.len()).into_bytes();
    record.extend_from_slice(message);
    file.write_all(&record)?;
    file.sync_data()
}

fn read_outbox(path: &Path) -> Vec<(Change, Vec<u8>)> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let fields: Vec<&str> = head.split(' ').collect();
        let [kind, flag, weight, length] = fields[..] else {
            break;
        };
        let (Ok(flag), Ok(weight), Ok(length)) =
            (flag.parse(), weight.parse(), length.parse::<usize>())
        else {
            break;
        };
        let Some(message) = rest.get(end + 1..end + 1 + length) else {
            break;
        };
        if let Some(change) = change_of(kind, flag, weight) {
            out.push((change, message.to_vec()));
        }
        rest = &rest[end + 1 + length..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_reads_back_what_was_appended_and_stops_at_a_torn_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.outbox");
        append_outbox(&path, &Change::Learn(Class::Spam), b"Subject: a\n\nx\n").unwrap();
        append_outbox(&path, &Change::FuzzyAdd { flag: 2, weight: 5 }, b"body").unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"learn_ham 0 0 99\nshort").unwrap();
        let read = read_outbox(&path);
        assert_eq!(
            read,
            vec![
                (Change::Learn(Class::Spam), b"Subject: a\n\nx\n".to_vec()),
                (Change::FuzzyAdd { flag: 2, weight: 5 }, b"body".to_vec()),
            ]
        );
    }
}
