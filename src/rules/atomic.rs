//! Repetitions whose backtracking can never change an outcome, made atomic
//! before fancy-regex compiles a pattern, so that it hands them to the
//! `regex` crate in one call instead of stepping its VM a character at a
//! time.
//!
//! SpamAssassin's back-reference header rules walk the header block line by
//! line, `\nFrom: …([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To: …\1`: inside a
//! back-referencing pattern fancy-regex runs `(?:[^\n]{1,100}\n+)*` in its
//! VM, one step and one backtrack entry per character, and on giving up
//! pops every one of them. Yet `[^\n]{1,100}` can only stop where a `\n`
//! follows, and `\n+` only where something other than `\n` does, so each
//! iteration has exactly one way to match: making it atomic,
//! `(?:(?>[^\n]{1,100}\n+))*`, keeps every match (same start, same end, same
//! captures) and lets fancy-regex delegate the iteration whole.
//!
//! The rule, for a greedy repetition of one character class `S` (`S{lo,hi}`)
//! whose every possible next character lies outside `S`: a match that
//! stopped the run early would be followed by a character of `S`, which
//! nothing after it can start with, so the only run that can lead to a
//! match is the longest, the one greedy matching tries first. A sequence
//! of such runs, literals, single characters and zero-width assertions has
//! at most one way to match at a position, so an atomic group around it
//! forbids nothing; it must hold no capture group or back-reference (a
//! look-around's captures could differ between paths). "Every possible
//! next character" is an over-approximation taken from what follows in the
//! pattern, zero-width items skipped; where it cannot be bounded (a
//! back-reference, the end of the pattern) nothing is changed.
//!
//! Only nodes that fancy-regex would run in its VM anyway are wrapped: an
//! atomic group is itself "hard", and wrapping a part it would have
//! delegated could only slow it down. The rewritten pattern is rendered and
//! parsed back; unless the parse gives the rewritten tree, the original
//! source is used.

use fancy_regex::{Expr, LookAround};
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, HirKind};

/// `source` with every repetition that backtracking cannot change made
/// atomic, or `None` when there is none (or the rewrite cannot be rendered
/// faithfully).
pub fn with_atomic_runs(source: &str) -> Option<String> {
    let tree = Expr::parse_tree(source).ok()?;
    let mut changed = false;
    let rewritten = rewrite(&tree.expr, None, false, &mut changed);
    if !changed {
        return None;
    }
    let mut out = String::new();
    render(&rewritten, &mut out, 0)?;
    let reparsed = Expr::parse_tree(&out).ok()?;
    (reparsed.expr == rewritten).then_some(out)
}

/// `expr` rewritten; `follow` over-approximates the characters that can
/// come right after it (`None`: anything, or it may end the match), and
/// `vm` says whether fancy-regex would run it in its VM.
fn rewrite(expr: &Expr, follow: Option<&ClassUnicode>, vm: bool, changed: &mut bool) -> Expr {
    if vm && is_single_run(expr, follow) {
        *changed = true;
        return Expr::AtomicGroup(Box::new(expr.clone()));
    }
    match expr {
        Expr::Concat(children) => {
            // fancy-regex delegates the children after the last hard one
            // when the concatenation itself is not in a hard context.
            let last_hard = children.iter().rposition(is_hard);
            let rewritten = children
                .iter()
                .enumerate()
                .map(|(i, child)| {
                    let child_follow = first_of_sequence(&children[i + 1..], follow);
                    let child_vm = vm || last_hard.is_some_and(|last| i <= last);
                    rewrite(child, child_follow.as_ref(), child_vm, changed)
                })
                .collect();
            Expr::Concat(rewritten)
        }
        Expr::Alt(children) => Expr::Alt(
            children
                .iter()
                .map(|child| rewrite(child, follow, vm, changed))
                .collect(),
        ),
        Expr::Group(child) => Expr::Group(std::sync::Arc::new(rewrite(child, follow, vm, changed))),
        Expr::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => {
            let vm = vm || is_hard(expr);
            // The next iteration follows an iteration, or whatever follows
            // the repetition.
            let child_follow = if *hi > 1 {
                first(child).and_then(|(own, _)| follow.map(|after| union(&own, after)))
            } else {
                follow.cloned()
            };
            // A loop over one character is a run, wrapped whole above.
            let sequence = matches!(**child, Expr::Concat(_));
            let child = if vm && sequence && *hi > 1 && unique_match(child, child_follow.as_ref()) {
                *changed = true;
                Expr::AtomicGroup(Box::new(rewrite(
                    child,
                    child_follow.as_ref(),
                    false,
                    &mut false,
                )))
            } else {
                rewrite(child, child_follow.as_ref(), vm, changed)
            };
            Expr::Repeat {
                child: Box::new(child),
                lo: *lo,
                hi: *hi,
                greedy: *greedy,
            }
        }
        Expr::AtomicGroup(child) => {
            Expr::AtomicGroup(Box::new(rewrite(child, follow, false, changed)))
        }
        Expr::LookAround(child, kind) => {
            Expr::LookAround(Box::new(rewrite(child, None, false, changed)), *kind)
        }
        other => other.clone(),
    }
}

/// Whether fancy-regex needs its VM for `expr` (what its analysis calls
/// hard): look-around, back-references, atomic groups and the like.
fn is_hard(expr: &Expr) -> bool {
    match expr {
        Expr::Empty
        | Expr::Any { .. }
        | Expr::Assertion(_)
        | Expr::Literal { .. }
        | Expr::Delegate { .. } => false,
        Expr::Concat(children) | Expr::Alt(children) => children.iter().any(is_hard),
        Expr::Group(child) => is_hard(child),
        Expr::Repeat { child, .. } => is_hard(child),
        _ => true,
    }
}

/// Whether `expr` has at most one way to match at any position from which
/// what follows it (first characters within `follow`) can still match.
fn unique_match(expr: &Expr, follow: Option<&ClassUnicode>) -> bool {
    let items: &[Expr] = match expr {
        Expr::Concat(children) => children,
        single => std::slice::from_ref(single),
    };
    items.iter().enumerate().all(|(i, item)| match item {
        Expr::Literal { .. } | Expr::Any { .. } | Expr::Empty | Expr::Assertion(_) => true,
        Expr::Delegate { .. } => atom_class(item).is_some(),
        Expr::LookAround(inner, _) => !has_captures(inner),
        Expr::Repeat { lo, hi, .. } if lo == hi => run_class(item).is_some(),
        Expr::Repeat { .. } => {
            is_forced_run(item, first_of_sequence(&items[i + 1..], follow).as_ref())
        }
        _ => false,
    })
}

/// Whether `expr` is a run worth wrapping on its own: a forced one (see
/// [`is_forced_run`]) of possibly more than one character.
fn is_single_run(expr: &Expr, follow: Option<&ClassUnicode>) -> bool {
    matches!(expr, Expr::Repeat { hi, .. } if *hi > 1) && is_forced_run(expr, follow)
}

/// Whether `expr` is a greedy run of one character class that no
/// character in `follow` belongs to: its longest run is its only useful
/// one.
fn is_forced_run(expr: &Expr, follow: Option<&ClassUnicode>) -> bool {
    let Expr::Repeat {
        lo,
        hi,
        greedy: true,
        ..
    } = expr
    else {
        return false;
    };
    let (Some(class), Some(follow)) = (run_class(expr), follow) else {
        return false;
    };
    lo < hi && intersection(&class, follow).ranges().is_empty()
}

/// The class a repetition of one character repeats.
fn run_class(expr: &Expr) -> Option<ClassUnicode> {
    match expr {
        Expr::Repeat { child, .. } => atom_class(child),
        _ => None,
    }
}

fn has_captures(expr: &Expr) -> bool {
    match expr {
        Expr::Group(_) | Expr::Backref { .. } => true,
        Expr::Concat(children) | Expr::Alt(children) => children.iter().any(has_captures),
        Expr::Repeat { child, .. } | Expr::AtomicGroup(child) | Expr::LookAround(child, _) => {
            has_captures(child)
        }
        _ => false,
    }
}

/// The characters a single-character atom matches, over-approximated
/// (`.` is taken as every character).
fn atom_class(expr: &Expr) -> Option<ClassUnicode> {
    match expr {
        Expr::Any { .. } => Some(ClassUnicode::new([ClassUnicodeRange::new('\0', char::MAX)])),
        Expr::Literal { val, casei } => {
            let mut chars = val.chars();
            let (Some(only), None) = (chars.next(), chars.next()) else {
                return None;
            };
            parsed_class(&regex_syntax::escape(&only.to_string()), *casei)
        }
        Expr::Delegate { inner, casei } => parsed_class(inner, *casei),
        _ => None,
    }
}

/// The first characters a match of `expr` can start with
/// (over-approximated), and whether it can match empty text.
fn first(expr: &Expr) -> Option<(ClassUnicode, bool)> {
    match expr {
        Expr::Empty | Expr::Assertion(_) | Expr::LookAround(..) | Expr::KeepOut => {
            Some((ClassUnicode::empty(), true))
        }
        Expr::Literal { val, casei } => {
            let head = val.chars().next()?;
            let class = atom_class(&Expr::Literal {
                val: head.to_string(),
                casei: *casei,
            })?;
            Some((class, false))
        }
        Expr::Any { .. } | Expr::Delegate { .. } => Some((atom_class(expr)?, false)),
        Expr::Concat(children) => {
            let mut set = ClassUnicode::empty();
            for child in children {
                let (own, nullable) = first(child)?;
                set = union(&set, &own);
                if !nullable {
                    return Some((set, false));
                }
            }
            Some((set, true))
        }
        Expr::Alt(children) => {
            let mut set = ClassUnicode::empty();
            let mut any_nullable = false;
            for child in children {
                let (own, nullable) = first(child)?;
                set = union(&set, &own);
                any_nullable |= nullable;
            }
            Some((set, any_nullable))
        }
        Expr::Group(child) => first(child),
        Expr::AtomicGroup(child) => first(child),
        Expr::Repeat { child, lo, .. } => {
            let (own, nullable) = first(child)?;
            Some((own, nullable || *lo == 0))
        }
        _ => None,
    }
}

/// The first characters of whatever matches `items` and then `follow`
/// (`None` when it cannot be bounded).
fn first_of_sequence(items: &[Expr], follow: Option<&ClassUnicode>) -> Option<ClassUnicode> {
    let (own, nullable) = first(&Expr::Concat(items.to_vec()))?;
    if nullable {
        follow.map(|after| union(&own, after))
    } else {
        Some(own)
    }
}

fn parsed_class(source: &str, casei: bool) -> Option<ClassUnicode> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(casei)
        .build()
        .parse(source)
        .ok()?;
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => Some(class.clone()),
        HirKind::Literal(literal) => {
            let text = std::str::from_utf8(&literal.0).ok()?;
            let mut chars = text.chars();
            let (Some(only), None) = (chars.next(), chars.next()) else {
                return None;
            };
            Some(ClassUnicode::new([ClassUnicodeRange::new(only, only)]))
        }
        _ => None,
    }
}

fn union(a: &ClassUnicode, b: &ClassUnicode) -> ClassUnicode {
    let mut set = a.clone();
    set.union(b);
    set
}

fn intersection(a: &ClassUnicode, b: &ClassUnicode) -> ClassUnicode {
    let mut set = a.clone();
    set.intersect(b);
    set
}

/// Renders `expr` as fancy-regex syntax: `Expr::to_str` for what the
/// `regex` crate also has, the hard nodes here. `None` for a node this
/// renderer does not know (the pattern then stays as written).
fn render(expr: &Expr, out: &mut String, precedence: u8) -> Option<()> {
    if !is_hard(expr) {
        expr.to_str(out, precedence);
        return Some(());
    }
    match expr {
        Expr::Concat(children) => {
            let wrap = precedence > 1;
            open(out, wrap, "(?:");
            for child in children {
                render(child, out, 2)?;
            }
            close(out, wrap);
        }
        Expr::Alt(children) => {
            let wrap = precedence > 0;
            open(out, wrap, "(?:");
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                render(child, out, 1)?;
            }
            close(out, wrap);
        }
        Expr::Group(child) => {
            out.push('(');
            render(child, out, 0)?;
            out.push(')');
        }
        Expr::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => {
            let wrap = precedence > 2;
            open(out, wrap, "(?:");
            render(child, out, 3)?;
            // The quantifier as `Expr::to_str` writes it.
            let mut quantified = String::new();
            Expr::Repeat {
                child: Box::new(Expr::Empty),
                lo: *lo,
                hi: *hi,
                greedy: *greedy,
            }
            .to_str(&mut quantified, 0);
            out.push_str(&quantified);
            close(out, wrap);
        }
        Expr::AtomicGroup(child) => {
            out.push_str("(?>");
            render(child, out, 0)?;
            out.push(')');
        }
        Expr::LookAround(child, kind) => {
            out.push_str(match kind {
                LookAround::LookAhead => "(?=",
                LookAround::LookAheadNeg => "(?!",
                LookAround::LookBehind => "(?<=",
                LookAround::LookBehindNeg => "(?<!",
            });
            render(child, out, 0)?;
            out.push(')');
        }
        Expr::Backref {
            group,
            casei: false,
        } => out.push_str(&format!("\\{group}")),
        Expr::Backref { group, casei: true } => out.push_str(&format!("(?i:\\{group})")),
        Expr::KeepOut => out.push_str("\\K"),
        _ => return None,
    }
    Some(())
}

fn open(out: &mut String, wrap: bool, opener: &str) {
    if wrap {
        out.push_str(opener);
    }
}

fn close(out: &mut String, wrap: bool) {
    if wrap {
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_line_loop_before_a_header_name_becomes_atomic() {
        let source = r"(?ism)\nFrom: (?:[^\n<]{0,80}<)?([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To: (?:[^\n]{0,80}<)?\1[>,\s\n]";
        let rewritten = with_atomic_runs(source).unwrap();
        assert!(rewritten.contains("(?>"), "{rewritten}");
        let exact = fancy_regex::Regex::new(source).unwrap();
        let atomic = fancy_regex::Regex::new(&rewritten).unwrap();
        for text in [
            "\nFrom: a@b.c\nX: y\nTo: a@b.c\n",
            "\nFrom: Al <a@b.c>\nX: y\n\nTo: Bo <a@b.c>\n",
            "\nFrom: a@b.c\nX: y\nTo: b@b.c\n",
        ] {
            assert_eq!(
                exact.is_match(text).unwrap(),
                atomic.is_match(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_run_whose_class_can_follow_it_stays() {
        // `[^>]` also matches the `h` of `href`, so stopping early matters.
        assert_eq!(with_atomic_runs(r"<a\s[^>]{0,20}\bhref=(\w)\1"), None);
        // Lazy runs and runs at the very end are left alone.
        assert_eq!(with_atomic_runs(r"(a)\1(?:[^\n]*?\n)*x"), None);
        assert_eq!(with_atomic_runs(r"(a)\1[^\n]*"), None);
        // Nothing fancy-regex would delegate is touched.
        assert_eq!(with_atomic_runs(r"(?:[^\n]{1,100}\n+)*To:"), None);
    }

    #[test]
    fn a_loop_around_a_look_ahead_becomes_atomic() {
        let source = r"(?i)<a\s[^>]{0,2048}\bhref=(https?:[^>]{8,29})[^>]{0,2048}>(?:[^<]{0,1024}<(?!/a)[^>]{1,1024}>){0,99}\s{0,10}(?!\1)https?";
        let rewritten = with_atomic_runs(source).unwrap();
        assert!(rewritten.matches("(?>").count() >= 2, "{rewritten}");
    }

    /// Patterns of the shapes SpamAssassin's back-reference and
    /// look-around rules have.
    const PATTERNS: &[&str] = &[
        r"(?m)\n([ab]+)\n+(?:[^\n]{1,3}\n+)*c:\1",
        r"(?m)\n([ab]+)\n+(?:[^\n]+\n+)*^c:\1\n",
        r"(a|b)\1(?:[^c]{0,2}c(?!a)[^x]{1,2}x){0,3}\s?b",
        r"(a)(?:[^\n]*\n)*\1",
        r"(?i)(ab?)[^b]{0,3}b+\1",
        r"(\w)(?:a+b+)*\1",
        r"(\w)(?:a+[ab]+)*\1",
        r"(.)(?:a{1,2}b)*(?!\1)\w",
    ];

    proptest! {
        /// The rewritten pattern matches exactly where the original does.
        #[test]
        fn atomic_runs_change_no_match(text in "[abcx:\n ]{0,24}") {
            for source in PATTERNS {
                let exact = fancy_regex::Regex::new(source).unwrap();
                let Some(rewritten) = with_atomic_runs(source) else { continue };
                let atomic = fancy_regex::Regex::new(&rewritten).unwrap();
                let want = exact.find(&text).unwrap().map(|m| m.range());
                let got = atomic.find(&text).unwrap().map(|m| m.range());
                prop_assert_eq!(want, got, "{} as {} on {:?}", source, rewritten, text);
            }
        }
    }
}
