//! Compaction of the Bayes store: the model and the journal's deltas merged
//! into a new file (tokens, grams, digests, the kept samples and the
//! trained weights), written beside the old one while scans go on, then
//! switched to under the writer's exclusive hold.

use bytemuck::Zeroable;

use super::BayesStore;
use crate::classifier::train::{Samples, Trained};
use crate::classifier::{FEATURE_VERSION, WEIGHT_BITS, codec};
use crate::extract::grams::{GRAM_BITS, GRAM_BUCKETS};
use crate::store::StoreError;
use crate::store::format::{
    Class, ClassifierHeader, DigestEntry, GramEntry, MAX_LOAD, ModelHeader, SampleEntry,
    TokenEntry, home_slot,
};
use crate::store::mapped::{self, Header};
use crate::store::overlay::{Overlay, PendingSample, add_delta};

impl BayesStore {
    /// Folds the journal into a new model file, trained by `train` over
    /// every kept sample, and starts the next journal generation. Commits
    /// first, so nothing recorded is lost.
    /// [`BayesStore::compact_with`] with the default sample cap and
    /// training settings and no rule offsets (tests, benches and tools
    /// that have no configuration at hand).
    pub fn compact(&mut self) -> Result<Trained, StoreError> {
        self.compact_with(
            crate::classifier::train::DEFAULT_MAX_SAMPLES,
            |samples: &dyn Samples| {
                crate::classifier::train::train(
                    samples,
                    &crate::classifier::train::NoRules,
                    &crate::classifier::train::TrainParams::default(),
                )
            },
        )
    }

    pub fn compact_with(
        &mut self,
        max_samples: usize,
        train: impl FnOnce(&dyn Samples) -> Trained,
    ) -> Result<Trained, StoreError> {
        self.commit()?;
        let compacted = self.write_compacted(max_samples, train)?;
        let trained = compacted.trained.clone();
        self.switch_to(compacted)?;
        Ok(trained)
    }

    /// The first half of [`BayesStore::compact`], which needs only `&self`
    /// so the daemon runs it beside scans: trains and writes the next
    /// model (atomically, beside the mapped one). Until
    /// [`BayesStore::switch_to`], the store keeps using the old model and
    /// journal; a crash in between leaves the new model with a stale
    /// journal, which opening ignores. The caller keeps other learns out
    /// until the switch, and must have committed.
    pub fn write_compacted(
        &self,
        max_samples: usize,
        train: impl FnOnce(&dyn Samples) -> Trained,
    ) -> Result<Compacted, StoreError> {
        let next_generation = self.model.header().journal_generation + 1;
        let (tokens, token_count) = self.merged_token_table();
        let digests = self.merged_digests();
        let grams = self.merged_grams();
        let (spam_learns, ham_learns) = self.learns();
        let kept = KeptSamples::merge(self, max_samples);
        let trained = train(&kept);
        let (samples, arena) = kept.encode();
        let next_sequence =
            self.model.classifier().map_or(0, |c| c.next_sequence) + self.overlay.classifier.learns;
        // The classifier header records its tables' offsets, which follow
        // from the lengths of everything before them.
        let header_len = std::mem::size_of::<ModelHeader>() as u64;
        let classifier_offset = header_len
            + std::mem::size_of_val(tokens.as_slice()) as u64
            + std::mem::size_of_val(digests.as_slice()) as u64
            + std::mem::size_of_val(grams.as_slice()) as u64;
        let weights_offset = classifier_offset + std::mem::size_of::<ClassifierHeader>() as u64;
        let samples_offset =
            weights_offset + std::mem::size_of_val(trained.weights.as_slice()) as u64;
        let arena_offset = samples_offset + std::mem::size_of_val(samples.as_slice()) as u64;
        let section = ClassifierHeader {
            weight_bits: WEIGHT_BITS,
            feature_version: FEATURE_VERSION,
            weights_offset,
            sample_count: samples.len() as u64,
            samples_offset,
            arena_offset,
            arena_len: arena.len() as u64,
            next_sequence,
            trained_at: trained.trained_at,
            train_micros: trained.micros,
            train_loss: trained.loss,
            bias: trained.bias,
            epochs: trained.epochs,
            spam_samples: trained.spam_samples as u32,
            ham_samples: trained.ham_samples as u32,
            calibration_slope: trained.calibration.slope,
            calibration_intercept: trained.calibration.intercept,
            ..ClassifierHeader::zeroed()
        };
        mapped::write(
            &self.journal.model_path(),
            [
                bytemuck::cast_slice(&tokens),
                bytemuck::cast_slice(&digests),
                bytemuck::cast_slice(&grams),
                bytemuck::bytes_of(&section),
                bytemuck::cast_slice(&trained.weights),
                bytemuck::cast_slice(&samples),
                arena.as_slice(),
            ],
            |layout| {
                let [tokens_offset, digests_offset, grams_offset, written_at, ..] = layout.offsets;
                debug_assert_eq!(written_at, classifier_offset);
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
                    classifier_offset,
                    file_len: layout.file_len,
                    body_crc: layout.body_crc,
                    ..ModelHeader::empty()
                }
            },
        )?;
        Ok(Compacted {
            generation: next_generation,
            trained,
        })
    }

    /// The second half of [`BayesStore::compact`]: starts the journal of
    /// the new model's generation and maps it.
    pub fn switch_to(&mut self, compacted: Compacted) -> Result<(), StoreError> {
        self.model = self.journal.start_generation(compacted.generation)?;
        self.model.check_classifier(&self.journal.model_path())?;
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
}
/// A new model written beside the one in use, ready to be switched to.
pub struct Compacted {
    generation: u64,
    pub trained: Trained,
}

/// One kept sample: in the mapped model, or waiting in the journal.
#[derive(Clone, Copy)]
enum Kept<'a> {
    Model(&'a SampleEntry),
    Pending(u128, &'a PendingSample),
}

impl Kept<'_> {
    fn class(&self) -> Option<Class> {
        match self {
            Kept::Model(entry) => Class::from_u8(entry.class as u8),
            Kept::Pending(_, sample) => Some(sample.class),
        }
    }

    fn sequence(&self) -> u64 {
        match self {
            Kept::Model(entry) => entry.sequence,
            Kept::Pending(_, sample) => sample.sequence,
        }
    }
}

/// The samples the next model keeps: the model's, minus those relearned
/// since, plus the journal's, in learn order; over `max_samples`, the
/// larger class loses its oldest first, so a burst of one class never
/// pushes the other out.
struct KeptSamples<'a> {
    store: &'a BayesStore,
    kept: Vec<Kept<'a>>,
}

impl<'a> KeptSamples<'a> {
    fn merge(store: &'a BayesStore, max_samples: usize) -> KeptSamples<'a> {
        let pending = &store.overlay.classifier.samples;
        let mut kept: Vec<Kept<'a>> = store
            .model
            .samples()
            .iter()
            .filter(|entry| !pending.contains_key(&entry.digest()))
            .map(Kept::Model)
            .collect();
        let mut fresh: Vec<Kept<'a>> = pending
            .iter()
            .map(|(&digest, sample)| Kept::Pending(digest, sample))
            .collect();
        fresh.sort_unstable_by_key(Kept::sequence);
        kept.extend(fresh);
        if kept.len() > max_samples {
            let count = |class| kept.iter().filter(|k| k.class() == Some(class)).count();
            let (mut spam, mut ham) = (count(Class::Spam), count(Class::Ham));
            let mut drop_spam = 0;
            let mut drop_ham = 0;
            while spam + ham > max_samples {
                if spam >= ham {
                    spam -= 1;
                    drop_spam += 1;
                } else {
                    ham -= 1;
                    drop_ham += 1;
                }
            }
            // `kept` is in learn order, so the first of a class are its oldest.
            kept.retain(|k| match k.class() {
                Some(Class::Spam) if drop_spam > 0 => {
                    drop_spam -= 1;
                    false
                }
                Some(Class::Ham) if drop_ham > 0 => {
                    drop_ham -= 1;
                    false
                }
                Some(_) => true,
                None => false,
            });
        }
        KeptSamples { store, kept }
    }

    /// The sample table and arena of the next model.
    fn encode(&self) -> (Vec<SampleEntry>, Vec<u8>) {
        let mut entries = Vec::with_capacity(self.kept.len());
        let mut arena = Vec::new();
        for kept in &self.kept {
            let start = arena.len();
            let entry = match kept {
                Kept::Model(entry) => {
                    arena.extend_from_slice(self.store.model.sample_bytes(entry));
                    **entry
                }
                Kept::Pending(digest, sample) => {
                    codec::encode(&sample.text, &mut arena);
                    codec::encode(&sample.rules, &mut arena);
                    SampleEntry {
                        digest_hi: (digest >> 64) as u64,
                        digest_lo: *digest as u64,
                        sequence: sample.sequence,
                        arena_offset: 0,
                        text_count: sample.text.len() as u32,
                        rule_count: sample.rules.len() as u32,
                        class: u32::from(sample.class.as_u8()),
                        arena_len: 0,
                    }
                }
            };
            entries.push(SampleEntry {
                arena_offset: start as u64,
                arena_len: (arena.len() - start) as u32,
                ..entry
            });
        }
        (entries, arena)
    }
}

impl Samples for KeptSamples<'_> {
    fn len(&self) -> usize {
        self.kept.len()
    }

    fn get(&self, i: usize, text: &mut Vec<u32>, rules: &mut Vec<u32>) -> Option<(u128, Class)> {
        text.clear();
        rules.clear();
        match *self.kept.get(i)? {
            Kept::Model(entry) => {
                // Text and rule indices are two sorted runs, one after the other.
                let bytes = self.store.model.sample_bytes(entry);
                let used = codec::decode(bytes, entry.text_count as usize, text)?;
                codec::decode(bytes.get(used..)?, entry.rule_count as usize, rules)?;
                Some((entry.digest(), Class::from_u8(entry.class as u8)?))
            }
            Kept::Pending(digest, sample) => {
                text.extend_from_slice(&sample.text);
                rules.extend_from_slice(&sample.rules);
                Some((digest, sample.class))
            }
        }
    }
}
