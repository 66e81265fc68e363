//! Where shortener links lead. The links on a known shortener (the
//! phishing check's list) are followed by `lists::redirects::Redirector`;
//! their final URLs are recorded in the `ScanContext`, so the URL lists,
//! the URIBLs and the phishing checks judge them with the message's own
//! links. Symbols say where each link led, or why it could not be
//! followed.

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::context::ScanContext;
use crate::extract::urls::{UrlSource, parse_link};
use crate::lists::Network;
use crate::lists::brands::Shorteners;
use crate::lists::redirects::Redirector;
use crate::symbol::Symbol;

pub async fn check(
    network: &Network,
    redirector: &Redirector,
    shorteners: &Shorteners,
    context: &ScanContext<'_>,
    deadline: Instant,
) -> Vec<Symbol> {
    let mut starts: Vec<(&str, &str)> = Vec::new();
    for url in context.link_urls() {
        if starts.len() >= redirector.config().max_links {
            break;
        }
        if shorteners.contains(&url.host, &url.domain)
            && !starts.iter().any(|(start, _)| *start == url.url)
        {
            starts.push((&url.url, &url.host));
        }
    }
    if starts.is_empty() {
        return Vec::new();
    }
    let followed = join_all(
        starts
            .iter()
            .map(|(start, _)| redirector.follow(network, start, deadline)),
    )
    .await;
    let mut symbols = Vec::new();
    let mut targets = Vec::new();
    for ((_, host), followed) in starts.iter().zip(followed) {
        if let Some(end) = followed.hops.last().and_then(|last| parse_link(last)) {
            symbols.push(Symbol::new("URI_REDIRECT").with_option(format!(
                "{host} -> {} ({} hop{})",
                end.host,
                followed.hops.len(),
                if followed.hops.len() == 1 { "" } else { "s" }
            )));
            targets.push(crate::extract::Url {
                source: UrlSource::Redirect,
                ..end
            });
        }
        if let Some(why) = followed.stopped {
            symbols
                .push(Symbol::new("URI_REDIRECT_UNFOLLOWED").with_option(format!("{host}: {why}")));
        }
    }
    context.record_redirect_targets(targets);
    symbols
}
