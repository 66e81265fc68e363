//! What every request shares: the engine, counters, history, limits.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chaff::config::Config;
use chaff::store::Class;
use chaff::verdict::Action;
use chaff::{Engine, Scan};
use tokio::sync::{Semaphore, watch};

/// Actions in the order `/stat` reports them.
pub const ACTIONS: [Action; super::timeline::ACTION_SLOTS] = [
    Action::Reject,
    Action::SoftReject,
    Action::RewriteSubject,
    Action::AddHeader,
    Action::Greylist,
    Action::NoAction,
];

/// One scan, for `/history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// This node's number for the scan, rising (the web UI's handle on it).
    pub id: u64,
    #[serde(rename = "message-id")]
    pub message_id: String,
    pub unix_time: u64,
    pub ip: String,
    pub sender_smtp: String,
    pub rcpt_smtp: Vec<String>,
    pub subject: String,
    pub score: f64,
    pub required_score: f64,
    pub action: String,
    pub symbols: BTreeMap<String, f64>,
    /// Each symbol's options, for the symbols that have some.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, Vec<String>>,
    pub size: usize,
    pub time_real: f64,
    /// The settings profile the scan ran under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Per-symbol figures for `/counters`.
#[derive(Debug, Clone, Default)]
pub struct SymbolCounter {
    pub hits: u64,
    pub total_seconds: f64,
}

/// Monotonic counters for `/stat` and `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub scanned: AtomicU64,
    pub learned: AtomicU64,
    pub spam: AtomicU64,
    pub ham: AtomicU64,
    pub connections: AtomicU64,
    pub control_connections: AtomicU64,
    pub actions: [AtomicU64; 6],
    pub scan_micros: AtomicU64,
    /// Messages a rate limit held, greylisting deferred, and spam-scored
    /// messages from an authenticated user past the spam-burst bucket.
    pub ratelimited: AtomicU64,
    pub greylisted: AtomicU64,
    pub spam_bursts: AtomicU64,
}

/// What a node tells the other nodes (`[redis]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Learn(Class),
    FuzzyAdd { flag: u32, weight: u32 },
    FuzzyDel { flag: u32 },
}

/// Sharing with other nodes, as the handlers see it (`replicate.rs` is
/// the Redis one): changes this node acknowledged, and scan history.
pub trait Replication: Send + Sync {
    /// Tells the other nodes; never fails the request (it queues).
    fn publish(&self, change: Change, message: Vec<u8>);
    /// Queues one history row (JSON) for the shared history.
    fn share_history(&self, row: String);
    /// The shared history, newest first.
    fn history(&self, limit: usize) -> Result<Vec<serde_json::Value>, String>;
}

pub struct State {
    pub engine: RwLock<Engine>,
    /// Held by a learn and the training after it, so learns wait for a
    /// training in progress while scans do not.
    pub learning: Arc<tokio::sync::Mutex<()>>,
    /// The configuration in force; replaced whole on SIGHUP.
    pub config: RwLock<Arc<Config>>,
    config_path: Option<PathBuf>,
    pub counters: Counters,
    pub history: Mutex<VecDeque<HistoryEntry>>,
    pub symbol_counters: Mutex<BTreeMap<String, SymbolCounter>>,
    /// Scans running or waiting for a core.
    pub scan_permits: Arc<Semaphore>,
    /// Open connections: one bound of `max_connections` per port (worker,
    /// controller, milter, spamd), so a flood on one door never starves
    /// another; drained on shutdown.
    connection_permits: [Arc<Semaphore>; 4],
    max_connections: u32,
    pub started: Instant,
    shutdown: watch::Sender<bool>,
    /// With `[redis]`: learns and fuzzy reports told to the other nodes.
    replicator: std::sync::OnceLock<Arc<dyn Replication>>,
    /// Where scans and learns run: one thread per core, never the reactor.
    cpu_pool: super::pool::CpuPool,
    /// The web UI's logins.
    pub sessions: super::session::Sessions,
    /// Scans per minute and their latencies, for the dashboard.
    pub timeline: Mutex<super::timeline::Timeline>,
    /// The history's messages, for learning from an entry.
    pub kept: Mutex<super::kept::Kept>,
    next_history_id: AtomicU64,
}

impl State {
    pub fn new(engine: Engine, config: Config, config_path: Option<PathBuf>) -> State {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let scans = match config.server.max_scans_in_flight {
            0 => cores * 4,
            n => n,
        };
        let max_connections = config.server.max_connections.clamp(1, 1 << 20) as u32;
        State {
            engine: RwLock::new(engine),
            learning: Arc::new(tokio::sync::Mutex::new(())),
            config: RwLock::new(Arc::new(config)),
            config_path,
            counters: Counters::default(),
            history: Mutex::new(VecDeque::new()),
            symbol_counters: Mutex::new(BTreeMap::new()),
            scan_permits: Arc::new(Semaphore::new(scans)),
            connection_permits: std::array::from_fn(|_| {
                Arc::new(Semaphore::new(max_connections as usize))
            }),
            max_connections,
            started: Instant::now(),
            shutdown: watch::channel(false).0,
            replicator: std::sync::OnceLock::new(),
            cpu_pool: super::pool::CpuPool::new(cores),
            sessions: Default::default(),
            timeline: Default::default(),
            kept: Default::default(),
            next_history_id: AtomicU64::new(1),
        }
    }

    /// Runs CPU work on the scan pool and waits for it without blocking the
    /// reactor. `None` if the work panicked.
    pub async fn run_cpu<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.cpu_pool.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = sender.send(result.ok());
        });
        receiver.await.ok().flatten()
    }

    /// The configuration file the daemon reads (none: the defaults).
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// The configuration file's text as it is now (empty without one).
    pub fn config_text(&self) -> String {
        self.config_path
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sets the replicator, once, at start.
    pub fn set_replicator(&self, replicator: Arc<dyn Replication>) {
        let _ = self.replicator.set(replicator);
    }

    pub fn replicator(&self) -> Option<&Arc<dyn Replication>> {
        self.replicator.get()
    }

    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// The connection bound of the port `role` listens on.
    pub fn connection_permits(&self, role: super::Role) -> Arc<Semaphore> {
        let port = match role {
            super::Role::Worker => 0,
            super::Role::Controller => 1,
            super::Role::Milter => 2,
            super::Role::Spamd => 3,
        };
        self.connection_permits[port].clone()
    }

    /// Resolves once every connection has finished.
    pub async fn drain(&self) {
        for permits in &self.connection_permits {
            let _ = permits.acquire_many(self.max_connections).await;
        }
    }

    /// Makes every acknowledged learn durable (it already is: learns are
    /// committed before they are acknowledged) and folds a large journal.
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut engine = self
            .engine
            .write()
            .map_err(|_| anyhow::anyhow!("engine lock poisoned"))?;
        engine.commit()?;
        engine.compact_if_due()?;
        Ok(())
    }

    /// Trains the classifier and switches to the new model if the journal
    /// is due, without blocking scans: the model is trained and written
    /// under the shared lock, and only the switch takes the exclusive one.
    /// The caller holds [`State::learning`], so no learn comes in between.
    pub fn train_if_due(&self) -> anyhow::Result<bool> {
        let written = {
            let engine = self
                .engine
                .read()
                .map_err(|_| anyhow::anyhow!("engine lock poisoned"))?;
            if !engine.training_due() {
                return Ok(false);
            }
            engine.write_trained()?
        };
        let mut engine = self
            .engine
            .write()
            .map_err(|_| anyhow::anyhow!("engine lock poisoned"))?;
        engine.switch_to_trained(written)?;
        Ok(true)
    }

    /// Re-reads the configuration file and the rules and maps it names
    /// (SIGHUP). An invalid file or rule leaves everything untouched. Rules
    /// compile before the engine is locked, so scans wait only for the swap.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = Config::load(self.config_path.as_deref())?;
        let active = chaff::engine::Active::load(&config)?;
        if let Ok(mut engine) = self.engine.write() {
            engine.reconfigure_with(config.clone(), active);
        }
        if let Ok(mut current) = self.config.write() {
            *current = Arc::new(config);
        }
        Ok(())
    }

    /// Records a finished scan in counters and history; returns the id its
    /// history entry got.
    pub fn record_scan(&self, mut entry: HistoryEntry, scan: &Scan, seconds: f64) -> u64 {
        let id = self.next_history_id.fetch_add(1, Ordering::Relaxed);
        entry.id = id;
        let verdict = &scan.verdict;
        let c = &self.counters;
        for (counted, counter) in [
            (scan.policy.ratelimited, &c.ratelimited),
            (scan.policy.greylisted, &c.greylisted),
            (scan.policy.spam_burst, &c.spam_bursts),
        ] {
            if counted {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.scanned.fetch_add(1, Ordering::Relaxed);
        c.scan_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if verdict.action.is_spam() {
            c.spam.fetch_add(1, Ordering::Relaxed);
        } else {
            c.ham.fetch_add(1, Ordering::Relaxed);
        }
        let action = ACTIONS.iter().position(|a| *a == verdict.action);
        if let Some(index) = action {
            c.actions[index].fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut timeline) = self.timeline.lock() {
            timeline.record(entry.unix_time, action, seconds);
        }
        if let Ok(mut counters) = self.symbol_counters.lock() {
            for symbol in &verdict.symbols {
                let counter = counters.entry(symbol.name.clone()).or_default();
                counter.hits += 1;
                counter.total_seconds += seconds;
            }
        }
        let limit = self.config().server.history_size;
        if let Some(replicator) = self.replicator()
            && let Ok(row) = serde_json::to_string(&entry)
        {
            replicator.share_history(row);
        }
        if let Ok(mut history) = self.history.lock() {
            history.push_front(entry);
            history.truncate(limit);
        }
        id
    }

    /// Keeps the message of history entry `id` (within the history's size
    /// and `history_messages_mb`).
    pub fn keep_message(&self, id: u64, raw: Vec<u8>, envelope: chaff::message::Envelope) {
        let server = &self.config().server;
        let max_bytes = server.history_messages_mb.saturating_mul(1 << 20);
        if max_bytes == 0 {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            let message = super::kept::KeptMessage { raw, envelope };
            kept.keep(id, message, server.history_size, max_bytes);
        }
    }

    /// Zeroes the scan counters (`/statreset`).
    pub fn reset_counters(&self) {
        let c = &self.counters;
        for counter in [&c.scanned, &c.learned, &c.spam, &c.ham, &c.scan_micros] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in &c.actions {
            counter.store(0, Ordering::Relaxed);
        }
        if let Ok(mut counters) = self.symbol_counters.lock() {
            counters.clear();
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name, as spamd's reports and the milter's
/// `X-Rspamd-Server` name it.
pub fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}
