//! EXTRACT: the features checks read, computed once per message.
//!
//! The statistical tokens and byte grams ([`grams`]), the fuzzy digests ([`crate::fuzzy`]) and the
//! URLs ([`urls`]), so that no check re-derives what another already
//! computed.

pub mod grams;
mod tokens;
pub mod urls;

pub use tokens::{HashSink, TOKENIZER_VERSION, TokenSink, Tokenizer, token_hash};
pub use urls::{Url, UrlSource};

use crate::fuzzy::{FuzzyDigests, FuzzyParams};
use crate::message::Message;

/// Everything extracted from one message.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Distinct statistical tokens (64-bit hashes, never 0), in first-seen order.
    pub tokens: Vec<u64>,
    /// Distinct byte 7-gram buckets of the raw message, in first-seen order.
    pub grams: Vec<u32>,
    /// Min-hash and exact digests of text parts and attachments.
    pub fuzzy: FuzzyDigests,
}

impl Features {
    /// Extracts the features of `message` (parsed from `raw`), fuzzy digests
    /// with default sizes.
    pub fn extract(raw: &[u8], message: &Message, tokenizer: &Tokenizer) -> Features {
        Features::extract_with(raw, message, tokenizer, &FuzzyParams::default())
    }

    /// Extracts the features of `message` (parsed from `raw`).
    pub fn extract_with(
        raw: &[u8],
        message: &Message,
        tokenizer: &Tokenizer,
        fuzzy: &FuzzyParams,
    ) -> Features {
        let mut features = Features::statistical(raw, message, tokenizer);
        features.fuzzy = FuzzyDigests::compute(message, fuzzy);
        features
    }

    /// Only the statistical features, tokens and grams: what learning and a
    /// scan against an empty fuzzy store need. Fuzzy digests are a fifth of a
    /// scan's cost, so they are not computed where nothing would read them.
    pub fn statistical(raw: &[u8], message: &Message, tokenizer: &Tokenizer) -> Features {
        let mut tokens = Vec::with_capacity(1024);
        tokenizer.tokenize(message, &mut HashSink(&mut tokens));
        Features {
            tokens: distinct(tokens),
            grams: if tokenizer.byte_grams() {
                grams::byte_grams(raw)
            } else {
                Vec::new()
            },
            ..Features::default()
        }
    }
}

/// Removes repeated tokens, keeping first occurrences in order. A small
/// open-addressed set beats sorting here (sorting was the largest single
/// cost of tokenizing), and tokens are already uniformly mixed hashes. The
/// set is kept per thread, each slot stamped with the call that filled it,
/// so a call neither allocates nor clears it.
fn distinct(mut tokens: Vec<u64>) -> Vec<u64> {
    struct Seen {
        keys: Vec<u64>,
        stamps: Vec<u32>,
        call: u32,
    }
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = const {
            std::cell::RefCell::new(Seen { keys: Vec::new(), stamps: Vec::new(), call: 0 })
        };
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let seen = &mut *seen;
        let slots = (tokens.len() * 2).next_power_of_two().max(16);
        if seen.keys.len() < slots {
            seen.keys = vec![0; slots];
            seen.stamps = vec![0; slots];
            seen.call = 0;
        }
        // Stamp 0 is what a fresh slot holds, so no call uses it.
        seen.call = seen.call.wrapping_add(1);
        if seen.call == 0 {
            seen.stamps.iter_mut().for_each(|stamp| *stamp = 0);
            seen.call = 1;
        }
        let mask = slots - 1;
        let mut kept = 0;
        for at in 0..tokens.len() {
            let token = tokens[at];
            let mut slot = (token as usize) & mask;
            loop {
                if seen.stamps[slot] != seen.call {
                    seen.stamps[slot] = seen.call;
                    seen.keys[slot] = token;
                    tokens[kept] = token;
                    kept += 1;
                    break;
                }
                if seen.keys[slot] == token {
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
        tokens.truncate(kept);
    });
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_first_occurrences_in_order() {
        assert_eq!(distinct(vec![5, 3, 5, 9, 3, 1]), vec![5, 3, 9, 1]);
        let many: Vec<u64> = (1..5000).chain(1..5000).collect();
        assert_eq!(distinct(many), (1..5000).collect::<Vec<u64>>());
    }

    #[test]
    fn distinct_is_right_on_every_call_whatever_the_sizes() {
        for call in 0u64..2000 {
            let len = (call % 29) * 40;
            let tokens: Vec<u64> = (0..len).map(|i| (i * 7919 + call) % 601 + 1).collect();
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<u64> = tokens.iter().copied().filter(|t| seen.insert(*t)).collect();
            assert_eq!(distinct(tokens), expected, "call {call}");
        }
    }
}
