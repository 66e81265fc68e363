//! What every configuration section shares: the error its check gives
//! (which key, what is wrong) and the parsers of values several sections
//! use. A leaf: each part owns and checks its own section
//! (`BayesConfig::validate`, `NetworkConfig::validate`, …) with these,
//! and `config` only puts the sections together.

/// A setting a section's check refused: its key, dotted from the section
/// down, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidSetting {
    pub key: String,
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The same error with its key placed under `section`.
    pub fn within(self, section: &str) -> InvalidSetting {
        InvalidSetting {
            key: format!("{section}.{}", self.key),
            problem: self.problem,
        }
    }
}

/// Parses `192.0.2.0/24`, `::1/128` or a bare address as a network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Checks that every entry of `networks` parses as a network.
pub fn check_networks(key: &str, networks: &[String]) -> Result<(), InvalidSetting> {
    match networks.iter().find(|n| parse_network(n).is_none()) {
        Some(bad) => Err(InvalidSetting::new(
            key,
            format!("`{bad}` is not an address or CIDR network"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_placed_under_its_section_names_both() {
        let error = InvalidSetting::new("min_similarity", "must be in [0, 1]").within("fuzzy");
        assert_eq!(error.to_string(), "fuzzy.min_similarity: must be in [0, 1]");
    }

    #[test]
    fn networks_and_bare_addresses_parse() {
        assert!(parse_network("192.0.2.0/24").is_some());
        assert!(parse_network("::1").is_some());
        assert!(parse_network("example.com").is_none());
        assert!(check_networks("k", &["10.0.0.0/8".into(), "nope".into()]).is_err());
    }
}
