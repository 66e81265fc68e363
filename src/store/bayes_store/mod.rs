//! The Bayes token store: mapped model + journal + overlay behind one type.

mod compact;

use std::borrow::Cow;
use std::path::Path;

pub use compact::Compacted;

use crate::classifier::train::online_step;
use crate::classifier::{ModelFeatures, Weights};
use crate::store::format::{Class, JOURNAL_FORMAT_VERSION, JOURNAL_MAGIC, OLDEST_JOURNAL_VERSION};
use crate::store::journal::{self, JournalSync};
use crate::store::journaled::{Files, Journal};
use crate::store::model_file::{ModelFile, prefetch};
use crate::store::overlay::{Overlay, PendingSample, add_delta};
use crate::store::{JOURNAL_FILE, LOCK_FILE, MODEL_FILE, StoreError};

/// How far one learn moves its own message's log-odds before the next
/// training (times `y − p`): enough that relearning a missed message changes
/// the next scan of its copies, small beside what training gives.
pub const ONLINE_STEP: f64 = 2.0;

const FILES: Files = Files {
    model: MODEL_FILE,
    journal: JOURNAL_FILE,
    lock: LOCK_FILE,
    journal_magic: JOURNAL_MAGIC,
    journal_version: JOURNAL_FORMAT_VERSION,
    oldest_journal_version: OLDEST_JOURNAL_VERSION,
};

/// One message's move into a class (and, for a relearn, out of another).
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub digest: u128,
    pub from: Option<Class>,
    pub to: Class,
    /// The message's distinct tokens (borrowed from a learn, owned by a
    /// replayed record).
    pub tokens: Cow<'a, [u64]>,
    /// The message's distinct byte-gram buckets.
    pub grams: Cow<'a, [u32]>,
    /// The classifier's features of the message.
    /// (Owned: the overlay keeps them as the pending sample.)
    pub features: ModelFeatures,
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
    /// Samples the classifier keeps (in the model, and waiting in the journal).
    pub spam_samples: u64,
    pub ham_samples: u64,
    /// Bytes of the model's sample arena.
    pub sample_bytes: u64,
    /// Learns since the last training (each took an online step).
    pub untrained_learns: u64,
    /// The last training: unix time (0 = never), duration, epochs, loss.
    pub trained_at: u64,
    pub train_millis: f64,
    pub train_epochs: u32,
    pub train_loss: f64,
    /// Its calibration (`classifier::Calibration`).
    pub calibration_slope: f64,
    pub calibration_intercept: f64,
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
        model.check_classifier(&journal.model_path())?;
        let mut store = BayesStore {
            model,
            overlay: Overlay::default(),
            journal,
        };
        for record in records {
            store.apply(record.change, record.step);
        }
        Ok(store)
    }

    /// The classifier's online step for `change`, from the weights as they
    /// stand (the model's and the learns' before it).
    fn online_step(&self, change: &Change<'_>) -> f64 {
        let features = &change.features;
        let z = self.bias() + self.weight_sum(&features.text) + self.weight_sum(&features.rules);
        let count = features.text.len() + features.rules.len();
        online_step(z, change.to, count, ONLINE_STEP)
    }

    /// Applies one learn to the overlay: counts, and the classifier's online
    /// step and pending sample. The same for a fresh learn and a replay, so
    /// a reopened store scores as the one that learned: the step is the one
    /// the learn took, as its journal record keeps it (computed again for a
    /// record from before steps were kept, which gives the same value since
    /// the weights replay in the same order).
    fn apply(&mut self, change: Change<'_>, step: Option<f64>) {
        self.overlay.apply(
            change.digest,
            change.from,
            change.to,
            &change.tokens,
            &change.grams,
        );
        let delta = step.unwrap_or_else(|| self.online_step(&change));
        let features = change.features;
        let classifier = &mut self.overlay.classifier;
        classifier.add(&features.text, delta as f32);
        classifier.add(&features.rules, delta as f32);
        classifier.bias += delta;
        let sequence = self.model.classifier().map_or(0, |c| c.next_sequence) + classifier.learns;
        classifier.learns += 1;
        classifier.samples.insert(
            change.digest,
            PendingSample {
                class: change.to,
                sequence,
                text: features.text,
                rules: features.rules,
            },
        );
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
        let step = self.online_step(&change);
        self.journal.writer()?.append(&change, step);
        self.apply(change, Some(step));
        Ok(())
    }

    /// Makes every recorded change durable (one fsync for the batch).
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.journal.commit()
    }

    /// [`BayesStore::commit`] in two steps: the changes are written now,
    /// and durable once the returned [`JournalSync::sync`] has run, which
    /// needs no access to the store.
    pub fn write_for_sync(&mut self) -> Result<JournalSync, StoreError> {
        self.journal.write()
    }

    /// Whether the journal holds learns not yet folded into the model.
    pub fn has_uncompacted(&self) -> bool {
        !self.overlay.digests.is_empty()
    }

    /// Learns since the weights were last trained (each took only an
    /// online step), and the samples that training used.
    pub fn learns_since_training(&self) -> (u64, u64) {
        let trained = self
            .model
            .classifier()
            .map_or(0, |c| u64::from(c.spam_samples) + u64::from(c.ham_samples));
        (self.overlay.classifier.learns, trained)
    }

    /// Bytes in the journal not yet folded into the model.
    pub fn journal_bytes(&self) -> u64 {
        self.journal.bytes()
    }

    /// Figures for `chaff model stat`.
    pub fn stats(&self) -> StoreStats {
        let header = self.model.header();
        let (spam_learns, ham_learns) = self.learns();
        let section = self.model.classifier();
        let (mut kept_spam, mut kept_ham) = (0, 0);
        let pending = &self.overlay.classifier.samples;
        for sample in self.model.samples() {
            if !pending.contains_key(&sample.digest()) {
                match Class::from_u8(sample.class as u8) {
                    Some(Class::Spam) => kept_spam += 1,
                    Some(Class::Ham) => kept_ham += 1,
                    None => {}
                }
            }
        }
        for sample in pending.values() {
            match sample.class {
                Class::Spam => kept_spam += 1,
                Class::Ham => kept_ham += 1,
            }
        }
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
            spam_samples: kept_spam,
            ham_samples: kept_ham,
            sample_bytes: section.map_or(0, |c| c.arena_len),
            untrained_learns: self.overlay.classifier.learns,
            trained_at: section.map_or(0, |c| c.trained_at),
            train_millis: section.map_or(0.0, |c| c.train_micros as f64 / 1000.0),
            train_epochs: section.map_or(0, |c| c.epochs),
            train_loss: section.map_or(0.0, |c| c.train_loss),
            calibration_slope: self.calibration().slope,
            calibration_intercept: self.calibration().intercept,
        }
    }

    /// Re-reads the whole model file and checks its body checksum.
    pub fn verify(&self) -> bool {
        self.model.verify_body()
    }
}

impl Weights for BayesStore {
    fn bias(&self) -> f64 {
        self.model.classifier().map_or(0.0, |c| c.bias) + self.overlay.classifier.bias
    }

    fn calibration(&self) -> crate::classifier::Calibration {
        self.model
            .classifier()
            .map_or(crate::classifier::Calibration::IDENTITY, |c| {
                crate::classifier::Calibration::from_stored(
                    c.calibration_slope,
                    c.calibration_intercept,
                )
            })
    }

    fn weight(&self, index: u32) -> f32 {
        let model = self
            .model
            .weights()
            .get(index as usize)
            .copied()
            .unwrap_or(0.0);
        model + self.overlay.classifier.weight(index)
    }

    fn weights_into(&self, indices: &[u32], out: &mut Vec<f32>) {
        self.model
            .weights_into(indices, self.overlay.classifier.weights.as_slice(), out);
    }

    fn weight_sum(&self, indices: &[u32]) -> f64 {
        self.model
            .weight_sum(indices, self.overlay.classifier.weights.as_slice())
    }
}
