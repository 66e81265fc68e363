//! Opening `fuzzy.model` and reading it in place.

use std::path::Path;

use bytemuck::Zeroable;

use super::StoreError;
use super::format::{
    BandRow, FUZZY_FORMAT_VERSION, FUZZY_MAGIC, FUZZY_OLDEST_SUPPORTED_VERSION, FuzzyEntry,
    FuzzyHeader, NO_MINHASH,
};
use super::mapped::{BadTables, Header, Mapped, table_end};
use crate::fuzzy::{FUZZY_DIGEST_VERSION, MINHASH_VALUES, MinHash};

/// A fuzzy model file, mapped and checked; or the empty model.
pub type FuzzyFile = Mapped<FuzzyHeader>;

impl Header for FuzzyHeader {
    const MAGIC: [u8; 8] = FUZZY_MAGIC;
    const VERSION: u32 = FUZZY_FORMAT_VERSION;
    const OLDEST_VERSION: u32 = FUZZY_OLDEST_SUPPORTED_VERSION;

    fn empty() -> FuzzyHeader {
        FuzzyHeader {
            magic: FUZZY_MAGIC,
            format_version: FUZZY_FORMAT_VERSION,
            digest_version: FUZZY_DIGEST_VERSION,
            minhash_values: MINHASH_VALUES as u32,
            ..FuzzyHeader::zeroed()
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
        // A signature of another width would be read as the wrong rows.
        if self.digest_version != FUZZY_DIGEST_VERSION
            || self.minhash_values != MINHASH_VALUES as u32
        {
            return Err(StoreError::TokenizerMismatch {
                path: path.to_owned(),
                found: self.digest_version,
                expected: FUZZY_DIGEST_VERSION,
            });
        }
        Ok(())
    }

    fn check_tables(&self, file_len: u64) -> Result<(), BadTables> {
        if self.entry_count > u64::from(u32::MAX) || self.minhash_count > self.entry_count {
            return Err("impossible table sizes".into());
        }
        let entries_end = table_end::<FuzzyEntry>(self.entries_offset, self.entry_count)
            .ok_or("entry table offset is invalid")?;
        let minhashes_end = table_end::<MinHash>(self.minhashes_offset, self.minhash_count)
            .ok_or("signature table offset is invalid")?;
        let bands_end = table_end::<BandRow>(self.bands_offset, self.band_rows)
            .ok_or("band table offset is invalid")?;
        if self.entries_offset < size_of::<FuzzyHeader>() as u64
            || entries_end > self.minhashes_offset
            || minhashes_end > self.bands_offset
            || bands_end > file_len
        {
            return Err("tables overlap or run past the end of the file".into());
        }
        Ok(())
    }
}

impl FuzzyFile {
    pub fn entries(&self) -> &[FuzzyEntry] {
        self.table(self.header().entries_offset, self.header().entry_count)
    }

    pub fn minhashes(&self) -> &[MinHash] {
        self.table(self.header().minhashes_offset, self.header().minhash_count)
    }

    pub fn bands(&self) -> &[BandRow] {
        self.table(self.header().bands_offset, self.header().band_rows)
    }

    /// The signature of an entry, if it has one.
    pub fn minhash_of(&self, entry: &FuzzyEntry) -> Option<&MinHash> {
        if entry.minhash_index == NO_MINHASH {
            return None;
        }
        self.minhashes().get(entry.minhash_index as usize)
    }

    /// Indices of the entries of `digest` (one per flag).
    pub fn find_digest(&self, digest: u128) -> std::ops::Range<usize> {
        self.digests_between(digest, digest)
    }

    /// Indices of the entries whose digest is in `low..=high`: the table is
    /// sorted by digest, so a digest prefix is one contiguous run.
    pub fn digests_between(&self, low: u128, high: u128) -> std::ops::Range<usize> {
        let entries = self.entries();
        let start = lower_bound(entries, (low >> 64) as u64, |e| e.digest() < low);
        let mut end = start;
        while end < entries.len() && entries[end].digest() <= high {
            end += 1;
        }
        start..end
    }

    /// Up to `cap` entry indices whose band `key` is listed.
    pub fn band_entries(&self, key: u32, cap: usize, out: &mut Vec<u32>) {
        let rows = self.bands();
        let scaled = u64::from(key) << 32;
        let start = lower_bound(rows, scaled, |r| r.key < key);
        out.extend(
            rows[start..]
                .iter()
                .take(cap)
                .take_while(|r| r.key == key)
                .map(|r| r.entry),
        );
    }
}

/// The first index whose element is not `less` than the key, in a table
/// sorted by a uniformly distributed 64-bit key: the search
/// starts where the key would sit if the keys were evenly spread and gallops
/// outwards, so it touches a few cache lines instead of log2(n) of them.
fn lower_bound<T>(table: &[T], key: u64, less: impl Fn(&T) -> bool) -> usize {
    let n = table.len();
    if n == 0 {
        return 0;
    }
    let guess = ((u128::from(key) * n as u128) >> 64) as usize;
    let guess = guess.min(n - 1);
    // Find lo < hi with !less(table[hi]) (or hi = n) and less(table[lo]) (or lo = -1).
    let (mut lo, mut hi): (isize, usize);
    if less(&table[guess]) {
        let mut step = 8usize;
        lo = guess as isize;
        loop {
            let probe = guess.saturating_add(step);
            if probe >= n {
                hi = n;
                break;
            }
            if !less(&table[probe]) {
                hi = probe;
                break;
            }
            lo = probe as isize;
            step = step.saturating_mul(2);
        }
    } else {
        let mut step = 8usize;
        hi = guess;
        loop {
            if guess < step {
                lo = -1;
                break;
            }
            let probe = guess - step;
            if less(&table[probe]) {
                lo = probe as isize;
                break;
            }
            hi = probe;
            step = step.saturating_mul(2);
        }
    }
    // Binary search in (lo, hi].
    while (lo + 1) < hi as isize {
        let mid = ((lo + hi as isize) / 2) as usize;
        if less(&table[mid]) {
            lo = mid as isize;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lower_bound_agrees_with_partition_point() {
        let mut state = 7u64;
        let mut keys: Vec<u64> = (0..5000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                state
            })
            .collect();
        keys.extend_from_slice(&[keys[10]; 40]);
        keys.sort_unstable();
        for probe in keys.iter().copied().chain([0, u64::MAX, 12345]) {
            let expected = keys.partition_point(|&k| k < probe);
            assert_eq!(lower_bound(&keys, probe, |&k| k < probe), expected);
        }
        assert_eq!(lower_bound::<u64>(&[], 5, |&k| k < 5), 0);
    }
}
