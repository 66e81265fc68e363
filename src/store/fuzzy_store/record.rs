//! The fuzzy journal's record: a report added or deleted, its flag,
//! weight, time, digest and (for text parts) min-hash signature.

use crate::fuzzy::{MINHASH_VALUES, MinHash};

pub(super) const OP_ADD: u8 = 1;

pub(super) const OP_DEL: u8 = 2;

const RECORD_FIXED: usize = 40;

pub(super) struct Record {
    pub(super) op: u8,
    pub(super) flag: u32,
    pub(super) weight: u32,
    pub(super) time: u64,
    pub(super) digest: u128,
    pub(super) minhash: Option<Box<MinHash>>,
}

pub(super) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&[record.op, u8::from(record.minhash.is_some()), 0, 0]);
    out.extend_from_slice(&record.flag.to_le_bytes());
    out.extend_from_slice(&record.weight.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record.time.to_le_bytes());
    out.extend_from_slice(&(record.digest as u64).to_le_bytes());
    out.extend_from_slice(&((record.digest >> 64) as u64).to_le_bytes());
    if let Some(minhash) = &record.minhash {
        for value in minhash.iter() {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

pub(super) fn decode_record(payload: &[u8]) -> Option<Record> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            payload.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            payload.get(at..at + 8)?.try_into().ok()?,
        ))
    };
    let op = *payload.first()?;
    if op != OP_ADD && op != OP_DEL {
        return None;
    }
    let has_minhash = *payload.get(1)? == 1;
    let expected = RECORD_FIXED + if has_minhash { 4 * MINHASH_VALUES } else { 0 };
    if payload.len() != expected {
        return None;
    }
    let minhash = if has_minhash {
        let mut values = Box::new([0u32; MINHASH_VALUES]);
        for (i, value) in values.iter_mut().enumerate() {
            *value = u32_at(RECORD_FIXED + 4 * i)?;
        }
        Some(values)
    } else {
        None
    };
    Some(Record {
        op,
        flag: u32_at(4)?,
        weight: u32_at(8)?,
        time: u64_at(16)?,
        digest: u128::from(u64_at(24)?) | (u128::from(u64_at(32)?) << 64),
        minhash,
    })
}
