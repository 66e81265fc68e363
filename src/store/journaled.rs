//! What the Bayes and fuzzy stores share around their mapped model: the
//! writer lock, the journal of changes since the model was written, and the
//! switch to the next generation after compaction. Each store keeps its own
//! record format and overlay; this file only decides which records count.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::journal::{self, JournalSync, JournalWriter};
use super::lock::WriterLock;
use super::mapped::{Header, Mapped};

/// One store's files in a data directory, and its journal's framing.
pub(super) struct Files {
    pub model: &'static str,
    pub journal: &'static str,
    pub lock: &'static str,
    pub journal_magic: [u8; 8],
    /// The version this build writes, and the oldest it reads (a writer
    /// raises an older journal's header before appending).
    pub journal_version: u32,
    pub oldest_journal_version: u32,
}

struct Writer {
    journal: JournalWriter,
    _lock: WriterLock,
}

/// A store's journal: its length and, for the one writer, the open file and
/// the lock that makes it the one writer.
pub(super) struct Journal {
    dir: PathBuf,
    files: &'static Files,
    bytes: u64,
    writer: Option<Writer>,
}

impl Journal {
    /// Opens a store's model and journal: read-only (no lock; a torn tail is
    /// left for the writer to cut) or as the writer (the lock first, failing
    /// with the holder's name, then the torn tail cut off). Returns the
    /// journal's decoded records that the overlay must be built from.
    pub fn open<H: Header, R>(
        dir: &Path,
        files: &'static Files,
        writable: bool,
        mut decode: impl FnMut(&[u8]) -> Option<R>,
    ) -> Result<(Mapped<H>, Journal, Vec<R>), StoreError> {
        let lock = if writable {
            std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
            Some(WriterLock::acquire(&dir.join(files.lock))?)
        } else {
            None
        };
        let model = Mapped::<H>::open(&dir.join(files.model))?;
        let model_generation = model.header().journal_generation();
        let path = dir.join(files.journal);
        let mut records = Vec::new();
        let replayed = journal::replay_frames(
            &path,
            files.journal_magic,
            files.oldest_journal_version..=files.journal_version,
            |payload| decode(payload).map(|record| records.push(record)).is_some(),
        )?;
        if let Some(replayed) = &replayed {
            if replayed.generation > model_generation {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!(
                        "journal generation {} is newer than the model's {model_generation}",
                        replayed.generation
                    ),
                });
            }
            if replayed.generation < model_generation {
                // Left by a compaction that crashed before it could start
                // the next journal: already inside the model.
                records.clear();
            }
        }
        let mut journal = Journal {
            dir: dir.to_owned(),
            files,
            bytes: replayed.as_ref().map_or(0, |r| r.valid_len),
            writer: None,
        };
        if let Some(lock) = lock {
            let writer = match replayed {
                Some(replayed) if replayed.generation == model_generation => {
                    let mut writer = JournalWriter::open_at(&path, replayed.valid_len)?;
                    if replayed.version < files.journal_version {
                        writer.raise_version(files.journal_version)?;
                    }
                    writer
                }
                _ => journal.create(model_generation)?,
            };
            journal.bytes = writer.len();
            journal.writer = Some(Writer {
                journal: writer,
                _lock: lock,
            });
        }
        Ok((model, journal, records))
    }

    pub fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    /// Where changes are recorded; a read-only store has nowhere.
    pub fn writer(&mut self) -> Result<&mut JournalWriter, StoreError> {
        Ok(&mut self.writer.as_mut().ok_or(StoreError::ReadOnly)?.journal)
    }

    /// Makes every recorded change durable (one fsync for the batch).
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let writer = self.writer()?;
        writer.sync()?;
        let len = writer.len();
        self.bytes = len;
        Ok(())
    }

    /// Writes the recorded changes to the file and returns what makes them
    /// durable, to run once the store is let go of (see
    /// [`JournalWriter::write_pending`]).
    pub fn write(&mut self) -> Result<JournalSync, StoreError> {
        let writer = self.writer()?;
        let sync = writer.write_pending()?;
        self.bytes = writer.len();
        Ok(sync)
    }

    /// Bytes in the journal not yet folded into the model.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(self.files.model)
    }

    /// After compaction made the model at [`Journal::model_path`] durable
    /// with `generation`: replaces the journal, now stale, with an empty one
    /// of that generation and maps the new model. A crash before the journal
    /// is replaced is safe: the stale one is ignored on open.
    pub fn start_generation<H: Header>(
        &mut self,
        generation: u64,
    ) -> Result<Mapped<H>, StoreError> {
        let journal = self.create(generation)?;
        let model = Mapped::open(&self.model_path())?;
        self.bytes = journal.len();
        if let Some(writer) = self.writer.as_mut() {
            writer.journal = journal;
        }
        Ok(model)
    }

    fn create(&self, generation: u64) -> Result<JournalWriter, StoreError> {
        JournalWriter::create_with(
            &self.dir.join(self.files.journal),
            self.files.journal_magic,
            self.files.journal_version,
            generation,
        )
    }
}
