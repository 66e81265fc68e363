//! The leaf type every check emits and the verdict consumes.
//!
//! A check never decides how much a finding is worth: it names the finding and
//! says how strongly it holds (`strength`, usually 1.0, a confidence for
//! statistical checks). The configured weight turns that into points in
//! `verdict`, so an admin can re-weigh any symbol without touching a check.

/// One finding of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    /// The symbol's name, as rspamd spells such names (`BAYES_SPAM`, `GTUBE`).
    pub name: String,
    /// How strongly the finding holds, multiplied by the configured weight.
    /// Statistical checks use their confidence here; most checks use 1.0.
    pub strength: f64,
    /// Free-form details shown to the admin (rspamd's `options`).
    pub options: Vec<String>,
    /// What the symbol counts as in a meta expression: 1, or for a rule
    /// that counts its matches (SpamAssassin's `tflags multiple`) how many
    /// it found. Points are given once whatever the count.
    pub hits: u32,
}

impl Symbol {
    /// A finding that holds fully, with no options.
    pub fn new(name: impl Into<String>) -> Symbol {
        Symbol {
            name: name.into(),
            strength: 1.0,
            options: Vec::new(),
            hits: 1,
        }
    }

    /// The same symbol with its strength set.
    pub fn with_strength(mut self, strength: f64) -> Symbol {
        self.strength = strength;
        self
    }

    /// The same symbol with one more option.
    pub fn with_option(mut self, option: impl Into<String>) -> Symbol {
        self.options.push(option.into());
        self
    }
}
