//! The network stage of a scan: every DNS and HTTP check at once (RBLs,
//! URIBLs after the shortener redirects they judge, SPF, DKIM, ARC, DMARC,
//! the sender's MX) within the message's deadline, as `list_checks` in
//! `mod.rs` calls it between the local checks.

use super::Engine;
use crate::checks;
use crate::context::ScanContext;

impl Engine {
    /// With `[network] enabled`, every DNS check at once within the
    /// message's DNS budget; nothing when it is off.
    pub(super) fn network_checks(&self, context: &ScanContext<'_>) -> Vec<checks::Symbol> {
        let mut symbols = Vec::new();
        let network = match &self.lists.network {
            None => return symbols,
            Some(Err(why)) => {
                symbols.push(checks::Symbol::new("DNS_UNAVAILABLE").with_option(why.to_string()));
                return symbols;
            }
            Some(Ok(network)) => network,
        };
        let client = crate::lists::received::client_ip(
            &context.message,
            &context.envelope,
            &self.lists.trusted,
        );
        // An authenticated submission is the user's own: no RBL, no SPF.
        let client = client.filter(|_| context.envelope.user.is_none());
        let found = network.run(|deadline| async move {
            // URIBLs ask about where shortener links lead too, so they
            // wait for the redirects; the rest runs beside them.
            let links = async {
                let mut found = match (&self.lists.redirector, &self.lists.phishing) {
                    (Some(redirector), Some(phishing)) => {
                        checks::redirects::check(
                            network,
                            redirector,
                            &phishing.shorteners,
                            context,
                            deadline,
                        )
                        .await
                    }
                    _ => Vec::new(),
                };
                found.extend(
                    checks::dnsbl::check(network, &self.config.network, client, context, deadline)
                        .await,
                );
                found
            };
            let (dnsbl, auth, sender) = tokio::join!(
                links,
                checks::auth::check(
                    network.authenticator(),
                    context,
                    client,
                    &self.config.auth,
                    deadline
                ),
                checks::envelope::check_dns(network, context, &self.config.envelope, deadline),
            );
            let mut all = dnsbl;
            all.extend(auth);
            all.extend(sender);
            all
        });
        match found {
            Some(found) => symbols.extend(found),
            None => symbols.push(checks::Symbol::new("DNS_TIMEOUT").with_option("budget")),
        }
        if network.resolver_down().0 {
            // Its lookups failed at once; this says why.
            symbols.push(checks::Symbol::new("DNS_UNAVAILABLE").with_option("resolver down"));
        }
        symbols
    }
}
