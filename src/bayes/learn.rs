//! Learning one message: idempotent per message digest.

use crate::classifier::ModelFeatures;
use crate::extract::Features;
use crate::store::{BayesStore, Change, Class, StoreError};

/// What learning one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// New message, counted in its class.
    Learned,
    /// Already learned as this class: nothing changed.
    AlreadyKnown,
    /// Learned before as the other class: its counts moved over.
    Relearned,
}

/// Learns a message with digest `digest` and statistical `features` as `class`.
/// As `sa-learn` and rspamd do, the same message twice counts once, and the
/// other class moves its counts. Durable only after `store.commit()`.
pub fn learn(
    store: &mut BayesStore,
    digest: u128,
    class: Class,
    features: &Features,
    model_features: ModelFeatures,
) -> Result<LearnOutcome, StoreError> {
    let previous = store.learned_class(digest);
    if previous == Some(class) {
        return Ok(LearnOutcome::AlreadyKnown);
    }
    store.record(Change {
        digest,
        from: previous,
        to: class,
        tokens: features.tokens[..].into(),
        grams: features.grams[..].into(),
        features: model_features,
    })?;
    Ok(if previous.is_some() {
        LearnOutcome::Relearned
    } else {
        LearnOutcome::Learned
    })
}
