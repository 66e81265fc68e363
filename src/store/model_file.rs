//! Opening `bayes.model` and reading it in place.

use std::fs::File;
use std::path::Path;

use bytemuck::Zeroable;
use memmap2::Mmap;

use super::StoreError;
use super::format::{
    Class, DigestEntry, FORMAT_VERSION, GramEntry, HEADER_LEN, MODEL_MAGIC, ModelHeader,
    OLDEST_SUPPORTED_VERSION, TokenEntry, home_slot,
};
use crate::extract::TOKENIZER_VERSION;

/// A model file, mapped and checked; or the empty model when there is no file yet.
#[derive(Debug)]
pub struct ModelFile {
    map: Option<Mmap>,
    header: ModelHeader,
}

impl ModelFile {
    /// The model of a store that has never been compacted.
    pub fn empty() -> ModelFile {
        ModelFile {
            map: None,
            header: ModelHeader {
                magic: MODEL_MAGIC,
                format_version: FORMAT_VERSION,
                tokenizer_version: TOKENIZER_VERSION,
                ..ModelHeader::zeroed()
            },
        }
    }

    /// Maps `path` and checks its header and table bounds. Cost does not depend
    /// on the file's size: the tables are not read until looked up.
    pub fn open(path: &Path) -> Result<ModelFile, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ModelFile::empty()),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        // SAFETY: the model file is never modified in place: writers build a
        // new file and rename it over this one, so the mapped pages stay valid
        // and unchanged for as long as this mapping lives. A process that
        // truncated the file by hand would break that; chaff never does.
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io(path))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let header_bytes = map
            .get(..HEADER_LEN)
            .ok_or_else(|| corrupt(format!("{} bytes is shorter than a header", map.len())))?;
        let header: ModelHeader = bytemuck::pod_read_unaligned(header_bytes);
        if header.magic != MODEL_MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        if !(OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&header.format_version) {
            return Err(StoreError::Incompatible {
                path: path.to_owned(),
                found: header.format_version,
                oldest: OLDEST_SUPPORTED_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        if header.compute_crc() != header.header_crc {
            return Err(corrupt("header checksum mismatch".into()));
        }
        if header.tokenizer_version != TOKENIZER_VERSION {
            return Err(StoreError::TokenizerMismatch {
                path: path.to_owned(),
                found: header.tokenizer_version,
                expected: TOKENIZER_VERSION,
            });
        }
        check_layout(&header, map.len()).map_err(corrupt)?;
        Ok(ModelFile {
            map: Some(map),
            header,
        })
    }

    pub fn header(&self) -> &ModelHeader {
        &self.header
    }

    /// The token table, empty for the empty model.
    pub fn tokens(&self) -> &[TokenEntry] {
        self.table(self.header.tokens_offset, self.header.token_slots)
    }

    /// The sorted digest table.
    /// The dense gram table: empty, or one entry per bucket.
    pub fn grams(&self) -> &[GramEntry] {
        let buckets = if self.header.gram_bits == 0 {
            0
        } else {
            1u64 << self.header.gram_bits
        };
        self.table(self.header.grams_offset, buckets)
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

    pub fn digests(&self) -> &[DigestEntry] {
        self.table(self.header.digests_offset, self.header.digest_count)
    }

    fn table<T: bytemuck::Pod>(&self, offset: u64, count: u64) -> &[T] {
        let Some(map) = &self.map else { return &[] };
        let start = offset as usize;
        let end = start + count as usize * std::mem::size_of::<T>();
        // Bounds and alignment were checked at open; this cannot fail, and if
        // it somehow did, an empty table is a safe answer.
        map.get(start..end)
            .and_then(|bytes| bytemuck::try_cast_slice(bytes).ok())
            .unwrap_or(&[])
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

    /// Recomputes the body checksum: reads the whole file, so only on demand.
    pub fn verify_body(&self) -> bool {
        match &self.map {
            None => true,
            Some(map) => crc32fast::hash(&map[HEADER_LEN..]) == self.header.body_crc,
        }
    }

    /// Bytes of the mapped file.
    pub fn file_len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }
}

fn check_layout(header: &ModelHeader, file_len: usize) -> Result<(), String> {
    if header.file_len != file_len as u64 {
        return Err(format!(
            "header says {} bytes, file has {file_len}",
            header.file_len
        ));
    }
    if header.token_slots != 0 && !header.token_slots.is_power_of_two() {
        return Err("token table size is not a power of two".into());
    }
    if header.token_count > header.token_slots {
        return Err("more tokens than slots".into());
    }
    let span = |offset: u64, count: u64, size: usize| -> Option<u64> {
        offset.is_multiple_of(8).then_some(())?;
        offset.checked_add(count.checked_mul(size as u64)?)
    };
    let tokens_end = span(
        header.tokens_offset,
        header.token_slots,
        std::mem::size_of::<TokenEntry>(),
    )
    .ok_or("token table offset is invalid")?;
    let digests_end = span(
        header.digests_offset,
        header.digest_count,
        std::mem::size_of::<DigestEntry>(),
    )
    .ok_or("digest table offset is invalid")?;
    if header.tokens_offset < HEADER_LEN as u64
        || tokens_end > header.digests_offset
        || digests_end > file_len as u64
    {
        return Err("tables overlap or run past the end of the file".into());
    }
    if header.gram_bits != 0 {
        if header.gram_bits != crate::extract::grams::GRAM_BITS {
            return Err(format!(
                "gram table of 2^{} buckets, this build uses 2^{}",
                header.gram_bits,
                crate::extract::grams::GRAM_BITS
            ));
        }
        let grams_end = span(
            header.grams_offset,
            1u64 << header.gram_bits,
            std::mem::size_of::<GramEntry>(),
        )
        .ok_or("gram table offset is invalid")?;
        if header.grams_offset < digests_end || grams_end > file_len as u64 {
            return Err("gram table overlaps or runs past the end of the file".into());
        }
    }
    Ok(())
}

/// Hints the CPU to start loading `entry`'s cache line.
#[inline(always)]
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
