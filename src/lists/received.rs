//! Who handed us the message: the client address, from the envelope or
//! from the Received chain past our own (trusted) relays.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::message::{Envelope, Message};

/// The relays of `Received` fields, newest first: the address in the
/// `from … ([192.0.2.1])` clause of each field that has one.
pub fn received_ips(message: &Message) -> Vec<IpAddr> {
    message
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("received"))
        .filter_map(|h| from_clause_ip(&h.value))
        .collect()
}

/// The first bracketed (or parenthesised) address before ` by `.
fn from_clause_ip(value: &str) -> Option<IpAddr> {
    let from_part = match value.to_ascii_lowercase().find(" by ") {
        Some(at) => &value[..at],
        None => value,
    };
    for piece in from_part.split(['[', ']', '(', ')', ' ']) {
        let piece = piece
            .trim()
            .trim_start_matches("IPv6:")
            .trim_start_matches("ipv6:");
        if let Ok(ip) = piece.parse::<IpAddr>() {
            return Some(ip);
        }
    }
    None
}

/// The client: the envelope's address unless it is one of ours, else the
/// first Received hop outside `trusted`.
pub fn client_ip(message: &Message, envelope: &Envelope, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if let Some(ip) = envelope.client_ip
        && !is_trusted(&ip)
    {
        return Some(ip);
    }
    received_ips(message).into_iter().find(|ip| !is_trusted(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Limits, parse};

    #[test]
    fn first_untrusted_hop_is_the_client() {
        let raw = b"Received: from relay.example.org (relay.example.org [10.0.0.5]) by mx.example.org; Mon, 1 Jan 2024 00:00:00 +0000\nReceived: from sender.example.net (sender.example.net [198.51.100.7]) by relay.example.org; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: x\n\nbody\n";
        let message = parse(raw, &Limits::default());
        let trusted = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ];
        assert_eq!(
            client_ip(&message, &Envelope::default(), &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let envelope = Envelope {
            client_ip: Some("127.0.0.1".parse().unwrap()),
            ..Envelope::default()
        };
        assert_eq!(
            client_ip(&message, &envelope, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let envelope = Envelope {
            client_ip: Some("203.0.113.9".parse().unwrap()),
            ..Envelope::default()
        };
        assert_eq!(
            client_ip(&message, &envelope, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
    }
}
