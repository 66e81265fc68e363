//! The on-disk layout of `bayes.model`, in one place.
//!
//! All integers are little-endian and the structs are `#[repr(C)]` with no
//! implicit padding, so the file is read in place through the mapping. The
//! version lives here and nowhere else; a change to any layout below bumps
//! [`FORMAT_VERSION`], and a reader accepts [`OLDEST_SUPPORTED_VERSION`]
//! through [`FORMAT_VERSION`].

use bytemuck::{Pod, Zeroable};

#[cfg(target_endian = "big")]
compile_error!("the chaff model format is little-endian and read in place");

/// Every model header starts with `magic`, `format_version` and
/// `header_crc`, in that order: `mapped.rs` checks those (and computes the
/// CRC with `header_crc` zeroed) the same way for every format.
macro_rules! assert_shared_prefix {
    ($header:ty) => {
        assert!(
            std::mem::offset_of!($header, magic) == 0
                && std::mem::offset_of!($header, format_version) == 8
                && std::mem::offset_of!($header, header_crc) == 12
        )
    };
}

/// First eight bytes of every model file.
pub const MODEL_MAGIC: [u8; 8] = *b"CHAFFBM\0";
/// First eight bytes of every journal file.
pub const JOURNAL_MAGIC: [u8; 8] = *b"CHAFFJL\0";
/// The layout this build writes.
///
/// 2: the byte-gram table and `gram_bits`/`grams_offset` in the header;
/// journal records carry grams. Version 1 models also used another
/// tokenizer, so they could not be read usefully and are refused.
/// 3: the classifier section ([`ClassifierHeader`], the weight table, the
/// stored samples); journal records carry the classifier's features. A
/// version 2 model has no samples to train from, so it is refused with an
/// error that says to re-learn.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest layout this build still reads.
pub const OLDEST_SUPPORTED_VERSION: u32 = 3;
/// The layout of the journal records this build writes (`bayes.journal`'s
/// header carries it; it moves apart from the model's from 4 on).
///
/// 4: a record's last count, reserved before, is the byte length of its
/// text features when they are stored as varint gaps
/// (`classifier::codec`), about half the bytes of `u32`s; 0 means `u32`s,
/// as in version 3. A flag byte (reserved before) says the record ends with
/// the online step the learn took. A writer that opens a version 3 journal raises its
/// header to 4 before appending, since its older records read the same
/// under 4; a build that knows only 3 refuses the journal rather than
/// cutting the records it cannot read as a torn tail.
pub const JOURNAL_FORMAT_VERSION: u32 = 4;
/// The oldest journal layout this build still reads.
pub const OLDEST_JOURNAL_VERSION: u32 = 3;
/// The token table is grown to keep its load at or below this fraction, so a
/// lookup is one cache miss with rare probing.
pub const MAX_LOAD: f64 = 0.6;

pub use crate::class::Class;

/// The 128-byte header at offset 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct ModelHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    /// CRC-32 of the header with this field zeroed.
    pub header_crc: u32,
    /// The tokenizer version the counts were learned with.
    pub tokenizer_version: u32,
    /// log2 of the gram table's buckets; 0 when there is no gram table.
    pub gram_bits: u32,
    pub spam_learns: u64,
    pub ham_learns: u64,
    /// Slots in the token table: zero or a power of two.
    pub token_slots: u64,
    /// Occupied slots.
    pub token_count: u64,
    pub digest_count: u64,
    /// The journal generation this model already contains.
    pub journal_generation: u64,
    pub tokens_offset: u64,
    pub digests_offset: u64,
    pub file_len: u64,
    /// CRC-32 of everything after the header.
    pub body_crc: u32,
    pub reserved1: u32,
    /// Offset of the gram table: `2^gram_bits` [`GramEntry`], indexed by bucket.
    pub grams_offset: u64,
    /// Offset of the [`ClassifierHeader`]; 0 when the model has none (never
    /// compacted).
    pub classifier_offset: u64,
    pub reserved: [u64; 1],
}

pub const HEADER_LEN: usize = std::mem::size_of::<ModelHeader>();
const _: () = assert!(HEADER_LEN == 128);
const _: () = assert_shared_prefix!(ModelHeader);

/// One slot of the open-addressed token table. `hash == 0` marks an empty
/// slot; the tokenizer never produces 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct TokenEntry {
    pub hash: u64,
    pub spam: u32,
    pub ham: u32,
}

/// Counts of one byte-gram bucket ([`crate::extract::grams`]). The table is
/// dense: the bucket number is the index, so there is no key.
///
/// Counts are 16-bit to keep the table at 32 MiB (compaction rewrites it
/// whole). A bucket about to overflow has both counts halved: Robinson's
/// probability depends on `spam/ham` only through their ratio, which halving
/// keeps, and at such counts the confidence shrink no longer matters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct GramEntry {
    pub spam: u16,
    pub ham: u16,
}

impl GramEntry {
    /// The entry for counts `spam` and `ham` (clamped at zero), halved as
    /// often as needed to fit.
    pub fn fitted(mut spam: i64, mut ham: i64) -> GramEntry {
        spam = spam.max(0);
        ham = ham.max(0);
        while spam > i64::from(u16::MAX) || ham > i64::from(u16::MAX) {
            spam /= 2;
            ham /= 2;
        }
        GramEntry {
            spam: spam as u16,
            ham: ham as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_counts_halve_to_fit_and_keep_their_ratio() {
        assert_eq!(GramEntry::fitted(3, -2), GramEntry { spam: 3, ham: 0 });
        let big = GramEntry::fitted(200_000, 50_000);
        assert!(big.spam > 40_000);
        assert_eq!(u32::from(big.spam), 4 * u32::from(big.ham));
    }
}

/// The classifier section's own header, at `ModelHeader::classifier_offset`:
/// the dense weight table (`2^weight_bits` `f32`, indexed by feature), the
/// sample table ([`SampleEntry`], in learn order) and the sample arena (each
/// sample's feature indices, `classifier::codec`-encoded).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ClassifierHeader {
    /// `classifier::WEIGHT_BITS` the weights were trained with.
    pub weight_bits: u32,
    /// `classifier::FEATURE_VERSION` the samples were extracted with.
    pub feature_version: u32,
    pub weights_offset: u64,
    pub sample_count: u64,
    pub samples_offset: u64,
    pub arena_offset: u64,
    pub arena_len: u64,
    /// The sequence number the next learned sample gets.
    pub next_sequence: u64,
    /// Unix time of the training that produced the weights (0: untrained).
    pub trained_at: u64,
    pub train_micros: u64,
    /// The training objective per unit of sample weight at its end.
    pub train_loss: f64,
    pub bias: f64,
    pub epochs: u32,
    /// Samples of each class the weights were trained on.
    pub spam_samples: u32,
    pub ham_samples: u32,
    pub reserved1: u32,
    /// `classifier::Calibration` of the training (0: none, read as the
    /// identity; files written before it existed have 0 here).
    pub calibration_slope: f64,
    pub calibration_intercept: f64,
    pub reserved: [u64; 1],
}

const _: () = assert!(std::mem::size_of::<ClassifierHeader>() == 128);

/// One stored sample: a learned message's features and label, never the
/// message. Its features are `text_count` text indices then `rule_count`
/// rule indices, encoded at `arena_offset` (relative to the arena) in
/// `arena_len` bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct SampleEntry {
    pub digest_hi: u64,
    pub digest_lo: u64,
    /// Learn order: the eviction order when the store is full.
    pub sequence: u64,
    pub arena_offset: u64,
    pub text_count: u32,
    pub rule_count: u32,
    pub class: u32,
    pub arena_len: u32,
}

impl SampleEntry {
    pub fn digest(&self) -> u128 {
        (u128::from(self.digest_hi) << 64) | u128::from(self.digest_lo)
    }
}

/// One learned message, in a table sorted by `(digest_hi, digest_lo)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct DigestEntry {
    pub digest_hi: u64,
    pub digest_lo: u64,
    pub class: u32,
    pub reserved: u32,
}

impl DigestEntry {
    pub fn digest(&self) -> u128 {
        (u128::from(self.digest_hi) << 64) | u128::from(self.digest_lo)
    }
}

/// The 24-byte header of `bayes.journal`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct JournalHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub reserved: u32,
    pub generation: u64,
}

pub const JOURNAL_HEADER_LEN: usize = std::mem::size_of::<JournalHeader>();

/// The first slot to probe for `hash` in a table of `slots` (a power of two).
pub fn home_slot(hash: u64, slots: u64) -> usize {
    // The hash is already well mixed; the low bits are as good as any.
    (hash & (slots - 1)) as usize
}

// ---------------------------------------------------------------- fuzzy ---
//
// `fuzzy.model`: a 128-byte [`FuzzyHeader`], then three tables, each 8-byte
// aligned and read in place:
// - entries, [`FuzzyEntry`] sorted by (digest, flag): one per stored digest
//   and list flag;
// - min-hash signatures, `[u32; MINHASH_VALUES]`, one per text-part entry,
//   referred to by `FuzzyEntry::minhash_index`;
// - the LSH candidate index, [`BandRow`] sorted by (key, entry): one row per
//   band of every signature.
// `fuzzy.journal` has the Bayes journal's header and framing with its own
// magic; its records are described in `fuzzy_store.rs`.

/// First eight bytes of every fuzzy model file.
pub const FUZZY_MAGIC: [u8; 8] = *b"CHAFFFZ\0";
/// First eight bytes of every fuzzy journal.
pub const FUZZY_JOURNAL_MAGIC: [u8; 8] = *b"CHAFFFJ\0";
/// The fuzzy layout this build writes.
pub const FUZZY_FORMAT_VERSION: u32 = 1;
/// The oldest fuzzy layout this build still reads.
pub const FUZZY_OLDEST_SUPPORTED_VERSION: u32 = 1;
/// `FuzzyEntry::minhash_index` of an entry without a signature (attachments).
pub const NO_MINHASH: u32 = u32::MAX;

/// The 128-byte header of `fuzzy.model`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct FuzzyHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    /// CRC-32 of the header with this field zeroed.
    pub header_crc: u32,
    /// `fuzzy::FUZZY_DIGEST_VERSION` the digests were computed with.
    pub digest_version: u32,
    /// `fuzzy::MINHASH_VALUES`, so a reader can check the row size.
    pub minhash_values: u32,
    pub entry_count: u64,
    pub minhash_count: u64,
    pub band_rows: u64,
    /// The journal generation this model already contains.
    pub journal_generation: u64,
    pub entries_offset: u64,
    pub minhashes_offset: u64,
    pub bands_offset: u64,
    pub file_len: u64,
    /// CRC-32 of everything after the header.
    pub body_crc: u32,
    pub reserved1: u32,
    pub reserved: [u64; 4],
}

const _: () = assert!(std::mem::size_of::<FuzzyHeader>() == 128);
const _: () = assert_shared_prefix!(FuzzyHeader);

/// One stored digest under one list flag.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct FuzzyEntry {
    pub digest_hi: u64,
    pub digest_lo: u64,
    /// The list: 1 = denied (spam), 2 = allowed, others as configured.
    pub flag: u32,
    /// Reports, summed (saturating).
    pub weight: u32,
    /// Unix time of the last report; with `fuzzy.expire_days`, its expiry.
    pub last_seen: u64,
    /// Row in the signature table, or [`NO_MINHASH`].
    pub minhash_index: u32,
    pub reserved: u32,
}

impl FuzzyEntry {
    pub fn digest(&self) -> u128 {
        (u128::from(self.digest_hi) << 64) | u128::from(self.digest_lo)
    }
}

/// One LSH band of one signature: `key` is `fuzzy::band_key`, `entry` the
/// entry's index.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BandRow {
    pub key: u32,
    pub entry: u32,
}
