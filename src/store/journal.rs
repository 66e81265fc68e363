//! The learn journal: framed, checksummed records, fsynced before a learn is
//! acknowledged.
//!
//! Record frame: `len: u32, crc32(payload): u32, payload`. Payload:
//! `from: u8 (0 = none), to: u8, flags: u8, reserved: u8, n_tokens: u32,
//! digest: u128, n_grams: u32, n_text: u32, n_rules: u32, text_bytes: u32,
//! tokens: [u64; n_tokens], grams: [u32; n_grams], text, rules: [u32;
//! n_rules]` (the last two are the classifier's features), all
//! little-endian. `text` is the `n_text` sorted indices as varint gaps
//! (`classifier::codec`) in `text_bytes` bytes, or when `text_bytes` is 0
//! (every record of a version 3 journal) `[u32; n_text]`. With flag bit 0
//! (version 4) an `f64` follows the rules: the classifier's online step the
//! learn took, so a replay adds it instead of looking up every weight
//! again. A frame that is short or fails its checksum ends the journal: it
//! is the tail of a write that never completed, so it was never
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::atomic_file;
use super::format::{Class, JOURNAL_HEADER_LEN, JournalHeader};
use super::{Change, StoreError};
use crate::classifier::ModelFeatures;

const FRAME_HEADER: usize = 8;
const PAYLOAD_FIXED: usize = 40;
/// A record's flag: its online step follows the rules.
const STEP_FLAG: u8 = 1;

/// One replayed record: the very [`Change`] a learn recorded, and the
/// online step it took. The same type goes into the journal
/// ([`JournalWriter::append`]) and into the overlay, whether from a learn
/// or from a replay.
pub struct JournalRecord {
    pub change: Change<'static>,
    /// The online step the learn took (`None` in records of version 3).
    pub step: Option<f64>,
}

/// What reading a journal found.
pub struct Replayed {
    pub generation: u64,
    /// The format version in its header.
    pub version: u32,
    /// Bytes of intact records including the header; a torn tail starts here.
    pub valid_len: u64,
}

/// Reads a framed journal with the given magic and version, calling `apply`
/// with each intact frame's payload until it returns `false` (a payload that
/// does not decode ends the journal like a torn frame). Shared by the Bayes
/// and fuzzy journals. Returns `None` when there is no journal.
pub fn replay_frames(
    path: &Path,
    magic: [u8; 8],
    versions: std::ops::RangeInclusive<u32>,
    mut apply: impl FnMut(&[u8]) -> bool,
) -> Result<Option<Replayed>, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes).map_err(StoreError::io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path)(e)),
    }
    let corrupt = |reason: &str| StoreError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < JOURNAL_HEADER_LEN {
        // A crash while creating the journal: nothing in it was acknowledged,
        // so it is as good as absent.
        return Ok(None);
    }
    let header: JournalHeader = bytemuck::pod_read_unaligned(&bytes[..JOURNAL_HEADER_LEN]);
    if header.magic != magic {
        return Err(corrupt("bad journal magic"));
    }
    if !versions.contains(&header.format_version) {
        return Err(corrupt("journal written by another format version"));
    }
    let mut pos = JOURNAL_HEADER_LEN;
    while let Some((payload, used)) = decode_frame(&bytes[pos..]) {
        if !apply(payload) {
            break;
        }
        pos += used;
    }
    Ok(Some(Replayed {
        generation: header.generation,
        version: header.format_version,
        valid_len: pos as u64,
    }))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one frame into its payload and length; `None` at the end or at
/// a torn or corrupt frame.
fn decode_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = read_u32(bytes, 0)? as usize;
    let crc = read_u32(bytes, 4)?;
    let payload = bytes.get(FRAME_HEADER..FRAME_HEADER.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((payload, FRAME_HEADER + len))
}

/// Decodes one Bayes record.
pub fn decode_payload(payload: &[u8]) -> Option<JournalRecord> {
    if payload.len() < PAYLOAD_FIXED {
        return None;
    }
    let from = match payload[0] {
        0 => None,
        value => Some(Class::from_u8(value)?),
    };
    let to = Class::from_u8(payload[1])?;
    let has_step = match payload[2] {
        0 => false,
        STEP_FLAG => true,
        _ => return None,
    };
    let n_tokens = read_u32(payload, 4)? as usize;
    let digest = u128::from(read_u64(payload, 8)?) | (u128::from(read_u64(payload, 16)?) << 64);
    let n_grams = read_u32(payload, 24)? as usize;
    let n_text = read_u32(payload, 28)? as usize;
    let n_rules = read_u32(payload, 32)? as usize;
    let text_bytes = read_u32(payload, 36)? as usize;
    let grams_at = PAYLOAD_FIXED.checked_add(n_tokens.checked_mul(8)?)?;
    let text_at = grams_at.checked_add(n_grams.checked_mul(4)?)?;
    let text_len = if text_bytes == 0 {
        n_text.checked_mul(4)?
    } else {
        text_bytes
    };
    let rules_at = text_at.checked_add(text_len)?;
    let step_at = rules_at.checked_add(n_rules.checked_mul(4)?)?;
    if payload.len() != step_at.checked_add(if has_step { 8 } else { 0 })? {
        return None;
    }
    let tokens: Vec<u64> = payload[PAYLOAD_FIXED..grams_at]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    let u32s = |bytes: &[u8]| -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let text = if text_bytes == 0 {
        u32s(&payload[text_at..rules_at])
    } else {
        let mut text = Vec::with_capacity(n_text.min(text_bytes));
        let used =
            crate::classifier::codec::decode(&payload[text_at..rules_at], n_text, &mut text)?;
        if used != text_bytes {
            return None;
        }
        text
    };
    Some(JournalRecord {
        change: Change {
            digest,
            from,
            to,
            tokens: tokens.into(),
            grams: u32s(&payload[grams_at..text_at]).into(),
            features: ModelFeatures {
                text,
                rules: u32s(&payload[rules_at..step_at]),
            },
        },
        step: if has_step {
            Some(f64::from_le_bytes(payload[step_at..].try_into().ok()?))
        } else {
            None
        },
    })
}

/// Records written to a journal, not yet known to be on disk
/// ([`JournalWriter::write_pending`]).
pub struct JournalSync {
    file: File,
    path: PathBuf,
}

impl JournalSync {
    /// Waits until what was written is on disk: after this returns, it
    /// survives any crash.
    pub fn sync(self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(StoreError::io(&self.path))
    }
}

/// Appends records; nothing is durable until [`JournalWriter::sync`].
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    len: u64,
}

impl JournalWriter {
    /// Opens the journal for appending after its last intact record,
    /// dropping a torn tail.
    pub fn open_at(path: &Path, valid_len: u64) -> Result<JournalWriter, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(StoreError::io(path))?;
        file.set_len(valid_len).map_err(StoreError::io(path))?;
        file.sync_all().map_err(StoreError::io(path))?;
        let mut writer = JournalWriter {
            path: path.to_owned(),
            file,
            pending: Vec::new(),
            len: valid_len,
        };
        use std::io::Seek;
        writer
            .file
            .seek(std::io::SeekFrom::Start(valid_len))
            .map_err(StoreError::io(path))?;
        Ok(writer)
    }

    /// Atomically replaces the journal with an empty one of `generation`,
    /// framed with `magic` and `version`.
    pub fn create_with(
        path: &Path,
        magic: [u8; 8],
        version: u32,
        generation: u64,
    ) -> Result<JournalWriter, StoreError> {
        let header = JournalHeader {
            magic,
            format_version: version,
            reserved: 0,
            generation,
        };
        atomic_file::replace(path, &[bytemuck::bytes_of(&header)]).map_err(StoreError::io(path))?;
        JournalWriter::open_at(path, JOURNAL_HEADER_LEN as u64)
    }

    /// Buffers one frame whose payload `write` appends.
    pub fn append_frame(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; FRAME_HEADER]);
        write(&mut self.pending);
        let payload_len = (self.pending.len() - start - FRAME_HEADER) as u32;
        let crc = crc32fast::hash(&self.pending[start + FRAME_HEADER..]);
        self.pending[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        self.pending[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Buffers one Bayes record of `change`, which took the online `step`.
    pub fn append(&mut self, change: &crate::store::Change<'_>, step: f64) {
        self.append_frame(|pending| {
            let c = change;
            pending.reserve(
                PAYLOAD_FIXED
                    + c.tokens.len() * 8
                    + (c.grams.len() + c.features.text.len() + c.features.rules.len()) * 4,
            );
            let start = pending.len();
            pending.extend_from_slice(&[
                c.from.map_or(0, Class::as_u8),
                c.to.as_u8(),
                STEP_FLAG,
                0,
            ]);
            pending.extend_from_slice(&(c.tokens.len() as u32).to_le_bytes());
            pending.extend_from_slice(&(c.digest as u64).to_le_bytes());
            pending.extend_from_slice(&((c.digest >> 64) as u64).to_le_bytes());
            for count in [
                c.grams.len(),
                c.features.text.len(),
                c.features.rules.len(),
                0, // text_bytes, set below
            ] {
                pending.extend_from_slice(&(count as u32).to_le_bytes());
            }
            for token in c.tokens.iter() {
                pending.extend_from_slice(&token.to_le_bytes());
            }
            for value in c.grams.iter() {
                pending.extend_from_slice(&value.to_le_bytes());
            }
            // The text as varint gaps when it is sorted and distinct, as a
            // learn's always is; `u32`s otherwise.
            let text = &c.features.text;
            if !text.is_empty() && text.windows(2).all(|pair| pair[0] < pair[1]) {
                let text_at = pending.len();
                crate::classifier::codec::encode(text, pending);
                let text_bytes = (pending.len() - text_at) as u32;
                pending[start + 36..start + 40].copy_from_slice(&text_bytes.to_le_bytes());
            } else {
                for value in text {
                    pending.extend_from_slice(&value.to_le_bytes());
                }
            }
            for value in &c.features.rules {
                pending.extend_from_slice(&value.to_le_bytes());
            }
            pending.extend_from_slice(&step.to_le_bytes());
        });
    }

    /// Raises the version in the journal's header to `version`, durably,
    /// before anything is appended under it: the records already there
    /// read the same under the newer version.
    pub fn raise_version(&mut self, version: u32) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let at = std::mem::offset_of!(JournalHeader, format_version) as u64;
        self.file
            .write_all_at(&version.to_le_bytes(), at)
            .map_err(StoreError::io(&self.path))?;
        self.file.sync_data().map_err(StoreError::io(&self.path))
    }

    /// Writes buffered records and fsyncs: after this returns, they survive
    /// any crash.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.write_pending()?.sync()
    }

    /// Writes buffered records to the file without waiting for the disk,
    /// and returns what makes them durable: [`JournalSync::sync`] can run
    /// after the caller has let go of the store (the daemon's scans do not
    /// wait for a learn's fsync). Nothing written is acknowledged before it.
    pub fn write_pending(&mut self) -> Result<JournalSync, StoreError> {
        self.file
            .write_all(&self.pending)
            .map_err(StoreError::io(&self.path))?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(JournalSync {
            file: self.file.try_clone().map_err(StoreError::io(&self.path))?,
            path: self.path.clone(),
        })
    }

    /// Bytes on disk plus bytes buffered.
    pub fn len(&self) -> u64 {
        self.len + self.pending.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ModelFeatures;
    use crate::store::Change;

    /// One record's payload as the writer frames it.
    fn payload_of(change: &Change<'_>, step: f64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut writer = JournalWriter::create_with(&path, *b"TESTJNL\0", 4, 1).unwrap();
        writer.append(change, step);
        writer.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (payload, _) = decode_frame(&bytes[JOURNAL_HEADER_LEN..]).unwrap();
        payload.to_vec()
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let change = Change {
            digest: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            from: Some(Class::Ham),
            to: Class::Spam,
            tokens: (&[7, 9][..]).into(),
            grams: (&[3][..]).into(),
            features: ModelFeatures {
                text: vec![1, 2, 300, 70_000, 4_194_303],
                rules: vec![5, 8],
            },
        };
        let record = decode_payload(&payload_of(&change, -0.125)).unwrap();
        let replayed = &record.change;
        assert_eq!(replayed.digest, change.digest);
        assert_eq!((replayed.from, replayed.to), (change.from, change.to));
        assert_eq!(
            (&*replayed.tokens, &*replayed.grams),
            (&[7, 9][..], &[3][..])
        );
        assert_eq!(replayed.features.text, change.features.text);
        assert_eq!(replayed.features.rules, change.features.rules);
        assert_eq!(record.step, Some(-0.125));
    }

    proptest::proptest! {
        #[test]
        fn any_payload_decodes_or_is_refused(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode_payload(&payload);
        }

        #[test]
        fn a_damaged_record_decodes_or_is_refused(at in 0usize..120, value: u8, keep in 0usize..120) {
            let change = Change {
                digest: 42,
                from: None,
                to: Class::Ham,
                tokens: (&[11][..]).into(),
                grams: (&[][..]).into(),
                features: ModelFeatures { text: vec![4, 900, 123_456], rules: vec![6] },
            };
            let mut payload = payload_of(&change, 0.5);
            if at < payload.len() {
                payload[at] = value;
            }
            payload.truncate(keep.max(1));
            let _ = decode_payload(&payload);
        }
    }
}
