//! The whole pipeline, top to bottom, in one place.
//!
//! ```text
//! bytes + Envelope
//!   → message::parse      Message (decoded headers, visible text, links, parts)
//!   → Features::extract   tokens (and, later, URLs and shingles)
//!   → checks, in order    Vec<Symbol>
//!   → verdict::combine    score, action
//! ```
//!
//! The daemon, the CLI and the rescorer are adapters over [`Engine::scan`]
//! and [`Engine::learn`]; none of them parse, tokenize or weigh anything.

use std::collections::HashMap;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use crate::bayes::{self, Abstain, Classification, Contribution, LearnOutcome};
use crate::checks;
use crate::config::Config;
use crate::extract::{Features, Tokenizer};
use crate::message::{self, Envelope, Message};
use crate::store::{BayesStore, Class, StoreError, StoreStats};
use crate::verdict::{self, Verdict};

/// Why learning one message failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("empty message")]
    Empty,
    #[error("no header fields: not a mail message")]
    NotAMessage,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of scanning one message.
#[derive(Debug, Clone)]
pub struct Scan {
    pub verdict: Verdict,
    pub message_id: Option<String>,
    /// The decoded Subject, for logs and history.
    pub subject: String,
    /// The classifier's answer, or why it abstained.
    pub bayes: Result<Classification, Abstain>,
}

/// What learning one message did, and which message it was.
#[derive(Debug, Clone)]
pub struct Learned {
    pub outcome: LearnOutcome,
    pub message_id: Option<String>,
}

/// One token's part in a verdict, with its text.
#[derive(Debug, Clone)]
pub struct ExplainedToken {
    pub text: String,
    pub contribution: Contribution,
}

/// A configured scanner over one data directory.
pub struct Engine {
    config: Config,
    tokenizer: Tokenizer,
    store: BayesStore,
}

impl Engine {
    /// Opens the data directory for scanning (no lock; learns by others are
    /// seen on the next open).
    pub fn open(config: Config, data_dir: &Path) -> Result<Engine, StoreError> {
        let store = BayesStore::open_read_only(data_dir)?;
        Ok(Engine::with_store(config, store))
    }

    /// Opens the data directory for learning: takes the writer lock.
    pub fn open_for_learning(config: Config, data_dir: &Path) -> Result<Engine, StoreError> {
        let store = BayesStore::open_writer(data_dir)?;
        Ok(Engine::with_store(config, store))
    }

    fn with_store(config: Config, store: BayesStore) -> Engine {
        Engine {
            tokenizer: Tokenizer::new(config.bayes.osb_window),
            config,
            store,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses a message within the configured limits.
    pub fn parse(&self, raw: &[u8]) -> Message {
        message::parse(raw, &self.config.limits)
    }

    /// Scans one message: the whole pipeline.
    pub fn scan(&self, raw: &[u8], _envelope: &Envelope) -> Scan {
        let message = self.parse(raw);
        let features = Features::extract(&message, &self.tokenizer);

        let mut symbols = Vec::new();
        symbols.extend(checks::gtube::check(&message));
        let (bayes_symbol, bayes) =
            checks::bayes::check(&features, &self.store, &self.config.bayes);
        symbols.extend(bayes_symbol);

        let verdict = verdict::combine(symbols, &self.config, &message.subject);
        Scan {
            verdict,
            message_id: message.message_id,
            subject: message.subject,
            bayes,
        }
    }

    /// The tokens that weighed most in the statistical verdict, strongest
    /// first, with their text.
    pub fn explain(&self, raw: &[u8], limit: usize) -> Vec<ExplainedToken> {
        let message = self.parse(raw);
        let features = Features::extract(&message, &self.tokenizer);
        let Ok(classification) = bayes::classify(&features.tokens, &self.store, &self.config.bayes)
        else {
            return Vec::new();
        };
        let mut texts: HashMap<u64, String> = HashMap::new();
        self.tokenizer
            .tokenize(&message, &mut |hash: u64, text: &dyn Fn() -> String| {
                texts.entry(hash).or_insert_with(text);
            });
        classification
            .contributions
            .into_iter()
            .take(limit)
            .map(|contribution| ExplainedToken {
                text: texts
                    .get(&contribution.hash)
                    .cloned()
                    .unwrap_or_else(|| format!("#{:016x}", contribution.hash)),
                contribution,
            })
            .collect()
    }

    /// Learns one message as `class`. Durable only after [`Engine::commit`].
    pub fn learn(&mut self, raw: &[u8], class: Class) -> Result<Learned, LearnError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(LearnError::Empty);
        }
        let message = self.parse(raw);
        if message.headers.is_empty() {
            return Err(LearnError::NotAMessage);
        }
        let features = Features::extract(&message, &self.tokenizer);
        let digest = message_digest(raw);
        let outcome = bayes::learn(&mut self.store, digest, class, &features.tokens)?;
        Ok(Learned {
            outcome,
            message_id: message.message_id,
        })
    }

    /// Replaces the configuration (SIGHUP); the store stays open. The OSB
    /// window may change freely: unigrams and pairs at a given distance hash
    /// the same whatever the window, so the model stays valid.
    pub fn reconfigure(&mut self, config: Config) {
        self.tokenizer = Tokenizer::new(config.bayes.osb_window);
        self.config = config;
    }

    /// Makes all learns so far durable.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.store.commit()
    }

    /// Folds the journal into the model if it has grown past the configured size.
    pub fn compact_if_due(&mut self) -> Result<bool, StoreError> {
        if self.store.journal_bytes() >= self.config.bayes.auto_compact_journal_bytes {
            self.store.compact()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Folds the journal into the model now.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.store.compact()
    }

    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    pub fn verify_store(&self) -> bool {
        self.store.verify()
    }
}

/// The identity of a message for idempotent learning: a 128-bit hash of its
/// bytes without any mbox envelope line and with line endings normalised, so
/// the same message learned from a file, an mbox or over HTTP is one message.
pub fn message_digest(raw: &[u8]) -> u128 {
    let body = if raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(&raw[raw.len()..], |end| &raw[end + 1..])
    } else {
        raw
    };
    let mut hasher = Xxh3::new();
    for piece in body.split(|&b| b == b'\r') {
        hasher.update(piece);
    }
    hasher.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_envelope_line_and_crlf() {
        let a = message_digest(b"Subject: x\n\nhello\n");
        let b = message_digest(b"From a@b Mon Jan 1 00:00:00 2024\nSubject: x\r\n\r\nhello\r\n");
        assert_eq!(a, b);
        assert_ne!(a, message_digest(b"Subject: y\n\nhello\n"));
    }
}
