//! Sender authentication through mail-auth over the shared resolver: SPF
//! (client address, HELO, MAIL FROM), DKIM, ARC and the fetch of the DMARC
//! records side by side, then DMARC from their results, as rspamd names
//! them:
//!
//! - `R_SPF_ALLOW` / `R_SPF_FAIL` / `R_SPF_SOFTFAIL` / `R_SPF_NEUTRAL` /
//!   `R_SPF_NA` (no record, or no client address) / `R_SPF_DNSFAIL`
//!   (temporary error or timeout) / `R_SPF_PERMFAIL` (broken record);
//! - `R_DKIM_ALLOW` / `R_DKIM_REJECT` / `R_DKIM_TEMPFAIL` / `R_DKIM_NA`
//!   (options `domain:selector`);
//! - `ARC_ALLOW` / `ARC_REJECT` / `ARC_DNSFAIL` / `ARC_NA`;
//! - `DMARC_POLICY_ALLOW` / `DMARC_POLICY_REJECT` /
//!   `DMARC_POLICY_QUARANTINE` / `DMARC_POLICY_SOFTFAIL` (p=none) /
//!   `DMARC_NA` / `DMARC_DNSFAIL`.
//!
//! Forwarding is not punished: an SRS sender (`SRS0=…`) is named by
//! `FORWARDED_SRS` (SPF is then the forwarder's, as it should be); a valid
//! ARC chain sealed by one of `auth.trusted_arc_sealers` turns SPF
//! fail/softfail into `R_SPF_NEUTRAL` and a DMARC failure into
//! `DMARC_POLICY_ALLOW`, with the sealer as option (`ARC_ALLOW_TRUSTED`).
//! Anything that runs out of time says so (`…_DNSFAIL`, `DNS_TIMEOUT`).

use std::net::IpAddr;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::{Instant, timeout_at};

use crate::auth::{AuthConfig, parse_srs};
use crate::context::ScanContext;
use crate::symbol::Symbol;

/// How long the DMARC evaluation may take once SPF and DKIM are done: its
/// records are already in the resolver's cache by then.
const DMARC_EVALUATION: std::time::Duration = std::time::Duration::from_millis(50);

/// SPF for `client` (the envelope's, else the first untrusted hop's), DKIM,
/// DMARC and ARC of the message in `context`.
pub async fn check(
    authenticator: &MessageAuthenticator,
    context: &ScanContext<'_>,
    client: Option<IpAddr>,
    config: &AuthConfig,
    deadline: Instant,
) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    let Some(message) = AuthenticatedMessage::parse(context.raw) else {
        return symbols;
    };
    let mail_from = context.envelope.mail_from.as_deref().unwrap_or("");
    let helo = context.envelope.helo.as_deref().unwrap_or("");
    if let Some(srs) = parse_srs(mail_from) {
        let mut symbol = Symbol::new("FORWARDED_SRS").with_option(srs.forwarder.clone());
        if let Some(original) = srs.original {
            symbol = symbol.with_option(original);
        }
        symbols.push(symbol);
    }

    // SPF, DKIM and ARC in parallel; DMARC needs the first two.
    let spf = async {
        let ip = client.filter(|_| config.spf)?;
        let helo_domain = if helo.is_empty() { "unknown" } else { helo };
        let params = if mail_from.contains('@') {
            SpfParameters::verify_mail_from(ip, helo_domain, &config.host_name, mail_from)
        } else if !helo.is_empty() {
            SpfParameters::verify_ehlo(ip, helo_domain, &config.host_name)
        } else {
            return None;
        };
        Some(timeout_at(deadline, authenticator.verify_spf(params)).await)
    };
    let dkim = async {
        if !config.dkim && !config.dmarc {
            return None;
        }
        Some(timeout_at(deadline, authenticator.verify_dkim(&message)).await)
    };
    let arc = async {
        if !config.arc {
            return None;
        }
        Some(timeout_at(deadline, authenticator.verify_arc(&message)).await)
    };
    // DMARC's own lookups (the From domain's policy record, its
    // organisational domain's) need nothing from SPF or DKIM, so they run
    // beside them: an SPF query that never returns must not also cost the
    // DMARC verdict. The answers land in the resolver's cache, where the
    // evaluation below finds them.
    let spf_domain = mail_from
        .rsplit_once('@')
        .map_or(helo, |(_, d)| d)
        .to_ascii_lowercase();
    let wants_dmarc = config.dmarc && !context.message.from_address.is_empty();
    let dmarc_records = async {
        if wants_dmarc {
            let no_spf = SpfOutput::new(spf_domain.clone());
            let params = DmarcParameters::new(&message, &[], &spf_domain, &no_spf);
            let _ = timeout_at(deadline, authenticator.verify_dmarc(params)).await;
        }
    };
    let (spf, dkim, arc, ()) = tokio::join!(spf, dkim, arc, dmarc_records);

    let mut timed_out: Vec<&str> = Vec::new();
    // ARC first: a trusted sealer changes how SPF and DMARC read.
    let mut trusted_sealer: Option<String> = None;
    match &arc {
        None => {}
        Some(Err(_)) => {
            timed_out.push("arc");
            symbols.push(Symbol::new("ARC_DNSFAIL").with_option("timeout"));
        }
        Some(Ok(output)) => {
            let sealer = output
                .sets()
                .last()
                .map(|set| set.seal.header.d.to_ascii_lowercase());
            match output.result() {
                DkimResult::None => symbols.push(Symbol::new("ARC_NA")),
                DkimResult::Pass => {
                    let sealer = sealer.unwrap_or_default();
                    symbols.push(Symbol::new("ARC_ALLOW").with_option(sealer.clone()));
                    if config
                        .trusted_arc_sealers
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(&sealer))
                    {
                        symbols.push(Symbol::new("ARC_ALLOW_TRUSTED").with_option(sealer.clone()));
                        trusted_sealer = Some(sealer);
                    }
                }
                DkimResult::TempError(e) => {
                    symbols.push(Symbol::new("ARC_DNSFAIL").with_option(e.to_string()))
                }
                DkimResult::Fail(e) | DkimResult::PermError(e) | DkimResult::Neutral(e) => {
                    symbols.push(Symbol::new("ARC_REJECT").with_option(e.to_string()))
                }
            }
        }
    }

    let spf_output: SpfOutput = match &spf {
        None => {
            if config.spf {
                symbols.push(Symbol::new("R_SPF_NA").with_option("no client address or sender"));
            }
            SpfOutput::new(spf_domain.clone())
        }
        Some(Err(_)) => {
            timed_out.push("spf");
            symbols.push(Symbol::new("R_SPF_DNSFAIL").with_option("timeout"));
            SpfOutput::new(spf_domain.clone()).with_result(SpfResult::TempError)
        }
        Some(Ok(output)) => {
            let option = output.domain().to_owned();
            let name = match output.result() {
                SpfResult::Pass => "R_SPF_ALLOW",
                SpfResult::Fail | SpfResult::SoftFail if trusted_sealer.is_some() => {
                    "R_SPF_NEUTRAL"
                }
                SpfResult::Fail => "R_SPF_FAIL",
                SpfResult::SoftFail => "R_SPF_SOFTFAIL",
                SpfResult::Neutral => "R_SPF_NEUTRAL",
                SpfResult::TempError => "R_SPF_DNSFAIL",
                SpfResult::PermError => "R_SPF_PERMFAIL",
                SpfResult::None => "R_SPF_NA",
            };
            if config.spf {
                let mut symbol = Symbol::new(name).with_option(option);
                if let Some(sealer) = &trusted_sealer
                    && matches!(output.result(), SpfResult::Fail | SpfResult::SoftFail)
                {
                    symbol = symbol.with_option(format!("forwarded via {sealer}"));
                }
                symbols.push(symbol);
            }
            output.clone()
        }
    };

    let dkim_outputs = match dkim {
        None => Vec::new(),
        Some(Err(_)) => {
            timed_out.push("dkim");
            symbols.push(Symbol::new("R_DKIM_TEMPFAIL").with_option("timeout"));
            Vec::new()
        }
        Some(Ok(outputs)) => {
            if config.dkim {
                symbols.extend(dkim_symbols(&outputs));
                context.record_dkim_verified(verified_domains(&outputs));
            }
            outputs
        }
    };

    if wants_dmarc {
        let params = DmarcParameters::new(&message, &dkim_outputs, &spf_domain, &spf_output);
        // Its records were fetched above (or found missing), so this reads
        // the cache: it gets a moment past the deadline that a slow SPF
        // lookup may have used up (within `Network::run`'s slack).
        let evaluation_deadline = deadline.max(Instant::now()) + DMARC_EVALUATION;
        match timeout_at(evaluation_deadline, authenticator.verify_dmarc(params)).await {
            Err(_) => {
                timed_out.push("dmarc");
                symbols.push(Symbol::new("DMARC_DNSFAIL").with_option("timeout"));
            }
            Ok(output) => {
                let domain = output.domain().to_owned();
                let name = match output.result() {
                    DmarcResult::None => "DMARC_NA",
                    DmarcResult::Pass => "DMARC_POLICY_ALLOW",
                    DmarcResult::TempError(_) => "DMARC_DNSFAIL",
                    DmarcResult::PermError(_) => "DMARC_BAD_POLICY",
                    DmarcResult::Fail(_) if trusted_sealer.is_some() => "DMARC_POLICY_ALLOW",
                    DmarcResult::Fail(_) => match output.policy() {
                        Policy::Reject => "DMARC_POLICY_REJECT",
                        Policy::Quarantine => "DMARC_POLICY_QUARANTINE",
                        Policy::None | Policy::Unspecified => "DMARC_POLICY_SOFTFAIL",
                    },
                };
                let mut symbol = Symbol::new(name).with_option(domain);
                if let (Some(sealer), DmarcResult::Fail(_)) = (&trusted_sealer, output.result()) {
                    symbol = symbol.with_option(format!("arc-trusted:{sealer}"));
                }
                symbols.push(symbol);
            }
        }
    }
    if !timed_out.is_empty() {
        let mut symbol = Symbol::new("DNS_TIMEOUT");
        for what in timed_out {
            symbol = symbol.with_option(what);
        }
        symbols.push(symbol);
    }
    symbols
}

/// The signing domains (`d=`) of the signatures that verified, lowercased.
fn verified_domains(outputs: &[mail_auth::DkimOutput<'_>]) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for output in outputs {
        if let (DkimResult::Pass, Some(signature)) = (output.result(), output.signature()) {
            let domain = signature.d.to_ascii_lowercase();
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
    }
    domains
}

fn dkim_symbols(outputs: &[mail_auth::DkimOutput<'_>]) -> Vec<Symbol> {
    if outputs.is_empty() {
        return vec![Symbol::new("R_DKIM_NA")];
    }
    let mut allow = Symbol::new("R_DKIM_ALLOW");
    let mut reject = Symbol::new("R_DKIM_REJECT");
    let mut tempfail = Symbol::new("R_DKIM_TEMPFAIL");
    for output in outputs {
        let id = output
            .signature()
            .map(|s| format!("{}:{}", s.d, s.s))
            .unwrap_or_else(|| "?".to_owned());
        match output.result() {
            DkimResult::Pass => allow.options.push(id),
            DkimResult::TempError(_) => tempfail.options.push(id),
            DkimResult::None => {}
            DkimResult::Fail(_) | DkimResult::PermError(_) | DkimResult::Neutral(_) => {
                reject.options.push(id)
            }
        }
    }
    [allow, reject, tempfail]
        .into_iter()
        .filter(|s| !s.options.is_empty())
        .collect()
}
