//! The literals every match of a pattern must contain, which is what the
//! one-pass matcher searches for first (`matcher.rs`): text without any of
//! them is never handed to the pattern's own regex.
//!
//! Prefix literals (every match starts with one) let the matcher try the
//! regex anchored where one occurs; suffix literals, backwards from where
//! one ends; inner literals (every match contains one, somewhere) only tell
//! whether a text is worth one unanchored search.
//!
//! One set per pattern, the most selective: gating a candidate on the
//! literal sets of its other parts as well (`you … were|was … selected`)
//! was tried in session 21 and gained nothing. Those sets are short common
//! words ("was", "sen"), and checking them is a pass over the whole text,
//! which costs more than the few anchored tries it would spare
//! (`chaff rules stats --timing` on 600 messages: the confirmations' total
//! 243 → 240 µs per message, fancy-regex's 334 → 354).

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

/// Literals shorter than this make a pattern a candidate too often to help.
const MIN_LITERAL: usize = 3;

/// Where in a match its required literals are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Every match starts with one of them.
    Prefix,
    /// Every match ends with one of them.
    Suffix,
    /// Every match contains one of them somewhere.
    Inner,
}

/// Literals every match of `source` starts (or ends) with, ASCII-lowercased,
/// if they are all at least [`MIN_LITERAL`] bytes long.
///
/// The automaton is ASCII case-insensitive, so a leading `(?i)` is dropped
/// before extracting: otherwise every case variant of every letter would be
/// enumerated and long alternations would yield no usable literal. (The
/// cost: a text that spells an ASCII letter with a non-ASCII case variant,
/// the Kelvin sign for `k` or the long `ſ` for `s`, is not a candidate.)
pub fn required_literals(source: &str) -> Option<(Side, Vec<Vec<u8>>)> {
    let folded = drop_leading_case_flag(source);
    if folded != source {
        // Only when every literal is ASCII: the automaton folds ASCII case
        // only, so `(?i)straße` must keep its enumerated variants (ẞ).
        let (side, literals) = extract_literals(&folded)?;
        if literals.iter().all(|l| l.is_ascii()) {
            return Some((side, literals));
        }
    }
    extract_literals(source)
}

/// The literals every match of `hir` starts (or ends) with, ASCII-lowercased,
/// if the extractor finds a finite set of them.
fn end_literals(kind: ExtractKind, hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let seq = extractor(kind).extract(hir);
    let mut lowered: Vec<Vec<u8>> = seq
        .literals()?
        .iter()
        .map(|l| l.as_bytes().to_ascii_lowercase())
        .collect();
    lowered.sort();
    lowered.dedup();
    Some(lowered)
}

/// The extractor settings every literal search here uses: bounded, so a
/// pattern of many classes yields no literal rather than thousands.
fn extractor(kind: ExtractKind) -> Extractor {
    let mut extractor = Extractor::new();
    extractor
        .kind(kind)
        .limit_class(16)
        .limit_repeat(8)
        .limit_literal_len(24)
        .limit_total(512);
    extractor
}

/// Prefix literals win unless the suffix ones are more selective (longer,
/// or not a link's scheme).
fn extract_literals(source: &str) -> Option<(Side, Vec<Vec<u8>>)> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(source)
        .ok()?;
    let mut best: Option<(Side, Vec<Vec<u8>>)> = None;
    for (kind, side) in [
        (ExtractKind::Prefix, Side::Prefix),
        (ExtractKind::Suffix, Side::Suffix),
    ] {
        let Some(lowered) = end_literals(kind, &hir) else {
            continue;
        };
        if lowered.is_empty() || lowered.iter().any(|l| l.len() < MIN_LITERAL) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(_, b)| selectivity(&lowered) > selectivity(b))
        {
            best = Some((side, lowered));
        }
    }
    // An inner literal only says whether to search at all, so it is taken
    // only where neither end gives a selective one.
    if best.as_ref().is_none_or(|(_, b)| selectivity(b) == 0)
        && let Some(mut inner) = inner_literals(&hir)
    {
        inner.sort();
        inner.dedup();
        let usable = !inner.is_empty() && inner.iter().all(|l| l.len() >= MIN_LITERAL);
        if usable
            && best
                .as_ref()
                .is_none_or(|(_, b)| selectivity(&inner) > selectivity(b))
        {
            best = Some((Side::Inner, inner));
        }
    }
    best
}

/// Most literals an inner alternation may contribute.
const MAX_INNER_LITERALS: usize = 64;

/// Literals (ASCII-lowercased) one of which every match contains: a
/// concatenation needs what its most selective part needs (runs of literal
/// parts joined), an alternation what each branch needs, a repetition of at
/// least one what its body needs.
fn inner_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(literal) => Some(vec![literal.0.to_ascii_lowercase()]),
        HirKind::Class(class) => case_variants_of(class).map(|b| vec![vec![b]]),
        HirKind::Capture(capture) => inner_literals(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => inner_literals(&repetition.sub),
        HirKind::Concat(parts) => {
            let mut best: Option<Vec<Vec<u8>>> = None;
            let mut consider = |found: Vec<Vec<u8>>| {
                let long_enough = found.iter().all(|l| l.len() >= MIN_LITERAL);
                if long_enough
                    && best
                        .as_ref()
                        .is_none_or(|b| selectivity(&found) > selectivity(b))
                {
                    best = Some(found);
                }
            };
            let mut run: Vec<u8> = Vec::new();
            for part in parts {
                let single = match part.kind() {
                    HirKind::Literal(literal) => Some(literal.0.to_ascii_lowercase()),
                    HirKind::Class(class) => case_variants_of(class).map(|b| vec![b]),
                    _ => None,
                };
                match single {
                    Some(bytes) => run.extend(bytes),
                    None => {
                        if !run.is_empty() {
                            consider(vec![std::mem::take(&mut run)]);
                        }
                        if let Some(found) = inner_literals(part) {
                            consider(found);
                        }
                    }
                }
            }
            if !run.is_empty() {
                consider(vec![run]);
            }
            // Every match of the concatenation ends with a match of each of
            // its tails, so the prefix literals of a tail are inner literals
            // of the whole: `<b>x</(?:b|font)>` needs `</b>` or `</font>`,
            // which the runs above cannot join across the alternation.
            for start in 1..parts.len() {
                if let Some(found) =
                    end_literals(ExtractKind::Prefix, &Hir::concat(parts[start..].to_vec()))
                {
                    consider(found);
                }
            }
            best
        }
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(inner_literals(branch)?);
                if all.len() > MAX_INNER_LITERALS {
                    return None;
                }
            }
            Some(all)
        }
        _ => None,
    }
}

/// The ASCII letter (lowercase) a class spells in every case, as `(?i)k`
/// gives `[Kk\x{212A}]`: one byte of a literal the case-insensitive
/// automaton looks for (the non-ASCII variants are the cost the leading
/// `(?i)` already pays).
fn case_variants_of(class: &regex_syntax::hir::Class) -> Option<u8> {
    let mut letter = None;
    let mut count = 0;
    let mut take = |c: char| -> Option<()> {
        count += 1;
        let folded = match c {
            '\u{212A}' => b'k',
            '\u{17F}' => b's',
            c if c.is_ascii_alphabetic() => c.to_ascii_lowercase() as u8,
            _ => return None,
        };
        match letter {
            None => letter = Some(folded),
            Some(seen) if seen == folded => {}
            Some(_) => return None,
        }
        (count <= 4).then_some(())
    };
    match class {
        regex_syntax::hir::Class::Unicode(unicode) => {
            for range in unicode.iter() {
                if u32::from(range.end()) - u32::from(range.start()) > 3 {
                    return None;
                }
                for c in range.start()..=range.end() {
                    take(c)?;
                }
            }
        }
        regex_syntax::hir::Class::Bytes(bytes) => {
            for range in bytes.iter() {
                if range.end() - range.start() > 3 {
                    return None;
                }
                for b in range.start()..=range.end() {
                    take(char::from(b))?;
                }
            }
        }
    }
    // A class of one letter in one case is still that letter, and the
    // automaton ignores case anyway.
    letter
}

/// Literals nearly every message contains many times over; a pattern
/// known only by them is a candidate everywhere, once per link.
const UBIQUITOUS: &[&[u8]] = &[b"http", b"www.", b"mailto:", b"<a ", b"href"];

/// How rarely a set of literals is expected to occur: its shortest
/// literal's length, or 0 when one of them starts with a ubiquitous one.
fn selectivity(literals: &[Vec<u8>]) -> usize {
    if literals
        .iter()
        .any(|l| UBIQUITOUS.iter().any(|u| l.starts_with(u)))
    {
        return 0;
    }
    literals.iter().map(Vec::len).min().unwrap_or(0)
}

/// `(?im)x` → `(?m)x`; `(?i)x` → `x`; anything else unchanged.
fn drop_leading_case_flag(source: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = source.strip_prefix("(?")
        && let Some(end) = rest.find(')')
        && rest[..end].contains('i')
        && rest[..end].bytes().all(|b| b.is_ascii_alphabetic())
    {
        let flags: String = rest[..end].chars().filter(|&c| c != 'i').collect();
        let body = &rest[end + 1..];
        return if flags.is_empty() {
            body.to_owned().into()
        } else {
            format!("(?{flags}){body}").into()
        };
    }
    source.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_literals_when_neither_end_has_one() {
        let (side, literals) = required_literals(r"[a-z]{3,}\d+ (?:million|billion) \w+").unwrap();
        assert_eq!(side, Side::Inner);
        // The blanks around the alternation are required too.
        assert_eq!(literals, vec![b" billion ".to_vec(), b" million ".to_vec()]);
        // Case classes inside a pattern join into one literal.
        let (side, literals) = required_literals(r"\d+(?i:lotto)\d").unwrap();
        assert_eq!(side, Side::Inner);
        assert_eq!(literals, vec![b"lotto".to_vec()]);
    }

    #[test]
    fn inner_literals_across_an_alternation() {
        let (side, literals) =
            required_literals(r"(?i)\b[a-z]{1,6}<(?:b|font)>[a-z]{1,6}</(?:b|font)>[a-z]").unwrap();
        assert_eq!(side, Side::Inner);
        assert_eq!(literals, vec![b"</b>".to_vec(), b"</font>".to_vec()]);
    }

    #[test]
    fn no_inner_literal_when_a_branch_or_an_optional_part_lacks_one() {
        assert!(required_literals(r"\d+(?:million|\w)\d").is_none());
        assert!(required_literals(r"\w+(?:million)?\w").is_none());
        assert!(required_literals(r"\w{5,}").is_none());
    }

    #[test]
    fn an_end_literal_is_preferred_to_an_inner_one() {
        assert_eq!(
            required_literals(r"click\w+million").map(|l| l.0),
            Some(Side::Suffix)
        );
        assert_eq!(
            required_literals(r"clickhere\w+million").map(|l| l.0),
            Some(Side::Prefix)
        );
    }
}
