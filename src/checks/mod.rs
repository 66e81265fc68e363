//! CHECKS: one file per check, each reading the parsed message and its
//! features and emitting [`Symbol`]s.
//!
//! **Invariant:** checks never import each other and never read raw bytes;
//! anything two checks need is computed once in `message` or `extract`.
//! The engine calls them in the order listed in `engine.rs`.

pub mod auth;
pub mod bayes;
pub mod dnsbl;
pub mod envelope;
pub mod fuzzy;
pub mod gtube;
pub mod maps;
pub mod phishing;
pub mod redirects;
pub mod rules;
pub mod uri;

pub use crate::symbol::Symbol;
