//! What a rule is before it is compiled, from any source (chaff's TOML
//! files, SpamAssassin's `.cf` files), and what loading reports: the
//! types every reader produces and the compiler consumes, so readers and
//! compiler depend on this file and not on each other. Also the limits
//! and the small text helpers the readers share.

use std::collections::BTreeMap;

use super::domains::DomainGate;
use super::eval::EvalFn;
use super::expr::{Expr, Policy};
use super::input::Target;

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A rule file that cannot be used, and where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct RulesError {
    pub origin: Origin,
    pub message: String,
}

impl RulesError {
    pub fn new(origin: Origin, message: impl Into<String>) -> RulesError {
        RulesError {
            origin,
            message: message.into(),
        }
    }
}

/// What a rule tests.
#[derive(Debug, Clone)]
pub enum SpecKind {
    /// `source` is a regex with its flags inline (`(?i)…`); `lookup`, a
    /// domain list the text must name for the regex to be worth running
    /// (a necessary condition, never the verdict).
    Pattern {
        target: Target,
        source: String,
        negate: bool,
        lookup: Option<std::sync::Arc<DomainGate>>,
    },
    Exists {
        header: String,
        negate: bool,
    },
    Eval {
        function: EvalFn,
        negate: bool,
    },
    Meta {
        expr: Expr,
        policy: Policy,
    },
}

impl SpecKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            SpecKind::Pattern { target, .. } => target.kind(),
            SpecKind::Exists { .. } => "exists",
            SpecKind::Eval { .. } => "eval",
            SpecKind::Meta { .. } => "meta",
        }
    }
}

/// One rule before compiling, from any source.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub symbol: String,
    pub origin: Origin,
    pub kind: SpecKind,
    pub weight: f64,
    pub description: Option<String>,
    pub group: Option<String>,
    pub force_action: Option<crate::verdict::Action>,
    /// Computed and usable in metas, never reported or scored.
    pub hidden: bool,
    /// SpamAssassin rules are skipped when they cannot be used; chaff's own
    /// rules are errors.
    pub lenient: bool,
    /// Matches counted for metas: 1 for most rules, more for a rule that
    /// counts (`max_hits`, SpamAssassin's `tflags multiple maxhits=N`).
    pub max_hits: u32,
}

/// Why a rule was left out (or, for `Net` in score sets without network
/// tests, not run), by class; `Skip::detail` says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipClass {
    /// Its symbol is not `[A-Za-z0-9_]+`.
    BadName,
    /// A chaff rule of the same name exists.
    Duplicate,
    /// Its pattern does not translate or compile.
    Regex,
    /// A header test chaff cannot express.
    Header,
    /// A MIME header test chaff cannot express.
    MimeHeader,
    /// A meta naming something unknown or skipped, or in a cycle.
    Meta,
    /// An eval function chaff does not implement.
    Eval,
    /// A rule type chaff does not read.
    UnsupportedType,
    /// A SpamAssassin network eval (`tflags net`): chaff makes no such lookups.
    Net,
    /// `tflags replace` whose tags could not be replaced.
    TagReplacement,
}

impl SkipClass {
    /// The class as `chaff rules stats` and the load report print it.
    pub fn name(self) -> &'static str {
        match self {
            SkipClass::BadName => "bad name",
            SkipClass::Duplicate => "duplicate",
            SkipClass::Regex => "regex",
            SkipClass::Header => "header",
            SkipClass::MimeHeader => "mimeheader",
            SkipClass::Meta => "meta",
            SkipClass::Eval => "eval",
            SkipClass::UnsupportedType => "unsupported rule type",
            SkipClass::Net => "net",
            SkipClass::TagReplacement => "tflags replace",
        }
    }
}

/// A rule left out, and why.
#[derive(Debug, Clone)]
pub struct Skip {
    pub origin: Origin,
    pub symbol: String,
    pub kind: String,
    pub class: SkipClass,
    /// What exactly, when the class alone does not say (may be empty).
    pub detail: String,
}

impl Skip {
    /// `class: detail`, or the class alone.
    pub fn reason(&self) -> String {
        if self.detail.is_empty() {
            self.class.name().to_owned()
        } else {
            format!("{}: {}", self.class.name(), self.detail)
        }
    }
}

/// What loading found: per kind, rules loaded and skipped.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub loaded: BTreeMap<String, usize>,
    pub skipped: Vec<Skip>,
    /// Rules deliberately not run, which metas may still name (they read
    /// as 0): SpamAssassin's network evals in its score sets without network
    /// tests, where SpamAssassin does not run them either.
    pub not_run: Vec<Skip>,
    /// Per target kind: patterns behind the literal prefilter, in the
    /// no-literal `RegexSet`, and run by `fancy-regex`.
    pub prefiltered: usize,
    pub in_set: usize,
    /// Of `in_set`, those searched alone (their match can be very short).
    pub alone: usize,
    pub fancy: usize,
    /// Fancy patterns run only where their relaxed form matched (also
    /// counted in `prefiltered` or `in_set`).
    pub gated: usize,
    /// Patterns run only on texts naming a domain of their list (counted
    /// apart from the three above).
    pub looked_up: usize,
}

impl LoadReport {
    pub fn skip(&mut self, spec: &RuleSpec, class: SkipClass, detail: impl Into<String>) {
        self.skipped.push(Skip {
            origin: spec.origin.clone(),
            symbol: spec.symbol.clone(),
            kind: spec.kind.kind_name().to_owned(),
            class,
            detail: detail.into(),
        });
    }

    /// Skips counted per kind, then per class.
    pub fn skipped_by_kind(&self) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
        let mut out: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for skip in &self.skipped {
            *out.entry(skip.kind.clone())
                .or_default()
                .entry(skip.class.name())
                .or_default() += 1;
        }
        out
    }
}
/// Why a pattern cannot be used: its flags, its translation from Perl, or
/// its compilation, in words for the rule's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

impl From<String> for PatternError {
    fn from(message: String) -> PatternError {
        PatternError(message)
    }
}

impl From<&str> for PatternError {
    fn from(message: &str) -> PatternError {
        PatternError(message.to_owned())
    }
}

/// The most matches a counting rule counts: past it a hostile message
/// could make one rule walk its whole text for nothing a meta needs.
pub(crate) const MAX_HITS_LIMIT: u32 = 1000;

/// 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()
        .get(..at)
        .map_or(1, |b| b.iter().filter(|&&c| c == b'\n').count() + 1)
}

/// Turns pattern flags into an inline group: `i` case-insensitive, `m`
/// multi-line, `s` dot matches newline, `x` verbose.
pub(crate) fn with_flags(pattern: &str, flags: &str) -> Result<String, PatternError> {
    let mut inline = String::new();
    for flag in flags.chars() {
        match flag {
            'i' | 'm' | 's' | 'x' => {
                if !inline.contains(flag) {
                    inline.push(flag);
                }
            }
            other => return Err(format!("unknown flag `{other}` (flags are i, m, s, x)").into()),
        }
    }
    Ok(if inline.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{inline}){pattern}")
    })
}
