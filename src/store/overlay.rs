//! Learns not yet folded into the mapped model, kept in memory.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::format::Class;
use crate::extract::grams::GRAM_BUCKETS;

/// Token hashes are already uniformly mixed 64-bit values, so hashing them
/// again (SipHash) would only cost time.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PassThroughHasher>>;

/// Signed count changes relative to the mapped model.
#[derive(Default)]
pub struct Overlay {
    pub tokens: FastMap<u64, (i64, i64)>,
    /// Gram bucket deltas, dense like the model's gram table (a learn touches
    /// thousands of buckets; one increment each is what keeps learning fast).
    /// Empty until the first learn with grams.
    pub grams: Vec<(i32, i32)>,
    pub digests: FastMap<u128, Class>,
    pub spam_learns: i64,
    pub ham_learns: i64,
}

impl Overlay {
    /// Moves one message's counts: out of `from` (a relearn) and into `to`.
    pub fn apply(
        &mut self,
        digest: u128,
        from: Option<Class>,
        to: Class,
        tokens: &[u64],
        grams: &[u32],
    ) {
        let (spam_delta, ham_delta) = match (from, to) {
            (Some(Class::Spam), Class::Spam) | (Some(Class::Ham), Class::Ham) => return,
            (Some(Class::Ham), Class::Spam) => (1, -1),
            (Some(Class::Spam), Class::Ham) => (-1, 1),
            (None, Class::Spam) => (1, 0),
            (None, Class::Ham) => (0, 1),
        };
        self.spam_learns += spam_delta;
        self.ham_learns += ham_delta;
        for &token in tokens {
            let entry = self.tokens.entry(token).or_insert((0, 0));
            entry.0 += spam_delta;
            entry.1 += ham_delta;
        }
        if !grams.is_empty() && self.grams.is_empty() {
            self.grams = vec![(0, 0); GRAM_BUCKETS];
        }
        for &gram in grams {
            if let Some(entry) = self.grams.get_mut(gram as usize) {
                entry.0 += spam_delta as i32;
                entry.1 += ham_delta as i32;
            }
        }
        self.digests.insert(digest, to);
    }
}

/// Adds a signed delta to a stored count, clamped to the u32 range. Counts
/// can only go below zero if a relearn tokenizes differently from the
/// original learn; clamping keeps that harmless.
pub fn add_delta(base: u32, delta: i64) -> u32 {
    (i64::from(base) + delta).clamp(0, i64::from(u32::MAX)) as u32
}
