//! The policy's state: rate-limit buckets, greylist triplets, remembered
//! Message-IDs and known senders, in one embedded store in the data dir.
//!
//! Why not redb or fjall: every entry is small, short-lived and read on
//! every scan, and the whole set is bounded by `max_entries` (a million
//! entries is ~100 MB), so it lives in a hash map and a lookup costs a hash,
//! not a B-tree page walk. Durability comes from a write-ahead journal:
//! each update's records are appended with one `write` before the scan's
//! reply leaves, so a `kill -9` loses nothing acknowledged (the page cache
//! outlives the process); a thread fsyncs the journal every
//! `sync_interval_ms`, which bounds what a power cut can take, as Redis's
//! `appendfsync everysec` does. Records hold absolute values (a bucket's
//! level and time, a triplet's first sight), so replaying one twice is
//! harmless. When the journal outgrows the live set, the live entries are
//! written as a snapshot (`policy.state`, temp + fsync + rename) and the
//! journal starts empty; a crash between the two replays the old journal
//! over the new snapshot, which changes nothing.
//!
//! Bounded: every entry carries its expiry; expired entries are dropped on
//! read and at compaction; past `max_entries` the entries closest to
//! expiring go first. One writer: `policy.lock`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use super::entry::{Entry, REMOVED, Txn, Value};
use super::entry::{decode_all, encode_put};
use super::shared::{RedisConfig, Shared, SharedError};
use crate::store::{AppendMap, LockError, WriterLock, replace_file};

pub const STATE_FILE: &str = "policy.state";
pub const JOURNAL_FILE: &str = "policy.journal";
pub const LOCK_FILE: &str = "policy.lock";

const MAGIC: &[u8; 8] = b"CHAFFPS1";
/// The journal is folded into a snapshot once it is this large and larger
/// than twice the live set's size.
const MIN_COMPACT_BYTES: u64 = 4 << 20;

/// Why the state could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a chaff policy state file")]
    Format { path: PathBuf },
    #[error(transparent)]
    Shared(#[from] SharedError),
}

/// The embedded store. Cheap to share: every method locks briefly.
pub struct PolicyState {
    inner: Mutex<Inner>,
    dir: PathBuf,
    max_entries: usize,
    dirty: Arc<AtomicBool>,
    /// With `[redis]`: the state shared with other nodes.
    shared: Option<Shared>,
    _lock: WriterLock,
}

struct Inner {
    entries: HashMap<String, Entry>,
    journal: AppendMap,
}

impl PolicyState {
    /// Opens (or creates) the state in `dir`: takes `policy.lock`, reads the
    /// snapshot, replays the journal (a torn last record, from a crash in
    /// mid-write, is cut off: it was never acknowledged), and starts the
    /// fsync thread.
    pub fn open(
        dir: &Path,
        max_entries: usize,
        sync_interval: Duration,
    ) -> Result<PolicyState, StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = WriterLock::acquire(&dir.join(LOCK_FILE))?;
        let mut entries = HashMap::new();
        let state_path = dir.join(STATE_FILE);
        match std::fs::read(&state_path) {
            Ok(bytes) => {
                let body =
                    bytes
                        .strip_prefix(MAGIC.as_slice())
                        .ok_or_else(|| StateError::Format {
                            path: state_path.clone(),
                        })?;
                let (read, _) = decode_all(body, &mut entries);
                if read != body.len() {
                    return Err(StateError::Format { path: state_path });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&state_path)(e)),
        }
        let journal_path = dir.join(JOURNAL_FILE);
        let mut journal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&journal_path)
            .map_err(io(&journal_path))?;
        let mut bytes = Vec::new();
        journal.read_to_end(&mut bytes).map_err(io(&journal_path))?;
        let (good, _) = decode_all(&bytes, &mut entries);
        // The journal's zeroed tail (`store::AppendMap`) is not a torn record.
        if bytes[good..].iter().any(|&b| b != 0) {
            tracing::warn!(
                "{}: cutting a torn last record ({} bytes after the intact ones)",
                journal_path.display(),
                bytes.len() - good
            );
        }
        let journal = AppendMap::open(journal, good).map_err(io(&journal_path))?;
        let dirty = Arc::new(AtomicBool::new(false));
        let syncer = journal.try_clone_file().map_err(io(&journal_path))?;
        spawn_syncer(syncer, dirty.clone(), sync_interval);
        Ok(PolicyState {
            inner: Mutex::new(Inner { entries, journal }),
            dir: dir.to_owned(),
            max_entries: max_entries.max(1),
            dirty,
            shared: None,
            _lock: lock,
        })
    }

    /// Shares the state through Redis from now on (`[redis] servers` not
    /// empty); the local state stays the fallback.
    pub fn share(&mut self, config: &RedisConfig) -> Result<(), StateError> {
        if !config.servers.is_empty() {
            self.shared = Some(Shared::new(config)?);
        }
        Ok(())
    }

    /// With `[redis]`: whether Redis answered the last time it was asked.
    pub fn redis_up(&self) -> Option<bool> {
        self.shared.as_ref().map(Shared::is_up)
    }

    /// With `[redis]`: failed attempts since start.
    pub fn redis_failures(&self) -> Option<u64> {
        self.shared.as_ref().map(Shared::failures)
    }

    /// The shared store, when Redis is configured and not in a retry pause.
    fn shared_due(&self) -> Option<&Shared> {
        self.shared.as_ref().filter(|shared| shared.due())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs `change` over the entries and writes what it put to the journal
    /// before returning: once this returns `Ok`, the update survives a
    /// `kill -9`.
    pub fn update<R>(
        &self,
        now: u64,
        mut change: impl FnMut(&mut Txn<'_>) -> R,
    ) -> std::io::Result<R> {
        if let Some(shared) = self.shared_due() {
            let local = |key: &str| self.get_local(key, now);
            match shared.update(now, &local, &mut change) {
                Ok((result, writes)) => {
                    self.apply(&writes, now)?;
                    return Ok(result);
                }
                Err(error) => shared.failed(&error),
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let entries = &inner.entries;
        let mut read = |key: &str| entries.get(key).copied();
        let mut txn = Txn::new(&mut read, now);
        let result = change(&mut txn);
        let writes = txn.into_writes();
        self.apply_locked(inner, &writes, now)?;
        if let Some(shared) = &self.shared {
            shared.owe(&writes);
        }
        Ok(result)
    }

    /// Writes what an update (here, or on Redis) put: into the map and, in
    /// one `write`, into the journal.
    pub(super) fn apply(&self, writes: &[(String, Entry)], now: u64) -> std::io::Result<()> {
        let mut inner = self.lock();
        self.apply_locked(&mut inner, writes, now)
    }

    fn apply_locked(
        &self,
        inner: &mut Inner,
        writes: &[(String, Entry)],
        now: u64,
    ) -> std::io::Result<()> {
        let mut records = Vec::new();
        for (key, entry) in writes {
            encode_put(&mut records, key, entry);
            if entry.expires == 0 {
                inner.entries.remove(key);
            } else {
                inner.entries.insert(key.clone(), *entry);
            }
        }
        if !records.is_empty() {
            inner.journal.append(&records)?;
            self.dirty.store(true, Ordering::Release);
            if inner.entries.len() > self.max_entries {
                evict(&mut inner.entries, now, self.max_entries);
            }
            let live_estimate = inner.entries.len() as u64 * 64;
            if inner.journal.bytes() as u64 > MIN_COMPACT_BYTES.max(2 * live_estimate) {
                self.compact_locked(inner, now)?;
            }
        }
        Ok(())
    }

    /// The live entry under `key` (on Redis, when it is shared).
    pub fn get(&self, key: &str, now: u64) -> Option<Entry> {
        if let Some(shared) = self.shared_due() {
            let local = |key: &str| self.get_local(key, now);
            match shared.update(now, &local, |txn| txn.get(key)) {
                Ok((found, _)) => return found,
                Err(error) => shared.failed(&error),
            }
        }
        self.get_local(key, now)
    }

    fn get_local(&self, key: &str, now: u64) -> Option<Entry> {
        self.lock()
            .entries
            .get(key)
            .copied()
            .filter(|e| e.expires > now)
    }

    /// Live entries whose key starts with `prefix`, sorted by key (on
    /// Redis, when it is shared).
    pub fn list(&self, prefix: &str, now: u64) -> Vec<(String, Entry)> {
        if let Some(shared) = self.shared_due() {
            match shared.list(prefix) {
                Ok(mut found) => {
                    found.retain(|(_, e)| e.expires > now);
                    return found;
                }
                Err(error) => shared.failed(&error),
            }
        }
        let inner = self.lock();
        let mut found: Vec<(String, Entry)> = inner
            .entries
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.expires > now)
            .map(|(k, e)| (k.clone(), *e))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Removes every entry whose key starts with `prefix` (durably, as an
    /// update); returns how many went.
    pub fn reset(&self, prefix: &str, now: u64) -> std::io::Result<usize> {
        let keys: Vec<String> = self
            .list(prefix, now)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        let count = keys.len();
        self.update(now, |txn| {
            for key in &keys {
                // An entry expired at 0 is gone on replay and on read.
                txn.put(key, REMOVED);
            }
        })?;
        Ok(count)
    }

    /// Live entries, and the journal's size in bytes.
    pub fn stats(&self, now: u64) -> (usize, u64) {
        let inner = self.lock();
        let live = inner.entries.values().filter(|e| e.expires > now).count();
        (live, inner.journal.bytes() as u64)
    }

    fn compact_locked(&self, inner: &mut Inner, now: u64) -> std::io::Result<()> {
        inner.entries.retain(|_, e| e.expires > now);
        let mut snapshot = Vec::with_capacity(inner.entries.len() * 48);
        for (key, entry) in &inner.entries {
            encode_put(&mut snapshot, key, entry);
        }
        replace_file(&self.dir.join(STATE_FILE), &[MAGIC.as_slice(), &snapshot])?;
        inner.journal.clear()
    }
}

/// Fsyncs the journal every `interval` while updates arrive.
fn spawn_syncer(journal: File, dirty: Arc<AtomicBool>, interval: Duration) {
    let weak = Arc::downgrade(&dirty);
    drop(dirty);
    let spawned = std::thread::Builder::new()
        .name("policy-sync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(dirty) = weak.upgrade() else {
                    return;
                };
                if dirty.swap(false, Ordering::AcqRel)
                    && let Err(error) = journal.sync_data()
                {
                    tracing::warn!("policy journal fsync failed: {error}");
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("no policy fsync thread ({error}); the journal is synced by the OS only");
    }
}

/// Past the cap: drop expired entries, then those closest to expiring.
fn evict(entries: &mut HashMap<String, Entry>, now: u64, max_entries: usize) {
    entries.retain(|_, e| e.expires > now);
    if entries.len() <= max_entries {
        return;
    }
    // Down to 90% of the cap, so eviction is not paid on every update.
    let keep = max_entries - max_entries / 10;
    let mut expiries: Vec<u64> = entries.values().map(|e| e.expires).collect();
    let cut_at = expiries.len() - keep;
    let (_, cut, _) = expiries.select_nth_unstable(cut_at);
    let cut = *cut;
    let mut over = entries.len() - keep;
    entries.retain(|_, e| {
        if over > 0 && e.expires < cut {
            over -= 1;
            false
        } else {
            true
        }
    });
    if over > 0 {
        entries.retain(|_, e| {
            if over > 0 && e.expires == cut {
                over -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(level: f64, expires: u64) -> Entry {
        Entry {
            value: Value::Bucket { level, at_ms: 5 },
            expires,
        }
    }

    #[test]
    fn updates_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let end = {
            let state = PolicyState::open(dir.path(), 100, Duration::from_secs(1)).unwrap();
            state
                .update(10, |txn| {
                    txn.put("rl:user:a", bucket(1.5, 100));
                    txn.put("grey:x", bucket(2.0, 5));
                })
                .unwrap();
            // A second opener is refused while the first holds the lock.
            assert!(PolicyState::open(dir.path(), 100, Duration::from_secs(1)).is_err());
            state.stats(10).1
        };
        // A record torn in mid-copy, where the next one would have gone.
        let journal = OpenOptions::new()
            .write(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&journal, &[9, 0, 0, 0, 1, 2], end).unwrap();
        drop(journal);
        let state = PolicyState::open(dir.path(), 100, Duration::from_secs(1)).unwrap();
        assert_eq!(state.get("rl:user:a", 10), Some(bucket(1.5, 100)));
        // Expired by the time it is read.
        assert_eq!(state.get("grey:x", 10), None);
        assert_eq!(state.list("rl:", 10).len(), 1);
        assert_eq!(state.reset("rl:", 10).unwrap(), 1);
        drop(state);
        let state = PolicyState::open(dir.path(), 100, Duration::from_secs(1)).unwrap();
        assert_eq!(state.get("rl:user:a", 10), None);
    }

    #[test]
    fn compaction_keeps_the_live_set_and_empties_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let state = PolicyState::open(dir.path(), 1_000_000, Duration::from_secs(1)).unwrap();
        let mut i = 0u64;
        while std::fs::metadata(dir.path().join(STATE_FILE)).is_err() {
            state
                .update(10, |txn| {
                    txn.put(&format!("k{}", i % 1000), bucket(i as f64, 1000))
                })
                .unwrap();
            i += 1;
        }
        assert!(state.stats(10).1 < MIN_COMPACT_BYTES);
        state
            .update(10, |txn| txn.put("last", bucket(7.0, 1000)))
            .unwrap();
        drop(state);
        let state = PolicyState::open(dir.path(), 1_000_000, Duration::from_secs(1)).unwrap();
        assert_eq!(state.stats(10).0, 1001);
        assert_eq!(state.get("last", 10), Some(bucket(7.0, 1000)));
    }

    #[test]
    fn past_the_cap_the_soonest_to_expire_go_first() {
        let mut entries = HashMap::new();
        for i in 0..100u64 {
            entries.insert(format!("k{i}"), bucket(0.0, 100 + i));
        }
        evict(&mut entries, 10, 50);
        assert_eq!(entries.len(), 45);
        assert!(entries.contains_key("k99") && !entries.contains_key("k0"));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        let mut entries = HashMap::new();
        for seed in 0..2000u32 {
            let bytes: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 7) as u8)
                .collect();
            decode_all(&bytes, &mut entries);
        }
    }
}
