//! Opening `bayes.model` and reading it in place.

use std::path::Path;

use bytemuck::Zeroable;

use super::StoreError;
use super::format::{
    Class, ClassifierHeader, DigestEntry, FORMAT_VERSION, GramEntry, HEADER_LEN, MODEL_MAGIC,
    ModelHeader, OLDEST_SUPPORTED_VERSION, SampleEntry, TokenEntry, home_slot,
};
use super::mapped::{BadTables, Header, Mapped, table_end};
use crate::classifier::{FEATURE_VERSION, WEIGHT_BITS};
use crate::extract::TOKENIZER_VERSION;

/// A model file, mapped and checked; or the empty model when there is no file yet.
pub type ModelFile = Mapped<ModelHeader>;

impl Header for ModelHeader {
    const MAGIC: [u8; 8] = MODEL_MAGIC;
    const VERSION: u32 = FORMAT_VERSION;
    const OLDEST_VERSION: u32 = OLDEST_SUPPORTED_VERSION;

    fn empty() -> ModelHeader {
        ModelHeader {
            magic: MODEL_MAGIC,
            format_version: FORMAT_VERSION,
            tokenizer_version: TOKENIZER_VERSION,
            ..ModelHeader::zeroed()
        }
    }

    fn file_len(&self) -> u64 {
        self.file_len
    }

    fn body_crc(&self) -> u32 {
        self.body_crc
    }

    fn journal_generation(&self) -> u64 {
        self.journal_generation
    }

    fn check_producer(&self, path: &Path) -> Result<(), StoreError> {
        if self.tokenizer_version != TOKENIZER_VERSION {
            return Err(StoreError::TokenizerMismatch {
                path: path.to_owned(),
                found: self.tokenizer_version,
                expected: TOKENIZER_VERSION,
            });
        }
        Ok(())
    }

    fn check_tables(&self, file_len: u64) -> Result<(), BadTables> {
        if self.token_slots != 0 && !self.token_slots.is_power_of_two() {
            return Err("token table size is not a power of two".into());
        }
        if self.token_count > self.token_slots {
            return Err("more tokens than slots".into());
        }
        let tokens_end = table_end::<TokenEntry>(self.tokens_offset, self.token_slots)
            .ok_or("token table offset is invalid")?;
        let digests_end = table_end::<DigestEntry>(self.digests_offset, self.digest_count)
            .ok_or("digest table offset is invalid")?;
        if self.tokens_offset < HEADER_LEN as u64
            || tokens_end > self.digests_offset
            || digests_end > file_len
        {
            return Err("tables overlap or run past the end of the file".into());
        }
        if self.gram_bits != 0 {
            if self.gram_bits != crate::extract::grams::GRAM_BITS {
                return Err(format!(
                    "gram table of 2^{} buckets, this build uses 2^{}",
                    self.gram_bits,
                    crate::extract::grams::GRAM_BITS
                )
                .into());
            }
            let grams_end = table_end::<GramEntry>(self.grams_offset, 1u64 << self.gram_bits)
                .ok_or("gram table offset is invalid")?;
            if self.grams_offset < digests_end || grams_end > file_len {
                return Err("gram table overlaps or runs past the end of the file".into());
            }
        }
        Ok(())
    }
}

impl ModelFile {
    /// The classifier section's header, if the model has one (checked by
    /// [`ModelFile::check_classifier`] when the store opens).
    pub fn classifier(&self) -> Option<ClassifierHeader> {
        let offset = self.header().classifier_offset;
        if offset == 0 {
            return None;
        }
        self.table::<ClassifierHeader>(offset, 1).first().copied()
    }

    /// Checks the classifier section's versions and bounds, so lookups can
    /// slice it without further checks.
    pub fn check_classifier(&self, path: &Path) -> Result<(), StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let offset = self.header().classifier_offset;
        if offset == 0 {
            return Ok(());
        }
        let end = table_end::<ClassifierHeader>(offset, 1)
            .ok_or_else(|| corrupt("classifier offset is invalid".into()))?;
        if end > self.file_len() {
            return Err(corrupt("classifier section runs past the end".into()));
        }
        let Some(section) = self.classifier() else {
            return Err(corrupt("classifier header unreadable".into()));
        };
        if section.weight_bits != WEIGHT_BITS || section.feature_version != FEATURE_VERSION {
            return Err(StoreError::TokenizerMismatch {
                path: path.to_owned(),
                found: section.feature_version * 100 + section.weight_bits,
                expected: FEATURE_VERSION * 100 + WEIGHT_BITS,
            });
        }
        let weights_end = table_end::<f32>(section.weights_offset, 1 << WEIGHT_BITS)
            .ok_or_else(|| corrupt("weight table offset is invalid".into()))?;
        let samples_end = table_end::<SampleEntry>(section.samples_offset, section.sample_count)
            .ok_or_else(|| corrupt("sample table offset is invalid".into()))?;
        let arena_end = section
            .arena_offset
            .checked_add(section.arena_len)
            .ok_or_else(|| corrupt("sample arena is invalid".into()))?;
        let file_len = self.file_len();
        if section.weights_offset < end
            || weights_end > file_len
            || samples_end > file_len
            || arena_end > file_len
        {
            return Err(corrupt(
                "classifier tables overlap or run past the end of the file".into(),
            ));
        }
        Ok(())
    }

    /// The dense weight table; empty when the model has no classifier.
    pub fn weights(&self) -> &[f32] {
        match self.classifier() {
            Some(section) => self.table(section.weights_offset, 1 << WEIGHT_BITS),
            None => &[],
        }
    }

    /// The stored samples, in learn order.
    pub fn samples(&self) -> &[SampleEntry] {
        match self.classifier() {
            Some(section) => self.table(section.samples_offset, section.sample_count),
            None => &[],
        }
    }

    /// The encoded features of one sample; empty if out of bounds.
    pub fn sample_bytes(&self, sample: &SampleEntry) -> &[u8] {
        let Some(section) = self.classifier() else {
            return &[];
        };
        let arena: &[u8] = self.table(section.arena_offset, section.arena_len);
        let start = sample.arena_offset as usize;
        start
            .checked_add(sample.arena_len as usize)
            .and_then(|end| arena.get(start..end))
            .unwrap_or(&[])
    }

    /// Weights of many indices, in order, appended to `out` (0 without a
    /// classifier). Prefetched in groups: the table is 16 MiB.
    /// The weights of `indices`, in order, each with its delta in `deltas`
    /// (the learns since the model was written; empty for none) added,
    /// appended to `out`.
    pub fn weights_into(&self, indices: &[u32], deltas: &[f32], out: &mut Vec<f32>) {
        out.reserve(indices.len());
        self.each_weight(indices, deltas, |weight| out.push(weight));
    }

    /// The sum in `f64` of what [`Mapped::weights_into`] gives, in one pass.
    pub fn weight_sum(&self, indices: &[u32], deltas: &[f32]) -> f64 {
        let mut sum = 0.0;
        self.each_weight(indices, deltas, |weight| sum += f64::from(weight));
        sum
    }

    /// Calls `visit` with each index's weight plus its delta, in order
    /// (the delta lookup only when there are deltas).
    fn each_weight(&self, indices: &[u32], deltas: &[f32], visit: impl FnMut(f32)) {
        let table = self.weights();
        let at = |slice: &[f32], index: u32| slice.get(index as usize).copied().unwrap_or(0.0);
        match (table.is_empty(), deltas.is_empty()) {
            (true, true) => indices.iter().map(|_| 0.0).for_each(visit),
            (false, true) => prefetched(indices, &[table], |i| at(table, i), visit),
            (true, false) => prefetched(indices, &[deltas], |i| at(deltas, i), visit),
            (false, false) => prefetched(
                indices,
                &[table, deltas],
                |i| at(table, i) + at(deltas, i),
                visit,
            ),
        }
    }

    /// The token table, empty for the empty model.
    pub fn tokens(&self) -> &[TokenEntry] {
        self.table(self.header().tokens_offset, self.header().token_slots)
    }

    /// The dense gram table: empty, or one entry per bucket.
    pub fn grams(&self) -> &[GramEntry] {
        let buckets = if self.header().gram_bits == 0 {
            0
        } else {
            1u64 << self.header().gram_bits
        };
        self.table(self.header().grams_offset, buckets)
    }

    /// (spam, ham) counts of many gram buckets, in order, appended to `out`.
    /// Lookups are issued in groups with prefetches, as for tokens.
    pub fn grams_into(&self, buckets: &[u32], out: &mut Vec<(u32, u32)>) {
        let table = self.grams();
        if table.is_empty() {
            out.extend(buckets.iter().map(|_| (0, 0)));
            return;
        }
        const GROUP: usize = 16;
        for group in buckets.chunks(GROUP) {
            for &bucket in group {
                if let Some(entry) = table.get(bucket as usize) {
                    prefetch(entry);
                }
            }
            for &bucket in group {
                out.push(table.get(bucket as usize).map_or((0, 0), |entry| {
                    (u32::from(entry.spam), u32::from(entry.ham))
                }));
            }
        }
    }

    /// The sorted digest table.
    pub fn digests(&self) -> &[DigestEntry] {
        self.table(self.header().digests_offset, self.header().digest_count)
    }

    /// The counts of one token, if the model has it.
    pub fn token(&self, hash: u64) -> Option<(u32, u32)> {
        let table = self.tokens();
        if table.is_empty() {
            return None;
        }
        let mut slot = home_slot(hash, table.len() as u64);
        // Bounded by the table size so a damaged file cannot loop forever.
        for _ in 0..table.len() {
            let entry = table[slot];
            if entry.hash == hash {
                return Some((entry.spam, entry.ham));
            }
            if entry.hash == 0 {
                return None;
            }
            slot = (slot + 1) & (table.len() - 1);
        }
        None
    }

    /// Looks up many tokens at once, appending (spam, ham) per hash to `out`
    /// (zeros for unknown tokens). The table is far larger than the CPU
    /// caches, so each lookup is a cache miss; prefetching a group of home
    /// slots before probing any lets those misses overlap instead of queueing.
    pub fn tokens_into(&self, hashes: &[u64], out: &mut Vec<(u32, u32)>) {
        let table = self.tokens();
        if table.is_empty() {
            out.extend(hashes.iter().map(|_| (0, 0)));
            return;
        }
        const GROUP: usize = 16;
        for group in hashes.chunks(GROUP) {
            for &hash in group {
                prefetch(&table[home_slot(hash, table.len() as u64)]);
            }
            for &hash in group {
                out.push(self.token(hash).unwrap_or((0, 0)));
            }
        }
    }

    /// The class a message digest was learned as, if any.
    pub fn digest_class(&self, digest: u128) -> Option<Class> {
        let table = self.digests();
        let index = table
            .binary_search_by(|entry| entry.digest().cmp(&digest))
            .ok()?;
        Class::from_u8(table[index].class as u8)
    }
}

/// Hints the CPU to start loading `entry`'s cache line.
#[inline(always)]
/// Calls `visit` with `lookup` of each index, in order. The tables (the
/// weight table, the learns' deltas: 16 MiB each) are larger than any cache
/// and a message's indices are scattered over them, so each index's entries
/// are prefetched `AHEAD` places before they are read and are already on
/// their way when they are.
fn prefetched(
    indices: &[u32],
    tables: &[&[f32]],
    lookup: impl Fn(u32) -> f32,
    mut visit: impl FnMut(f32),
) {
    const AHEAD: usize = 16;
    let fetch = |index: u32| {
        for table in tables {
            if let Some(entry) = table.get(index as usize) {
                prefetch(entry);
            }
        }
    };
    indices.iter().take(AHEAD).for_each(|&index| fetch(index));
    for (at, &index) in indices.iter().enumerate() {
        if let Some(&ahead) = indices.get(at + AHEAD) {
            fetch(ahead);
        }
        visit(lookup(index));
    }
}

pub(super) fn prefetch<T>(entry: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is only a hint; the pointer comes from a valid
        // reference, and SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((entry as *const T).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = entry;
}
