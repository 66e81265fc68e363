//! Sender authentication settings (`[auth]`) and envelope sanity limits
//! (`[envelope]`). The verification itself is mail-auth's (SPF, DKIM,
//! DMARC, ARC), driven by `checks::auth` over the shared resolver.

use serde::Deserialize;

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
    /// ARC sealers (the `d=` of the newest ARC-Seal) trusted to vouch for
    /// forwarded mail: with their valid chain, SPF and DMARC failures
    /// caused by forwarding are forgiven.
    pub trusted_arc_sealers: Vec<String>,
    /// Our host name, for SPF's `%{r}` macro.
    pub host_name: String,
}

/// `[envelope]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeConfig {
    /// More SMTP recipients than this emits `RCPT_COUNT_MANY`.
    pub max_recipients: usize,
    /// Look the sender's domain up for MX or address records (network).
    pub sender_dns: bool,
}

/// An SRS-rewritten sender (`SRS0=hash=tt=orig.example=user@fwd.example`,
/// `SRS1=hash=fwd1.example==…@fwd2.example`): the forwarder's domain and,
/// for SRS0, the original sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srs {
    pub forwarder: String,
    pub original: Option<String>,
}

pub fn parse_srs(mail_from: &str) -> Option<Srs> {
    let (local, domain) = mail_from.rsplit_once('@')?;
    let upper = local.get(..5)?.to_ascii_uppercase();
    if upper != "SRS0=" && upper != "SRS0-" && upper != "SRS1=" && upper != "SRS1-" {
        return None;
    }
    let original = if upper.starts_with("SRS0") {
        // SRS0=HHH=TT=domain=local
        let fields: Vec<&str> = local[5..].splitn(4, '=').collect();
        match fields.as_slice() {
            [_, _, orig_domain, orig_local] if !orig_domain.is_empty() => {
                Some(format!("{orig_local}@{orig_domain}"))
            }
            _ => None,
        }
    } else {
        None
    };
    Some(Srs {
        forwarder: domain.to_ascii_lowercase(),
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_senders_are_recognised() {
        assert_eq!(
            parse_srs("SRS0=HHH=TT=orig.example=alice@fwd.example"),
            Some(Srs {
                forwarder: "fwd.example".into(),
                original: Some("alice@orig.example".into())
            })
        );
        assert_eq!(
            parse_srs("srs1=HHH=fwd1.example==HHH=TT=orig.example=bob@fwd2.example")
                .map(|s| s.forwarder),
            Some("fwd2.example".into())
        );
        assert_eq!(parse_srs("alice@example.com"), None);
    }
}
