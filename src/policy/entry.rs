//! One policy entry (a bucket, a greylist triplet, a remembered fact)
//! with its expiry, the record both the journal and Redis hold it as, and
//! `Txn`, the reads and writes of one update — what the embedded store
//! (`state.rs`) and the shared one (`shared.rs`) have in common.

use std::collections::HashMap;

/// One entry's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A leaky bucket: its level at `at_ms` (unix milliseconds).
    Bucket { level: f64, at_ms: u64 },
    /// A greylist triplet: first seen (unix seconds), and whether a retry
    /// after the delay has passed it.
    Grey { first_seen: u64, passed: bool },
    /// A remembered fact with a count (Message-IDs, known senders, a
    /// network's passed triplets).
    Seen { count: u32 },
}

/// A value with its expiry (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub expires: u64,
}

/// What a reset writes: an entry expiring at 0 is gone on replay and on read.
pub const REMOVED: Entry = Entry {
    value: Value::Seen { count: 0 },
    expires: 0,
};

/// The reads and writes of one update: reads go to the store it runs on
/// (the local map, or Redis through `shared.rs`), writes are collected and
/// applied together when the update's function returns, so the same
/// function runs on either store (and again, on Redis, when another node
/// changed what it read).
pub struct Txn<'a> {
    read: &'a mut dyn FnMut(&str) -> Option<Entry>,
    writes: Vec<(String, Entry)>,
    now: u64,
}

impl<'a> Txn<'a> {
    pub(super) fn new(read: &'a mut dyn FnMut(&str) -> Option<Entry>, now: u64) -> Txn<'a> {
        Txn {
            read,
            writes: Vec::new(),
            now,
        }
    }

    /// The live entry under `key`, this update's own writes included.
    pub fn get(&mut self, key: &str) -> Option<Entry> {
        let written = self
            .writes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, entry)| *entry);
        written
            .or_else(|| (self.read)(key))
            .filter(|e| e.expires > self.now)
    }

    /// Writes `entry` under `key`; an entry expiring at 0 removes the key.
    pub fn put(&mut self, key: &str, entry: Entry) {
        self.writes.push((key.to_owned(), entry));
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub(super) fn into_writes(self) -> Vec<(String, Entry)> {
        self.writes
    }
}

// A record: u32 payload length, u32 CRC-32 of the payload, then the
// payload: u16 key length, key, u64 expiry, u8 kind, the kind's fields.
// Redis holds the same record with an empty key as a key's value.
pub(super) fn encode_put(out: &mut Vec<u8>, key: &str, entry: &Entry) {
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    let mut payload = Vec::with_capacity(key.len() + 32);
    payload.extend_from_slice(&(key.len() as u16).to_le_bytes());
    payload.extend_from_slice(key);
    payload.extend_from_slice(&entry.expires.to_le_bytes());
    match entry.value {
        Value::Bucket { level, at_ms } => {
            payload.push(1);
            payload.extend_from_slice(&level.to_le_bytes());
            payload.extend_from_slice(&at_ms.to_le_bytes());
        }
        Value::Grey { first_seen, passed } => {
            payload.push(2);
            payload.extend_from_slice(&first_seen.to_le_bytes());
            payload.push(u8::from(passed));
        }
        Value::Seen { count } => {
            payload.push(3);
            payload.extend_from_slice(&count.to_le_bytes());
        }
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Applies every whole, intact record of `bytes` to `entries`; returns how
/// many bytes that was and how many records.
pub(super) fn decode_all(bytes: &[u8], entries: &mut HashMap<String, Entry>) -> (usize, usize) {
    let mut at = 0;
    let mut count = 0;
    while let Some((key, entry, next)) = decode_one(bytes, at) {
        // Expiry 0 is a reset; other expired entries are dropped on read
        // and at compaction.
        if entry.expires == 0 {
            entries.remove(&key);
        } else {
            entries.insert(key, entry);
        }
        at = next;
        count += 1;
    }
    (at, count)
}

/// An entry as Redis holds it (`encode_put` with an empty key).
pub(super) fn decode_value(bytes: &[u8]) -> Option<Entry> {
    decode_one(bytes, 0).map(|(_, entry, _)| entry)
}

fn decode_one(bytes: &[u8], at: usize) -> Option<(String, Entry, usize)> {
    let word = |from: usize| -> Option<[u8; 4]> { bytes.get(from..from + 4)?.try_into().ok() };
    let len = u32::from_le_bytes(word(at)?) as usize;
    let crc = u32::from_le_bytes(word(at + 4)?);
    let payload = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut reader = Reader { bytes: payload };
    let key_len = u16::from_le_bytes(reader.take()?) as usize;
    let key = String::from_utf8(reader.take_slice(key_len)?.to_vec()).ok()?;
    let expires = u64::from_le_bytes(reader.take()?);
    let value = match reader.take::<1>()?[0] {
        1 => Value::Bucket {
            level: f64::from_le_bytes(reader.take()?),
            at_ms: u64::from_le_bytes(reader.take()?),
        },
        2 => Value::Grey {
            first_seen: u64::from_le_bytes(reader.take()?),
            passed: reader.take::<1>()?[0] != 0,
        },
        3 => Value::Seen {
            count: u32::from_le_bytes(reader.take()?),
        },
        _ => return None,
    };
    Some((key, Entry { value, expires }, at + 8 + len))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take_slice(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take_slice(N)?.try_into().ok()
    }
}
