//! Following a shortener's redirects to where the link really goes: a
//! phishing message hides its lookalike domain behind `bit.ly/…`, and the
//! checks can judge only a domain they see. rspamd's url_redirector does
//! the same for the redirectors it knows: HEAD requests, a hop limit, a
//! cache, the final URL added to the message's URLs.
//!
//! Only links on a known shortener are followed (never an arbitrary link:
//! fetching what spam links to tells the sender the mail was read), only
//! with `[network] enabled`, within the message's network deadline, and
//! never to a private, loopback or link-local address unless the admin
//! says so: a redirect must not turn the scanner into a client of the
//! site's own intranet. Each hop is one HEAD request, as rspamd's: no
//! body is asked for or read. Answers are cached for an hour,
//! since a campaign sends one short link to thousands.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::dns::Network;

/// How long a followed link's answer is reused.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Links remembered; the cache starts afresh when full.
const CACHE_ENTRIES: usize = 4096;
/// A Location longer than this is not followed.
const MAX_LOCATION: usize = 4096;

/// `[phishing]`'s redirect settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Follow shorteners' links when `[network] enabled`.
    pub follow: bool,
    /// Redirects followed from one link before giving up.
    pub max_hops: usize,
    /// Shortener links followed per message.
    pub max_links: usize,
    /// Let a redirect lead to a private or loopback address (a test set-up
    /// or an intranet shortener); off, such a hop stops the chain.
    pub private_targets: bool,
}

impl Default for RedirectConfig {
    fn default() -> RedirectConfig {
        RedirectConfig {
            follow: true,
            max_hops: 5,
            max_links: 3,
            private_targets: false,
        }
    }
}

/// Where one link led.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followed {
    /// Every URL the redirects named, in order; the last is where the link
    /// ends (or where following stopped).
    pub hops: Vec<String>,
    /// Why following stopped before an answer that is not a redirect.
    pub stopped: Option<String>,
}

/// Why one hop could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("{host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}: no address")]
    NoAddress(String),
    #[error("{host}: private address {ip}")]
    Private { host: String, ip: IpAddr },
    #[error("{host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("{host}: TLS: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: {reason}")]
    Http { host: String, reason: String },
    #[error("{0}: HEAD refused")]
    HeadRefused(String),
    #[error("{0} without Location")]
    NoLocation(u16),
    #[error("Location too long")]
    LocationTooLong,
}

/// The HTTP client that follows shorteners' links, with its cache.
pub struct Redirector {
    config: RedirectConfig,
    cache: Mutex<HashMap<String, (Instant, Followed)>>,
    /// Built on the first `https` hop: the system's roots are read then.
    tls: OnceLock<Option<tokio_rustls::TlsConnector>>,
}

impl Redirector {
    pub fn new(config: &RedirectConfig) -> Redirector {
        Redirector {
            config: config.clone(),
            cache: Mutex::new(HashMap::new()),
            tls: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &RedirectConfig {
        &self.config
    }

    /// Follows `start` until an answer that is not a redirect, the hop
    /// limit, an error or `deadline`.
    pub async fn follow(&self, network: &Network, start: &str, deadline: Instant) -> Followed {
        if let Some(found) = self.cached(start) {
            return found;
        }
        let mut followed = Followed::default();
        let mut current = start.to_owned();
        loop {
            if followed.hops.len() >= self.config.max_hops {
                followed.stopped = Some(format!("more than {} redirects", self.config.max_hops));
                break;
            }
            let Some(target) = Target::parse(&current) else {
                followed.stopped = Some("not an http(s) URL".to_owned());
                break;
            };
            match timeout_at(deadline, self.ask(network, &target)).await {
                Err(_) => {
                    followed.stopped = Some("timeout".to_owned());
                    break;
                }
                Ok(Err(why)) => {
                    followed.stopped = Some(why.to_string());
                    break;
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(location))) => match target.join(&location) {
                    Some(next) => {
                        followed.hops.push(next.clone());
                        current = next;
                    }
                    None => {
                        followed.stopped = Some("unusable Location".to_owned());
                        break;
                    }
                },
            }
        }
        // A timeout says nothing about the link: asked again next time.
        if followed.stopped.as_deref() != Some("timeout") {
            self.remember(start, &followed);
        }
        followed
    }

    fn cached(&self, start: &str) -> Option<Followed> {
        let cache = self.cache.lock().ok()?;
        let (at, found) = cache.get(start)?;
        (at.elapsed() < CACHE_TTL).then(|| found.clone())
    }

    fn remember(&self, start: &str, followed: &Followed) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(start.to_owned(), (Instant::now(), followed.clone()));
        }
    }

    /// One hop: the Location of a redirect, `None` for any other answer.
    async fn ask(&self, network: &Network, target: &Target) -> Result<Option<String>, HopError> {
        let host = || target.host.clone();
        let ip = match target.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => network
                .resolver()
                .lookup_ip(target.host.as_str())
                .await
                .map_err(|e| HopError::Resolve {
                    host: host(),
                    reason: e.to_string(),
                })?
                .iter()
                .next()
                .ok_or_else(|| HopError::NoAddress(host()))?,
        };
        if !self.config.private_targets && !super::is_public(ip) {
            return Err(HopError::Private { host: host(), ip });
        }
        let tcp = TcpStream::connect((ip, target.port))
            .await
            .map_err(|source| HopError::Connect {
                host: host(),
                source,
            })?;
        if target.tls {
            let tls_error = |reason: String| HopError::Tls {
                host: host(),
                reason,
            };
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| tls_error(e.to_string()))?;
            let connector = self
                .tls_connector()
                .ok_or_else(|| tls_error("no TLS client".to_owned()))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(e.to_string()))?;
            location(stream, target).await
        } else {
            location(tcp, target).await
        }
    }

    /// The TLS client over the system's roots, built on first use;
    /// `None` if it cannot be built (then every https hop says so).
    fn tls_connector(&self) -> Option<&tokio_rustls::TlsConnector> {
        self.tls
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                let (added, _unusable) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    tracing::warn!("no TLS root certificates found: https redirects will fail");
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                match rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                {
                    Ok(builder) => Some(tokio_rustls::TlsConnector::from(Arc::new(
                        builder.with_root_certificates(roots).with_no_client_auth(),
                    ))),
                    Err(e) => {
                        tracing::warn!("TLS client unavailable: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// A HEAD request on one connection: the redirect's
/// Location, or `None` when the answer is not a redirect.
async fn location<S>(stream: S, target: &Target) -> Result<Option<String>, HopError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut status = send(stream, target).await?;
    if matches!(status.0.as_u16(), 405 | 501) {
        return Err(HopError::HeadRefused(target.host.clone()));
    }
    if !status.0.is_redirection() {
        return Ok(None);
    }
    match status.1.take() {
        Some(location) if location.len() <= MAX_LOCATION => Ok(Some(location)),
        Some(_) => Err(HopError::LocationTooLong),
        None => Err(HopError::NoLocation(status.0.as_u16())),
    }
}

async fn send<S>(
    stream: S,
    target: &Target,
) -> Result<(hyper::StatusCode, Option<String>), HopError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |e: &dyn std::fmt::Display| HopError::Http {
        host: target.host.clone(),
        reason: e.to_string(),
    };
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| http_error(&e))?;
    // The connection is driven beside the request and dropped with it.
    let driver = tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(hyper::Method::HEAD)
        .uri(target.path.as_str())
        .header(hyper::header::HOST, target.authority())
        .header(hyper::header::USER_AGENT, "chaff-redirect-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| http_error(&e))?;
    let answer = sender.send_request(request).await;
    driver.abort();
    let response = answer.map_err(|e| http_error(&e))?;
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned());
    Ok((response.status(), location))
}

/// An http(s) URL taken apart for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, never empty (`/`).
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok()?,
                None => default_port,
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse().ok()?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() || path.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
            return None;
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Some(Target {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `host[:port]`, the port only when not the scheme's own.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// A Location resolved against this URL (RFC 9110: it may be relative).
    fn join(&self, location: &str) -> Option<String> {
        let location = location.trim();
        if location.is_empty() {
            return None;
        }
        let scheme_end = location.find(':');
        let has_scheme = scheme_end.is_some_and(|end| {
            location[..end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
        let absolute = if has_scheme {
            // http(s) only: mailto:, javascript: and the like end here.
            location.to_owned()
        } else if location.contains("://") {
            location.to_owned()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{}://{rest}", self.scheme())
        } else if location.starts_with('/') {
            format!("{}://{}{location}", self.scheme(), self.authority())
        } else {
            let directory = self
                .path
                .split('?')
                .next()
                .and_then(|p| p.rsplit_once('/'))
                .map_or("", |(dir, _)| dir);
            format!(
                "{}://{}{directory}/{location}",
                self.scheme(),
                self.authority()
            )
        };
        Target::parse(&absolute).map(|_| absolute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart_for_a_request() {
        let t = Target::parse("https://Bit.ly/abc?x=1#frag").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "bit.ly".into(),
                port: 443,
                path: "/abc?x=1".into()
            }
        );
        let t = Target::parse("http://user@short.test:8080?q").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8080, "/?q"));
        assert_eq!(t.authority(), "short.test:8080");
        let t = Target::parse("http://[::1]:81/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert_eq!(t.authority(), "[::1]:81");
        assert_eq!(Target::parse("ftp://x/y"), None);
        assert_eq!(Target::parse("http://host:port/"), None);
        assert_eq!(Target::parse("http:///path"), None);
    }

    #[test]
    fn locations_resolve_against_the_url_they_came_from() {
        let base = Target::parse("http://short.test:81/a/b?c").unwrap();
        assert_eq!(
            base.join("https://evil.example/x").as_deref(),
            Some("https://evil.example/x")
        );
        assert_eq!(
            base.join("//evil.example/x").as_deref(),
            Some("http://evil.example/x")
        );
        assert_eq!(
            base.join("/login").as_deref(),
            Some("http://short.test:81/login")
        );
        assert_eq!(
            base.join("next").as_deref(),
            Some("http://short.test:81/a/next")
        );
        assert_eq!(base.join(""), None);
        assert_eq!(base.join("mailto:x@y"), None);
    }

    #[test]
    fn private_addresses_are_not_public() {
        for private in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fe80::1",
        ] {
            assert!(
                !super::super::is_public(private.parse().unwrap()),
                "{private}"
            );
        }
        assert!(super::super::is_public("8.8.8.8".parse().unwrap()));
    }
}
