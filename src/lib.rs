//! chaff: a spam classifier engine that speaks rspamd's protocol.
//!
//! The library is the engine; the `chaff` binary is a thin command line over
//! it. Modules in the order a message flows through them:
//!
//! - [`message`]: raw bytes → [`message::Message`] (MIME, charsets, HTML).
//! - [`extract`]: message → [`extract::Features`] (tokens), computed once.
//! - [`fuzzy`]: min-hash and exact digests of text parts and attachments
//!   (part of the features), matched against [`store::FuzzyStore`].
//! - [`checks`]: features → [`symbol::Symbol`]s, one file per check;
//!   [`rules`] (regex, eval and meta rules) and [`maps`] (allow/deny lists)
//!   are two of them.
//! - [`classifier`]: logistic regression over hashed features, its weights
//!   and samples in [`store`]; what BAYES_SPAM/BAYES_HAM score.
//! - [`bayes`]: the count-based classifier's maths (`[classifier] enabled =
//!   false`), over counts from [`store`].
//! - [`verdict`]: symbols → score → action.
//! - [`policy`]: profiles chosen per message, and what the daemon
//!   remembers about senders (rate limits, greylisting, replies).
//! - [`engine`]: the pipeline above in one function, [`Engine::scan`].
//!
//! Beside them: [`config`] (TOML over embedded defaults), [`store`] (the
//! memory-mapped model, the only `unsafe`), [`mailbox`] (messages out of
//! files, mbox and maildir), [`report`] (rspamd's JSON reply shape).

pub mod auth;
pub mod bayes;
pub mod checks;
pub mod class;
pub mod classifier;
pub mod config;
pub mod context;
pub mod engine;
pub mod extract;
pub mod fuzzy;
pub mod lists;
pub mod mailbox;
pub mod message;
pub mod policy;
pub mod report;
pub mod rules;
pub mod setting;
pub mod store;
pub mod symbol;
pub mod verdict;

pub use engine::{Engine, Scan};
pub use verdict::{Action, Verdict};
