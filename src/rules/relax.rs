//! A necessary condition for a fancy-regex pattern, in a form the `regex`
//! crate runs: the pattern with its look-around, atomic groups and
//! back-references relaxed to what they imply.
//!
//! fancy-regex's backtracking VM is the cost of a large SpamAssassin
//! ruleset: 148 of its patterns need look-around or back-references, and
//! run one by one over every text. The relaxed form matches every text the
//! pattern matches (and more), so it can join the one-pass matcher like any
//! other pattern; fancy-regex then runs only on the texts where it matched.
//! A result never changes: the relaxed form only decides when the exact one
//! has to run.
//!
//! Relaxing, node by node (each step keeps every match of the original):
//! - look-around of any kind, `\K`, and every zero-width assertion except
//!   `^` and `$` → empty (an assertion dropped only lets more through;
//!   `\b` is dropped too, since the `regex` crate's `\b` and fancy-regex's
//!   disagree next to non-ASCII letters);
//! - an atomic group → the group as an ordinary one (atomicity only forbids
//!   some matches);
//! - a back-reference → its group's own relaxed form (the text it repeats
//!   was matched by that group, so it is in the group's language), as a
//!   non-capturing group; or any text, `(?s:.*?)`, where that form would
//!   not do (it holds `^` or `$`, which may not hold where the text is
//!   repeated; a case-insensitive reference to a case-sensitive group; a
//!   reference inside a reference);
//! - a repetition's upper bound above [`MAX_COUNTED_REPEAT`] → none (what
//!   keeps the lazy DFA of a large counted repetition from overflowing);
//! - anything else fancy-regex knows that the `regex` crate does not
//!   (conditionals, recursion, `\G`, absent operators…) → no relaxed form:
//!   the pattern keeps running on every text.

use fancy_regex::{Assertion, Expr};

/// The relaxed form of `source` as `regex` crate syntax, or `None` when it
/// has none (or when `source` is not a fancy-regex pattern at all).
pub fn relaxed(source: &str) -> Option<String> {
    let tree = Expr::parse_tree(source).ok()?;
    let mut groups = Vec::new();
    collect_groups(&tree.expr, &mut groups);
    let mut relaxed = Relaxer {
        groups: &groups,
        in_reference: false,
    }
    .relax(&tree.expr)?;
    let mut out = String::new();
    // fancy-regex marks case per character (`(?i:m)(?i:a)(?i:i)(?i:l)`), and
    // in that form the literal extractor enumerates every case variant and
    // gives up: `/mail\@101private\.com|…/i` had no literal at all. Where
    // every character is case-insensitive, one leading `(?i)` says the same.
    if every_atom_case_insensitive(&relaxed) == Some(true) {
        relaxed = without_case_flags(&relaxed);
        out.push_str("(?i)");
    }
    relaxed.to_str(&mut out, 0);
    Some(out)
}

/// Whether every literal and class of `expr` that case could change is
/// case-insensitive (`None` when none could). Not a matter of selectivity
/// only: under `(?i)` a negated class shrinks (`[^\x41]` then refuses `a`
/// too), so only atoms that case folding leaves as they are may be
/// case-sensitive, and the rendering under one `(?i)` is then exactly the
/// pattern.
fn every_atom_case_insensitive(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Literal { casei: true, .. } | Expr::Delegate { casei: true, .. } => Some(true),
        Expr::Literal { val, .. } => val.chars().any(char::is_alphabetic).then_some(false),
        Expr::Delegate { inner, .. } => (!folds_to_itself(inner)).then_some(false),
        Expr::Concat(children) | Expr::Alt(children) => children
            .iter()
            .try_fold(None, |all, child| {
                match (all, every_atom_case_insensitive(child)) {
                    (_, Some(false)) => Err(()),
                    (Some(true), _) | (_, Some(true)) => Ok(Some(true)),
                    _ => Ok(None),
                }
            })
            .unwrap_or(Some(false)),
        Expr::Group(child) => every_atom_case_insensitive(child),
        Expr::Repeat { child, .. } => every_atom_case_insensitive(child),
        _ => None,
    }
}

/// Whether a class reads the same under case folding: no letter of its
/// own, and no escape but digits, spaces, word characters and control
/// characters (`\d`, `[^\s]`, `[^\n]`); `\x41` or `\p{Lu}` might name a
/// cased letter.
fn folds_to_itself(class: &str) -> bool {
    let mut escaped = false;
    for c in class.chars() {
        if escaped {
            if !"dDsSwWnrtfv".contains(c) && c.is_alphanumeric() {
                return false;
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c.is_alphabetic() {
            return false;
        }
    }
    true
}

/// `expr` with every case flag cleared (for rendering under one `(?i)`).
fn without_case_flags(expr: &Expr) -> Expr {
    match expr {
        Expr::Literal { val, .. } => Expr::Literal {
            val: val.clone(),
            casei: false,
        },
        Expr::Delegate { inner, .. } => Expr::Delegate {
            inner: inner.clone(),
            casei: false,
        },
        Expr::Concat(children) => Expr::Concat(children.iter().map(without_case_flags).collect()),
        Expr::Alt(children) => Expr::Alt(children.iter().map(without_case_flags).collect()),
        Expr::Group(child) => Expr::Group(std::sync::Arc::new(without_case_flags(child))),
        Expr::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => Expr::Repeat {
            child: Box::new(without_case_flags(child)),
            lo: *lo,
            hi: *hi,
            greedy: *greedy,
        },
        other => other.clone(),
    }
}

/// Upper bounds of repetitions above this become unbounded in a relaxed
/// form (small ones, `\d{2,4}`, cost the DFA little and keep it selective).
const MAX_COUNTED_REPEAT: usize = 4;

/// Relaxes one pattern, knowing its capture groups (for back-references).
struct Relaxer<'e> {
    /// Group `n`'s expression at `n - 1`, in the order their `(` appear.
    groups: &'e [&'e Expr],
    /// Relaxing a referenced group: a reference in there is any text (no
    /// copies of copies).
    in_reference: bool,
}

impl Relaxer<'_> {
    fn relax(&self, expr: &Expr) -> Option<Expr> {
        Some(match expr {
            Expr::Empty
            | Expr::Any { .. }
            | Expr::Literal { .. }
            | Expr::Delegate { .. }
            | Expr::Assertion(
                Assertion::StartText
                | Assertion::EndText
                | Assertion::StartLine { .. }
                | Assertion::StartLineOniguruma { .. }
                | Assertion::EndLine { .. },
            ) => expr.clone(),
            Expr::Assertion(_) | Expr::LookAround(..) | Expr::KeepOut => Expr::Empty,
            Expr::GeneralNewline { .. } => Expr::Alt(vec![
                Expr::Literal {
                    val: "\r\n".into(),
                    casei: false,
                },
                Expr::Delegate {
                    inner: r"[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}]".into(),
                    casei: false,
                },
            ]),
            Expr::Concat(children) => Expr::Concat(self.relax_all(children)?),
            Expr::Alt(children) => Expr::Alt(self.relax_all(children)?),
            Expr::Group(child) => Expr::Group(std::sync::Arc::new(self.relax(child)?)),
            // Non-capturing: the regex crate has no atomic groups.
            Expr::AtomicGroup(child) => Expr::Concat(vec![self.relax(child)?]),
            Expr::Repeat {
                child,
                lo,
                hi,
                greedy,
            } => Expr::Repeat {
                child: Box::new(self.relax(child)?),
                lo: *lo,
                // `x{1,20}` → `x{1,}`: a lazy DFA for a counted repetition has a
                // state per count, and SpamAssassin's `(?:\s\w{1,20}){0,3}` or
                // `[^>]{0,2048}` under Unicode classes overflow its cache, so
                // the regex crate falls back to its NFA simulation (32 ms for
                // `__LOTTO_ADMITS_1` on a 70 kB body). Dropping the upper bound
                // only lets more through.
                hi: if *hi > MAX_COUNTED_REPEAT {
                    usize::MAX
                } else {
                    *hi
                },
                greedy: *greedy,
            },
            Expr::Backref { group, casei } => {
                self.referenced(*group, *casei).unwrap_or(Expr::Repeat {
                    child: Box::new(Expr::Any {
                        newline: true,
                        crlf: false,
                    }),
                    lo: 0,
                    hi: usize::MAX,
                    greedy: false,
                })
            }
            _ => return None,
        })
    }

    /// What a back-reference to `group` relaxes to: the group's relaxed
    /// form, non-capturing, when it holds wherever the repeated text is.
    fn referenced(&self, group: usize, casei: bool) -> Option<Expr> {
        if self.in_reference {
            return None;
        }
        let target = *self.groups.get(group.checked_sub(1)?)?;
        let inner = Relaxer {
            groups: self.groups,
            in_reference: true,
        }
        .relax(target)?;
        if has_line_anchor(&inner) || (casei && every_atom_case_insensitive(&inner) == Some(false))
        {
            return None;
        }
        Some(Expr::Concat(vec![without_captures(&inner)]))
    }

    fn relax_all(&self, children: &[Expr]) -> Option<Vec<Expr>> {
        children.iter().map(|child| self.relax(child)).collect()
    }
}

/// Every capture group's expression, in the order of their `(`.
fn collect_groups<'e>(expr: &'e Expr, groups: &mut Vec<&'e Expr>) {
    if let Expr::Group(child) = expr {
        groups.push(child);
    }
    for child in expr.children_iter() {
        collect_groups(child, groups);
    }
}

/// Whether `expr` holds `^` or `$` of either kind.
fn has_line_anchor(expr: &Expr) -> bool {
    match expr {
        Expr::Assertion(_) => true,
        other => other.children_iter().any(has_line_anchor),
    }
}

/// `expr` with its capture groups made non-capturing.
fn without_captures(expr: &Expr) -> Expr {
    match expr {
        Expr::Group(child) => Expr::Concat(vec![without_captures(child)]),
        Expr::Concat(children) => Expr::Concat(children.iter().map(without_captures).collect()),
        Expr::Alt(children) => Expr::Alt(children.iter().map(without_captures).collect()),
        Expr::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => Expr::Repeat {
            child: Box::new(without_captures(child)),
            lo: *lo,
            hi: *hi,
            greedy: *greedy,
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn std_regex(source: &str) -> regex::Regex {
        regex::Regex::new(source).unwrap_or_else(|e| panic!("{source}: {e}"))
    }

    #[test]
    fn look_around_and_boundaries_go_literals_stay() {
        assert_eq!(
            relaxed(r"(?<!\w)paypal(?!\.com)").as_deref(),
            Some("paypal")
        );
        assert_eq!(relaxed(r"\bfoo\b").as_deref(), Some("foo"));
        let anchored = relaxed(r"(?m)^Subject: (?=x)y$").unwrap();
        assert!(std_regex(&anchored).is_match("a\nSubject: y\nb"));
    }

    #[test]
    fn back_references_relax_to_what_they_repeat() {
        let source = r"(\w+) \1";
        let relaxed = relaxed(source).unwrap();
        let regex = std_regex(&relaxed);
        assert!(regex.is_match("hello hello"));
        assert!(regex.is_match("hello world"));
        assert!(!regex.is_match("hello !"), "{relaxed}");
    }

    #[test]
    fn a_back_reference_becomes_its_group_unless_that_would_not_hold() {
        let repeated = relaxed(r"(?i)(?:://|@)(?:\w+\.)*(\w{7,}\.)\1").unwrap();
        let regex = std_regex(&repeated);
        assert!(regex.is_match("http://example.example.com"));
        assert!(!regex.is_match("http://www.example.com"), "{repeated}");
        // A line anchor in the group may not hold where the text repeats.
        let anchored = std_regex(&relaxed(r"(?m)(^a)\1").unwrap());
        assert!(anchored.is_match("aa"));
        // A case-insensitive reference to a case-sensitive group.
        let folded = std_regex(&relaxed(r"(A)(?i:\1)").unwrap());
        assert!(folded.is_match("Aa"));
        // A reference inside a referenced group is any text.
        let nested = std_regex(&relaxed(r"((a)\2)\1").unwrap());
        assert!(nested.is_match("aaaa"));
    }

    #[test]
    fn atomic_groups_and_case_flags_survive() {
        let relaxed = relaxed(r"(?i)(?>ab|a)c").unwrap();
        assert!(std_regex(&relaxed).is_match("xABC"));
        assert!(std_regex(&relaxed).is_match("aC"));
    }

    #[test]
    fn a_case_insensitive_pattern_keeps_its_literals_whole() {
        let whole = relaxed(r"(?i)^(?!x)(?:mail@101private\.com|info@bhleu\.com)$").unwrap();
        assert!(whole.starts_with("(?i)"), "{whole}");
        assert!(!whole[4..].contains("(?i"), "{whole}");
        let (_, literals) = super::super::literals::required_literals(&whole).unwrap();
        assert!(
            literals.contains(&b"mail@101private.com".to_vec()),
            "{literals:?}"
        );
        // Mixed case sensitivity keeps the per-character flags.
        let mixed = relaxed(r"(?<!x)AB(?i:cd)").unwrap();
        assert!(!mixed.starts_with("(?i)"), "{mixed}");
        assert!(std_regex(&mixed).is_match("ABcD"));
        assert!(!std_regex(&mixed).is_match("abcd"));
        // A case-sensitive negated class by escape would shrink under `(?i)`.
        let negated = relaxed(r"(?<!y)(?i:ab)[^\x41]").unwrap();
        assert!(std_regex(&negated).is_match("aba"), "{negated}");
        assert!(folds_to_itself(r"[^\n\s]") && folds_to_itself(r"\d"));
        assert!(
            !folds_to_itself(r"[^\x41]")
                && !folds_to_itself(r"\p{Lu}")
                && !folds_to_itself("[a-z]")
        );
    }

    #[test]
    fn large_counted_repetitions_lose_their_upper_bound_small_ones_keep_it() {
        let relaxed = relaxed(r"(?<!x)[^>]{0,2048}>\d{2,4}").unwrap();
        let regex = std_regex(&relaxed);
        assert!(regex.is_match(&format!("{}>12", "a".repeat(3000))));
        assert!(regex.is_match(">1234"));
        assert!(!regex.is_match(">1"));
    }

    #[test]
    fn what_the_regex_crate_cannot_express_has_no_relaxed_form() {
        assert_eq!(relaxed(r"(a)?(?(1)b|c)"), None);
        assert_eq!(relaxed(r"\Gabc"), None);
        assert_eq!(relaxed(r"(unclosed"), None);
    }

    /// Patterns of the kinds SpamAssassin's rules use fancy-regex for.
    const PATTERNS: &[&str] = &[
        r"(?<!\w)ab+(?!c)",
        r"(\w)\1{2}",
        r"(?i)\b(?:pay|pal)(?=\s*pal)",
        r"(?m)^a(?>b|bc)c$",
        r"x(?<=ax)\Ky",
        r"(?s)a.(?!b)..\b",
        r"(?x) a \s* (?!b) \w",
        r"\Ra",
        r"(?<!x)a{2,3}b{0,2}c{4}",
        r"(?i)(?:\s(?!ab)\w{1,5}){0,6}x{2,9}",
        r"(?i)(?<!y)pal\d[a-c]",
        r"(\w{1,2})x\1",
        r"(?i)(ab?)\1",
        r"(a|bc)\1{2}",
        r"((a)\2)\1",
        r"(A)(?i:\1)",
        r"(?m)(^a)\1",
        r"(?s)(a.)(?=.*\1)",
    ];

    proptest! {
        /// Every text the exact pattern matches, its relaxed form matches.
        #[test]
        fn relaxed_forms_match_whatever_the_pattern_matches(
            text in "[abcxyPAL \n\r.\u{e9}]{0,24}",
        ) {
            for source in PATTERNS {
                let exact = fancy_regex::Regex::new(source).unwrap();
                let relaxed = std_regex(&relaxed(source).unwrap());
                if exact.is_match(&text).unwrap() {
                    prop_assert!(relaxed.is_match(&text), "{source} on {text:?}");
                }
            }
        }
    }
}
