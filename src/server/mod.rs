//! `chaff serve`: rspamd's HTTP protocol on a worker port (scanning) and a
//! controller port (learning and admin), so MTAs' rspamd integrations and
//! `rspamc` work unchanged.
//!
//! The reactor only moves bytes: every scan and learn runs on a thread pool
//! sized to the cores (`State::run_cpu`), never on an async worker thread. Back-pressure comes from a semaphore of scan permits taken
//! *before* a request body is read, so a flood of requests waits in the
//! kernel's socket buffers instead of in our memory.
//!
//! Layout, by concern: `conn.rs` accepts connections and tells rspamd's old
//! `RSPAMC/1.3` text protocol (Exim) from HTTP; `rspamc.rs` is that text
//! protocol's connection I/O; `routes.rs` is the table of paths to
//! handlers; `body.rs` reads request pairs and bodies (limits, timeout,
//! zstd); `checkv3.rs` is rspamd 4's multipart `/checkv3` (request parts,
//! metadata, negotiated reply); `scan.rs` runs a scan with its counters and history;
//! `controller.rs` holds the learn, fuzzy and admin handlers and
//! `metrics.rs` `/metrics`; `milter.rs`
//! is the milter door (Postfix, Sendmail) and `milter_wire.rs` its packet
//! format; `spamd.rs`
//! is SpamAssassin's spamd protocol on its own port and `spamd_reply.rs`
//! its reply shapes; `reply.rs`
//! the pure reply shapes (envelope from headers, `/checkv2`, legacy JSON,
//! `RSPAMC` text, HTTP errors); `auth.rs` who may do what; `state.rs` what
//! requests share, with `timeline.rs` (scans per minute, latencies),
//! `kept.rs` (the history's messages) and `session.rs` (web UI logins)
//! beside it; `ui/` the admin web UI on the controller port; `pool.rs` the
//! CPU threads scans run on.

mod auth;
mod body;
mod checkv3;
mod conn;
mod controller;
mod kept;
mod metrics;
mod milter;
mod milter_wire;
mod pool;
mod replicate;
mod reply;
mod routes;
mod rspamc;
mod scan;
mod session;
mod spamd;
mod spamd_reply;
mod state;
mod timeline;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chaff::Engine;
use chaff::config::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use state::State;

/// A connection's byte stream: a TCP stream in the daemon, an in-memory
/// pipe in the fuzz targets.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Which port a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Worker,
    Controller,
    /// SpamAssassin's spamd protocol (`[server] spamd_bind`).
    Spamd,
    /// The milter protocol (`[server] milter_bind`).
    Milter,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the scanning worker (default from config: 127.0.0.1:11333).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Address of the controller (default from config: 127.0.0.1:11334).
    #[arg(long)]
    controller_bind: Option<SocketAddr>,
    /// Address for SpamAssassin's spamd protocol (default from config:
    /// off; spamd's own port, 783, is privileged).
    #[arg(long)]
    spamd_bind: Option<SocketAddr>,
    /// Address of the milter (default from config: 127.0.0.1:11332, the
    /// port of rspamd's proxy worker).
    #[arg(long)]
    milter_bind: Option<SocketAddr>,
}

pub fn run(
    config: Config,
    config_path: Option<PathBuf>,
    data_dir: PathBuf,
    args: ServeArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let worker_addr =
        match args.bind {
            Some(addr) => addr,
            None => config.server.bind.parse().with_context(|| {
                format!("server.bind `{}` is not ADDR:PORT", config.server.bind)
            })?,
        };
    let controller_addr = match args.controller_bind {
        Some(addr) => addr,
        None => config.server.controller_bind.parse().with_context(|| {
            format!(
                "server.controller_bind `{}` is not ADDR:PORT",
                config.server.controller_bind
            )
        })?,
    };
    if !controller_addr.ip().is_loopback()
        && config.server.password.is_none()
        && config.server.enable_password.is_none()
    {
        anyhow::bail!(
            "refusing to start: the controller would listen on {controller_addr}, which is not loopback, \
             with no password; set server.password and server.enable_password"
        );
    }
    let spamd_addr = optional_addr(args.spamd_bind, "spamd_bind", &config.server.spamd_bind)?;
    let milter_addr = optional_addr(args.milter_bind, "milter_bind", &config.server.milter_bind)?;
    let mut engine = Engine::open_for_learning(config.clone(), &data_dir)
        .with_context(|| format!("cannot open {} for serving", data_dir.display()))?;
    engine
        .attach_policy(&data_dir)
        .with_context(|| format!("cannot open the policy state in {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("chaff-io")
        .build()?;
    runtime.block_on(async move {
        let worker = TcpListener::bind(worker_addr)
            .await
            .with_context(|| format!("cannot listen on {worker_addr}"))?;
        let controller = TcpListener::bind(controller_addr)
            .await
            .with_context(|| format!("cannot listen on {controller_addr}"))?;
        let milter = listen_if(milter_addr).await?;
        let spamd = listen_if(spamd_addr).await?;
        if config.network.enabled {
            eprintln!(
                "chaff serve: network checks on (DNS budget {} ms per message, nameservers: {})",
                config.network.budget_ms,
                if config.network.nameservers.is_empty() {
                    "system".to_owned()
                } else {
                    config.network.nameservers.join(", ")
                }
            );
        } else {
            eprintln!("chaff serve: network checks off ([network] enabled = false)");
        }
        let signals = Signals::install()?;
        let redis = config.redis.clone();
        let state = Arc::new(State::new(engine, config, config_path));
        if let Some(replicator) = replicate::Replicator::new(&redis, &data_dir)? {
            let replicator = Arc::new(replicator);
            state.set_replicator(replicator.clone());
            replicator.spawn(state.clone());
        }
        // Printed once every port listens, so scripts and tests can wait
        // for it (the milter and spamd ports, when on, at its end).
        let mut others = String::new();
        if let Some(listener) = &milter {
            others.push_str(&format!(", milter on {}", listener.local_addr()?));
        }
        if let Some(listener) = &spamd {
            others.push_str(&format!(", spamd on {}", listener.local_addr()?));
        }
        println!(
            "chaff serve: worker on {}, controller on {}{others}",
            worker.local_addr()?,
            controller.local_addr()?
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        let milter_task = milter
            .map(|listener| tokio::spawn(conn::accept_loop(listener, Role::Milter, state.clone())));
        let spamd_task = spamd
            .map(|listener| tokio::spawn(conn::accept_loop(listener, Role::Spamd, state.clone())));
        let worker_task = tokio::spawn(conn::accept_loop(worker, Role::Worker, state.clone()));
        let controller_task = tokio::spawn(conn::accept_loop(
            controller,
            Role::Controller,
            state.clone(),
        ));
        wait_for_signals(&state, signals).await;
        state.begin_shutdown();
        let _ = worker_task.await;
        let _ = controller_task.await;
        for task in [milter_task, spamd_task].into_iter().flatten() {
            let _ = task.await;
        }
        // Drain: requests in flight hold connection permits; wait for them.
        let drained = tokio::time::timeout(Duration::from_secs(30), state.drain()).await;
        if drained.is_err() {
            eprintln!("chaff serve: gave up waiting for requests in flight after 30s");
        }
        let state_for_flush = state.clone();
        state
            .run_cpu(move || state_for_flush.flush())
            .await
            .context("flush task failed")??;
        eprintln!("chaff serve: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// A door that may be off: the command-line address, else the config's
/// (`server.KEY`), none when that is empty.
fn optional_addr(
    flag: Option<SocketAddr>,
    key: &str,
    configured: &str,
) -> anyhow::Result<Option<SocketAddr>> {
    if flag.is_some() || configured.is_empty() {
        return Ok(flag);
    }
    let addr = configured
        .parse()
        .with_context(|| format!("server.{key} `{configured}` is not ADDR:PORT"))?;
    Ok(Some(addr))
}

/// Listens on `addr` when the door is on.
async fn listen_if(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        )),
        None => Ok(None),
    }
}

/// The signals the daemon handles, installed before it says it is ready:
/// until a handler exists, SIGHUP's default action would kill the process.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }
}

/// Waits for SIGTERM or SIGINT (returns) and handles SIGHUP (reload) meanwhile.
async fn wait_for_signals(state: &Arc<State>, signals: Signals) {
    let Signals {
        mut terminate,
        mut interrupt,
        mut hangup,
    } = signals;
    loop {
        tokio::select! {
            _ = terminate.recv() => return,
            _ = interrupt.recv() => return,
            _ = hangup.recv() => {
                let state = state.clone();
                let reload_state = state.clone();
                let result = state.run_cpu(move || reload_state.reload()).await;
                match result {
                    Some(Ok(())) => eprintln!("chaff serve: configuration reloaded"),
                    Some(Err(error)) => eprintln!("chaff serve: reload failed, keeping the old configuration: {error:#}"),
                    None => eprintln!("chaff serve: reload failed"),
                }
            }
        }
    }
}

/// The fuzz targets' way in (`tools/fuzz`, built with `--cfg fuzzing`):
/// one connection's bytes through the same code a TCP connection takes.
#[cfg(fuzzing)]
pub mod fuzzing {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Role, State};

    /// The daemon's shared state over an engine, as `chaff serve` builds it.
    pub struct Daemon {
        state: Arc<State>,
    }

    impl Daemon {
        pub fn new(engine: chaff::Engine, config: chaff::config::Config) -> Daemon {
            Daemon {
                state: Arc::new(State::new(engine, config, None)),
            }
        }

        /// Sends `request` on a fresh connection (then closes the sending
        /// side) and returns everything the daemon answered.
        pub async fn exchange(&self, role: Role, request: &[u8]) -> Vec<u8> {
            let (client, server) = tokio::io::duplex(1 << 16);
            let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
            let served = tokio::spawn(super::conn::serve_connection(
                server,
                peer,
                role,
                self.state.clone(),
            ));
            let mut reply = Vec::new();
            let (mut reader, mut writer) = tokio::io::split(client);
            let send = async {
                let _ = writer.write_all(request).await;
                let _ = writer.shutdown().await;
            };
            let receive = reader.read_to_end(&mut reply);
            let _ = tokio::join!(send, receive);
            let _ = served.await;
            reply
        }
    }
}
