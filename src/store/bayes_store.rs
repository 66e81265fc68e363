//! The Bayes token store: mapped model + journal + overlay behind one type.

use std::path::Path;

use bytemuck::Zeroable;

use super::format::{
    Class, DigestEntry, FORMAT_VERSION, GramEntry, JOURNAL_MAGIC, MAX_LOAD, ModelHeader,
    TokenEntry, home_slot,
};
use super::journal;
use super::journaled::{Files, Journal};
use super::mapped::{self, Header};
use super::model_file::{ModelFile, prefetch};
use super::overlay::{Overlay, add_delta};
use super::{JOURNAL_FILE, LOCK_FILE, MODEL_FILE, StoreError};
use crate::extract::grams::{GRAM_BITS, GRAM_BUCKETS};

const FILES: Files = Files {
    model: MODEL_FILE,
    journal: JOURNAL_FILE,
    lock: LOCK_FILE,
    journal_magic: JOURNAL_MAGIC,
    journal_version: FORMAT_VERSION,
};

/// One message's move into a class (and, for a relearn, out of another).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub digest: u128,
    pub from: Option<Class>,
    pub to: Class,
    /// The message's distinct tokens.
    pub tokens: &'a [u64],
    /// The message's distinct byte-gram buckets.
    pub grams: &'a [u32],
}

/// Figures for `chaff model stat`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub format_version: u32,
    pub tokenizer_version: u32,
    pub spam_learns: u64,
    pub ham_learns: u64,
    pub model_tokens: u64,
    pub model_slots: u64,
    pub model_bytes: u64,
    /// Buckets of the byte-gram table (0 before the first compaction).
    pub gram_buckets: u64,
    /// Buckets with any count.
    pub gram_buckets_used: u64,
    pub learned_messages: u64,
    pub journal_bytes: u64,
    pub journal_generation: u64,
    pub overlay_tokens: u64,
}

/// Token counts and learned-message digests of one data directory.
pub struct BayesStore {
    model: ModelFile,
    overlay: Overlay,
    journal: Journal,
}

impl BayesStore {
    /// Opens for scanning: no lock, the journal replayed read-only. A missing
    /// directory is an empty store.
    pub fn open_read_only(dir: &Path) -> Result<BayesStore, StoreError> {
        BayesStore::open(dir, false)
    }

    /// Opens for learning: takes the writer lock (failing with the holder's
    /// name), replays the journal and cuts any torn tail off it.
    pub fn open_writer(dir: &Path) -> Result<BayesStore, StoreError> {
        BayesStore::open(dir, true)
    }

    fn open(dir: &Path, writable: bool) -> Result<BayesStore, StoreError> {
        let (model, journal, records) =
            Journal::open(dir, &FILES, writable, journal::decode_payload)?;
        let mut overlay = Overlay::default();
        for record in records {
            overlay.apply(
                record.digest,
                record.from,
                record.to,
                &record.tokens,
                &record.grams,
            );
        }
        Ok(BayesStore {
            model,
            overlay,
            journal,
        })
    }

    pub fn is_writable(&self) -> bool {
        self.journal.is_writable()
    }

    /// Learned messages per class: (spam, ham).
    pub fn learns(&self) -> (u64, u64) {
        let header = self.model.header();
        (
            (header.spam_learns as i64 + self.overlay.spam_learns).max(0) as u64,
            (header.ham_learns as i64 + self.overlay.ham_learns).max(0) as u64,
        )
    }

    /// (spam, ham) counts of one token.
    pub fn token_counts(&self, hash: u64) -> (u32, u32) {
        let (spam, ham) = self.model.token(hash).unwrap_or((0, 0));
        match self.overlay.tokens.get(&hash) {
            Some(&(spam_delta, ham_delta)) => {
                (add_delta(spam, spam_delta), add_delta(ham, ham_delta))
            }
            None => (spam, ham),
        }
    }

    /// (spam, ham) counts of many tokens, in order, appended to `out`.
    pub fn token_counts_into(&self, hashes: &[u64], out: &mut Vec<(u32, u32)>) {
        let start = out.len();
        self.model.tokens_into(hashes, out);
        if self.overlay.tokens.is_empty() {
            return;
        }
        for (counts, hash) in out[start..].iter_mut().zip(hashes) {
            if let Some(&(spam_delta, ham_delta)) = self.overlay.tokens.get(hash) {
                *counts = (
                    add_delta(counts.0, spam_delta),
                    add_delta(counts.1, ham_delta),
                );
            }
        }
    }

    /// (spam, ham) counts of many gram buckets, in order, appended to `out`.
    pub fn gram_counts_into(&self, buckets: &[u32], out: &mut Vec<(u32, u32)>) {
        let start = out.len();
        self.model.grams_into(buckets, out);
        if self.overlay.grams.is_empty() {
            return;
        }
        // Random reads into 64 MiB: issued in prefetched groups, as the
        // model's are.
        const GROUP: usize = 16;
        for (counts, buckets) in out[start..].chunks_mut(GROUP).zip(buckets.chunks(GROUP)) {
            for &bucket in buckets {
                if let Some(slot) = self.overlay.grams.slot(bucket) {
                    prefetch(slot);
                }
            }
            for (counts, &bucket) in counts.iter_mut().zip(buckets) {
                if let Some((spam_delta, ham_delta)) = self.overlay.grams.get(bucket) {
                    *counts = (
                        add_delta(counts.0, i64::from(spam_delta)),
                        add_delta(counts.1, i64::from(ham_delta)),
                    );
                }
            }
        }
    }

    /// The class a message was learned as, if it was.
    pub fn learned_class(&self, digest: u128) -> Option<Class> {
        self.overlay
            .digests
            .get(&digest)
            .copied()
            .or_else(|| self.model.digest_class(digest))
    }

    /// Records a change in the journal buffer and applies it to the overlay.
    /// Not durable until [`BayesStore::commit`].
    pub fn record(&mut self, change: Change<'_>) -> Result<(), StoreError> {
        self.journal.writer()?.append(
            change.digest,
            change.from,
            change.to,
            change.tokens,
            change.grams,
        );
        self.overlay.apply(
            change.digest,
            change.from,
            change.to,
            change.tokens,
            change.grams,
        );
        Ok(())
    }

    /// Makes every recorded change durable (one fsync for the batch).
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.journal.commit()
    }

    /// Whether the journal holds learns not yet folded into the model.
    pub fn has_uncompacted(&self) -> bool {
        !self.overlay.digests.is_empty()
    }

    /// Bytes in the journal not yet folded into the model.
    pub fn journal_bytes(&self) -> u64 {
        self.journal.bytes()
    }

    /// Folds the journal into a new model file and starts the next journal
    /// generation. Commits first, so nothing recorded is lost.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        let next_generation = self.model.header().journal_generation + 1;
        let (tokens, token_count) = self.merged_token_table();
        let digests = self.merged_digests();
        let grams = self.merged_grams();
        let (spam_learns, ham_learns) = self.learns();
        mapped::write(
            &self.journal.model_path(),
            [
                bytemuck::cast_slice(&tokens),
                bytemuck::cast_slice(&digests),
                bytemuck::cast_slice(&grams),
            ],
            |layout| {
                let [tokens_offset, digests_offset, grams_offset] = layout.offsets;
                ModelHeader {
                    spam_learns,
                    ham_learns,
                    token_slots: tokens.len() as u64,
                    token_count,
                    digest_count: digests.len() as u64,
                    journal_generation: next_generation,
                    tokens_offset,
                    digests_offset,
                    gram_bits: if grams.is_empty() { 0 } else { GRAM_BITS },
                    grams_offset,
                    file_len: layout.file_len,
                    body_crc: layout.body_crc,
                    ..ModelHeader::empty()
                }
            },
        )?;
        self.model = self.journal.start_generation(next_generation)?;
        self.overlay = Overlay::default();
        Ok(())
    }

    fn merged_token_table(&self) -> (Vec<TokenEntry>, u64) {
        let mut entries: Vec<TokenEntry> = Vec::with_capacity(
            self.model.header().token_count as usize + self.overlay.tokens.len(),
        );
        for entry in self.model.tokens() {
            if entry.hash == 0 {
                continue;
            }
            let (spam, ham) = self.token_counts(entry.hash);
            entries.push(TokenEntry {
                hash: entry.hash,
                spam,
                ham,
            });
        }
        for (&hash, &(spam_delta, ham_delta)) in &self.overlay.tokens {
            if self.model.token(hash).is_none() {
                entries.push(TokenEntry {
                    hash,
                    spam: add_delta(0, spam_delta),
                    ham: add_delta(0, ham_delta),
                });
            }
        }
        entries.retain(|e| e.spam > 0 || e.ham > 0);
        let count = entries.len() as u64;
        let slots = if entries.is_empty() {
            0
        } else {
            ((entries.len() as f64 / MAX_LOAD).ceil() as u64).next_power_of_two()
        };
        let mut table = vec![TokenEntry::zeroed(); slots as usize];
        for entry in entries {
            let mut slot = home_slot(entry.hash, slots);
            while table[slot].hash != 0 {
                slot = (slot + 1) & (slots as usize - 1);
            }
            table[slot] = entry;
        }
        (table, count)
    }

    /// The model's gram table plus the overlay's deltas; empty when neither
    /// has any, so a store without grams carries no table.
    fn merged_grams(&self) -> Vec<GramEntry> {
        let model = self.model.grams();
        if model.is_empty() && self.overlay.grams.is_empty() {
            return Vec::new();
        }
        let mut table = vec![GramEntry::zeroed(); GRAM_BUCKETS];
        if !model.is_empty() {
            table.copy_from_slice(model);
        }
        self.overlay
            .grams
            .for_each(|bucket, (spam_delta, ham_delta)| {
                if let Some(entry) = table.get_mut(bucket as usize) {
                    *entry = GramEntry::fitted(
                        i64::from(entry.spam) + i64::from(spam_delta),
                        i64::from(entry.ham) + i64::from(ham_delta),
                    );
                }
            });
        table
    }

    fn merged_digests(&self) -> Vec<DigestEntry> {
        let mut digests: Vec<DigestEntry> = self
            .model
            .digests()
            .iter()
            .filter(|d| !self.overlay.digests.contains_key(&d.digest()))
            .copied()
            .collect();
        digests.extend(
            self.overlay
                .digests
                .iter()
                .map(|(&digest, &class)| DigestEntry {
                    digest_hi: (digest >> 64) as u64,
                    digest_lo: digest as u64,
                    class: u32::from(class.as_u8()),
                    reserved: 0,
                }),
        );
        digests.sort_unstable_by_key(DigestEntry::digest);
        digests
    }

    /// Figures for `chaff model stat`.
    pub fn stats(&self) -> StoreStats {
        let header = self.model.header();
        let (spam_learns, ham_learns) = self.learns();
        StoreStats {
            format_version: header.format_version,
            tokenizer_version: header.tokenizer_version,
            spam_learns,
            ham_learns,
            model_tokens: header.token_count,
            model_slots: header.token_slots,
            model_bytes: self.model.file_len(),
            gram_buckets: self.model.grams().len() as u64,
            gram_buckets_used: self
                .model
                .grams()
                .iter()
                .filter(|g| g.spam > 0 || g.ham > 0)
                .count() as u64,
            learned_messages: header.digest_count
                + self
                    .overlay
                    .digests
                    .keys()
                    .filter(|d| self.model.digest_class(**d).is_none())
                    .count() as u64,
            journal_bytes: self.journal.bytes(),
            journal_generation: header.journal_generation,
            overlay_tokens: self.overlay.tokens.len() as u64,
        }
    }

    /// Re-reads the whole model file and checks its body checksum.
    pub fn verify(&self) -> bool {
        self.model.verify_body()
    }
}
