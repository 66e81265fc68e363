//! Browser sessions for the web UI.
//!
//! A login trades a password for a random token kept in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when the request came over TLS, as
//! a TLS proxy in front says with `X-Forwarded-Proto: https`), so nothing
//! secret travels in a URL and scripts cannot read it. Each session has its
//! own CSRF token, which the UI sends back in `X-CSRF-Token` on every
//! change; a change whose token is missing or wrong is refused even with a
//! good cookie. Failed logins are counted per client address and refused
//! for a while past a few, so a password cannot be guessed at line speed.
//! Sessions live in memory: a restart logs everyone out, which is the safe
//! direction.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::Privilege;

/// The cookie's name.
pub const COOKIE: &str = "chaff_session";
/// How long a session lasts from its login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; past it the oldest go.
const MAX_SESSIONS: usize = 10_000;
/// Failed logins a client may make per window before it is refused.
pub const LOGIN_FAILURES_ALLOWED: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Session {
    pub privilege: Privilege,
    pub csrf: String,
    created: Instant,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<String, Session>,
    failures: HashMap<IpAddr, (Instant, u32)>,
}

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
#[error("no random numbers for a session token: {0}")]
pub struct NoRandomness(String);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new session: its cookie token and its CSRF token.
    pub fn create(&self, privilege: Privilege) -> Result<(String, Session), NoRandomness> {
        let token = random_token()?;
        let session = Session {
            privilege,
            csrf: random_token()?,
            created: Instant::now(),
        };
        let mut inner = self.lock();
        inner
            .by_token
            .retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if inner.by_token.len() >= MAX_SESSIONS
            && let Some(oldest) = inner
                .by_token
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(t, _)| t.clone())
        {
            inner.by_token.remove(&oldest);
        }
        inner.by_token.insert(token.clone(), session.clone());
        Ok((token, session))
    }

    /// The live session of `token`.
    pub fn get(&self, token: &str) -> Option<Session> {
        let inner = self.lock();
        inner
            .by_token
            .get(token)
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .cloned()
    }

    pub fn remove(&self, token: &str) {
        self.lock().by_token.remove(token);
    }

    /// Whether `peer` may try a password now.
    pub fn login_allowed(&self, peer: IpAddr) -> bool {
        let inner = self.lock();
        match inner.failures.get(&peer) {
            Some((since, count)) => {
                since.elapsed() >= LOGIN_WINDOW || *count < LOGIN_FAILURES_ALLOWED
            }
            None => true,
        }
    }

    pub fn login_failed(&self, peer: IpAddr) {
        let mut inner = self.lock();
        if inner.failures.len() > MAX_SESSIONS {
            inner
                .failures
                .retain(|_, (since, _)| since.elapsed() < LOGIN_WINDOW);
        }
        let entry = inner.failures.entry(peer).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= LOGIN_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    pub fn login_succeeded(&self, peer: IpAddr) {
        self.lock().failures.remove(&peer);
    }
}

/// 32 random bytes as hex.
fn random_token() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session token in a `Cookie` header.
pub fn token_in(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value for a session (`None`: the logout that clears it).
pub fn set_cookie(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Compares without leaking where the first difference is.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_has_its_own_tokens_and_a_logout_ends_it() {
        let sessions = Sessions::default();
        let (token, session) = sessions.create(Privilege::Write).unwrap();
        let (other, _) = sessions.create(Privilege::ReadOnly).unwrap();
        assert_ne!(token, other);
        assert_eq!(token.len(), 64);
        assert_ne!(session.csrf, token);
        assert_eq!(sessions.get(&token).unwrap().csrf, session.csrf);
        sessions.remove(&token);
        assert!(sessions.get(&token).is_none());
        assert!(sessions.get("forged").is_none());
    }

    #[test]
    fn failed_logins_are_refused_past_the_allowance() {
        let sessions = Sessions::default();
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..LOGIN_FAILURES_ALLOWED {
            assert!(sessions.login_allowed(peer));
            sessions.login_failed(peer);
        }
        assert!(!sessions.login_allowed(peer));
        assert!(sessions.login_allowed("192.0.2.10".parse().unwrap()));
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_with_its_flags() {
        assert_eq!(token_in("a=1; chaff_session=abc; b=2"), Some("abc"));
        assert_eq!(token_in("chaff_session="), None);
        let cookie = set_cookie(Some("abc"), true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(cookie.ends_with("; Secure"));
        assert!(!set_cookie(Some("abc"), false).contains("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
    }
}
