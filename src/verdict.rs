//! COMBINE + ACTION: symbols to a score, the score to an action.
//!
//! This module sees symbols only, never the checks that made them: a check's
//! worth is configuration (`[symbols.NAME] weight`), not code.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::symbol::Symbol;

/// What the MTA should do with the message, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    NoAction,
    Greylist,
    AddHeader,
    RewriteSubject,
    SoftReject,
    Reject,
}

impl Action {
    /// rspamd's spelling, as MTAs and `rspamc` expect it.
    pub fn name(self) -> &'static str {
        match self {
            Action::NoAction => "no action",
            Action::Greylist => "greylist",
            Action::AddHeader => "add header",
            Action::RewriteSubject => "rewrite subject",
            Action::SoftReject => "soft reject",
            Action::Reject => "reject",
        }
    }

    /// Accepts rspamd's spelling and the config's (`add_header`).
    pub fn from_name(name: &str) -> Option<Action> {
        Some(match name.replace('_', " ").as_str() {
            "no action" => Action::NoAction,
            "greylist" => Action::Greylist,
            "add header" => Action::AddHeader,
            "rewrite subject" => Action::RewriteSubject,
            "soft reject" => Action::SoftReject,
            "reject" => Action::Reject,
            _ => return None,
        })
    }

    /// Whether a message with this action counts as spam (rspamd's `is_spam`).
    pub fn is_spam(self) -> bool {
        !matches!(
            self,
            Action::NoAction | Action::Greylist | Action::SoftReject
        )
    }

    /// This action's threshold in `actions`, if it has one.
    pub fn threshold(self, actions: &ActionsConfig) -> Option<f64> {
        match self {
            Action::NoAction | Action::SoftReject => None,
            Action::Greylist => actions.greylist,
            Action::AddHeader => actions.add_header,
            Action::RewriteSubject => actions.rewrite_subject,
            Action::Reject => actions.reject,
        }
    }
}

/// Score thresholds for actions; an absent threshold disables that action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    pub greylist: Option<f64>,
    pub add_header: Option<f64>,
    pub rewrite_subject: Option<f64>,
    pub reject: Option<f64>,
    /// `%s` is replaced by the original subject.
    pub subject_template: String,
}

/// Weight and metadata of one symbol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolConfig {
    pub weight: f64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// An action forced whenever this symbol fires (rspamd's force_actions).
    #[serde(default)]
    pub force_action: Option<Action>,
    /// The classifier never fits this weight to learned mail: it scores as
    /// configured, always.
    #[serde(default)]
    pub pinned: bool,
}

impl SymbolConfig {
    /// A symbol that only carries a weight.
    pub fn weighted(weight: f64) -> SymbolConfig {
        SymbolConfig {
            weight,
            description: None,
            group: None,
            force_action: None,
            pinned: false,
        }
    }
}

/// What a profile lays over the configuration for one scan (implemented
/// by `policy::Settings`; the verdict knows only this much of it).
pub trait Overrides: std::fmt::Debug {
    /// A symbol's weight, if the profile sets it.
    fn score(&self, symbol: &str) -> Option<f64>;
    /// `Some(None)`: the profile turns `action` off; `None`: it leaves it.
    fn threshold(&self, action: Action) -> Option<Option<f64>>;
    /// An action the profile forces when `symbol` fires.
    fn forced(&self, symbol: &str) -> Option<Action>;
    /// The rewrite-subject template, if the profile sets one.
    fn subject(&self) -> Option<&str>;
}

/// What the verdict reads of the configuration: the symbols' weights and
/// the actions' thresholds, and the settings a profile lays over them
/// (read first, so nothing is copied per scan).
#[derive(Debug, Clone, Copy)]
pub struct Scoring<'a> {
    pub actions: &'a ActionsConfig,
    pub symbols: &'a BTreeMap<String, SymbolConfig>,
    pub settings: Option<&'a dyn Overrides>,
}

impl<'a> Scoring<'a> {
    /// The same scoring under a profile's settings.
    pub fn with_settings(self, settings: &'a dyn Overrides) -> Scoring<'a> {
        Scoring {
            settings: Some(settings),
            ..self
        }
    }

    /// A symbol's weight: the settings' score, else the configured one;
    /// unknown symbols weigh nothing.
    pub fn weight(&self, symbol: &str) -> f64 {
        self.settings
            .and_then(|s| s.score(symbol))
            .unwrap_or_else(|| self.symbols.get(symbol).map_or(0.0, |s| s.weight))
    }

    /// Whether the settings set this symbol's weight (then it is not refitted).
    fn sets_weight(&self, symbol: &str) -> bool {
        self.settings.is_some_and(|s| s.score(symbol).is_some())
    }

    /// The threshold of `action`: the settings' (which may turn it off),
    /// else the configured one.
    pub fn threshold(&self, action: Action) -> Option<f64> {
        match self.settings.and_then(|s| s.threshold(action)) {
            Some(set) => set,
            None => action.threshold(self.actions),
        }
    }

    fn forced(&self, symbol: &str) -> Option<Action> {
        self.settings
            .and_then(|s| s.forced(symbol))
            .or_else(|| self.symbols.get(symbol).and_then(|c| c.force_action))
    }

    fn subject_template(&self) -> &str {
        self.settings
            .and_then(|s| s.subject())
            .unwrap_or(&self.actions.subject_template)
    }
}

impl<'de> Deserialize<'de> for Action {
    /// rspamd's spelling or the config's (`"add header"`, `"add_header"`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
        let name = String::deserialize(deserializer)?;
        Action::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown action `{name}` (no action, greylist, add header, rewrite subject, soft reject, reject)"
            ))
        })
    }
}

/// A symbol with its points.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSymbol {
    pub name: String,
    /// Points this symbol added: weight × strength.
    pub score: f64,
    /// The configured weight (rspamd's `metric_score`).
    pub weight: f64,
    pub description: Option<String>,
    pub options: Vec<String>,
}

/// The outcome of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    /// The reject threshold, as rspamd reports `required_score`.
    pub required_score: f64,
    pub action: Action,
    /// Symbols sorted by name.
    pub symbols: Vec<ScoredSymbol>,
    /// The rewritten subject, when the action is rewrite subject.
    pub subject: Option<String>,
    /// The symbol that forced the action, if one did.
    pub forced_by: Option<String>,
    /// What the MTA should tell the client (`messages.smtp_message`), when
    /// a policy module held the message.
    pub smtp_message: Option<String>,
}

impl Verdict {
    /// Adds a symbol found after the sum (a policy module's), scored as
    /// `scoring` weighs it, keeping the symbols sorted by name.
    pub fn add_symbol(&mut self, symbol: Symbol, scoring: &Scoring<'_>) {
        let weight = scoring.weight(&symbol.name);
        let scored = ScoredSymbol {
            score: weight * symbol.strength,
            weight,
            description: scoring
                .symbols
                .get(&symbol.name)
                .and_then(|c| c.description.clone()),
            options: symbol.options,
            name: symbol.name,
        };
        self.score += scored.score;
        let at = self
            .symbols
            .partition_point(|s| s.name.as_str() < scored.name.as_str());
        self.symbols.insert(at, scored);
    }

    /// A policy module holds the message: `action` (a soft reject, as a
    /// rule) with the text the MTA gives, unless the verdict already does
    /// something harsher.
    pub fn hold(&mut self, action: Action, message: String) {
        if action >= self.action || self.action == Action::Greylist {
            self.action = action;
            self.smtp_message = Some(message);
        }
    }
}

/// Weighs `symbols`, sums them and picks the action.
///
/// A forced action (a symbol configured with `force_action`, such as GTUBE)
/// wins over the thresholds, and the score is raised to that action's
/// threshold if it is lower, so MTAs that act on the score and MTAs that act
/// on the action agree.
pub fn combine(symbols: Vec<Symbol>, scoring: Scoring<'_>, subject: &str) -> Verdict {
    combine_fitted(symbols, scoring, subject, &|_| None)
}

/// [`combine`], with the weight a symbol scores taken from `fitted` where
/// it has one (the classifier's fitted rule weights); `weight` still
/// reports the configured one, as rspamd's `metric_score` does.
pub fn combine_fitted(
    symbols: Vec<Symbol>,
    scoring: Scoring<'_>,
    subject: &str,
    fitted: &dyn Fn(&str) -> Option<f64>,
) -> Verdict {
    let mut scored: Vec<ScoredSymbol> = symbols
        .into_iter()
        .map(|symbol| {
            let symbol_config = scoring.symbols.get(&symbol.name);
            let weight = scoring.weight(&symbol.name);
            let scoring_weight = if scoring.sets_weight(&symbol.name) {
                weight
            } else {
                fitted(&symbol.name).unwrap_or(weight)
            };
            ScoredSymbol {
                score: scoring_weight * symbol.strength,
                weight,
                description: symbol_config.and_then(|c| c.description.clone()),
                options: symbol.options,
                name: symbol.name,
            }
        })
        .collect();
    scored.sort_by(|a, b| a.name.cmp(&b.name));
    // `+ 0.0` turns the empty sum's -0.0 into 0.0, which prints as admins expect.
    let mut score: f64 = scored.iter().map(|s| s.score).sum::<f64>() + 0.0;
    let mut action = scored_action(score, &scoring);
    let mut forced_by = None;
    for symbol in &scored {
        if let Some(forced) = scoring.forced(&symbol.name)
            && (forced_by.is_none() || forced > action)
        {
            action = forced;
            forced_by = Some(symbol.name.clone());
            if let Some(threshold) = scoring
                .threshold(forced)
                .or(forced.threshold(scoring.actions))
            {
                score = score.max(threshold);
            }
        }
    }
    let subject = (action == Action::RewriteSubject)
        .then(|| scoring.subject_template().replace("%s", subject));
    Verdict {
        score,
        required_score: scoring
            .threshold(Action::Reject)
            .or(scoring.actions.reject)
            .unwrap_or(0.0),
        action,
        symbols: scored,
        subject,
        forced_by,
        smtp_message: None,
    }
}

/// The action with the highest threshold that `score` reaches.
pub fn action_for_score(score: f64, actions: &ActionsConfig) -> Action {
    scored_action(
        score,
        &Scoring {
            actions,
            symbols: &BTreeMap::new(),
            settings: None,
        },
    )
}

/// [`action_for_score`] under a scoring's settings.
fn scored_action(score: f64, scoring: &Scoring<'_>) -> Action {
    [
        Action::Reject,
        Action::RewriteSubject,
        Action::AddHeader,
        Action::Greylist,
    ]
    .into_iter()
    .filter_map(|a| scoring.threshold(a).map(|t| (a, t)))
    .filter(|(_, t)| score >= *t)
    .max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
    .map_or(Action::NoAction, |(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn thresholds_pick_rspamd_actions() {
        let config = Config::embedded();
        assert_eq!(action_for_score(0.0, &config.actions), Action::NoAction);
        assert_eq!(action_for_score(4.0, &config.actions), Action::Greylist);
        assert_eq!(action_for_score(6.5, &config.actions), Action::AddHeader);
        assert_eq!(action_for_score(15.0, &config.actions), Action::Reject);
        assert_eq!(action_for_score(-3.0, &config.actions), Action::NoAction);
    }

    #[test]
    fn rewrite_subject_applies_only_when_configured() {
        let config = Config::from_toml_over_defaults("[actions]\nrewrite_subject = 8.0\n").unwrap();
        assert_eq!(
            action_for_score(9.0, &config.actions),
            Action::RewriteSubject
        );
        let mut config = config;
        config.symbols.insert(
            "X".into(),
            SymbolConfig {
                weight: 9.0,
                description: None,
                group: None,
                force_action: None,
                pinned: false,
            },
        );
        let v = combine(vec![Symbol::new("X")], config.scoring(), "hello");
        assert_eq!(v.subject.as_deref(), Some("***SPAM*** hello"));
    }

    #[test]
    fn weights_scale_by_strength_and_sum() {
        let config = Config::embedded();
        let v = combine(
            vec![
                Symbol::new("BAYES_SPAM").with_strength(0.5),
                Symbol::new("UNKNOWN_SYMBOL"),
            ],
            config.scoring(),
            "",
        );
        assert!((v.score - config.weight("BAYES_SPAM") * 0.5).abs() < 1e-9);
        assert_eq!(v.symbols[1].name, "UNKNOWN_SYMBOL");
        assert_eq!(v.symbols[1].score, 0.0);
    }

    #[test]
    fn forced_action_wins_and_raises_score() {
        let config = Config::embedded();
        let v = combine(
            vec![Symbol::new("GTUBE"), Symbol::new("BAYES_HAM")],
            config.scoring(),
            "",
        );
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.forced_by.as_deref(), Some("GTUBE"));
        assert!(v.score >= 15.0);
    }
}
