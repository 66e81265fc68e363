//! The resolver every network check shares: hickory-resolver on a small
//! tokio runtime of its own, so the synchronous engine can run a message's
//! DNS work in parallel and wait for it, bounded by a per-message budget.
//!
//! Per query: `query_timeout_ms` × `attempts`. Per message: every lookup
//! started by [`Network::run`] ends by its deadline (`budget_ms`), answered
//! or not. Answers are cached by the resolver (TTL-bound, negative answers
//! too), so a campaign's repeated domains cost one query. A resolver that
//! nothing listens on is found by a probe (`ResolverHealth`); while it is
//! down, a message's lookups fail at once instead of waiting out the budget.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::time::Instant;

use super::NetworkConfig;

/// What one lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Records of the asked type.
    Found(Vec<T>),
    /// NXDOMAIN or no records of that type.
    NotFound,
    /// The server failed (SERVFAIL, REFUSED, …) or could not be reached.
    Failed(String),
    /// No answer within the query timeouts or the message's budget.
    TimedOut,
}

impl<T> Lookup<T> {
    pub fn is_failure(&self) -> bool {
        matches!(self, Lookup::Failed(_) | Lookup::TimedOut)
    }

    /// `timeout` or the failure, for a symbol's option.
    pub fn failure_text(&self) -> Option<String> {
        match self {
            Lookup::Failed(why) => Some(why.clone()),
            Lookup::TimedOut => Some("timeout".to_owned()),
            _ => None,
        }
    }
}

/// The shared resolver and the runtime it runs on.
pub struct Network {
    runtime: Option<tokio::runtime::Runtime>,
    resolver: TokioResolver,
    authenticator: mail_auth::MessageAuthenticator,
    budget: Duration,
    health: ResolverHealth,
}

/// Whether anything listens on the nameservers. hickory sends its queries
/// from unconnected UDP sockets, which never hear the port-unreachable a
/// host answers for a port nothing listens on, so with a dead resolver every
/// lookup would wait out the message's whole budget. A probe from a
/// connected socket hears it at once: while every nameserver refuses,
/// a message's lookups fail at once (as their `…_FAIL` / `…_DNSFAIL`
/// symbols, with `DNS_UNAVAILABLE` saying why) instead of waiting.
///
/// Probed before the first message, after any message whose DNS work ran
/// into its budget, and while down at most once per [`PROBE_INTERVAL`].
struct ResolverHealth {
    servers: Vec<SocketAddr>,
    state: std::sync::Mutex<HealthState>,
    /// Messages whose lookups failed at once because it was down.
    skipped: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct HealthState {
    down: bool,
    /// When it was last probed; `None` until the first message.
    probed_at: Option<std::time::Instant>,
    /// The last message's DNS work ran into its budget.
    probe_due: bool,
}

/// How often a resolver found down is probed again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a probe waits for an answer or a refusal; silence counts as up.
const PROBE_WAIT: Duration = Duration::from_millis(100);

impl ResolverHealth {
    fn new(servers: Vec<SocketAddr>) -> ResolverHealth {
        ResolverHealth {
            servers,
            state: std::sync::Mutex::new(HealthState::default()),
            skipped: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether the resolver is down, probing first when a probe is due.
    fn is_down(&self) -> bool {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let due = match state.probed_at {
            None => true,
            Some(at) => state.probe_due || (state.down && at.elapsed() >= PROBE_INTERVAL),
        };
        if due {
            let down = !self.servers.is_empty() && self.servers.iter().all(|&s| refuses(s));
            if down != state.down {
                let servers: Vec<String> = self.servers.iter().map(|s| s.to_string()).collect();
                if down {
                    tracing::warn!(
                        "DNS resolver down: nothing listens on {}; lookups fail at once until it answers",
                        servers.join(", ")
                    );
                } else {
                    tracing::info!("DNS resolver {} answers again", servers.join(", "));
                }
            }
            state.down = down;
            state.probed_at = Some(std::time::Instant::now());
            state.probe_due = false;
        }
        state.down
    }

    fn probe_soon(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.probe_due = true;
        }
    }
}

/// Whether `server` refuses a DNS query (nothing listens on its port):
/// a query for the root's NS records from a connected UDP socket.
fn refuses(server: SocketAddr) -> bool {
    const QUERY: [u8; 17] = [
        0x63, 0x68, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // id, RD, one question
        0, 0, 2, 0, 1, // the root, NS, IN
    ];
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = std::net::UdpSocket::bind(local) else {
        return false;
    };
    if socket.connect(server).is_err() || socket.set_read_timeout(Some(PROBE_WAIT)).is_err() {
        return false;
    }
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused;
    if let Err(e) = socket.send(&QUERY) {
        return refused(&e);
    }
    let mut answer = [0u8; 512];
    match socket.recv(&mut answer) {
        Ok(_) => false,
        Err(e) => refused(&e),
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// `192.0.2.1` (port 53) or `192.0.2.1:5353` or `[::1]:5353`.
pub fn parse_nameserver(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Why the resolver could not be built; every network check then says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolverError(pub String);

impl From<String> for ResolverError {
    fn from(message: String) -> ResolverError {
        ResolverError(message)
    }
}

impl Network {
    /// Builds the resolver for `config`: its nameservers, or the system's.
    pub fn new(config: &NetworkConfig) -> Result<Network, ResolverError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("chaff-dns")
            .enable_all()
            .build()
            .map_err(|e| ResolverError(format!("cannot start the DNS runtime: {e}")))?;
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(config.query_timeout_ms);
        options.attempts = config.attempts;
        options.cache_size = config.cache_size;
        options.ndots = 0;
        options.edns_payload_len = 1232;
        options.try_tcp_on_error = true;
        let resolver_config = if config.nameservers.is_empty() {
            let (system, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
            ResolverConfig::from_parts(None, Vec::new(), system.name_servers().to_vec())
        } else {
            let mut servers = Vec::new();
            for text in &config.nameservers {
                let address = parse_nameserver(text)
                    .ok_or_else(|| format!("network.nameservers: bad address `{text}`"))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = address.port();
                servers.push(NameServerConfig::new(address.ip(), true, vec![udp, tcp]));
            }
            ResolverConfig::from_parts(None, Vec::new(), servers)
        };
        let probed: Vec<SocketAddr> = resolver_config
            .name_servers()
            .iter()
            .filter_map(|server| {
                let udp = server.connections.iter().find(|c| {
                    matches!(c.protocol, hickory_resolver::config::ProtocolConfig::Udp)
                })?;
                Some(SocketAddr::new(server.ip, udp.port))
            })
            .collect();
        let resolver = {
            let _entered = runtime.enter();
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
                .with_options(options)
                .build()
                .map_err(|e| format!("cannot build the resolver: {e}"))?
        };
        Ok(Network {
            runtime: Some(runtime),
            authenticator: mail_auth::MessageAuthenticator(resolver.clone()),
            resolver,
            budget: Duration::from_millis(config.budget_ms),
            health: ResolverHealth::new(probed),
        })
    }

    /// Whether the nameservers were found refusing (nothing listens), and
    /// how many messages' lookups failed at once because of it.
    pub fn resolver_down(&self) -> (bool, u64) {
        let down = self.health.state.lock().is_ok_and(|s| s.down);
        let skipped = self
            .health
            .skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        (down, skipped)
    }

    /// The resolver, for mail-auth's authenticator.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// mail-auth's verifier over the same resolver (and cache).
    pub fn authenticator(&self) -> &mail_auth::MessageAuthenticator {
        &self.authenticator
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Runs one message's DNS work: `work` gets the deadline every lookup
    /// must end by. Returns `None` only if the work itself overran the
    /// budget (then every lookup it waited on has already timed out).
    pub fn run<'a, T, F>(&self, work: impl FnOnce(Instant) -> F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'a,
        T: Send,
    {
        let runtime = self.runtime.as_ref()?;
        let started = Instant::now();
        let down = self.health.is_down();
        // With the resolver down every lookup fails at once: its deadline
        // has already come.
        let deadline = if down {
            self.health
                .skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            started
        } else {
            started + self.budget
        };
        // A little slack past the deadline for the work to gather results.
        let hard = deadline + Duration::from_millis(100);
        let work = work(deadline);
        let future = async move { tokio::time::timeout_at(hard, work).await.ok() };
        let found = if tokio::runtime::Handle::try_current().is_ok() {
            // Called from inside some runtime (a test, an async caller):
            // block on our runtime from a thread of our own.
            std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(future))
                    .join()
                    .ok()
                    .flatten()
            })
        } else {
            runtime.block_on(future)
        };
        if !down && started.elapsed() >= self.budget {
            // Something went unanswered until the deadline: is anyone there?
            self.health.probe_soon();
        }
        found
    }

    /// The IPv4 addresses of `name` (an A query), by `deadline`.
    pub async fn a(&self, name: &str, deadline: Instant) -> Lookup<Ipv4Addr> {
        self.lookup(name, RecordType::A, deadline, |data| match data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    /// Whether `name` has an MX, A or AAAA record.
    pub async fn mx(&self, name: &str, deadline: Instant) -> Lookup<String> {
        self.lookup(name, RecordType::MX, deadline, |data| match data {
            RData::MX(mx) => Some(mx.exchange.to_ascii()),
            _ => None,
        })
        .await
    }

    /// Any address (A, then AAAA) of `name`.
    pub async fn any_address(&self, name: &str, deadline: Instant) -> Lookup<IpAddr> {
        let v4 = self
            .lookup(name, RecordType::A, deadline, |data| match data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .await;
        if let Lookup::Found(_) = v4 {
            return v4;
        }
        let v6 = self
            .lookup(name, RecordType::AAAA, deadline, |data| match data {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .await;
        match (&v4, &v6) {
            (_, Lookup::Found(_)) => v6,
            (Lookup::NotFound, _) => v6,
            _ => v4,
        }
    }

    /// PTR names of `ip`.
    pub async fn ptr(&self, ip: IpAddr, deadline: Instant) -> Lookup<String> {
        let name = reverse_name(ip, "in-addr.arpa", "ip6.arpa");
        self.lookup(&name, RecordType::PTR, deadline, |data| match data {
            RData::PTR(ptr) => Some(ptr.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .await
    }

    async fn lookup<T>(
        &self,
        name: &str,
        record_type: RecordType,
        deadline: Instant,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Lookup<T> {
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let query = self.resolver.lookup(fqdn.as_str(), record_type);
        match tokio::time::timeout_at(deadline, query).await {
            Err(_) => Lookup::TimedOut,
            Ok(Ok(lookup)) => {
                let found: Vec<T> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| pick(&r.data))
                    .collect();
                if found.is_empty() {
                    Lookup::NotFound
                } else {
                    Lookup::Found(found)
                }
            }
            Ok(Err(error)) if error.is_no_records_found() => Lookup::NotFound,
            Ok(Err(error)) => classify_error(&error.to_string()),
        }
    }
}

/// hickory's other errors: timeouts, or failures named by their code.
fn classify_error<T>(text: &str) -> Lookup<T> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        Lookup::TimedOut
    } else {
        Lookup::Failed(shorten(text))
    }
}

fn shorten(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    for code in ["servfail", "refused", "formerr", "notimp"] {
        if lower.contains(code) {
            return code.to_owned();
        }
    }
    text.chars().take(80).collect()
}

/// `4.3.2.1.<v4_zone>` for 1.2.3.4; 32 reversed nibbles for IPv6.
pub fn reverse_name(ip: IpAddr, v4_zone: &str, v6_zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{v4_zone}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(64 + v6_zone.len());
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out.push_str(v6_zone);
            out
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside async code
        // (the daemon reconfigures from there): let it wind down alone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap(), "zen.example", "x"),
            "1.2.0.192.zen.example"
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap(), "x", "bl.example");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.bl.example"), "{v6}");
    }
}
