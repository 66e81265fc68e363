//! Who may use the controller: rspamd's `secure_ip`, `password` and
//! `enable_password`.

use std::net::IpAddr;

use chaff::config::{ServerConfig, parse_network};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Reading statistics, history, configuration.
    ReadOnly,
    /// Learning, fuzzy changes, resets.
    Write,
}

/// Whether a request from `peer` with `password` may do `wanted`.
///
/// Clients in `secure_ip` need no password. Others must present
/// `enable_password` for writes and `password` (or `enable_password`) for
/// reads; when only one password is configured it serves for both. With no
/// password configured, only secure clients get in.
pub fn allowed(
    config: &ServerConfig,
    peer: IpAddr,
    password: Option<&str>,
    wanted: Privilege,
) -> bool {
    let peer = canonical(peer);
    let secure = config
        .secure_ip
        .iter()
        .filter_map(|n| parse_network(n))
        .any(|network| network.contains(&peer));
    if secure {
        return true;
    }
    let Some(given) = password else {
        return false;
    };
    let read = config.password.as_deref();
    let write = config.enable_password.as_deref().or(read);
    let matches = |expected: Option<&str>| expected.is_some_and(|e| constant_time_eq(e, given));
    match wanted {
        Privilege::Write => matches(write),
        Privilege::ReadOnly => matches(read) || matches(write),
    }
}

/// What a password grants whoever gives it: writes for `enable_password`
/// (or the only password configured), reads for `password`; `None` for a
/// wrong one, or when no password is configured.
pub fn privilege_of(config: &ServerConfig, given: &str) -> Option<Privilege> {
    let read = config.password.as_deref();
    let write = config.enable_password.as_deref().or(read);
    let matches = |expected: Option<&str>| expected.is_some_and(|e| constant_time_eq(e, given));
    if matches(write) {
        Some(Privilege::Write)
    } else if matches(read) {
        Some(Privilege::ReadOnly)
    } else {
        None
    }
}

/// Whether a request's `Origin` (or `Referer`) names another host than
/// the `Host` it was sent to: a page elsewhere making the browser post
/// here. Clients that are not browsers (rspamc, MTAs) send neither.
pub fn is_cross_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return false;
    };
    let authority = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    !authority.eq_ignore_ascii_case(host.unwrap_or(""))
}

/// IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`) are their IPv4 selves.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(password: Option<&str>, enable: Option<&str>) -> ServerConfig {
        let mut c = chaff::config::Config::embedded().server;
        c.password = password.map(str::to_owned);
        c.enable_password = enable.map(str::to_owned);
        c
    }

    #[test]
    fn a_browser_posting_from_another_page_is_cross_origin() {
        let host = Some("127.0.0.1:11334");
        assert!(!is_cross_origin(None, host));
        assert!(!is_cross_origin(Some("http://127.0.0.1:11334"), host));
        assert!(!is_cross_origin(
            Some("http://127.0.0.1:11334/#/history"),
            host
        ));
        assert!(is_cross_origin(Some("https://evil.example"), host));
        assert!(is_cross_origin(Some("null"), host));
    }

    #[test]
    fn loopback_needs_no_password() {
        let c = config(Some("r"), Some("w"));
        assert!(allowed(
            &c,
            "127.0.0.1".parse().unwrap(),
            None,
            Privilege::Write
        ));
        assert!(allowed(
            &c,
            "::ffff:127.0.0.1".parse().unwrap(),
            None,
            Privilege::Write
        ));
    }

    #[test]
    fn remote_clients_need_the_right_password() {
        let c = config(Some("r"), Some("w"));
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!allowed(&c, remote, None, Privilege::ReadOnly));
        assert!(allowed(&c, remote, Some("r"), Privilege::ReadOnly));
        assert!(!allowed(&c, remote, Some("r"), Privilege::Write));
        assert!(allowed(&c, remote, Some("w"), Privilege::Write));
        assert!(allowed(&c, remote, Some("w"), Privilege::ReadOnly));
        assert!(!allowed(
            &config(None, None),
            remote,
            Some("x"),
            Privilege::ReadOnly
        ));
        assert!(allowed(
            &config(Some("only"), None),
            remote,
            Some("only"),
            Privilege::Write
        ));
    }
}
