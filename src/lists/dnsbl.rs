//! DNS blocklists: IP lists (RBL: `4.3.2.1.zen.example`) and domain lists
//! (URIBL, SURBL/DBL style: `example.com.dbl.example`). NXDOMAIN = not
//! listed; a `127.x.y.z` answer is decoded to symbols by exact return code
//! (`returncodes`, as Spamhaus ZEN and DBL publish them) or by bit mask of
//! the last octet (`bits`, as SURBL multi and URIBL do). An answer outside
//! 127.0.0.0/8, or one of the 127.255.255.x "query refused" codes Spamhaus
//! returns to open resolvers, is a failure of the list, not a listing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use crate::setting::InvalidSetting;

/// One DNS blocklist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblConfig {
    /// The list's zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// The symbol for a listing no return code names; `SYMBOL_FAIL` is
    /// emitted when the list cannot be asked (timeout, SERVFAIL, refusal).
    pub symbol: String,
    /// Its weight, when `[symbols.SYMBOL]` does not set one.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Exact answer → symbol (`"127.0.0.2" = "RBL_SBL"`).
    #[serde(default)]
    pub returncodes: BTreeMap<String, String>,
    /// Bit of the answer's last octet → symbol (`"8" = "SURBL_PH"`).
    #[serde(default)]
    pub bits: BTreeMap<String, String>,
    /// URIBLs: also ask for IP-literal URL hosts (reversed), as SURBL
    /// allows and Spamhaus DBL does not.
    #[serde(default)]
    pub check_ips: bool,
    /// RBLs: also ask for IPv6 clients.
    #[serde(default = "yes")]
    pub ipv6: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// An answer that is not a listing: outside 127.0.0.0/8, or one of the
/// 127.255.255.x codes lists send to refuse a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("answer {0} is not a listing")]
pub struct NotAListing(pub Ipv4Addr);

impl DnsblConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidSetting> {
        if self.zone.trim_matches('.').is_empty() || self.symbol.is_empty() {
            return Err(InvalidSetting::new("zone", "zone and symbol must be set"));
        }
        for code in self.returncodes.keys() {
            if code.parse::<Ipv4Addr>().is_err() {
                return Err(InvalidSetting::new(
                    format!("returncodes.{code}"),
                    "is not an IPv4 address",
                ));
            }
        }
        for bit in self.bits.keys() {
            match bit.parse::<u8>() {
                Ok(b) if b.is_power_of_two() => {}
                _ => {
                    return Err(InvalidSetting::new(
                        format!("bits.{bit}"),
                        "is not a single bit (1, 2, 4 … 128)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The name to query for a client address.
    pub fn ip_query(&self, ip: IpAddr) -> Option<String> {
        if ip.is_ipv6() && !self.ipv6 {
            return None;
        }
        Some(super::dns::reverse_name(
            ip,
            self.zone.trim_matches('.'),
            self.zone.trim_matches('.'),
        ))
    }

    /// The name to query for a registrable domain.
    pub fn domain_query(&self, domain: &str) -> String {
        format!(
            "{}.{}",
            domain.trim_matches('.'),
            self.zone.trim_matches('.')
        )
    }

    /// The symbols an answer stands for; `Err` when the answer is not a
    /// listing but a refusal or garbage.
    pub fn decode(&self, answers: &[Ipv4Addr]) -> Result<Vec<String>, NotAListing> {
        let mut symbols: Vec<String> = Vec::new();
        for answer in answers {
            let [first, second, third, last] = answer.octets();
            if first != 127 || (second == 255 && third == 255) {
                return Err(NotAListing(*answer));
            }
            let mut named = false;
            if let Some(symbol) = self.returncodes.get(&answer.to_string()) {
                push_once(&mut symbols, symbol);
                named = true;
            }
            for (bit, symbol) in &self.bits {
                if let Ok(bit) = bit.parse::<u8>()
                    && last & bit != 0
                {
                    push_once(&mut symbols, symbol);
                    named = true;
                }
            }
            if !named {
                push_once(&mut symbols, &self.symbol);
            }
        }
        Ok(symbols)
    }
}

fn push_once(symbols: &mut Vec<String>, symbol: &str) {
    if !symbols.iter().any(|s| s == symbol) {
        symbols.push(symbol.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> DnsblConfig {
        toml::from_str(
            r#"zone = "bl.example"
symbol = "BL"
returncodes = { "127.0.0.2" = "BL_SPAM", "127.0.0.4" = "BL_EXPLOIT" }
bits = { "64" = "BL_PHISH" }
"#,
        )
        .unwrap()
    }

    #[test]
    fn return_codes_bits_and_refusals() {
        let l = list();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(l.decode(&[ip("127.0.0.2")]).unwrap(), vec!["BL_SPAM"]);
        assert_eq!(
            l.decode(&[ip("127.0.0.4"), ip("127.0.0.9")]).unwrap(),
            vec!["BL_EXPLOIT", "BL"]
        );
        assert_eq!(l.decode(&[ip("127.0.0.66")]).unwrap(), vec!["BL_PHISH"]);
        assert!(l.decode(&[ip("127.255.255.254")]).is_err());
        assert!(l.decode(&[ip("10.0.0.1")]).is_err());
        assert_eq!(
            l.ip_query("192.0.2.10".parse().unwrap()).unwrap(),
            "10.2.0.192.bl.example"
        );
        assert_eq!(l.domain_query("example.com"), "example.com.bl.example");
    }
}
