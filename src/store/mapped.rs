//! A versioned table file read in place: `bayes.model` and `fuzzy.model`.
//!
//! Both are a 128-byte header, then tables laid end to end, never modified
//! once written. What differs per format (its header's fields, its tables,
//! its lookups) lives in `model_file.rs` and `fuzzy_file.rs`, as
//! [`Header`] impls and inherent impls of [`Mapped`]; this file holds what
//! they share: checking the header, mapping, and writing a new file whole.

use std::fs::File;
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use memmap2::Mmap;

use super::{StoreError, atomic_file};

/// What every header starts with, whatever follows. Read on its own so the
/// magic and version are checked before anything format-specific is
/// trusted; `format.rs` asserts each header begins with these fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Prefix {
    magic: [u8; 8],
    format_version: u32,
    header_crc: u32,
}

/// Where `Prefix::header_crc` sits in every header.
const HEADER_CRC_AT: std::ops::Range<usize> =
    std::mem::offset_of!(Prefix, header_crc)..size_of::<Prefix>();

/// A header whose tables do not fit the file or each other, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadTables(pub String);

impl From<String> for BadTables {
    fn from(reason: String) -> BadTables {
        BadTables(reason)
    }
}

impl From<&str> for BadTables {
    fn from(reason: &str) -> BadTables {
        BadTables(reason.to_owned())
    }
}

/// One format's header.
pub(super) trait Header: Pod {
    const MAGIC: [u8; 8];
    /// The layout this build writes.
    const VERSION: u32;
    /// The oldest layout this build still reads.
    const OLDEST_VERSION: u32;

    /// The header of a store that has never been compacted: this build's
    /// magic and versions, no tables.
    fn empty() -> Self;
    fn file_len(&self) -> u64;
    fn body_crc(&self) -> u32;
    /// The journal generation the file already contains.
    fn journal_generation(&self) -> u64;
    /// Refuses counts made by another tokenizer or digest version: they would
    /// be read without error and silently mean nothing.
    fn check_producer(&self, path: &Path) -> Result<(), StoreError>;
    /// Checks table sizes and offsets against the file's length (already
    /// known to match the header's `file_len`), so that lookups can slice
    /// the mapping without further checks.
    fn check_tables(&self, file_len: u64) -> Result<(), BadTables>;
}

/// CRC-32 of a header with its `header_crc` zeroed: what is stored there.
fn header_crc<H: Header>(header: &H) -> u32 {
    let mut copy = *header;
    if let Some(field) = bytemuck::bytes_of_mut(&mut copy).get_mut(HEADER_CRC_AT) {
        field.fill(0);
    }
    crc32fast::hash(bytemuck::bytes_of(&copy))
}

fn prefix_of<H: Header>(header: &H) -> Prefix {
    const { assert!(size_of::<H>() >= size_of::<Prefix>()) };
    bytemuck::pod_read_unaligned(&bytemuck::bytes_of(header)[..size_of::<Prefix>()])
}

/// A table file, mapped and checked; or, before the first compaction, no
/// file and [`Header::empty`].
#[derive(Debug)]
pub(super) struct Mapped<H> {
    map: Option<Mmap>,
    header: H,
}

impl<H: Header> Mapped<H> {
    pub fn empty() -> Mapped<H> {
        Mapped {
            map: None,
            header: H::empty(),
        }
    }

    /// Maps `path` and checks its header and table bounds. Cost does not
    /// depend on the file's size: the tables are not read until looked up.
    /// A missing file is the empty model.
    pub fn open(path: &Path) -> Result<Mapped<H>, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mapped::empty()),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        // SAFETY: the model files are never modified in place: writers build
        // a new file and rename it over this one, so the mapped pages stay
        // valid and unchanged for as long as this mapping lives. A process
        // that truncated the file by hand would break that; chaff never does.
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io(path))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let header_bytes = map
            .get(..size_of::<H>())
            .ok_or_else(|| corrupt(format!("{} bytes is shorter than a header", map.len())))?;
        let header: H = bytemuck::pod_read_unaligned(header_bytes);
        let prefix = prefix_of(&header);
        if prefix.magic != H::MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        if !(H::OLDEST_VERSION..=H::VERSION).contains(&prefix.format_version) {
            return Err(StoreError::Incompatible {
                path: path.to_owned(),
                found: prefix.format_version,
                oldest: H::OLDEST_VERSION,
                newest: H::VERSION,
            });
        }
        if header_crc(&header) != prefix.header_crc {
            return Err(corrupt("header checksum mismatch".into()));
        }
        header.check_producer(path)?;
        let file_len = map.len() as u64;
        if header.file_len() != file_len {
            return Err(corrupt(format!(
                "header says {} bytes, file has {file_len}",
                header.file_len()
            )));
        }
        header.check_tables(file_len).map_err(|e| corrupt(e.0))?;
        Ok(Mapped {
            map: Some(map),
            header,
        })
    }

    pub fn header(&self) -> &H {
        &self.header
    }

    /// `count` entries at `offset`; empty for the empty model.
    pub fn table<T: Pod>(&self, offset: u64, count: u64) -> &[T] {
        let Some(map) = &self.map else { return &[] };
        // Bounds and alignment were checked at open; this cannot fail, and if
        // it somehow did, an empty table is a safe answer.
        let start = offset as usize;
        (count as usize)
            .checked_mul(size_of::<T>())
            .and_then(|len| start.checked_add(len))
            .and_then(|end| map.get(start..end))
            .and_then(|bytes| bytemuck::try_cast_slice(bytes).ok())
            .unwrap_or(&[])
    }

    /// Recomputes the body checksum: reads the whole file, so only on demand.
    pub fn verify_body(&self) -> bool {
        match &self.map {
            None => true,
            Some(map) => map
                .get(size_of::<H>()..)
                .is_some_and(|body| crc32fast::hash(body) == self.header.body_crc()),
        }
    }

    /// Bytes of the mapped file.
    pub fn file_len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }
}

/// Where a table of `count` entries of `T` at `offset` ends; `None` if the
/// offset is misaligned for in-place reading or the end overflows.
pub(super) fn table_end<T>(offset: u64, count: u64) -> Option<u64> {
    offset.is_multiple_of(8).then_some(())?;
    offset.checked_add(count.checked_mul(size_of::<T>() as u64)?)
}

/// Where [`write`] put the tables, for the header to record.
pub(super) struct Layout<const N: usize> {
    /// Offset of each table, in the order given.
    pub offsets: [u64; N],
    pub file_len: u64,
    /// CRC-32 of everything after the header.
    pub body_crc: u32,
}

/// Writes a complete table file: the header `header` makes from the layout,
/// then `tables` end to end. The file replaces `path` atomically (temp +
/// fsync + rename + directory fsync), so a mapping of the old one stays
/// valid and a crash leaves one or the other.
pub(super) fn write<H: Header, const N: usize>(
    path: &Path,
    tables: [&[u8]; N],
    header: impl FnOnce(&Layout<N>) -> H,
) -> Result<(), StoreError> {
    let mut offsets = [0; N];
    let mut end = size_of::<H>() as u64;
    let mut body_crc = crc32fast::Hasher::new();
    for (offset, table) in offsets.iter_mut().zip(tables) {
        *offset = end;
        end += table.len() as u64;
        body_crc.update(table);
    }
    let mut header = header(&Layout {
        offsets,
        file_len: end,
        body_crc: body_crc.finalize(),
    });
    let crc = header_crc(&header);
    if let Some(field) = bytemuck::bytes_of_mut(&mut header).get_mut(HEADER_CRC_AT) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    let mut parts = Vec::with_capacity(N + 1);
    parts.push(bytemuck::bytes_of(&header));
    parts.extend(tables);
    atomic_file::replace(path, &parts).map_err(StoreError::io(path))
}
