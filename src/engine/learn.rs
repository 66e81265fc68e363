//! Learning: preparing a message's learn (parse, features, digest) apart
//! from recording it, so `chaff learn` prepares on every core and the
//! daemon prepares under the read lock; recording it in the store; and
//! fuzzy reports (add, delete, delete by hash).

use std::sync::Arc;

use super::active::Active;
use super::{Engine, OpenError, Parts, counts_in_use, message_digest, unix_now};
use crate::bayes::{self, LearnOutcome};
use crate::classifier::ModelFeatures;
use crate::config::Config;
use crate::context::ScanContext;
use crate::extract::{Features, Tokenizer};
use crate::message::{self, Envelope, Message};
use crate::store::{Class, StoreError};

impl Engine {
    /// Learns one message as `class`. Durable only after [`Engine::commit`].
    pub fn learn(&mut self, raw: &[u8], class: Class) -> Result<Learned, LearnError> {
        let prepared = self.prepare_learn(raw)?;
        self.record_learn(prepared, class)
    }

    /// The part of a learn that reads the message (parsing, tokens, rules,
    /// features): on `&self`, so a batch of learns prepares on every core
    /// and only [`Engine::record_learn`] runs one at a time.
    pub fn prepare_learn(&self, raw: &[u8]) -> Result<PreparedLearn, LearnError> {
        let preparer = self.learn_preparer();
        match &self.policy {
            // The daemon: what the policy state knows of the message (a
            // reply to the site's own mail, a sender its users wrote to)
            // is learned with it, so the classifier fits those symbols'
            // worth as it fits the rules'.
            Some(state) => {
                let modules = self.config.policy_modules();
                preparer.prepare_with(raw, &|message| {
                    crate::policy::replies::learned(modules.replies, state, message, unix_now())
                })
            }
            None => preparer.prepare(raw),
        }
    }

    /// What preparing a learn needs, apart from the engine: a bulk learn
    /// prepares the next messages on other threads while the engine records
    /// and syncs the last ones.
    pub fn learn_preparer(&self) -> LearnPreparer {
        LearnPreparer {
            limits: self.config.limits.clone(),
            tokenizer: self.tokenizer.clone(),
            active: self.active(),
            counts: counts_in_use(&self.config),
        }
    }

    /// Records a prepared learn as `class` in the store (journal and
    /// overlay). Durable only after [`Engine::commit`].
    pub fn record_learn(
        &mut self,
        prepared: PreparedLearn,
        class: Class,
    ) -> Result<Learned, LearnError> {
        let outcome = bayes::learn(
            &mut self.store,
            prepared.digest,
            class,
            &prepared.features,
            prepared.model_features,
        )?;
        Ok(Learned {
            outcome,
            message_id: prepared.message_id,
        })
    }

    /// Reports a message to fuzzy list `flag` with `weight`: every digest of
    /// it is added (weights summed with earlier reports). Durable only after
    /// [`Engine::commit`].
    pub fn fuzzy_add(
        &mut self,
        raw: &[u8],
        flag: u32,
        weight: u32,
    ) -> Result<FuzzyLearned, LearnError> {
        let (message, features) = self.fuzzy_features(raw, flag)?;
        let now = unix_now();
        for part in &features.fuzzy.parts {
            self.fuzzy
                .add(part.exact, flag, weight, now, Some(&part.minhash))?;
        }
        for &digest in &features.fuzzy.attachments {
            self.fuzzy.add(digest, flag, weight, now, None)?;
        }
        Ok(FuzzyLearned {
            digests: features.fuzzy.parts.len() + features.fuzzy.attachments.len(),
            message_id: message.message_id,
        })
    }

    /// Removes a message's digests from fuzzy list `flag`. Durable only
    /// after [`Engine::commit`].
    pub fn fuzzy_del(&mut self, raw: &[u8], flag: u32) -> Result<FuzzyLearned, LearnError> {
        let (message, features) = self.fuzzy_features(raw, flag)?;
        let now = unix_now();
        let mut removed = 0;
        for digest in features
            .fuzzy
            .parts
            .iter()
            .map(|p| p.exact)
            .chain(features.fuzzy.attachments.iter().copied())
        {
            if self.fuzzy.delete(digest, flag, now)? {
                removed += 1;
            }
        }
        Ok(FuzzyLearned {
            digests: removed,
            message_id: message.message_id,
        })
    }

    /// Removes from list `flag` every stored digest a hash names: all 32
    /// hex digits, or a prefix of at least 8 (what a fuzzy symbol's options
    /// show, `1:3f9a2c1b:87%`). rspamd's `/fuzzydelhash`, for the admin who
    /// has the hash from a scan but not the message.
    pub fn fuzzy_del_hashes(
        &mut self,
        hashes: &[&str],
        flag: u32,
    ) -> Result<FuzzyLearned, LearnError> {
        if self.config.fuzzy.flag(flag).is_none() {
            return Err(LearnError::UnknownFlag(flag));
        }
        let ranges = hashes
            .iter()
            .map(|hash| {
                digest_range(hash.trim()).ok_or_else(|| LearnError::BadHash((*hash).to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = unix_now();
        let mut removed = 0;
        for (low, high) in ranges {
            for digest in self.fuzzy.digests_between(low, high, flag) {
                if self.fuzzy.delete(digest, flag, now)? {
                    removed += 1;
                }
            }
        }
        Ok(FuzzyLearned {
            digests: removed,
            message_id: None,
        })
    }

    fn fuzzy_features(&self, raw: &[u8], flag: u32) -> Result<(Message, Features), LearnError> {
        if self.config.fuzzy.flag(flag).is_none() {
            return Err(LearnError::UnknownFlag(flag));
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(LearnError::Empty);
        }
        let message = self.parse(raw);
        if message.headers.is_empty() {
            return Err(LearnError::NotAMessage);
        }
        let features = self.features(raw, &message, true);
        if features.fuzzy.is_empty() {
            return Err(LearnError::NothingToHash);
        }
        Ok((message, features))
    }
}
/// Why learning one message failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("empty message")]
    Empty,
    #[error("no header fields: not a mail message")]
    NotAMessage,
    #[error("no part long enough to hash (fuzzy.min_words, fuzzy.min_bytes)")]
    NothingToHash,
    #[error("fuzzy flag {0} is not configured ([fuzzy.flags.{0}])")]
    UnknownFlag(u32),
    #[error(
        "hash `{0}` is not 8 to 32 hex digits (a digest, or the prefix a fuzzy symbol's options show)"
    )]
    BadHash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a fuzzy report or removal did.
#[derive(Debug, Clone)]
pub struct FuzzyLearned {
    /// Digests written (add) or found and removed (del).
    pub digests: usize,
    pub message_id: Option<String>,
}

/// What learning one message did, and which message it was.
#[derive(Debug, Clone)]
pub struct Learned {
    pub outcome: LearnOutcome,
    pub message_id: Option<String>,
}

/// A message read for learning, not yet recorded ([`Engine::prepare_learn`]).
pub struct PreparedLearn {
    digest: u128,
    message_id: Option<String>,
    features: Features,
    model_features: ModelFeatures,
}

/// Prepares learns ([`Engine::learn_preparer`]): the limits, tokenizer and
/// rules in force when it was made.
pub struct LearnPreparer {
    limits: message::Limits,
    tokenizer: Tokenizer,
    pub(super) active: Arc<Active>,
    /// Whether the count-based Bayes' tokens are learned ([`counts_in_use`]).
    counts: bool,
}

impl LearnPreparer {
    /// What preparing learns under `config` needs, with no store open: a
    /// bulk learn prepares its first messages while the store replays its
    /// journal ([`Engine::open_for_learning_with`]).
    pub fn new(config: &Config) -> Result<LearnPreparer, OpenError> {
        Ok(LearnPreparer {
            limits: config.limits.clone(),
            tokenizer: Parts::tokenizer_of(config),
            active: Arc::new(Active::load(config)?),
            counts: counts_in_use(config),
        })
    }

    /// Parses a message and computes what its learn records.
    pub fn prepare(&self, raw: &[u8]) -> Result<PreparedLearn, LearnError> {
        self.prepare_with(raw, &|_| Vec::new())
    }

    /// [`LearnPreparer::prepare`], with the symbols `extra` finds in the
    /// parsed message learned beside the rules'.
    pub fn prepare_with(
        &self,
        raw: &[u8],
        extra: &dyn Fn(&Message) -> Vec<&'static str>,
    ) -> Result<PreparedLearn, LearnError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(LearnError::Empty);
        }
        let message = message::parse(raw, &self.limits);
        if message.headers.is_empty() {
            return Err(LearnError::NotAMessage);
        }
        // The rules see the message without an envelope: a learned sample
        // must not depend on how it arrived.
        let context = ScanContext::new(raw, &Envelope::default(), message, Features::default());
        let mut rules = self.active.rule_features(&context);
        let (message, _) = context.into_parts();
        rules.extend(extra(&message).into_iter().map(str::to_owned));
        let rule_names = rules.iter().map(String::as_str);
        // The counts are learned only when they score; otherwise the
        // tokens go straight to the classifier's indices.
        let (features, model_features) = if self.counts {
            let features = Features::statistical(raw, &message, &self.tokenizer);
            let model_features = ModelFeatures::build(&features.tokens, raw, rule_names);
            (features, model_features)
        } else {
            let model_features =
                ModelFeatures::of_message(&message, raw, &self.tokenizer, rule_names);
            (Features::default(), model_features)
        };
        Ok(PreparedLearn {
            digest: message_digest(raw),
            message_id: message.message_id,
            features,
            model_features,
        })
    }
}
/// The digests a hex hash or hash prefix names: `3f9a2c1b` is every digest
/// from `3f9a2c1b000…` to `3f9a2c1bfff…`. Fewer than 8 digits would name
/// too many reports to delete by accident.
pub(super) fn digest_range(hex: &str) -> Option<(u128, u128)> {
    if !(8..=32).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u128::from_str_radix(hex, 16).ok()?;
    let free_bits = 4 * (32 - hex.len() as u32);
    let low = value.checked_shl(free_bits).unwrap_or(0);
    let spread = if free_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - free_bits)
    };
    Some((low, low | spread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::rule_index;

    #[test]
    fn a_learned_reply_to_the_sites_own_mail_carries_the_replies_symbols() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = Engine::open_for_learning(Config::embedded(), dir.path()).unwrap();
        let reply = b"From: Bob <bob@far.example>\r\nTo: alice@site.example\r\n\
                      In-Reply-To: <out-1@site.example>\r\nSubject: Re: quote\r\n\r\nThanks.\r\n";
        let before = engine.prepare_learn(reply).unwrap();
        let trusted = rule_index("TRUSTED_REPLY");
        let known = rule_index("KNOWN_SENDER");
        assert!(!before.model_features.rules.contains(&trusted));

        engine.attach_policy(dir.path()).unwrap();
        // Alice's message leaves (an authenticated submission)...
        let sent = b"From: alice@site.example\r\nTo: bob@far.example\r\n\
                     Message-ID: <out-1@site.example>\r\nSubject: quote\r\n\r\nHello.\r\n";
        let envelope = Envelope {
            user: Some("alice@site.example".into()),
            recipients: vec!["bob@far.example".into()],
            ..Envelope::default()
        };
        engine.scan(sent, &envelope);
        // ...so Bob's answer, learned, carries both symbols as features.
        let after = engine.prepare_learn(reply).unwrap();
        assert!(after.model_features.rules.contains(&trusted));
        assert!(after.model_features.rules.contains(&known));
        assert!(engine.active().is_rule_feature("TRUSTED_REPLY"));
        // Trained from its configured weight, as the rules are.
        let table = super::super::active::RuleTable::new(&engine.active());
        let scale = engine.config().classifier.points_per_logit;
        assert_eq!(
            crate::classifier::train::RuleTerms::offset(&table, trusted),
            engine.config().weight("TRUSTED_REPLY") / scale
        );
        let stranger = b"From: eve@else.example\r\nSubject: hi\r\n\r\nHello.\r\n";
        let other = engine.prepare_learn(stranger).unwrap();
        assert!(!other.model_features.rules.contains(&trusted));
        assert!(!other.model_features.rules.contains(&known));
    }
}
