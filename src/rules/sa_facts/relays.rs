//! SpamAssassin's relay list: the Received hops with the envelope's client
//! on top, which of them are trusted, and the X-Spam-Relays pseudo-headers.

use std::borrow::Cow;

use crate::message::{Envelope, Message, Relay};

/// The hops SpamAssassin's relay list holds, newest first, each with
/// whether it is trusted: every Received hop that names an address (mail
/// fetchers' hops skipped), with the envelope's client as the newest hop
/// (the one our MTA took, whose Received line it has not written yet).
/// Trust is SpamAssassin's inference without `trusted_networks`: hops stay
/// trusted while they come from private addresses or authenticated senders;
/// the first other hop and every one after it are untrusted.
pub(super) fn relays<'m>(message: &'m Message, envelope: &Envelope) -> Vec<(Cow<'m, Relay>, bool)> {
    let client = envelope.client_ip.map(|ip| Relay {
        helo: envelope.helo.clone(),
        rdns: envelope.client_hostname.clone(),
        ip: Some(ip),
        protocol: Some(
            if envelope.user.is_some() {
                "ESMTPA"
            } else {
                "ESMTP"
            }
            .to_owned(),
        ),
        ..Default::default()
    });
    let mut in_trusted = true;
    let mut out = Vec::new();
    let hops = client
        .into_iter()
        .map(Cow::Owned)
        .chain(message.relays.iter().map(Cow::Borrowed));
    for relay in hops {
        let Some(ip) = relay.ip.filter(|_| !relay.fetched()) else {
            continue;
        };
        if in_trusted && crate::message::is_public_address(ip) && relay.auth().is_none() {
            in_trusted = false;
        }
        out.push((relay, in_trusted));
    }
    out
}

/// SpamAssassin's X-Spam-Relays-Trusted and -Untrusted pseudo-headers: each
/// hop of [`relays`] as `[ ip=… rdns=… helo=… by=… ident=… envfrom=…
/// intl=… id=… auth=… msa=0 ]`, newest first. Internal and external are the
/// same split, as SpamAssassin makes them when neither network list is
/// configured.
pub fn relay_pseudo_headers(message: &Message, envelope: &Envelope) -> (String, String) {
    let (mut trusted, mut untrusted) = (Vec::new(), Vec::new());
    for (relay, is_trusted) in relays(message, envelope) {
        let field = |value: &Option<String>| value.as_deref().unwrap_or_default().to_owned();
        let text = format!(
            "[ ip={} rdns={} helo={} by={} ident={} envfrom={} intl={} id={} auth={} msa=0 ]",
            relay.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            field(&relay.rdns),
            field(&relay.helo),
            field(&relay.by),
            field(&relay.ident),
            field(&relay.envelope_from),
            u8::from(is_trusted),
            field(&relay.id),
            relay.auth().unwrap_or_default(),
        );
        if is_trusted {
            trusted.push(text);
        } else {
            untrusted.push(text);
        }
    }
    (trusted.join(" "), untrusted.join(" "))
}
