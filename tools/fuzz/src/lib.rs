//! What the fuzz targets share: the daemon's own connection code (the
//! binary's `src/server`, included as it is, so the bytes take the path a
//! TCP connection takes) and an engine over a scratch data directory.

#[path = "../../../src/server/mod.rs"]
#[allow(dead_code, unused_imports)]
pub mod server;

use std::sync::OnceLock;

use chaff::Engine;
use chaff::config::Config;

/// The engine every input of a run goes through: default configuration,
/// network checks off, a data directory that lives as long as the process.
pub fn engine() -> Engine {
    let directory = scratch_directory();
    match Engine::open_for_learning(Config::embedded(), directory) {
        Ok(engine) => engine,
        Err(error) => panic!("cannot open the fuzz data directory: {error}"),
    }
}

fn scratch_directory() -> &'static std::path::Path {
    static DIRECTORY: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIRECTORY
        .get_or_init(|| match tempfile::tempdir() {
            Ok(directory) => directory,
            Err(error) => panic!("cannot make a scratch directory: {error}"),
        })
        .path()
}

/// One daemon (state, runtime) per process; each input is one connection.
pub struct Daemon {
    runtime: tokio::runtime::Runtime,
    daemon: server::fuzzing::Daemon,
}

impl Daemon {
    pub fn get() -> &'static Daemon {
        static DAEMON: OnceLock<Daemon> = OnceLock::new();
        DAEMON.get_or_init(|| {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => panic!("cannot build a runtime: {error}"),
            };
            let daemon = server::fuzzing::Daemon::new(engine(), Config::embedded());
            Daemon { runtime, daemon }
        })
    }

    /// The daemon's whole answer to `request` on `role`'s port. No timeout
    /// of our own: a reply slower than the daemon's own header and body
    /// timeouts is a hang, and AFL should see it as one (`run` gives `-t`).
    pub fn exchange(&self, role: server::Role, request: &[u8]) -> Vec<u8> {
        self.runtime.block_on(self.daemon.exchange(role, request))
    }
}
