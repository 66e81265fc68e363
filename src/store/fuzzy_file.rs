//! Opening `fuzzy.model` and reading it in place.

use std::fs::File;
use std::path::Path;

use bytemuck::Zeroable;
use memmap2::Mmap;

use super::StoreError;
use super::format::{
    BandRow, FUZZY_FORMAT_VERSION, FUZZY_MAGIC, FUZZY_OLDEST_SUPPORTED_VERSION, FuzzyEntry,
    FuzzyHeader, NO_MINHASH,
};
use crate::fuzzy::{FUZZY_DIGEST_VERSION, MINHASH_VALUES, MinHash};

const HEADER_LEN: usize = std::mem::size_of::<FuzzyHeader>();

/// A fuzzy model file, mapped and checked; or the empty model.
#[derive(Debug)]
pub struct FuzzyFile {
    map: Option<Mmap>,
    header: FuzzyHeader,
}

impl FuzzyFile {
    pub fn empty() -> FuzzyFile {
        FuzzyFile {
            map: None,
            header: FuzzyHeader {
                magic: FUZZY_MAGIC,
                format_version: FUZZY_FORMAT_VERSION,
                digest_version: FUZZY_DIGEST_VERSION,
                minhash_values: MINHASH_VALUES as u32,
                ..FuzzyHeader::zeroed()
            },
        }
    }

    /// Maps `path` and checks its header and table bounds; constant time
    /// whatever the size.
    pub fn open(path: &Path) -> Result<FuzzyFile, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FuzzyFile::empty()),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        // SAFETY: as for `bayes.model`: the file is never modified in place,
        // only replaced by rename, so the mapped pages stay valid.
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io(path))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let header_bytes = map
            .get(..HEADER_LEN)
            .ok_or_else(|| corrupt(format!("{} bytes is shorter than a header", map.len())))?;
        let header: FuzzyHeader = bytemuck::pod_read_unaligned(header_bytes);
        if header.magic != FUZZY_MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        if !(FUZZY_OLDEST_SUPPORTED_VERSION..=FUZZY_FORMAT_VERSION).contains(&header.format_version)
        {
            return Err(StoreError::Incompatible {
                path: path.to_owned(),
                found: header.format_version,
                oldest: FUZZY_OLDEST_SUPPORTED_VERSION,
                newest: FUZZY_FORMAT_VERSION,
            });
        }
        if header.compute_crc() != header.header_crc {
            return Err(corrupt("header checksum mismatch".into()));
        }
        if header.digest_version != FUZZY_DIGEST_VERSION
            || header.minhash_values != MINHASH_VALUES as u32
        {
            return Err(StoreError::TokenizerMismatch {
                path: path.to_owned(),
                found: header.digest_version,
                expected: FUZZY_DIGEST_VERSION,
            });
        }
        check_layout(&header, map.len()).map_err(corrupt)?;
        Ok(FuzzyFile {
            map: Some(map),
            header,
        })
    }

    pub fn header(&self) -> &FuzzyHeader {
        &self.header
    }

    pub fn entries(&self) -> &[FuzzyEntry] {
        self.table(self.header.entries_offset, self.header.entry_count)
    }

    pub fn minhashes(&self) -> &[MinHash] {
        self.table(self.header.minhashes_offset, self.header.minhash_count)
    }

    pub fn bands(&self) -> &[BandRow] {
        self.table(self.header.bands_offset, self.header.band_rows)
    }

    fn table<T: bytemuck::Pod>(&self, offset: u64, count: u64) -> &[T] {
        let Some(map) = &self.map else { return &[] };
        let start = offset as usize;
        let end = start + count as usize * std::mem::size_of::<T>();
        map.get(start..end)
            .and_then(|bytes| bytemuck::try_cast_slice(bytes).ok())
            .unwrap_or(&[])
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
        let entries = self.entries();
        let start = lower_bound(entries, (digest >> 64) as u64, |e| e.digest() < digest);
        let mut end = start;
        while end < entries.len() && entries[end].digest() == digest {
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

    pub fn verify_body(&self) -> bool {
        match &self.map {
            None => true,
            Some(map) => crc32fast::hash(&map[HEADER_LEN..]) == self.header.body_crc,
        }
    }

    pub fn file_len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
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

fn check_layout(header: &FuzzyHeader, file_len: usize) -> Result<(), String> {
    if header.file_len != file_len as u64 {
        return Err(format!(
            "header says {} bytes, file has {file_len}",
            header.file_len
        ));
    }
    if header.entry_count > u64::from(u32::MAX) || header.minhash_count > header.entry_count {
        return Err("impossible table sizes".into());
    }
    let span = |offset: u64, count: u64, size: usize| -> Option<u64> {
        offset.is_multiple_of(8).then_some(())?;
        offset.checked_add(count.checked_mul(size as u64)?)
    };
    let entries_end = span(
        header.entries_offset,
        header.entry_count,
        std::mem::size_of::<FuzzyEntry>(),
    )
    .ok_or("entry table offset is invalid")?;
    let minhashes_end = span(
        header.minhashes_offset,
        header.minhash_count,
        std::mem::size_of::<MinHash>(),
    )
    .ok_or("signature table offset is invalid")?;
    let bands_end = span(
        header.bands_offset,
        header.band_rows,
        std::mem::size_of::<BandRow>(),
    )
    .ok_or("band table offset is invalid")?;
    if header.entries_offset < HEADER_LEN as u64
        || entries_end > header.minhashes_offset
        || minhashes_end > header.bands_offset
        || bands_end > file_len as u64
    {
        return Err("tables overlap or run past the end of the file".into());
    }
    Ok(())
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
