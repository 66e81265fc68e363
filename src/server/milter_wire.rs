//! The milter wire format (Sendmail's libmilter protocol, version 6, as
//! Postfix speaks it), pure: packets framed by a four-byte big-endian
//! length, one command byte, then the command's data. Parsing never trusts
//! a length: a packet larger than `MAX_PACKET` or a field without its NUL
//! is an error the session answers by closing, never a panic.
//!
//! What chaff negotiates is what rspamd 3.4's proxy answers Postfix:
//! protocol 0xff080 — no reply to any step but option negotiation and
//! end-of-body, headers without their leading space — and the actions to
//! add and change headers.

/// The largest packet accepted: a body chunk is at most 65,535 bytes; the
/// rest (a header, macros) is far smaller.
pub const MAX_PACKET: usize = 1024 * 1024;

/// Protocol version spoken (Postfix 2.6 and later send 6).
pub const VERSION: u32 = 6;
/// SMFIF_ADDHDRS | SMFIF_CHGHDRS: the actions the verdict needs.
pub const ACTIONS: u32 = 0x01 | 0x10;
/// No replies to connect, HELO, MAIL, RCPT, DATA, unknown, headers,
/// end-of-headers or body chunks (SMFIP_NR_*): rspamd's 0xff080.
pub const PROTOCOL: u32 = 0xff080;

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptionNegotiation {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// Macros for the command named by `stage` ('C', 'H', 'M', 'R', ...).
    Macros {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    Connect {
        hostname: String,
        address: Option<String>,
    },
    Helo(String),
    /// MAIL FROM: the address, then ESMTP arguments.
    Mail(Vec<String>),
    Rcpt(Vec<String>),
    Data,
    Header {
        name: String,
        value: Vec<u8>,
    },
    EndOfHeaders,
    Body(Vec<u8>),
    EndOfBody,
    Abort,
    Quit,
    /// QUIT_NC: the connection stays for a new SMTP session.
    QuitNewConnection,
    Unknown(Vec<u8>),
}

/// Why a packet is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("empty packet")]
    Empty,
    #[error("command {0:?} is not a milter command")]
    UnknownCommand(char),
    #[error("command {0:?} is cut short")]
    Truncated(char),
}

/// The packet's length from its four-byte prefix, checked.
pub fn packet_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let length = u32::from_be_bytes(prefix) as usize;
    if length == 0 {
        return Err(WireError::Empty);
    }
    if length > MAX_PACKET {
        return Err(WireError::TooLarge(length));
    }
    Ok(length)
}

/// Parses one packet (command byte and data, without the length prefix).
pub fn parse(packet: &[u8]) -> Result<Command, WireError> {
    let (&code, data) = packet.split_first().ok_or(WireError::Empty)?;
    let short = || WireError::Truncated(code as char);
    Ok(match code {
        b'O' => {
            let word = |i: usize| {
                data.get(i * 4..i * 4 + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(short)
            };
            Command::OptionNegotiation {
                version: word(0)?,
                actions: word(1)?,
                protocol: word(2)?,
            }
        }
        b'D' => {
            let (&stage, rest) = data.split_first().ok_or_else(short)?;
            let fields = strings(rest);
            let pairs = fields
                .chunks(2)
                .filter(|pair| pair.len() == 2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            Command::Macros { stage, pairs }
        }
        b'C' => {
            let end = memchr::memchr(0, data).ok_or_else(short)?;
            let hostname = String::from_utf8_lossy(&data[..end]).into_owned();
            let rest = &data[end + 1..];
            let address = match rest.first() {
                // IPv4 or IPv6: family, port (two bytes), address.
                Some(b'4' | b'6') if rest.len() > 3 => strings(&rest[3..]).into_iter().next(),
                _ => None,
            };
            Command::Connect { hostname, address }
        }
        b'H' => Command::Helo(strings(data).into_iter().next().unwrap_or_default()),
        b'M' => Command::Mail(strings(data)),
        b'R' => Command::Rcpt(strings(data)),
        b'T' => Command::Data,
        b'L' => {
            let end = memchr::memchr(0, data).ok_or_else(short)?;
            let name = String::from_utf8_lossy(&data[..end]).into_owned();
            let mut value = data[end + 1..].to_vec();
            if value.last() == Some(&0) {
                value.pop();
            }
            Command::Header { name, value }
        }
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfBody,
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown(data.to_vec()),
        other => return Err(WireError::UnknownCommand(other as char)),
    })
}

/// NUL-terminated strings (a last one without its NUL counts too).
fn strings(data: &[u8]) -> Vec<String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A reply to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    OptionNegotiation {
        actions: u32,
        protocol: u32,
    },
    Accept,
    Continue,
    /// An SMTP reply: `554 5.7.1 text` rejects, `451 4.7.1 text` defers.
    Smtp(String),
    AddHeader {
        name: String,
        value: String,
    },
    /// Changes the `index`th (from 1) field of that name; an empty value
    /// deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
}

impl Reply {
    /// The packet, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let code = match self {
            Reply::OptionNegotiation { actions, protocol } => {
                body.extend_from_slice(&VERSION.to_be_bytes());
                body.extend_from_slice(&actions.to_be_bytes());
                body.extend_from_slice(&protocol.to_be_bytes());
                b'O'
            }
            Reply::Accept => b'a',
            Reply::Continue => b'c',
            Reply::Smtp(text) => {
                body.extend_from_slice(sanitise(text).as_bytes());
                body.push(0);
                b'y'
            }
            Reply::AddHeader { name, value } => {
                push_pair(&mut body, name, value);
                b'h'
            }
            Reply::ChangeHeader { index, name, value } => {
                body.extend_from_slice(&index.to_be_bytes());
                push_pair(&mut body, name, value);
                b'm'
            }
        };
        let mut packet = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        packet.push(code);
        packet.extend_from_slice(&body);
        packet
    }
}

fn push_pair(body: &mut Vec<u8>, name: &str, value: &str) {
    body.extend_from_slice(sanitise(name).as_bytes());
    body.push(0);
    body.extend_from_slice(sanitise(value).as_bytes());
    body.push(0);
}

/// No NUL inside a field: it would end it early.
fn sanitise(text: &str) -> String {
    text.replace('\0', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn postfix_packets_parse() {
        let mut negotiation = vec![b'O'];
        for word in [6u32, 0x1ff, 0x1fffff] {
            negotiation.extend_from_slice(&word.to_be_bytes());
        }
        assert_eq!(
            parse(&negotiation),
            Ok(Command::OptionNegotiation {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1fffff
            })
        );
        assert_eq!(
            parse(b"Cmail.example.org\x004\x00\x19192.0.2.7\x00"),
            Ok(Command::Connect {
                hostname: "mail.example.org".into(),
                address: Some("192.0.2.7".into())
            })
        );
        assert_eq!(
            parse(b"DMi\x00ABC\x00{auth_authen}\x00alice\x00"),
            Ok(Command::Macros {
                stage: b'M',
                pairs: vec![
                    ("i".into(), "ABC".into()),
                    ("{auth_authen}".into(), "alice".into())
                ]
            })
        );
        assert_eq!(
            parse(b"M<a@example.org>\x00SIZE=100\x00"),
            Ok(Command::Mail(vec![
                "<a@example.org>".into(),
                "SIZE=100".into()
            ]))
        );
        assert_eq!(
            parse(b"LSubject\x00hello\n\tworld\x00"),
            Ok(Command::Header {
                name: "Subject".into(),
                value: b"hello\n\tworld".to_vec()
            })
        );
        assert_eq!(parse(b"Z"), Err(WireError::UnknownCommand('Z')));
        assert_eq!(parse(b"O\x00\x00"), Err(WireError::Truncated('O')));
        assert_eq!(packet_length([0, 0, 0, 0]), Err(WireError::Empty));
        assert!(packet_length([0xff, 0, 0, 0]).is_err());
    }

    #[test]
    fn replies_encode_with_their_length() {
        assert_eq!(Reply::Accept.encode(), vec![0, 0, 0, 1, b'a']);
        assert_eq!(
            Reply::Smtp("554 5.7.1 no".into()).encode(),
            b"\x00\x00\x00\x0ey554 5.7.1 no\x00".to_vec()
        );
        assert_eq!(
            Reply::ChangeHeader {
                index: 1,
                name: "X-Spam".into(),
                value: String::new()
            }
            .encode(),
            b"\x00\x00\x00\x0dm\x00\x00\x00\x01X-Spam\x00\x00".to_vec()
        );
    }

    proptest! {
        #[test]
        fn any_packet_parses_or_is_refused(packet in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&packet);
        }
    }
}
