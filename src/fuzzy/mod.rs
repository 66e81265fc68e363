//! Fuzzy digests: what makes a mutated copy of a known message recognisable.
//!
//! Computed once per message in `extract` ([`FuzzyDigests::compute`]); the
//! store ([`crate::store::FuzzyStore`]) keeps reported digests and finds
//! near-copies; the check (`checks::fuzzy`) turns matches into symbols.
//!
//! Per text part (plain, or HTML rendered to visible text):
//! - the words are normalised ([`normalise`]): case-folded, NFKC, numbers,
//!   URLs and e-mail addresses replaced by placeholders, a short list of stop
//!   words dropped, so changed names-in-links, prices or phone numbers and
//!   re-encodings (base64, quoted-printable, HTML) do not matter;
//! - an exact digest of the normalised word sequence;
//! - a min-hash signature of [`MINHASH_VALUES`] values over
//!   [`SHINGLE_WORDS`]-word windows: for each of the hash functions the
//!   minimum over all windows. The fraction of equal values between two
//!   signatures estimates the Jaccard similarity of their window sets; a copy
//!   with a fifth of its words replaced keeps about half its 2-word windows.
//!
//! Attachments and images: an exact digest of the decoded bytes.
//! Parts shorter than `[fuzzy] min_words` (text) or `min_bytes`
//! (attachments) are skipped.

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::message::Message;

mod config;

pub use config::{FuzzyConfig, FuzzyFlagConfig};

/// Hash functions (values) in a min-hash signature.
pub const MINHASH_VALUES: usize = 64;
/// Words per shingle window.
pub const SHINGLE_WORDS: usize = 2;
/// Min-hash values per LSH band: a stored signature becomes a candidate when
/// all values of at least one band agree.
pub const BAND_VALUES: usize = 2;
/// LSH bands per signature.
pub const BANDS: usize = MINHASH_VALUES / BAND_VALUES;
/// Bumped whenever normalisation, shingling or hashing changes: stored
/// digests of another version can never match and are refused at open.
pub const FUZZY_DIGEST_VERSION: u32 = 1;

/// A min-hash signature.
pub type MinHash = [u32; MINHASH_VALUES];

/// The digests of one text part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartDigest {
    /// 128-bit digest of the normalised word sequence.
    pub exact: u128,
    pub minhash: MinHash,
    /// Normalised words in the part.
    pub words: usize,
}

/// Everything the fuzzy check and fuzzy learning need from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuzzyDigests {
    pub parts: Vec<PartDigest>,
    /// Exact digests of attachments and images.
    pub attachments: Vec<u128>,
}

/// Which parts are long enough to be worth a digest.
#[derive(Debug, Clone, Copy)]
pub struct FuzzyParams {
    pub min_words: usize,
    pub min_bytes: usize,
}

impl Default for FuzzyParams {
    fn default() -> FuzzyParams {
        FuzzyParams {
            min_words: 16,
            min_bytes: 512,
        }
    }
}

impl FuzzyDigests {
    pub fn compute(message: &Message, params: &FuzzyParams) -> FuzzyDigests {
        let mut out = FuzzyDigests::default();
        let normalised: Vec<Vec<String>> = message
            .text_parts
            .iter()
            .map(|part| {
                let mut words = Vec::new();
                normalise(strip_footers(&part.text), &mut words);
                words
            })
            .collect();
        // A part much shorter than the main one is an accessory — a "this
        // message is in HTML" notice beside the real HTML part, a disclaimer —
        // and shared by unrelated mail of the same sender or list.
        let longest = normalised.iter().map(Vec::len).max().unwrap_or(0);
        let least = params.min_words.max(1).max(longest / ACCESSORY_RATIO);
        for words in &normalised {
            if words.len() < least {
                continue;
            }
            let digest = part_digest(words);
            // An HTML part and its plain alternative usually normalise alike.
            if !out.parts.iter().any(|p| p.exact == digest.exact) {
                out.parts.push(digest);
            }
        }
        for attachment in &message.attachments {
            if attachment.size >= params.min_bytes && !out.attachments.contains(&attachment.digest)
            {
                out.attachments.push(attachment.digest);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.attachments.is_empty()
    }
}

/// Text parts with fewer than 1/ACCESSORY_RATIO of the longest part's words
/// get no digest.
const ACCESSORY_RATIO: usize = 4;

/// Footer blocks (after a separator line) at most this many words long are
/// cut off the end of a part.
const MAX_FOOTER_WORDS: usize = 60;

/// A line that separates a footer or signature: `-- `, or ten or more of
/// `-_=*~#`.
fn is_separator(line: &str) -> bool {
    let line = line.trim();
    line == "--" || (line.len() >= 10 && line.bytes().all(|b| b"-_=*~#".contains(&b)))
}

/// The text without its trailing footers: mailing-list trailers, sponsor
/// blocks and signatures are the same across unrelated messages of a list
/// or sender (and a spam sent through a list carries the list's footer), so
/// they must not make two messages look alike. Cuts, from the end, each
/// block of at most [`MAX_FOOTER_WORDS`] words that follows a separator line.
pub fn strip_footers(text: &str) -> &str {
    let mut end = text.len();
    loop {
        let body = &text[..end];
        let mut cut = None;
        let mut offset = body.len();
        for line in body.rsplit_inclusive_lines() {
            offset -= line.len();
            if is_separator(line) {
                cut = Some(offset);
                break;
            }
        }
        let Some(cut) = cut else { return body };
        let tail_words = body[cut..].split_whitespace().count();
        if tail_words > MAX_FOOTER_WORDS + 1 {
            return body;
        }
        end = cut;
    }
}

trait RsplitLines {
    fn rsplit_inclusive_lines(&self) -> std::iter::Rev<std::str::SplitInclusive<'_, char>>;
}

impl RsplitLines for str {
    fn rsplit_inclusive_lines(&self) -> std::iter::Rev<std::str::SplitInclusive<'_, char>> {
        self.split_inclusive('\n').rev()
    }
}

/// Words that carry no content and occur everywhere; dropping them keeps
/// unrelated messages from sharing windows such as "of the".
const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but",
    "by", "can", "do", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in",
    "into", "is", "it", "its", "just", "me", "more", "my", "no", "not", "now", "of", "on", "one",
    "only", "or", "our", "out", "she", "so", "some", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "up", "us", "was", "we", "were", "what",
    "when", "which", "who", "will", "with", "would", "you", "your",
];

const URL: &str = "\u{1}url";
const EMAIL: &str = "\u{1}email";
const NUMBER: &str = "\u{1}num";

fn is_url(token: &str) -> bool {
    let lower = token.trim_start_matches(['(', '<', '[', '"', '\'']);
    let lower_ascii = |prefix: &str| {
        lower
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    lower.contains("://") || lower_ascii("www.") || lower_ascii("mailto:")
}

fn is_email(token: &str) -> bool {
    match token.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.'),
        None => false,
    }
}

/// Appends the normalised words of `text` to `out`: placeholders for URLs,
/// addresses and numbers (a run of one placeholder counts once), stop words
/// and one-letter ASCII words dropped, the rest NFKC-normalised and lowercased.
pub fn normalise(text: &str, out: &mut Vec<String>) {
    let push = |out: &mut Vec<String>, word: &str| {
        if (word == URL || word == EMAIL || word == NUMBER) && out.last().is_some_and(|l| l == word)
        {
            return;
        }
        out.push(word.to_owned());
    };
    for token in text.split_whitespace() {
        if is_url(token) {
            push(out, URL);
            continue;
        }
        if is_email(token) {
            push(out, EMAIL);
            continue;
        }
        for word in token.unicode_words() {
            if word.chars().any(|c| c.is_numeric()) {
                push(out, NUMBER);
                continue;
            }
            let folded: String = if word.is_ascii() {
                word.to_ascii_lowercase()
            } else {
                word.nfkc().flat_map(char::to_lowercase).collect()
            };
            // One ASCII letter says nothing; one ideograph is a word.
            if folded.len() == 1 || STOP_WORDS.binary_search(&folded.as_str()).is_ok() {
                continue;
            }
            push(out, &folded);
        }
    }
}

/// Multipliers and offsets of the min-hash functions (odd multipliers;
/// multiply-shift hashing over an already well-mixed 64-bit shingle hash).
const fn hash_params() -> ([u64; MINHASH_VALUES], [u64; MINHASH_VALUES]) {
    let mut a = [0u64; MINHASH_VALUES];
    let mut b = [0u64; MINHASH_VALUES];
    let mut state: u64 = 0x5eed_f022_7c4a_ff01;
    let mut i = 0;
    while i < MINHASH_VALUES {
        a[i] = splitmix(&mut state) | 1;
        b[i] = splitmix(&mut state);
        i += 1;
    }
    (a, b)
}

const fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const PARAMS: ([u64; MINHASH_VALUES], [u64; MINHASH_VALUES]) = hash_params();

/// The digests of one part's normalised words (at least one word).
pub fn part_digest(words: &[String]) -> PartDigest {
    let joined = words.join(" ");
    let exact = xxh3_128(joined.as_bytes());
    let mut minhash = [u32::MAX; MINHASH_VALUES];
    let window = SHINGLE_WORDS.min(words.len());
    let word_hashes: Vec<u64> = words.iter().map(|w| xxh3_64(w.as_bytes())).collect();
    for shingle in word_hashes.windows(window) {
        let mut h: u64 = 0x243f_6a88_85a3_08d3;
        for &w in shingle {
            h = (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        h ^= h >> 29;
        for (slot, (a, b)) in minhash.iter_mut().zip(PARAMS.0.iter().zip(&PARAMS.1)) {
            let value = (h.wrapping_mul(*a).wrapping_add(*b) >> 32) as u32;
            if value < *slot {
                *slot = value;
            }
        }
    }
    PartDigest {
        exact,
        minhash,
        words: words.len(),
    }
}

/// The LSH key of band `band` of a signature.
pub fn band_key(minhash: &MinHash, band: usize) -> u32 {
    let mut bytes = [0u8; 4 + 4 * BAND_VALUES];
    bytes[..4].copy_from_slice(&(band as u32).to_le_bytes());
    for (i, value) in minhash[band * BAND_VALUES..(band + 1) * BAND_VALUES]
        .iter()
        .enumerate()
    {
        bytes[4 + 4 * i..8 + 4 * i].copy_from_slice(&value.to_le_bytes());
    }
    xxh3_64(&bytes) as u32
}

/// The fraction of equal values of two signatures: an estimate of the
/// Jaccard similarity of their shingle sets.
pub fn similarity(a: &MinHash, b: &MinHash) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / MINHASH_VALUES as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        normalise(text, &mut out);
        out
    }

    #[test]
    fn footers_are_cut_from_the_end() {
        let text = "Real content here\nmore content\n\n-- \nBob\n\
            -------------------------------------------------------\n\
            This sf.net email is sponsored by: OSDN\n\
            _______________________________________________\n\
            list mailing list\nlist@lists.example\n";
        assert_eq!(strip_footers(text), "Real content here\nmore content\n\n");
        let banner = "==========\nBIG OFFER\n==========\n".to_owned() + &"word ".repeat(100);
        assert_eq!(strip_footers(&banner), banner);
        assert_eq!(strip_footers(""), "");
    }

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOP_WORDS);
    }

    #[test]
    fn placeholders_hide_numbers_links_and_addresses() {
        assert_eq!(
            words("Call 555-1234 now! Visit http://a.example/x?id=7 or mail bob@x.org. CAFÉ"),
            words("call 1-800-99 NOW visit https://b.example/other or mail alice@y.net café")
        );
        assert_eq!(
            words("the price is $12.99 for you"),
            vec!["price".to_owned(), NUMBER.to_owned()]
        );
    }

    #[test]
    fn near_copies_are_similar_and_strangers_are_not() {
        let base = "Limited offer for our valued customers: buy cheap replica watches \
            from the best online shop, free shipping worldwide and discreet packaging, \
            order today and receive a bonus gift with every purchase of two items or more";
        let changed = base
            .replace("valued", "dear")
            .replace("discreet", "secure")
            .replace("bonus", "free");
        let other = "Minutes of the meeting: the build is green again, the release branch \
            is cut on Friday and the documentation still needs a section on compaction";
        let a = part_digest(&words(base));
        let b = part_digest(&words(&changed));
        let c = part_digest(&words(other));
        assert!(similarity(&a.minhash, &b.minhash) > 0.4);
        assert!(similarity(&a.minhash, &c.minhash) < 0.1);
        assert_eq!(a, part_digest(&words(&base.to_uppercase())));
    }
}
