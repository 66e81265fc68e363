//! Byte 7-grams of the raw message, hashed into a fixed number of buckets.
//!
//! Words miss much of what tells bulk mail from personal mail: how the
//! headers are laid out (Received chains, Message-ID and Date formats, MIME
//! boundaries, X-headers), HTML markup and attributes, base64 and
//! quoted-printable texture. Overlapping byte n-grams of the raw message see
//! all of it without any parsing, which is why character n-gram models did so
//! well in the TREC spam tracks. On the development split of the SpamAssassin
//! corpus (`tools/eval --dev`), adding the 25 strongest 7-gram buckets to the
//! word tokens' verdict cut 1 − AUC from 0.00081 to 0.00027; 3- to 12-grams,
//! header-only and body-only grams, 15 to 60 kept grams and subsampling the
//! grams were all measured and were worse or no better, and a logistic
//! regression over the same features was worse than this naive Bayes.
//!
//! Each gram is hashed straight to one of [`GRAM_BUCKETS`] buckets, with no
//! key stored: the counts live in a dense array in the model file
//! ([`crate::store`]), so learning a gram is one increment and looking one up
//! is one memory access, and the model never grows whatever is learned.
//! Colliding grams share counts; 2^22 and 2^23 buckets measured the same
//! on the development split, and 2^23 leaves room for larger training sets.
//!
//! Headers (up to [`HEADER_BYTES`]) and body (up to [`BODY_BYTES`]) are hashed
//! under different seeds, so `From:` in a header and in a quoted reply are
//! different features. An mbox `From ` envelope line is skipped: an MTA never
//! sends one, so learning it would teach the archive's format, not the mail.

use std::borrow::Cow;

use super::tokens::is_ignored_header;

/// log2 of the number of buckets. Part of the model format
/// ([`crate::store`] sizes the gram table from it): changing it changes
/// [`super::TOKENIZER_VERSION`].
pub const GRAM_BITS: u32 = 23;
/// Buckets in the gram table.
pub const GRAM_BUCKETS: usize = 1 << GRAM_BITS;
/// Bytes per gram.
pub const GRAM_LEN: usize = 7;
/// Header bytes read; beyond it Received chains only repeat themselves.
pub const HEADER_BYTES: usize = 3_000;
/// Body bytes read: bounds the cost of a large message.
pub const BODY_BYTES: usize = 32_768;

const HEADER_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const BODY_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The distinct gram buckets of `raw`, in first-seen order.
pub fn byte_grams(raw: &[u8]) -> Vec<u32> {
    let sections = sections(raw);
    let mut out = Vec::with_capacity(sections.iter().map(|s| s.bytes.len()).sum());
    for section in &sections {
        push_grams(&section.bytes, section.seed, &mut out);
    }
    distinct(out)
}

/// Each gram of `raw` with its bucket, for `scan --explain`.
pub fn gram_texts(raw: &[u8]) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for section in sections(raw) {
        for window in section.bytes.windows(GRAM_LEN) {
            let mut word = [0u8; 8];
            for (to, &from) in word.iter_mut().zip(window) {
                *to = fold_digit(from);
            }
            let bucket = bucket_of(u64::from_le_bytes(word), section.seed);
            out.push((
                bucket,
                format!("{}:{}", section.name, window.escape_ascii()),
            ));
        }
    }
    out
}

/// The part of a message its grams are taken from, with the seed that
/// keeps its grams apart from the other part's.
struct Section<'a> {
    bytes: Cow<'a, [u8]>,
    seed: u64,
    name: &'static str,
}

/// The header (up to [`HEADER_BYTES`], without the fields the tokenizer
/// ignores) and body (up to [`BODY_BYTES`]).
fn sections(raw: &[u8]) -> [Section<'_>; 2] {
    let raw = skip_mbox_line(raw);
    let (header, body) = raw.split_at(header_end(raw));
    let mut header = without_ignored_fields(header);
    match &mut header {
        Cow::Borrowed(bytes) => *bytes = &bytes[..bytes.len().min(HEADER_BYTES)],
        Cow::Owned(bytes) => bytes.truncate(HEADER_BYTES),
    }
    [
        Section {
            bytes: header,
            seed: HEADER_SEED,
            name: "header",
        },
        Section {
            bytes: Cow::Borrowed(&body[..body.len().min(BODY_BYTES)]),
            seed: BODY_SEED,
            name: "body",
        },
    ]
}

/// The header without the fields [`super::tokens::is_ignored_header`] names
/// (a field with its continuation lines): delivery, mailbox and earlier
/// filters' headers say how the training mail was stored, not who sent it.
/// Borrowed when there is none, the usual case at the MTA.
fn without_ignored_fields(header: &[u8]) -> Cow<'_, [u8]> {
    let mut kept: Option<Vec<u8>> = None;
    let mut skipping = false;
    let mut start = 0;
    while start < header.len() {
        // Only the first HEADER_BYTES kept bytes are read.
        let kept_len = kept.as_ref().map_or(start, Vec::len);
        if kept_len >= HEADER_BYTES {
            break;
        }
        let end = memchr::memchr(b'\n', &header[start..]).map_or(header.len(), |i| start + i + 1);
        let line = &header[start..end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let mut name = [0u8; MAX_FIELD_NAME];
            skipping = field_name(line, &mut name).is_some_and(is_ignored_header);
            if skipping && kept.is_none() {
                kept = Some(header[..start].to_vec());
            }
        }
        if let Some(kept) = kept.as_mut()
            && !skipping
        {
            kept.extend_from_slice(line);
        }
        start = end;
    }
    kept.map_or(Cow::Borrowed(header), Cow::Owned)
}

/// Longest field name looked up; every ignored name is far shorter.
const MAX_FIELD_NAME: usize = 64;

/// The lower-cased name of the header field `line` starts, lowered into
/// `buffer` (no allocation per header line), if it is short ASCII.
fn field_name<'b>(line: &[u8], buffer: &'b mut [u8; MAX_FIELD_NAME]) -> Option<&'b str> {
    let colon = memchr::memchr(b':', line)?;
    let name = line[..colon].trim_ascii_end();
    let buffer = buffer.get_mut(..name.len())?;
    for (to, from) in buffer.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(buffer).ok()
}

/// Hashes every window of `GRAM_LEN` bytes. The window is kept in the low 56
/// bits of a register and shifted one byte per step, so each gram costs a
/// shift, an or and a multiply.
fn push_grams(bytes: &[u8], seed: u64, out: &mut Vec<u32>) {
    if bytes.len() < GRAM_LEN {
        return;
    }
    const MASK: u64 = (1 << (8 * GRAM_LEN)) - 1;
    let mut window = 0u64;
    for (i, &byte) in bytes.iter().enumerate() {
        // Little-endian order: the oldest byte lowest, as `from_le_bytes`
        // of the window would give.
        let byte = fold_digit(byte);
        window = (window >> 8) | (u64::from(byte) << (8 * (GRAM_LEN - 1)));
        if i + 1 >= GRAM_LEN {
            out.push(bucket_of(window & MASK, seed));
        }
    }
}

/// Every digit reads as `0`: dates, times, ids and counters then leave their
/// shape in the grams but not their values, which only say *when* a message
/// was sent. (On the corpus, "May 2002" was a strong spam gram only because
/// that is when the spam was collected.)
fn fold_digit(byte: u8) -> u8 {
    if byte.is_ascii_digit() { b'0' } else { byte }
}

fn bucket_of(window: u64, seed: u64) -> u32 {
    // A multiply mixes low bits upward; the top bits are the best mixed.
    let mixed = (window ^ seed).wrapping_mul(0x9fb2_1c65_1e98_df25);
    let mixed = mixed ^ (mixed >> 29);
    (mixed.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> (64 - GRAM_BITS)) as u32
}

fn skip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(&raw[raw.len()..], |end| &raw[end + 1..])
    } else {
        raw
    }
}

/// Offset just past the blank line ending the header (LF or CRLF), or the
/// whole input when there is none.
fn header_end(raw: &[u8]) -> usize {
    memchr::memmem::find_iter(raw, b"\n")
        .find(|&i| {
            let rest = &raw[i + 1..];
            rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
        })
        .map_or(
            raw.len(),
            |i| {
                if raw[i + 1] == b'\n' { i + 2 } else { i + 3 }
            },
        )
}

/// Removes repeated buckets, keeping first occurrences. An open-addressed
/// set sized for the input stays in L1/L2; a bitmap over all buckets (1 MiB)
/// and sorting were both measured slower.
fn distinct(buckets: Vec<u32>) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let slots = (buckets.len() * 2).next_power_of_two().max(16);
    let mask = slots - 1;
    let mut seen = vec![EMPTY; slots];
    let mut out = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        // Buckets are the top bits of a mixed hash: their low bits are as
        // uniform as any.
        let mut slot = bucket as usize & mask;
        loop {
            match seen[slot] {
                EMPTY => {
                    seen[slot] = bucket;
                    out.push(bucket);
                    break;
                }
                existing if existing == bucket => break,
                _ => slot = (slot + 1) & mask,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_window_equals_direct_hash() {
        let text = b"Subject: hello world\n\nbody text here";
        let mut rolled = Vec::new();
        push_grams(text, BODY_SEED, &mut rolled);
        let direct: Vec<u32> = text
            .windows(GRAM_LEN)
            .map(|w| {
                let mut word = [0u8; 8];
                word[..GRAM_LEN].copy_from_slice(w);
                bucket_of(u64::from_le_bytes(word), BODY_SEED)
            })
            .collect();
        assert_eq!(rolled, direct);
        let texts: Vec<u32> = gram_texts(b"A: b\n\nbody 2002 text")
            .into_iter()
            .map(|(bucket, _)| bucket)
            .collect();
        let mut expected = Vec::new();
        push_grams(b"A: b\n\n", HEADER_SEED, &mut expected);
        push_grams(b"body 2002 text", BODY_SEED, &mut expected);
        assert_eq!(texts, expected);
        assert!(rolled.iter().all(|&b| (b as usize) < GRAM_BUCKETS));
    }

    #[test]
    fn ignored_header_fields_give_no_grams() {
        let kept = "From: a@example.org\nSubject: hello there\n";
        let with = "X-Keywords: NonJunk\nFrom: a@example.org\nDelivered-To: me@example.org\n \
                    folded@example.org\nSubject: hello there\n";
        assert_eq!(without_ignored_fields(with.as_bytes()), kept.as_bytes());
        assert!(matches!(
            without_ignored_fields(kept.as_bytes()),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            byte_grams(format!("{with}\nbody text\n").as_bytes()),
            byte_grams(format!("{kept}\nbody text\n").as_bytes())
        );
    }

    #[test]
    fn digits_fold_to_zero() {
        assert_eq!(
            byte_grams(b"Date: 27 May 2002\n\nx"),
            byte_grams(b"Date: 01 May 1999\n\nx")
        );
    }

    #[test]
    fn header_and_body_grams_differ() {
        let header_only = byte_grams(b"Subject: cheap pills now\n\n");
        let body_only = byte_grams(b"X: y\n\ncheap pills now");
        let shared = header_only.iter().filter(|b| body_only.contains(b)).count();
        assert!(!header_only.is_empty() && !body_only.is_empty());
        assert_eq!(shared, 0);
    }

    #[test]
    fn mbox_line_and_crlf_are_handled() {
        let lf = byte_grams(b"Subject: a test message\n\nsome body words");
        let mbox =
            byte_grams(b"From someone Mon Jan 1\nSubject: a test message\n\nsome body words");
        assert_eq!(lf, mbox);
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
        assert_eq!(header_end(b"no blank line"), 13);
    }

    #[test]
    fn repeats_count_once_and_short_input_gives_nothing() {
        let grams = byte_grams(b"A: b\n\nabcdefgabcdefgabcdefg");
        let mut sorted = grams.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), grams.len());
        assert!(byte_grams(b"").is_empty());
        assert!(byte_grams(b"abc").is_empty());
    }
}
