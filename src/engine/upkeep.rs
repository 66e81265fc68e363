//! Keeping the stores: committing learns (fsync apart from the engine, so
//! scans never wait on a disk flush), compaction, training to convergence
//! and switching to the trained model, and the stores' statistics and
//! checks.

use super::active::RuleTable;
use super::{Engine, MIN_LEARNS_TO_RETRAIN, unix_now};
use crate::classifier::train::{Samples, TrainParams, Trained};
use crate::store::{FuzzyStats, StoreError, StoreStats};

impl Engine {
    /// [`Engine::commit`] of the learns in two steps: writes them now and
    /// returns what makes them durable, which runs without the engine, so
    /// that the daemon's scans, which share it, never wait for a disk
    /// flush. A learn is acknowledged only after that sync.
    pub fn write_learns(&mut self) -> Result<crate::store::JournalSync, StoreError> {
        self.store.write_for_sync()
    }

    /// Makes all learns and fuzzy reports so far durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.store.is_writable() {
            self.store.commit()?;
        }
        if self.fuzzy.is_writable() {
            self.fuzzy.commit()?;
        }
        Ok(())
    }

    /// Folds each writable store's journal into its model if it has grown
    /// past the configured size.
    pub fn compact_if_due(&mut self) -> Result<bool, StoreError> {
        let bayes_due = self.store.journal_bytes() >= self.config.bayes.auto_compact_journal_bytes;
        self.compact_where(bayes_due)
    }

    /// Folds what a batch learn recorded into the model, whatever the
    /// journal's size, and compacts the fuzzy store if due. The end of a
    /// batch is when a scan-ready model is wanted (as `sa-learn` syncs at its
    /// end): a journal left behind costs every later scan an overlay lookup
    /// per token and gram. The daemon, learning a message at a time, uses
    /// [`Engine::compact_if_due`] instead.
    pub fn compact_after_batch(&mut self) -> Result<bool, StoreError> {
        let bayes_due = self.store.has_uncompacted();
        self.compact_where(bayes_due)
    }

    /// Compacts the Bayes store if `bayes_due`, the fuzzy store if its
    /// journal passed its size; says whether either was.
    fn compact_where(&mut self, bayes_due: bool) -> Result<bool, StoreError> {
        let mut compacted = false;
        if self.store.is_writable() && bayes_due {
            self.train()?;
            compacted = true;
        }
        if self.fuzzy.is_writable()
            && self.fuzzy.journal_bytes() >= self.config.fuzzy.auto_compact_journal_bytes
        {
            self.compact_fuzzy()?;
            compacted = true;
        }
        Ok(compacted)
    }

    /// Folds the journals of the writable stores into their models now.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        if self.store.is_writable() {
            self.train()?;
        }
        if self.fuzzy.is_writable() {
            self.compact_fuzzy()?;
        }
        Ok(())
    }

    /// Folds the journal into a new model trained to convergence over every
    /// kept sample (`chaff model train`, and every compaction).
    pub fn train(&mut self) -> Result<Trained, StoreError> {
        let (max_samples, trainer) = self.trainer();
        self.store.compact_with(max_samples, trainer)
    }

    /// The first half of [`Engine::train`], on `&self` so scans go on
    /// beside it (the daemon holds only a read lock): trains and writes the
    /// next model. The caller keeps learns out until
    /// [`Engine::switch_to_trained`], and must have committed.
    pub fn write_trained(&self) -> Result<crate::store::Compacted, StoreError> {
        let (max_samples, trainer) = self.trainer();
        self.store.write_compacted(max_samples, trainer)
    }

    /// The second half of [`Engine::train`]: maps the new model.
    pub fn switch_to_trained(
        &mut self,
        trained: crate::store::Compacted,
    ) -> Result<(), StoreError> {
        self.store.switch_to(trained)
    }

    /// Whether the daemon should fold the journal and train now: the
    /// journal has grown past its compaction size, or the learns since the
    /// last training are `classifier.retrain_fraction` of the samples it
    /// used (at least `MIN_LEARNS_TO_RETRAIN`). The second keeps a young
    /// model close to trained while training is cheap: between trainings a
    /// learn takes only an online step, and a model of 200 samples should
    /// not wait ~450 learns for the journal to fill. Trainings then come at
    /// geometrically spaced sizes, so their total cost stays a constant
    /// multiple of the last one.
    pub fn training_due(&self) -> bool {
        if !self.store.has_uncompacted() {
            return false;
        }
        let (since, trained) = self.store.learns_since_training();
        let fraction = self.config.classifier.retrain_fraction;
        self.store.journal_bytes() >= self.config.bayes.auto_compact_journal_bytes
            || (fraction > 0.0
                && since >= MIN_LEARNS_TO_RETRAIN
                && since as f64 >= fraction * trained as f64)
    }

    /// What training needs from the configuration in force.
    fn trainer(&self) -> (usize, impl FnOnce(&dyn Samples) -> Trained + use<>) {
        let rules = RuleTable::new(&self.active());
        let c = &self.config.classifier;
        let params = TrainParams {
            l2: c.l2,
            rule_l2: c.rule_l2,
            max_epochs: c.max_epochs,
            tolerance: c.tolerance,
            ham_error_cost: c.ham_error_cost,
        };
        (c.max_samples, move |samples: &dyn Samples| {
            crate::classifier::train::train(samples, &rules, &params)
        })
    }

    fn compact_fuzzy(&mut self) -> Result<(), StoreError> {
        self.fuzzy
            .compact(unix_now(), self.config.fuzzy.expire_secs())
    }

    pub fn fuzzy_stats(&self) -> FuzzyStats {
        self.fuzzy.stats()
    }

    pub fn verify_fuzzy_store(&self) -> bool {
        self.fuzzy.verify()
    }

    /// With the network checks on: whether the resolver was found down
    /// (nothing listens on its nameservers), and how many messages' lookups
    /// failed at once because of it.
    pub fn resolver_down(&self) -> Option<(bool, u64)> {
        match &self.lists.network {
            Some(Ok(network)) => Some(network.resolver_down()),
            _ => None,
        }
    }

    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// The weight the classifier fitted to rule `name` on this site's
    /// mail, if it did.
    pub fn fitted_weight(&self, name: &str) -> Option<f64> {
        self.active().fitted_weight(name, &self.store)
    }

    pub fn verify_store(&self) -> bool {
        self.store.verify()
    }
}
