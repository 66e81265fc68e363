//! A DNS server on 127.0.0.1 for the network tests (UDP, in-process, one
//! thread): records from a table, plus names that misbehave on purpose —
//! anything under `slow.test` answers after two seconds, `silent.test`
//! never answers, `fail.test` answers SERVFAIL, `refused.test` REFUSED —
//! and a switch that makes the whole server silent.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

#[derive(Default)]
pub struct Zones {
    records: HashMap<(String, RecordType), Vec<RData>>,
}

impl Zones {
    fn key(name: &str) -> String {
        name.trim_end_matches('.').to_ascii_lowercase()
    }
    pub fn a(&mut self, name: &str, ip: &str) -> &mut Self {
        let ip: Ipv4Addr = ip.parse().unwrap();
        self.records
            .entry((Zones::key(name), RecordType::A))
            .or_default()
            .push(RData::A(A(ip)));
        self
    }
    pub fn txt(&mut self, name: &str, text: &str) -> &mut Self {
        let chunks: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        self.records
            .entry((Zones::key(name), RecordType::TXT))
            .or_default()
            .push(RData::TXT(TXT::new(chunks)));
        self
    }
    pub fn mx(&mut self, name: &str, exchange: &str) -> &mut Self {
        self.records
            .entry((Zones::key(name), RecordType::MX))
            .or_default()
            .push(RData::MX(MX::new(10, Name::from_ascii(exchange).unwrap())));
        self
    }
    pub fn ptr(&mut self, name: &str, target: &str) -> &mut Self {
        self.records
            .entry((Zones::key(name), RecordType::PTR))
            .or_default()
            .push(RData::PTR(hickory_proto::rr::rdata::PTR(
                Name::from_ascii(target).unwrap(),
            )));
        self
    }
    fn exists(&self, name: &str) -> bool {
        self.records.keys().any(|(n, _)| n == name)
    }
}

pub struct DnsServer {
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl DnsServer {
    pub fn start(zones: Zones) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let zones = Arc::new(zones);
        {
            let (silent, stop, queries) = (silent.clone(), stop.clone(), queries.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(request) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let Some(query) = request.queries.first().cloned() else {
                        continue;
                    };
                    let name = Zones::key(&query.name().to_ascii());
                    queries.lock().unwrap().push(name.clone());
                    if silent.load(Ordering::Relaxed) || name.ends_with("silent.test") {
                        continue;
                    }
                    let mut response =
                        Message::response(request.metadata.id, request.metadata.op_code);
                    response.metadata.message_type = MessageType::Response;
                    response.metadata.recursion_desired = request.metadata.recursion_desired;
                    response.metadata.recursion_available = true;
                    response.metadata.authoritative = true;
                    response.add_query(query.clone());
                    if name.ends_with("fail.test") {
                        response.metadata.response_code = ResponseCode::ServFail;
                    } else if name.ends_with("refused.test") {
                        response.metadata.response_code = ResponseCode::Refused;
                    } else if let Some(found) =
                        zones.records.get(&(name.clone(), query.query_type()))
                    {
                        for rdata in found {
                            response.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                rdata.clone(),
                            ));
                        }
                    } else if !zones.exists(&name) {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    let bytes = response.to_vec().unwrap();
                    if name.ends_with("slow.test") {
                        let socket = socket.try_clone().unwrap();
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(2));
                            let _ = socket.send_to(&bytes, peer);
                        });
                    } else {
                        let _ = socket.send_to(&bytes, peer);
                    }
                }
            });
        }
        DnsServer {
            addr,
            silent,
            stop,
            queries,
        }
    }

    /// From now on, answer nothing at all.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::Relaxed);
    }

    pub fn asked(&self, name: &str) -> bool {
        self.queries.lock().unwrap().iter().any(|q| q == name)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Standard base64, for DKIM public keys in TXT records.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
