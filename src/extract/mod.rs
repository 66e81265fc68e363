//! EXTRACT: the features checks read, computed once per message.
//!
//! Today that is the statistical tokens; URLs, addresses and fuzzy shingles
//! join them here as their checks arrive, so that no check re-derives what
//! another already computed.

mod tokens;

pub use tokens::{TOKENIZER_VERSION, TokenSink, Tokenizer, token_hash};

use crate::message::Message;

/// Everything extracted from one message.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Distinct statistical tokens, sorted (64-bit hashes).
    pub tokens: Vec<u64>,
}

impl Features {
    /// Extracts the features of `message`.
    pub fn extract(message: &Message, tokenizer: &Tokenizer) -> Features {
        let mut tokens = Vec::with_capacity(1024);
        tokenizer.tokenize(message, &mut |hash: u64, _: &dyn Fn() -> String| tokens.push(hash));
        tokens.sort_unstable();
        tokens.dedup();
        Features { tokens }
    }
}
