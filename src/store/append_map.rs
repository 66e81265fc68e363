//! An append-only file written through a shared writable mapping: the
//! policy state's journal (`policy/state.rs`).
//!
//! Why a mapping and not `write`: every scan that a policy module counts
//! appends a record to it, and on ext4 a `write` of a few dozen bytes costs
//! ~15 µs of kernel time (the inode's size and times change on every
//! call), a third of what issue #20 allows the whole policy per message. A
//! copy into a shared mapping lands in the same page cache a `write` would,
//! so it survives a `kill -9` just as well, and it costs a `memcpy`; the
//! kernel is entered only when a page is first dirtied after a writeback.
//!
//! The file is grown ahead of the records in `GROWTH` steps by writing
//! zeros, never by a sparse `set_len`: the blocks are then allocated (or,
//! with delayed allocation, reserved) when the zeros are written, so a full
//! disk is an error from `append`, not a `SIGBUS` in a later store to an
//! unbacked page. A zero word ends the records (`entry::decode_all` stops at
//! it), so the tail needs no marker. The fsync thread syncs the file, which
//! on Linux writes the mapping's dirty pages too (`msync` is the same call).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use memmap2::MmapMut;

/// How far ahead of its records the file is grown at a time.
const GROWTH: usize = 1 << 20;

pub struct AppendMap {
    file: File,
    map: MmapMut,
    /// Where the next record goes: the end of the intact records.
    end: usize,
}

impl AppendMap {
    /// Maps `file` (whose writer lock the caller holds), whose intact
    /// records end at `end`: whatever follows them
    /// (a torn record from a crash in mid-copy, never acknowledged) is
    /// zeroed, so a shorter record written over it cannot be read past.
    pub fn open(file: File, end: usize) -> io::Result<AppendMap> {
        file.set_len(end as u64)?;
        let map = reserve_and_map(&file, end, end + GROWTH)?;
        Ok(AppendMap { file, map, end })
    }

    /// Appends `records`; once this returns, they are in the page cache and
    /// survive the process.
    pub fn append(&mut self, records: &[u8]) -> io::Result<()> {
        let needed = self.end + records.len();
        if needed > self.map.len() {
            let size = needed.div_ceil(GROWTH) * GROWTH + GROWTH;
            self.map = reserve_and_map(&self.file, self.map.len(), size)?;
        }
        self.map[self.end..needed].copy_from_slice(records);
        self.end = needed;
        Ok(())
    }

    /// Bytes of records.
    pub fn bytes(&self) -> usize {
        self.end
    }

    /// Empties the journal (its records are in a snapshot now), durably.
    pub fn clear(&mut self) -> io::Result<()> {
        // The old mapping goes before the file shrinks under it.
        self.map = MmapMut::map_anon(GROWTH)?;
        self.file.set_len(0)?;
        self.map = reserve_and_map(&self.file, 0, GROWTH)?;
        self.end = 0;
        self.file.sync_all()
    }

    /// A handle for the fsync thread.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

/// Writes zeros from `from` to `size` and maps the whole file.
fn reserve_and_map(file: &File, from: usize, size: usize) -> io::Result<MmapMut> {
    let zeros = vec![0u8; 64 << 10];
    let mut at = from;
    while at < size {
        let n = zeros.len().min(size - at);
        file.write_all_at(&zeros[..n], at as u64)?;
        at += n;
    }
    // SAFETY: the caller holds the file's writer lock, so no other process
    // writes or truncates it, and this type never shrinks it while a
    // mapping of it lives (`clear` replaces the mapping first).
    unsafe { MmapMut::map_mut(file) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn file(path: &std::path::Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    #[test]
    fn records_reach_the_file_without_a_flush_and_growth_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = AppendMap::open(file(&path), 0).unwrap();
        let record = [7u8; 1000];
        for _ in 0..3000 {
            journal.append(&record).unwrap();
        }
        assert_eq!(journal.bytes(), 3_000_000);
        // Read through another handle while the mapping is live: what a
        // restart after `kill -9` reads.
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() >= 3_000_000);
        assert!(bytes[..3_000_000].iter().all(|&b| b == 7));
        assert!(bytes[3_000_000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn reopening_zeroes_what_follows_the_intact_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, [1u8, 2, 3, 4, 9, 9, 9, 9]).unwrap();
        let mut journal = AppendMap::open(file(&path), 4).unwrap();
        journal.append(&[5]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], &[1, 2, 3, 4, 5, 0, 0, 0]);
        journal.clear().unwrap();
        assert_eq!(journal.bytes(), 0);
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
    }
}
