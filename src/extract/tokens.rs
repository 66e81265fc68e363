//! The statistical tokenizer: words, word pairs and header features as
//! 64-bit hashes.
//!
//! Words come from Unicode word segmentation (UAX #29), so Russian and German
//! split on their own word boundaries and Chinese and Japanese fall into
//! single ideographs and kana runs, which the pair features below then join
//! into bigrams. Words are NFKC-normalised and case-folded, so full-width and
//! ligature tricks land on the same token as the plain word.
//!
//! Features:
//! - body words (`w`), and OSB pairs: each word paired with each of the
//!   previous `window - 1` words, the distance part of the feature, as
//!   rspamd's and CRM114's orthogonal sparse bigrams;
//! - header words under a per-header namespace (Subject words, From display
//!   name, From and Reply-To domains, X-Mailer, Received HELO names, the
//!   Content-Type of every part, attachment types), and the presence of each
//!   header name, since bulk mailers leave their own header fingerprints;
//! - a few meta features (HTML-only, size class, link hosts).
//!
//! The hashes are part of the model format: changing what a token hashes to
//! changes [`TOKENIZER_VERSION`], and a model learned with another version is
//! refused rather than silently misread.

use std::fmt::Write as _;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::message::{Message, TextKind};

/// Bump whenever any token or gram would hash differently (2: byte grams;
/// 3: [`IGNORED_HEADERS`] no longer tokenized).
pub const TOKENIZER_VERSION: u32 = 3;

/// Words longer than this (in chars) are reduced to a shape token, as
/// SpamAssassin does: long strings are mostly encoded junk or unique ids.
const MAX_WORD_CHARS: usize = 24;
/// Body words considered per message; beyond it the message says nothing new.
const MAX_BODY_WORDS: usize = 30_000;
/// Words taken from any one header value.
const MAX_HEADER_WORDS: usize = 64;

/// Receives each token as it is produced: its hash, and a way to render its
/// text that only an explaining sink calls.
pub trait TokenSink {
    fn token(&mut self, hash: u64, text: &dyn Fn() -> String);
    /// Whether `text` will be called; when not, the tokenizer skips keeping
    /// the words it would need to render pair texts.
    fn wants_text(&self) -> bool {
        true
    }
}

impl<F: FnMut(u64, &dyn Fn() -> String)> TokenSink for F {
    fn token(&mut self, hash: u64, text: &dyn Fn() -> String) {
        self(hash, text)
    }
}

/// A sink that keeps hashes only: the scanning and learning path.
pub struct HashSink<'a>(pub &'a mut Vec<u64>);

impl TokenSink for HashSink<'_> {
    fn token(&mut self, hash: u64, _text: &dyn Fn() -> String) {
        self.0.push(hash);
    }
    fn wants_text(&self) -> bool {
        false
    }
}

/// The hash of `word` in `namespace`. Never 0: 0 marks an empty slot in the
/// model's table.
pub fn token_hash(namespace: &str, word: &str) -> u64 {
    let seed = xxh3_64_with_seed(namespace.as_bytes(), 0x6368_6166_6621);
    nonzero(xxh3_64_with_seed(word.as_bytes(), seed))
}

fn nonzero(hash: u64) -> u64 {
    if hash == 0 { 1 } else { hash }
}

/// Combines two word hashes at distance `distance` into one pair feature.
fn pair_hash(earlier: u64, later: u64, distance: usize) -> u64 {
    // A multiply-xorshift mix (splitmix64's finaliser) over an asymmetric
    // combination, so (a, b) and (b, a) and each distance differ.
    let mut x = earlier.rotate_left(distance as u32 * 13 + 7)
        ^ later.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (distance as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    nonzero(x)
}

/// Headers whose value words are features, with their namespace.
const VALUE_HEADERS: &[(&str, &str)] = &[
    ("x-mailer", "xm"),
    ("user-agent", "ua"),
    ("precedence", "pr"),
    ("organization", "org"),
    ("x-priority", "xp"),
    ("x-msmail-priority", "xmp"),
    ("importance", "imp"),
    ("content-transfer-encoding", "cte"),
    ("content-type", "ct"),
    ("mime-version", "mv"),
    ("x-mimeole", "xmo"),
    ("return-path", "rp"),
    ("to", "to"),
    ("cc", "cc"),
];

/// Headers the tokenizer never reads, neither their name nor their value
/// (the byte grams skip them too). SpamAssassin's Bayes ignores the same
/// families (`IGNORED_HDRS` in its Bayes.pm).
///
/// Most are written after the sender lets go of the message: by the
/// delivering MTA (`Delivered-To`, `Delivery-Date`), by the mailbox or mail
/// reader (`Status`, `X-Keywords`, `X-UID`, ...) or by an earlier filter's
/// verdict (`X-Spam-*`, `X-Bogosity`). An admin learns from mailboxes, where
/// they are present, while the MTA asks about mail that has none of them
/// yet, so a token learned from them is evidence about how the training mail
/// was stored, not about the sender. The rest are a mailing list's, below.
const IGNORED_HEADERS: &[&str] = &[
    "delivered-to",
    "delivery-date",
    "envelope-to",
    "x-envelope-to",
    "x-original-to",
    "status",
    "x-status",
    "x-flags",
    "x-keywords",
    "x-uid",
    "x-uidl",
    "lines",
    "content-length",
    "replied",
    "forwarded",
    "xref",
    "x-gnus-mail-source",
    "x-original-date",
    "x-original-from",
    "original-date",
    "original-from",
    "original-to",
    "x-bogosity",
    "x-antispam",
    "x-virus-scanned",
    "x-virus-status",
    "x-scanned-by",
    "x-scanner",
    "x-filtered-by",
    "x-pyzor",
    "x-mass-check-id",
    // Mailing-list headers: spam posted to a list arrives with the list's
    // headers, so they would teach "list mail is ham" (SpamAssassin's
    // reason); on the train half's cross-validation ignoring them caught
    // 0.7 % more spam at the same false positives.
    "x-list",
    "mailing-list",
    "x-mailing-list",
    "x-unsub",
    "x-unsubscribe",
    "x-mailman-version",
    "x-beenthere",
    "x-loop",
    "mail-followup-to",
    "x-egroups-return",
    "x-egroups-from",
    "x-mdmailing-list",
    "x-xemacs-list",
    // A list's own address on its posts, so the same story.
    "sender",
    "x-sender",
];

/// Prefixes of header families ignored as [`IGNORED_HEADERS`] are.
const IGNORED_HEADER_PREFIXES: &[&str] = &[
    "x-spam-",
    "x-mailscanner",
    "x-vm-",
    "x-dcc-",
    "list-",
    "x-list-",
];

/// Whether the tokenizer skips this (lower-case) header name.
pub(super) fn is_ignored_header(name: &str) -> bool {
    IGNORED_HEADERS.contains(&name)
        || name == "x-spam"
        || IGNORED_HEADER_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// Turns a [`Message`] into tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    window: usize,
    byte_grams: bool,
}

impl Tokenizer {
    /// A tokenizer pairing each word with the `window - 1` words before it.
    pub fn new(window: usize) -> Tokenizer {
        Tokenizer {
            window: window.clamp(1, 8),
            byte_grams: true,
        }
    }

    /// The same without byte grams ([`super::grams`]), for a classifier
    /// configured not to use them: they are most of the extraction cost.
    pub fn without_grams(self) -> Tokenizer {
        Tokenizer {
            byte_grams: false,
            ..self
        }
    }

    /// Whether [`super::Features`] get byte grams.
    pub fn byte_grams(&self) -> bool {
        self.byte_grams
    }

    /// Emits every token of `message` to `sink`, duplicates included.
    pub fn tokenize<S: TokenSink + ?Sized>(&self, message: &Message, sink: &mut S) {
        let mut words = WordBuffer::default();
        self.header_tokens(message, sink, &mut words);
        let mut budget = MAX_BODY_WORDS;
        for part in &message.text_parts {
            self.word_stream("w", &part.text, &mut budget, sink, &mut words);
        }
        self.meta_tokens(message, sink);
    }

    fn header_tokens<S: TokenSink + ?Sized>(
        &self,
        message: &Message,
        sink: &mut S,
        words: &mut WordBuffer,
    ) {
        let mut budget = MAX_HEADER_WORDS;
        self.word_stream("s", &message.subject, &mut budget, sink, words);
        let mut budget = MAX_HEADER_WORDS;
        self.word_stream("fn", &message.from_name, &mut budget, sink, words);
        if let Some((_, domain)) = message.from_address.rsplit_once('@') {
            emit_text(sink, "fd", domain);
        }
        emit_text(sink, "fa", &message.from_address);
        for header in &message.headers {
            let name = header.name.to_ascii_lowercase();
            if is_ignored_header(&name) {
                continue;
            }
            emit_text(sink, "h", &name);
            if let Some((_, namespace)) = VALUE_HEADERS.iter().find(|(n, _)| *n == name) {
                let mut budget = MAX_HEADER_WORDS;
                for word in words_of(&header.value) {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    if let Some(word) = normalize(word, &mut words.scratch) {
                        emit_text(sink, namespace, word);
                    }
                }
            }
            if (name == "reply-to" || name == "message-id")
                && let Some(domain) = domain_of(&header.value)
            {
                emit_text(sink, &name, &domain);
            }
        }
        for helo in message
            .relays
            .iter()
            .filter_map(|relay| relay.helo.as_ref())
            .take(4)
        {
            // Relays keep the HELO as written; the token is the name.
            let helo = helo.to_ascii_lowercase();
            emit_text(sink, "helo", &helo);
            if let Some(tail) = last_labels(&helo, 2) {
                emit_text(sink, "helod", tail);
            }
        }
        for content_type in &message.content_types {
            emit_text(sink, "part", content_type);
        }
        for attachment in &message.attachments {
            if let Some(ext) = attachment
                .file_name
                .as_deref()
                .and_then(|n| n.rsplit_once('.'))
                .map(|(_, e)| e.to_lowercase())
            {
                emit_text(sink, "ext", &ext);
            }
        }
    }

    fn meta_tokens<S: TokenSink + ?Sized>(&self, message: &Message, sink: &mut S) {
        let html_only = !message.text_parts.is_empty()
            && message.text_parts.iter().all(|p| p.kind == TextKind::Html);
        if html_only {
            emit_text(sink, "meta", "html-only");
        }
        let size_class = (usize::BITS - message.raw_size.leading_zeros()).to_string();
        emit_text(sink, "size", &size_class);
        for link in message.links.iter().take(64) {
            if let Some(host) = url_host(link) {
                emit_text(sink, "url", &host);
                if let Some(tail) = last_labels(&host, 2) {
                    emit_text(sink, "urld", tail);
                }
            }
        }
        for problem in &message.problems {
            emit_text(sink, "problem", &format!("{problem:?}"));
        }
    }

    /// Emits unigrams and OSB pairs for the words of `text`, under `namespace`.
    fn word_stream<S: TokenSink + ?Sized>(
        &self,
        namespace: &str,
        text: &str,
        budget: &mut usize,
        sink: &mut S,
        words: &mut WordBuffer,
    ) {
        words.recent.clear();
        words.recent_text.clear();
        if text.is_ascii() {
            // Most mail text: one byte scanner over the whole text draws
            // the same words as `words_of` without its per-chunk iterators.
            let words_in = AsciiWords { text, pos: 0 };
            self.hash_words(namespace, words_in, budget, sink, words);
        } else {
            self.hash_words(namespace, words_of(text), budget, sink, words);
        }
    }

    fn hash_words<'t, S: TokenSink + ?Sized>(
        &self,
        namespace: &str,
        words_in: impl Iterator<Item = &'t str>,
        budget: &mut usize,
        sink: &mut S,
        words: &mut WordBuffer,
    ) {
        let wants_text = sink.wants_text();
        let seed = xxh3_64_with_seed(namespace.as_bytes(), 0x6368_6166_6621);
        let history = self.window - 1;
        for raw_word in words_in {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Some(word) = normalize(raw_word, &mut words.scratch) else {
                continue;
            };
            let hash = nonzero(xxh3_64_with_seed(word.as_bytes(), seed));
            sink.token(hash, &|| format!("{namespace}:{word}"));
            for (back, &earlier) in words.recent.iter().rev().enumerate() {
                let distance = back + 1;
                let pair = pair_hash(earlier, hash, distance);
                sink.token(pair, &|| {
                    let earlier_word = words
                        .recent_text
                        .len()
                        .checked_sub(distance)
                        .and_then(|i| words.recent_text.get(i))
                        .map_or("?", String::as_str);
                    format!(
                        "{namespace}:{earlier_word} {}{word}",
                        "\u{2026} ".repeat(distance - 1)
                    )
                });
            }
            if history > 0 {
                if words.recent.len() == history {
                    words.recent.remove(0);
                    if wants_text {
                        words.recent_text.remove(0);
                    }
                }
                words.recent.push(hash);
                if wants_text {
                    words.recent_text.push(word.to_owned());
                }
            }
        }
    }
}

/// Reused buffers, so tokenizing allocates little per word.
#[derive(Default)]
struct WordBuffer {
    scratch: String,
    /// Hashes of the last `window - 1` words.
    recent: Vec<u64>,
    /// Their texts, kept only for sinks that want token text.
    recent_text: Vec<String>,
}

fn emit_text<S: TokenSink + ?Sized>(sink: &mut S, namespace: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let hash = token_hash(namespace, text);
    sink.token(hash, &|| format!("{namespace}:{text}"));
}

/// The words of `text`. UAX #29 segmentation for anything non-ASCII; for
/// pure ASCII (most mail) a byte scanner that draws the same boundaries for
/// letters, digits, `'` and `.` inside words and `,` inside numbers, at a
/// fraction of the cost.
fn words_of(text: &str) -> impl Iterator<Item = &str> + '_ {
    // Words never span white space, so each white-space-separated chunk can
    // take the fast path on its own when it is ASCII.
    text.split_ascii_whitespace().flat_map(|chunk| {
        let (ascii, unicode) = if chunk.is_ascii() {
            (
                Some(AsciiWords {
                    text: chunk,
                    pos: 0,
                }),
                None,
            )
        } else {
            (None, Some(chunk.unicode_words()))
        };
        ascii
            .into_iter()
            .flatten()
            .chain(unicode.into_iter().flatten())
    })
}

struct AsciiWords<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        while self.pos < bytes.len() && !is_word(bytes[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < bytes.len() {
            let b = bytes[self.pos];
            if is_word(b) {
                self.pos += 1;
                continue;
            }
            let joins = match b {
                b'.' | b'\'' => true,
                b',' => bytes[self.pos - 1].is_ascii_digit(),
                _ => false,
            };
            let next_ok = bytes.get(self.pos + 1).is_some_and(|&n| {
                if b == b',' {
                    n.is_ascii_digit()
                } else {
                    is_word(n)
                }
            });
            if joins && next_ok {
                self.pos += 1;
            } else {
                break;
            }
        }
        Some(&self.text[start..self.pos])
    }
}

/// Case-folds and NFKC-normalises `word` into `scratch`; `None` for words too
/// short to mean anything. Long words and long numbers become shape tokens.
fn normalize<'s>(word: &str, scratch: &'s mut String) -> Option<&'s str> {
    scratch.clear();
    if word.is_ascii() {
        if word.len() < 2 {
            return None;
        }
        scratch.push_str(word);
        scratch.make_ascii_lowercase();
        if word.len() <= 4 {
            // Short enough to be neither a long word nor a long number.
            return Some(scratch.as_str());
        }
    } else {
        for c in word.nfkc().flat_map(char::to_lowercase) {
            scratch.push(c);
        }
    }
    let n_chars = if word.is_ascii() {
        scratch.len()
    } else {
        scratch.chars().count()
    };
    // The stand-ins are written into `scratch` itself: a fresh `String` per
    // long word or number dropped the buffer every next word then regrew.
    if n_chars > MAX_WORD_CHARS {
        let head_end = scratch
            .char_indices()
            .nth(6)
            .map_or(scratch.len(), |(at, _)| at);
        scratch.truncate(head_end);
        scratch.insert_str(0, "long:");
        let _ = write!(scratch, ":{}", n_chars / 8);
    } else if n_chars > 4
        && scratch
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        scratch.clear();
        let _ = write!(scratch, "num:{n_chars}");
    }
    Some(scratch.as_str())
}

/// The domain after the last `@` of an address-like value, without brackets.
fn domain_of(value: &str) -> Option<String> {
    let (_, domain) = value.rsplit_once('@')?;
    let domain: String = domain
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    (!domain.is_empty()).then(|| domain.to_lowercase())
}

/// The last `n` dot-separated labels of `host`, if it has more than `n`.
fn last_labels(host: &str, n: usize) -> Option<&str> {
    let mut dots = host.rmatch_indices('.');
    let (at, _) = dots.nth(n - 1)?;
    Some(&host[at + 1..])
}

/// The lowercased host of an absolute http(s) URL.
fn url_host(url: &str) -> Option<String> {
    let lower = url.trim();
    let rest = lower
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("https://"))
        .map(|_| &lower[8..])
        .or_else(|| {
            lower
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("http://"))
                .map(|_| &lower[7..])
        })?;
    let end = rest.find(['/', '?', '#', ':']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or_default();
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Limits, parse};

    fn texts(raw: &str) -> Vec<String> {
        let message = parse(raw.as_bytes(), &Limits::default());
        let mut out = Vec::new();
        Tokenizer::new(5).tokenize(&message, &mut |_: u64, text: &dyn Fn() -> String| {
            out.push(text())
        });
        out
    }

    #[test]
    fn words_are_case_folded_and_prefixed() {
        let t = texts("Subject: Cheap Pills\n\nBuy NOW\n");
        assert!(t.contains(&"s:cheap".to_owned()), "{t:?}");
        assert!(t.contains(&"w:buy".to_owned()));
        assert!(t.contains(&"w:now".to_owned()));
        assert!(t.contains(&"w:buy now".to_owned()), "{t:?}");
    }

    #[test]
    fn full_width_letters_fold_to_ascii() {
        let t = texts(
            "Subject: x\nContent-Type: text/plain; charset=utf-8\n\n\u{ff36}\u{ff29}\u{ff21}\u{ff27}\u{ff32}\u{ff21}\n",
        );
        assert!(t.contains(&"w:viagra".to_owned()), "{t:?}");
    }

    #[test]
    fn russian_and_chinese_segment_into_words() {
        let t =
            texts("Subject: x\nContent-Type: text/plain; charset=utf-8\n\nПривет мир 你好世界\n");
        assert!(t.contains(&"w:привет".to_owned()), "{t:?}");
        assert!(t.contains(&"w:мир".to_owned()));
        assert!(t.iter().any(|w| w == "w:你 好" || w == "w:你好"), "{t:?}");
    }

    #[test]
    fn long_words_and_numbers_become_shapes() {
        let t = texts("Subject: x\n\nabcdefghijklmnopqrstuvwxyzabcdef 1234567\n");
        // 32 characters: the first six, then the length over 8.
        assert!(t.contains(&"w:long:abcdef:4".to_owned()), "{t:?}");
        assert!(t.contains(&"w:num:7".to_owned()), "{t:?}");
        let mut scratch = String::new();
        let long = "ÄÖÜäöüßabcdefghijklmnopqrstuvwxyz";
        assert_eq!(normalize(long, &mut scratch), Some("long:äöüäöü:4"));
        assert_eq!(normalize("1,234.5", &mut scratch), Some("num:7"));
        assert_eq!(normalize("WORD", &mut scratch), Some("word"));
    }

    #[test]
    fn ascii_words_match_unicode_segmentation_on_common_text() {
        for text in [
            "Hello, world! It's 3.14 and 1,000,000 dollars at www.example.com/path?x=1 e-mail",
            "  leading and trailing...  ",
            "a.b. c'd' 12,a ,5",
        ] {
            let fast: Vec<&str> = AsciiWords { text, pos: 0 }.collect();
            let reference: Vec<&str> = text.unicode_words().collect();
            assert_eq!(fast, reference, "{text}");
        }
    }

    #[test]
    fn delivery_and_mailbox_headers_are_not_tokens() {
        let t = texts(
            "Delivered-To: me@example.org\nX-Keywords: NonJunk\nX-Spam-Status: No\n\
             Status: RO\nX-Mailer: Mutt\nSubject: hi\n\nbody\n",
        );
        assert!(t.contains(&"h:x-mailer".to_owned()), "{t:?}");
        for ignored in ["delivered-to", "x-keywords", "x-spam-status", "status"] {
            assert!(!t.contains(&format!("h:{ignored}")), "{ignored}: {t:?}");
        }
    }

    #[test]
    fn pair_features_depend_on_order_and_distance() {
        assert_ne!(pair_hash(1, 2, 1), pair_hash(2, 1, 1));
        assert_ne!(pair_hash(1, 2, 1), pair_hash(1, 2, 2));
    }

    #[test]
    fn token_hashes_are_stable() {
        // Part of the model format: if this changes, bump TOKENIZER_VERSION.
        assert_eq!(token_hash("w", "viagra"), token_hash("w", "viagra"));
        assert_ne!(token_hash("w", "viagra"), token_hash("s", "viagra"));
        assert_eq!(
            format!("{:016x}", token_hash("w", "viagra")),
            "7751bb243035804d"
        );
    }

    proptest::proptest! {
        /// The whole-text ASCII scanner draws exactly the words the
        /// per-chunk path does.
        #[test]
        fn ascii_scan_draws_the_words_of_each_chunk(text in "[ a-zA-Z0-9_.,'\t\n!-]{0,200}") {
            let whole: Vec<&str> = AsciiWords { text: &text, pos: 0 }.collect();
            let chunked: Vec<&str> = words_of(&text).collect();
            proptest::prop_assert_eq!(whole, chunked);
        }
    }
}
