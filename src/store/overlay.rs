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
    pub grams: GramDeltas,
    pub digests: FastMap<u128, Class>,
    pub spam_learns: i64,
    pub ham_learns: i64,
    /// The classifier's learns since the model was written.
    pub classifier: ClassifierOverlay,
}

/// A learned message waiting for the next training, as the journal has it.
#[derive(Debug, Clone)]
pub struct PendingSample {
    pub class: Class,
    /// Its place in learn order, continuing the model's sequence.
    pub sequence: u64,
    pub text: Vec<u32>,
    pub rules: Vec<u32>,
}

/// The online steps of learns not yet trained on, and their samples.
#[derive(Default)]
pub struct ClassifierOverlay {
    /// Weight deltas, dense like the model's table; empty until the first
    /// learn.
    pub weights: DeltaTable,
    pub bias: f64,
    /// The latest learn of each message, by digest.
    pub samples: FastMap<u128, PendingSample>,
    pub learns: u64,
}

impl ClassifierOverlay {
    pub fn weight(&self, index: u32) -> f32 {
        self.weights
            .as_slice()
            .get(index as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// Adds `delta` to the weight of every index in `indices`.
    pub fn add(&mut self, indices: &[u32], delta: f32) {
        let weights = self.weights.as_mut_slice();
        for &index in indices {
            if let Some(weight) = weights.get_mut(index as usize) {
                *weight += delta;
            }
        }
    }
}

/// The learns' weight deltas: one `f32` per weight of the model's table,
/// allocated zeroed on the first learn (untouched pages cost nothing).
/// Anonymous memory that asks the kernel for huge pages: a learn's (and a
/// scan's, while learns wait for training) few thousand lookups are
/// scattered over 16 MiB, and with 4 KiB pages each also missed the TLB.
#[derive(Default)]
pub enum DeltaTable {
    #[default]
    Empty,
    Mapped(memmap2::MmapMut),
    /// Where anonymous memory could not be mapped.
    Heap(Vec<f32>),
}

impl DeltaTable {
    pub fn as_slice(&self) -> &[f32] {
        match self {
            DeltaTable::Empty => &[],
            // Page-aligned and a whole number of `f32`s.
            DeltaTable::Mapped(map) => bytemuck::cast_slice(&map[..]),
            DeltaTable::Heap(weights) => weights,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        if let DeltaTable::Empty = self {
            let bytes = crate::classifier::WEIGHT_COUNT * std::mem::size_of::<f32>();
            *self = match memmap2::MmapMut::map_anon(bytes) {
                Ok(map) => {
                    // Only a hint: without huge pages it is plain memory.
                    let _ = map.advise(memmap2::Advice::HugePage);
                    DeltaTable::Mapped(map)
                }
                Err(_) => DeltaTable::Heap(vec![0.0; crate::classifier::WEIGHT_COUNT]),
            };
        }
        match self {
            DeltaTable::Empty => &mut [],
            DeltaTable::Mapped(map) => bytemuck::cast_slice_mut(&mut map[..]),
            DeltaTable::Heap(weights) => weights,
        }
    }
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
        self.grams.add(grams, spam_delta as i32, ham_delta as i32);
        self.digests.insert(digest, to);
    }
}

/// Gram bucket deltas, dense like the model's gram table: each of a
/// message's thousands of grams is one increment when learning and one read
/// when scanning. Allocated zeroed on the first learn with grams, so the
/// pages no learn touched are never made resident (a journal replay of a
/// few learns costs a few MiB, not the whole 64 MiB).
#[derive(Debug, Default)]
pub struct GramDeltas {
    /// `(spam, ham)` of bucket `b` at `2b` and `2b + 1`; empty until used.
    /// Plain `i32`s so the allocation is a zeroed one.
    deltas: Vec<i32>,
}

impl GramDeltas {
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The delta of one bucket, if any learn touched the table.
    pub fn get(&self, bucket: u32) -> Option<(i32, i32)> {
        let at = bucket as usize * 2;
        Some((*self.deltas.get(at)?, *self.deltas.get(at + 1)?))
    }

    /// The address of a bucket's delta, to prefetch before a batch of reads.
    pub fn slot(&self, bucket: u32) -> Option<&i32> {
        self.deltas.get(bucket as usize * 2)
    }

    /// Every bucket with a non-zero delta.
    pub fn for_each(&self, mut visit: impl FnMut(u32, (i32, i32))) {
        for (bucket, pair) in self.deltas.chunks_exact(2).enumerate() {
            if pair[0] != 0 || pair[1] != 0 {
                visit(bucket as u32, (pair[0], pair[1]));
            }
        }
    }

    fn add(&mut self, buckets: &[u32], spam_delta: i32, ham_delta: i32) {
        if buckets.is_empty() {
            return;
        }
        if self.deltas.is_empty() {
            self.deltas = vec![0; GRAM_BUCKETS * 2];
        }
        for &bucket in buckets {
            let at = bucket as usize * 2;
            if let Some(pair) = self.deltas.get_mut(at..at + 2) {
                pair[0] += spam_delta;
                pair[1] += ham_delta;
            }
        }
    }
}

/// Adds a signed delta to a stored count, clamped to the u32 range. Counts
/// can only go below zero if a relearn tokenizes differently from the
/// original learn; clamping keeps that harmless.
pub fn add_delta(base: u32, delta: i64) -> u32 {
    (i64::from(base) + delta).clamp(0, i64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_deltas_add_up_per_bucket() {
        let mut deltas = GramDeltas::default();
        assert!(deltas.is_empty() && deltas.get(7).is_none());
        deltas.add(&[7, 9], 1, 0);
        deltas.add(&[7], 0, 1);
        deltas.add(&[9], -1, 0);
        assert_eq!((deltas.get(7), deltas.get(9)), (Some((1, 1)), Some((0, 0))));
        assert_eq!(deltas.get(8), Some((0, 0)));
        let mut seen = Vec::new();
        deltas.for_each(|bucket, delta| seen.push((bucket, delta)));
        assert_eq!(seen, vec![(7, (1, 1))]);
        deltas.add(&[u32::MAX], 1, 1);
        assert_eq!(deltas.get(u32::MAX), None);
    }
}
