//! The discriminative classifier: logistic regression over hashed features.
//!
//! Why not only Bayes: naive Bayes counts correlated tokens as independent,
//! so its verdicts pile up at the extremes and stop ordering mail, and its
//! points had to be squashed under a weight to keep them sane. A logistic
//! model fitted to convergence weighs each feature by what it adds beside
//! the others, and its log-odds keep their order all the way out: a message
//! twice as sure scores twice as far from the threshold.
//!
//! A message's features ([`ModelFeatures`]) are indices into one dense table
//! of `2^WEIGHT_BITS` `f32` weights, read in place from the mapped model:
//! - the tokenizer's words, OSB pairs and header tokens (`extract::tokens`);
//! - byte 4-grams of the first [`HEAD_GRAM_BYTES`] of the raw message (CRs
//!   dropped, so a message scores the same with either line ending), which
//!   see header shapes, encodings and obfuscation the words miss;
//! - the symbols the rules and local checks fired, so the model learns what
//!   each rule is worth on this site's mail (`train`).
//!
//! The log-odds of a message are `bias + Σ w[text] + Σ (c_r / k + w[rule r])`,
//! where `c_r` is rule r's configured weight in points and `k` the points
//! per unit of log-odds: the rules' configured points are an offset and the
//! model learns only a correction to each, regularised towards zero. Its
//! share of the score is `k × (bias + Σ w[text])` as BAYES_SPAM/BAYES_HAM,
//! and each rule scores `c_r + k × w[rule r]`, its fitted weight; the total
//! is `k` × the log-odds, so scores rank exactly as the model does.

pub mod codec;
mod config;
pub mod train;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::extract::{TokenSink, Tokenizer};
use crate::message::Message;

pub use config::ClassifierConfig;

/// log2 of the weight table's size: 4 Mi weights, 16 MiB. Part of the model
/// format (the model header records it; a mismatch is refused).
pub const WEIGHT_BITS: u32 = 22;
/// Entries in the weight table.
pub const WEIGHT_COUNT: usize = 1 << WEIGHT_BITS;
/// Bumped whenever the mapping from a message to feature indices changes:
/// stored samples and weights of another version mean nothing.
pub const FEATURE_VERSION: u32 = 1;
/// Byte 4-grams are taken from this much of the raw message, as the TREC
/// 2007 online logistic-regression runs did: the head carries most of what
/// a sender cannot easily vary.
pub const HEAD_GRAM_BYTES: usize = 3000;
/// A sample keeps at most this many text features (the first-seen ones), so
/// one huge message cannot dominate the store or a training epoch.
pub const MAX_TEXT_FEATURES: usize = 8192;

const TOKEN_SEED: u64 = 0x746f_6b65_6e73_0001;
const GRAM_SEED: u64 = 0x6772_616d_7334_0001;
const RULE_SEED: u64 = 0x7275_6c65_7300_0001;

/// One message as the model sees it: sorted, distinct weight indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFeatures {
    /// Tokens and byte grams.
    pub text: Vec<u32>,
    /// The rule and check symbols that fired, by [`rule_index`].
    pub rules: Vec<u32>,
}

impl ModelFeatures {
    /// The features of a message from its tokens (already distinct hashes),
    /// its raw bytes and the names of the symbols its rules fired, sorted by
    /// index: the form a learned sample is stored in.
    pub fn build<'a>(
        tokens: &[u64],
        raw: &[u8],
        rule_names: impl IntoIterator<Item = &'a str>,
    ) -> ModelFeatures {
        let mut text: Vec<u32> = Vec::with_capacity(tokens.len() + HEAD_GRAM_BYTES);
        text.extend(tokens.iter().map(|&token| token_index(token)));
        ModelFeatures::stored(text, raw, rule_names)
    }

    /// [`ModelFeatures::build`] straight from a parsed message: its tokens
    /// go to weight indices as the tokenizer produces them, with no list of
    /// distinct token hashes in between (only the count-based Bayes needs
    /// one). The same features as `build` over that list.
    pub fn of_message<'a>(
        message: &Message,
        raw: &[u8],
        tokenizer: &Tokenizer,
        rule_names: impl IntoIterator<Item = &'a str>,
    ) -> ModelFeatures {
        ModelFeatures::stored(token_indices(message, tokenizer), raw, rule_names)
    }

    /// The same text features as [`ModelFeatures::of_message`], in no
    /// particular order: a scan only sums their weights, and sorting was a
    /// tenth of a scan with the classifier alone.
    pub fn for_scan(message: &Message, raw: &[u8], tokenizer: &Tokenizer) -> ModelFeatures {
        ModelFeatures {
            text: text_indices(token_indices(message, tokenizer), raw),
            rules: Vec::new(),
        }
    }

    fn stored<'a>(
        tokens: Vec<u32>,
        raw: &[u8],
        rule_names: impl IntoIterator<Item = &'a str>,
    ) -> ModelFeatures {
        // Sorting with the repeats in and dropping them after gives the set
        // `text_indices` gives, sorted, without its hash set.
        let mut text = tokens;
        head_grams(raw, |index| text.push(index));
        sort_indices(&mut text);
        text.dedup();
        let mut text = thinned(text);
        // A stored sample is kept until training, so it gives back the
        // room reserved for the repeats dropped.
        text.shrink_to_fit();
        let mut rules: Vec<u32> = rule_names.into_iter().map(rule_index).collect();
        rules.sort_unstable();
        rules.dedup();
        ModelFeatures { text, rules }
    }
}

/// A message's tokens as weight indices, repeats included, in order.
fn token_indices(message: &Message, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut indices = Vec::with_capacity(2048 + HEAD_GRAM_BYTES);
    tokenizer.tokenize(message, &mut IndexSink(&mut indices));
    indices
}

/// A token sink that keeps each token's weight index.
struct IndexSink<'a>(&'a mut Vec<u32>);

impl TokenSink for IndexSink<'_> {
    fn token(&mut self, hash: u64, _text: &dyn Fn() -> String) {
        self.0.push(token_index(hash));
    }
    fn wants_text(&self) -> bool {
        false
    }
}

/// The distinct text indices of a message (its token indices, then head
/// grams), capped at [`MAX_TEXT_FEATURES`]: when over, the sorted set is
/// thinned evenly, so what is dropped is spread over the hash space rather
/// than all from the end of the message, and a scan keeps exactly what a
/// learn keeps. Repeats may come in: the first occurrence of each index
/// stays, so the order (and a scan's f64 sum) is the same whether or not the
/// tokens were made distinct first.
fn text_indices(mut text: Vec<u32>, raw: &[u8]) -> Vec<u32> {
    head_grams(raw, |index| text.push(index));
    distinct_in_place(&mut text);
    if text.len() <= MAX_TEXT_FEATURES {
        return text;
    }
    sort_indices(&mut text);
    thinned(text)
}

/// A sorted set of more than [`MAX_TEXT_FEATURES`] indices thinned evenly
/// to that many (a smaller one as it is).
fn thinned(text: Vec<u32>) -> Vec<u32> {
    if text.len() <= MAX_TEXT_FEATURES {
        return text;
    }
    let keep = MAX_TEXT_FEATURES as f64 / text.len() as f64;
    let mut kept = Vec::with_capacity(MAX_TEXT_FEATURES);
    let mut credit = 0.0;
    for index in text {
        credit += keep;
        if credit >= 1.0 {
            credit -= 1.0;
            kept.push(index);
        }
    }
    kept
}

/// Drops repeated indices, keeping first occurrences in order, with an
/// open-addressed set (indices are the top bits of a mixed hash, so their
/// low bits spread over the slots). The set is kept per thread and its
/// entries carry the call's generation above the index bits, so a call
/// neither allocates nor clears it: clearing a fresh set per message cost
/// more than the lookups.
fn distinct_in_place(indices: &mut Vec<u32>) {
    const INDEX_MASK: u32 = (1 << WEIGHT_BITS) - 1;
    const MAX_GENERATION: u32 = u32::MAX >> WEIGHT_BITS;
    thread_local! {
        static SEEN: std::cell::RefCell<(Vec<u32>, u32)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
    }
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let (table, generation) = &mut *seen;
        let slots = (indices.len() * 2).next_power_of_two().max(16);
        if table.len() < slots {
            table.clear();
            table.resize(slots, 0);
            *generation = 0;
        }
        // Generation 0 is what a cleared entry holds, so it is never used.
        *generation += 1;
        if *generation > MAX_GENERATION {
            table.iter_mut().for_each(|entry| *entry = 0);
            *generation = 1;
        }
        let stamp = *generation << WEIGHT_BITS;
        let mask = slots - 1;
        let mut kept = 0;
        for at in 0..indices.len() {
            let index = indices[at];
            let mut slot = index as usize & mask;
            loop {
                let entry = table[slot];
                if entry & !INDEX_MASK != stamp {
                    table[slot] = stamp | index;
                    indices[kept] = index;
                    kept += 1;
                    break;
                }
                if entry & INDEX_MASK == index {
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
        indices.truncate(kept);
    });
}

/// Sorts weight indices (all below `2^WEIGHT_BITS`) by two passes of an LSD
/// radix sort on 11 bits each. A message has a few thousand indices, and on
/// them this is several times faster than a comparison sort, which was the
/// largest single cost of a scan with the classifier.
fn sort_indices(indices: &mut [u32]) {
    const BITS: u32 = WEIGHT_BITS.div_ceil(2);
    const BUCKETS: usize = 1 << BITS;
    const MASK: u32 = (1 << BITS) - 1;
    if indices.len() < 256 {
        indices.sort_unstable();
        return;
    }
    // A thinned set comes back sorted already.
    if indices.is_sorted() {
        return;
    }
    // Both digits are counted in one pass, on the stack: the heap-allocated
    // and twice-cleared counts cost as much as the sorting.
    let mut low = [0u32; BUCKETS];
    let mut high = [0u32; BUCKETS];
    for &index in indices.iter() {
        low[(index & MASK) as usize] += 1;
        high[((index >> BITS) & MASK) as usize] += 1;
    }
    for counts in [&mut low, &mut high] {
        let mut start = 0;
        for count in counts.iter_mut() {
            let n = *count;
            *count = start;
            start += n;
        }
    }
    let mut scratch = vec![0u32; indices.len()];
    for &index in indices.iter() {
        let at = &mut low[(index & MASK) as usize];
        scratch[*at as usize] = index;
        *at += 1;
    }
    for &index in scratch.iter() {
        let at = &mut high[((index >> BITS) & MASK) as usize];
        indices[*at as usize] = index;
        *at += 1;
    }
}

/// Folds a 64-bit hash to a weight index (the top bits of a multiplicative
/// mix, which are the best mixed).
fn fold(hash: u64) -> u32 {
    let mixed = (hash ^ (hash >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (mixed >> (64 - WEIGHT_BITS)) as u32
}

/// The weight index of a tokenizer token.
pub fn token_index(token: u64) -> u32 {
    fold(token ^ TOKEN_SEED)
}

/// The weight index of a rule or check symbol.
pub fn rule_index(name: &str) -> u32 {
    fold(xxh3_64_with_seed(name.as_bytes(), RULE_SEED))
}

/// The weight index of one byte 4-gram.
pub fn gram_index(gram: [u8; 4]) -> u32 {
    fold(u64::from(u32::from_le_bytes(gram)).wrapping_add(GRAM_SEED) ^ (GRAM_SEED << 7))
}

/// Calls `visit` with the index of every byte 4-gram of the head (the first
/// [`HEAD_GRAM_BYTES`] bytes that are not CR), in order, repeats included.
pub fn head_grams(raw: &[u8], mut visit: impl FnMut(u32)) {
    let mut head = [0u8; HEAD_GRAM_BYTES];
    let len = copy_head(raw, &mut head);
    for w in head[..len].windows(4) {
        visit(gram_index([w[0], w[1], w[2], w[3]]));
    }
}

/// Copies the first [`HEAD_GRAM_BYTES`] bytes of `raw` that are not CR into
/// `head` and returns how many; a CRLF message so gives the grams of its LF
/// form. Mail without a CR in its head (most stored mail) is one copy.
fn copy_head(raw: &[u8], head: &mut [u8; HEAD_GRAM_BYTES]) -> usize {
    let prefix = &raw[..raw.len().min(HEAD_GRAM_BYTES)];
    if memchr::memchr(b'\r', prefix).is_none() {
        head[..prefix.len()].copy_from_slice(prefix);
        return prefix.len();
    }
    let mut len = 0;
    for &byte in raw.iter().filter(|&&b| b != b'\r') {
        if len == HEAD_GRAM_BYTES {
            break;
        }
        head[len] = byte;
        len += 1;
    }
    len
}

/// The text of every byte 4-gram of the head by index, for `--explain`.
pub fn head_gram_texts(raw: &[u8]) -> Vec<(u32, String)> {
    let mut head = [0u8; HEAD_GRAM_BYTES];
    let len = copy_head(raw, &mut head);
    head[..len]
        .windows(4)
        .map(|w| {
            let gram = [w[0], w[1], w[2], w[3]];
            (
                gram_index(gram),
                format!("bytes {:?}", String::from_utf8_lossy(w)),
            )
        })
        .collect()
}

/// Where the classifier reads weights: the mapped table plus the learns
/// since it was written.
pub trait Weights {
    fn bias(&self) -> f64;
    /// How the last training maps raw log-odds to calibrated ones.
    fn calibration(&self) -> Calibration {
        Calibration::IDENTITY
    }
    fn weight(&self, index: u32) -> f32;
    /// Weights of many indices, in order, appended to `out` (the mapped
    /// table prefetches them ahead).
    fn weights_into(&self, indices: &[u32], out: &mut Vec<f32>) {
        out.extend(indices.iter().map(|&i| self.weight(i)));
    }
    /// The sum of the weights of many indices, in `f64` and in order, as
    /// [`Weights::weights_into`] would give them.
    fn weight_sum(&self, indices: &[u32]) -> f64 {
        indices.iter().map(|&i| f64::from(self.weight(i))).sum()
    }
}

/// The log-odds the text features give (bias included).
pub fn text_log_odds_only(weights: &impl Weights, features: &ModelFeatures) -> f64 {
    weights.bias() + weights.weight_sum(&features.text)
}

/// The log-odds the text features give (bias included), and each text
/// feature's weight in the order of `features.text`.
pub fn text_log_odds(weights: &impl Weights, features: &ModelFeatures) -> (f64, Vec<f32>) {
    let mut found = Vec::with_capacity(features.text.len());
    weights.weights_into(&features.text, &mut found);
    let sum: f64 = found.iter().map(|&w| f64::from(w)).sum();
    (weights.bias() + sum, found)
}

/// Platt scaling, fitted when the model is trained: calibrated log-odds
/// are `slope × z + intercept`, where `z` is the model's raw log-odds.
///
/// Why: a model fitted to convergence on mail it can separate is
/// overconfident about that same mail; its raw log-odds say nothing about how
/// sure it should be on the next message, and the score's thresholds (add
/// header at 6) need exactly that. Training fits the two numbers to each
/// sample's leave-one-out log-odds (its own contribution taken out of the
/// weights, `train::Solver::calibration`), so how far BAYES_SPAM reaches
/// follows how well this site's model predicts mail it has not seen: a small
/// or noisy model speaks softly, a sure one loudly. Order is unchanged
/// (`slope > 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub slope: f64,
    pub intercept: f64,
}

impl Calibration {
    /// Raw log-odds as they are: an untrained model, or a model file written
    /// before calibration existed (its fields read zero).
    pub const IDENTITY: Calibration = Calibration {
        slope: 1.0,
        intercept: 0.0,
    };
    /// Bounds on a fitted slope: even a model whose held-out log-odds look
    /// useless keeps its order, and none is trusted more than twice its raw
    /// log-odds.
    pub const MIN_SLOPE: f64 = 0.05;
    pub const MAX_SLOPE: f64 = 2.0;

    /// From stored fields; a zero slope is a file without calibration.
    pub fn from_stored(slope: f64, intercept: f64) -> Calibration {
        if slope.is_finite() && slope > 0.0 && intercept.is_finite() {
            Calibration { slope, intercept }
        } else {
            Calibration::IDENTITY
        }
    }

    pub fn apply(&self, log_odds: f64) -> f64 {
        self.slope * log_odds + self.intercept
    }
}

/// The logistic function, safe for any input.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_sorts_like_sort() {
        let mut state = 0x1234_5678_u64;
        for len in [0usize, 1, 255, 256, 257, 5000] {
            let mut indices: Vec<u32> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 42) as u32 % WEIGHT_COUNT as u32
                })
                .collect();
            let mut expected = indices.clone();
            expected.sort_unstable();
            sort_indices(&mut indices);
            assert_eq!(indices, expected, "length {len}");
        }
    }

    #[test]
    fn a_file_without_calibration_reads_as_identity() {
        assert_eq!(Calibration::from_stored(0.0, 0.0), Calibration::IDENTITY);
        assert_eq!(
            Calibration::from_stored(f64::NAN, 1.0),
            Calibration::IDENTITY
        );
        let fitted = Calibration::from_stored(0.5, -0.25);
        assert_eq!(fitted.apply(2.0), 0.75);
    }

    #[test]
    fn features_are_sorted_distinct_and_in_range() {
        let raw = b"Subject: hello\r\n\r\nhello hello hello world\r\n";
        let features = ModelFeatures::build(&[1, 2, 3, 2], raw, ["RULE_A", "RULE_B", "RULE_A"]);
        assert!(features.text.windows(2).all(|w| w[0] < w[1]));
        assert!(features.text.iter().all(|&i| (i as usize) < WEIGHT_COUNT));
        assert_eq!(features.rules.len(), 2);
    }

    #[test]
    fn line_endings_do_not_change_the_grams() {
        let lf = ModelFeatures::build(&[], b"Subject: a\n\nbody text\n", []);
        let crlf = ModelFeatures::build(&[], b"Subject: a\r\n\r\nbody text\r\n", []);
        assert_eq!(lf, crlf);
        // Past the head's length too: a CRLF head holds more lines.
        let lines: String = (0..400).map(|i| format!("line {i} of text\n")).collect();
        let long_lf = ModelFeatures::build(&[], lines.as_bytes(), []);
        let long_crlf = ModelFeatures::build(&[], lines.replace('\n', "\r\n").as_bytes(), []);
        assert_eq!(long_lf, long_crlf);
        assert!(long_lf.text.len() > 200);
    }

    #[test]
    fn a_huge_message_keeps_a_bounded_spread_of_features() {
        let tokens: Vec<u64> = (1..50_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        let features = ModelFeatures::build(&tokens, b"", []);
        assert!(features.text.len() <= MAX_TEXT_FEATURES);
        assert!(features.text.len() > MAX_TEXT_FEATURES * 9 / 10);
        assert!(*features.text.last().unwrap_or(&0) > (WEIGHT_COUNT as u32) / 2);
    }

    #[test]
    fn distinct_indices_survive_generation_wraps_and_size_changes() {
        for call in 0u32..3000 {
            let len = (call % 37) as usize * 50;
            let mut indices: Vec<u32> = (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) ^ call) % 997 % WEIGHT_COUNT as u32)
                .collect();
            let mut expected = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for &index in &indices {
                if seen.insert(index) {
                    expected.push(index);
                }
            }
            distinct_in_place(&mut indices);
            assert_eq!(indices, expected, "call {call}");
        }
    }

    #[test]
    fn a_scan_sees_the_features_a_learn_stores() {
        let tokenizer = Tokenizer::new(2).without_grams();
        let short = b"Subject: offer offer offer\n\nbuy now buy now cheap cheap cheap\n".to_vec();
        // Over the cap: both keep the same evenly thinned set.
        let mut long = b"Subject: many words\n\n".to_vec();
        for i in 0..30_000u32 {
            long.extend_from_slice(format!("w{} ", i.wrapping_mul(2_654_435_761)).as_bytes());
        }
        for raw in [&short, &long] {
            let message = crate::message::parse(raw, &crate::message::Limits::default());
            let tokens = crate::extract::Features::statistical(raw, &message, &tokenizer).tokens;
            let stored = ModelFeatures::build(&tokens, raw, ["A_RULE"]);
            assert_eq!(
                ModelFeatures::of_message(&message, raw, &tokenizer, ["A_RULE"]),
                stored
            );
            let mut scanned = ModelFeatures::for_scan(&message, raw, &tokenizer).text;
            assert_eq!(scanned.len(), stored.text.len(), "repeats dropped");
            // The order a scan sums in is first-seen, as over distinct tokens.
            let mut from_tokens: Vec<u32> = tokens.iter().map(|&t| token_index(t)).collect();
            head_grams(raw, |index| from_tokens.push(index));
            distinct_in_place(&mut from_tokens);
            if from_tokens.len() <= MAX_TEXT_FEATURES {
                assert_eq!(scanned, from_tokens);
            }
            scanned.sort_unstable();
            assert_eq!(scanned, stored.text);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_make_features(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..5000)) {
            let features = ModelFeatures::build(&[], &raw, []);
            proptest::prop_assert!(features.text.iter().all(|&i| (i as usize) < WEIGHT_COUNT));
            proptest::prop_assert!(features.text.len() <= HEAD_GRAM_BYTES);
        }
    }
}
