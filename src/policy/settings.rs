//! Settings: what a profile, or a request's own `Settings` header, changes
//! about one scan — thresholds, symbol weights, forced actions, which
//! symbols and checks count, which stateful modules run — and the
//! selectors that pick a named profile from the envelope.
//!
//! Pure: no state, no I/O. The engine asks [`Profiles::select`] once per
//! message and scores through the chosen [`Settings`] without copying the
//! configuration (the verdict reads overrides first, then the config).
//! rspamd's own settings shape (`actions`, `scores`, `symbols_enabled`,
//! `symbols_disabled`, `groups_disabled`, `subject`) is accepted as the
//! inline `Settings` header, so an MTA integration written for rspamd works.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Deserialize;

use crate::message::Envelope;
use crate::setting::InvalidSetting;
use crate::verdict::{Action, Overrides};

/// A threshold a profile sets: a score, or `"off"` for an action the
/// profile never takes by score (rspamd's `null`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Score(f64),
    Off,
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Threshold, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Score(f64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Score(score) => Ok(Threshold::Score(score)),
            Raw::Word(word) if word.eq_ignore_ascii_case("off") => Ok(Threshold::Off),
            Raw::Word(word) => Err(serde::de::Error::custom(format!(
                "`{word}` is not a threshold (a number, or \"off\")"
            ))),
        }
    }
}

/// The checks a profile may switch off (their symbols are then never
/// computed, not merely dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    Classifier,
    Fuzzy,
    Rules,
    Network,
    Phishing,
}

/// What one profile (or one request's `Settings`) changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Thresholds by action (`greylist`, `add_header`, `rewrite_subject`,
    /// `reject`), a number or `"off"`.
    #[serde(default)]
    pub actions: BTreeMap<String, Threshold>,
    /// Symbol weights; a weight set here is never refitted by the classifier.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// Actions forced whenever a symbol fires, besides the configured ones.
    #[serde(default)]
    pub force_actions: BTreeMap<String, Action>,
    /// Symbols that do not count (and metas do not see).
    #[serde(default)]
    pub symbols_disabled: BTreeSet<String>,
    /// Symbol groups (`[symbols.NAME] group`) that do not count.
    #[serde(default)]
    pub groups_disabled: BTreeSet<String>,
    /// When not empty, only these symbols count (rspamd's `symbols_enabled`).
    #[serde(default)]
    pub symbols_enabled: BTreeSet<String>,
    /// Checks not run at all.
    #[serde(default)]
    pub checks_disabled: BTreeSet<CheckName>,
    /// The rewrite-subject template (`%s` is the subject).
    #[serde(default)]
    pub subject: Option<String>,
    /// Whether rate limits apply (default: yes).
    #[serde(default)]
    pub ratelimit: Option<bool>,
    /// Whether greylisting applies (default: yes).
    #[serde(default)]
    pub greylist: Option<bool>,
}

/// A named profile: when it applies, and what it changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Higher first when several match; ties go by name.
    #[serde(default)]
    pub priority: i32,
    /// The selectors; every one given must hold. A profile without any is
    /// chosen only by name (`Settings-ID`, spamd's `User`).
    #[serde(default, rename = "match")]
    pub selectors: Selectors,
    /// What it changes (rspamd's settings rule has the same `apply`).
    #[serde(default, rename = "apply")]
    pub settings: Settings,
}

/// What a profile matches on. Lists hold exact values or `*` globs
/// (`*@example.com`); every list given must have a match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selectors {
    /// Any SASL-authenticated user (`true`) or none (`false`).
    #[serde(default)]
    pub authenticated: Option<bool>,
    #[serde(default)]
    pub user: Vec<String>,
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub from_domain: Vec<String>,
    /// Some recipient matches.
    #[serde(default)]
    pub rcpt: Vec<String>,
    #[serde(default)]
    pub rcpt_domain: Vec<String>,
    /// Client address in one of these networks.
    #[serde(default)]
    pub ip: Vec<String>,
    #[serde(default)]
    pub helo: Vec<String>,
    /// spamd's `User` header (the local user spamc scans for).
    #[serde(default)]
    pub spamd_user: Vec<String>,
}

/// What a request adds to its envelope for choosing settings.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    /// rspamd's `Settings-ID` header: a profile by name.
    pub settings_id: Option<String>,
    /// rspamd's `Settings` header, already parsed: applied over the profile.
    pub settings: Option<Settings>,
    /// spamd's `User` header.
    pub spamd_user: Option<String>,
}

/// The settings a scan runs under: the profile's name (if one applied)
/// and what it changes, with the request's own `Settings` over it.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub profile: Option<String>,
    pub settings: Settings,
}

impl Applied {
    /// Whether nothing changes: the scan runs as configured.
    pub fn is_plain(&self) -> bool {
        self.profile.is_none() && self.settings.is_empty()
    }

    pub fn runs(&self, check: CheckName) -> bool {
        !self.settings.checks_disabled.contains(&check)
    }
}

impl Settings {
    fn is_empty(&self) -> bool {
        self.actions.is_empty()
            && self.scores.is_empty()
            && self.force_actions.is_empty()
            && self.symbols_disabled.is_empty()
            && self.groups_disabled.is_empty()
            && self.symbols_enabled.is_empty()
            && self.checks_disabled.is_empty()
            && self.subject.is_none()
            && self.ratelimit.is_none()
            && self.greylist.is_none()
    }

    /// `over` applied on top of `self`: its keys win, sets add up.
    pub fn merged(mut self, over: &Settings) -> Settings {
        self.actions.extend(over.actions.clone());
        self.scores.extend(over.scores.clone());
        self.force_actions.extend(over.force_actions.clone());
        self.symbols_disabled.extend(over.symbols_disabled.clone());
        self.groups_disabled.extend(over.groups_disabled.clone());
        self.symbols_enabled.extend(over.symbols_enabled.clone());
        self.checks_disabled.extend(over.checks_disabled.clone());
        if over.subject.is_some() {
            self.subject.clone_from(&over.subject);
        }
        self.ratelimit = over.ratelimit.or(self.ratelimit);
        self.greylist = over.greylist.or(self.greylist);
        self
    }

    /// This profile's threshold for `action`: `Some(None)` when it turns
    /// the action off, `None` when it leaves the configured one.
    pub fn threshold(&self, action: Action) -> Option<Option<f64>> {
        let key = match action {
            Action::Greylist => "greylist",
            Action::AddHeader => "add_header",
            Action::RewriteSubject => "rewrite_subject",
            Action::Reject => "reject",
            Action::NoAction | Action::SoftReject => return None,
        };
        self.actions.get(key).map(|t| match t {
            Threshold::Score(score) => Some(*score),
            Threshold::Off => None,
        })
    }

    /// Whether a symbol counts under these settings; `group` is its
    /// configured group.
    pub fn counts(&self, name: &str, group: Option<&str>) -> bool {
        if self.symbols_disabled.contains(name) {
            return false;
        }
        if group.is_some_and(|g| self.groups_disabled.contains(g)) {
            return false;
        }
        self.symbols_enabled.is_empty() || self.symbols_enabled.contains(name)
    }

    /// rspamd's `Settings` header: a JSON object of `actions` (numbers or
    /// `null`), `scores` (or, rspamd's legacy shape, symbol weights at the
    /// top), `symbols_enabled`, `symbols_disabled`, `groups_disabled`,
    /// `subject`; chaff's own keys (`force_actions`, `checks_disabled`,
    /// `ratelimit`, `greylist`) too. Keys rspamd has that chaff does not act
    /// on are refused by name rather than ignored.
    pub fn from_rspamd_json(text: &str) -> Result<Settings, InvalidSetting> {
        let bad = |problem: String| InvalidSetting::new("Settings", problem);
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        // rspamd accepts the settings bare or under `apply`.
        let value = match value.get("apply") {
            Some(inner) => inner.clone(),
            None => value,
        };
        let serde_json::Value::Object(mut object) = value else {
            return Err(bad("must be a JSON object".into()));
        };
        if let Some(serde_json::Value::Object(actions)) = object.get_mut("actions") {
            // rspamd's `null` turns an action off; its spelling has spaces.
            let renamed: serde_json::Map<String, serde_json::Value> = actions
                .iter()
                .map(|(k, v)| {
                    let v = if v.is_null() { "off".into() } else { v.clone() };
                    (k.replace(' ', "_"), v)
                })
                .collect();
            *actions = renamed;
        }
        const KEYS: [&str; 11] = [
            "actions",
            "scores",
            "force_actions",
            "symbols_disabled",
            "groups_disabled",
            "symbols_enabled",
            "checks_disabled",
            "subject",
            "ratelimit",
            "greylist",
            "id",
        ];
        // rspamd's legacy shape: a symbol's weight at the top level.
        let mut legacy_scores = serde_json::Map::new();
        let names: Vec<String> = object.keys().cloned().collect();
        for name in names {
            if KEYS.contains(&name.as_str()) {
                continue;
            }
            match object.remove(&name) {
                Some(serde_json::Value::Number(weight))
                    if name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
                {
                    legacy_scores.insert(name, serde_json::Value::Number(weight));
                }
                _ => return Err(bad(format!("unknown key `{name}`"))),
            }
        }
        object.remove("id");
        if !legacy_scores.is_empty() {
            let scores = object
                .entry("scores")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(scores) = scores {
                for (name, weight) in legacy_scores {
                    scores.entry(name).or_insert(weight);
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| bad(e.to_string()))
    }
}

impl Overrides for Settings {
    fn score(&self, symbol: &str) -> Option<f64> {
        self.scores.get(symbol).copied()
    }

    fn threshold(&self, action: Action) -> Option<Option<f64>> {
        Settings::threshold(self, action)
    }

    fn forced(&self, symbol: &str) -> Option<Action> {
        self.force_actions.get(symbol).copied()
    }

    fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

/// The configured profiles, checked and in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    ordered: Vec<(String, ProfileConfig, Vec<ipnet::IpNet>)>,
}

impl Profiles {
    /// Checks every profile's selectors and orders them by priority.
    pub fn new(configs: &BTreeMap<String, ProfileConfig>) -> Result<Profiles, InvalidSetting> {
        let mut ordered = Vec::new();
        for (name, config) in configs {
            let mut networks = Vec::new();
            for text in &config.selectors.ip {
                let network = crate::setting::parse_network(text).ok_or_else(|| {
                    InvalidSetting::new(
                        format!("{name}.match.ip"),
                        format!("`{text}` is not an address or CIDR network"),
                    )
                })?;
                networks.push(network);
            }
            for action in config.settings.actions.keys() {
                if !["greylist", "add_header", "rewrite_subject", "reject"]
                    .contains(&action.as_str())
                {
                    return Err(InvalidSetting::new(
                        format!("{name}.apply.actions.{action}"),
                        "not an action with a threshold (greylist, add_header, rewrite_subject, reject)",
                    ));
                }
            }
            ordered.push((name.clone(), config.clone(), networks));
        }
        ordered.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.cmp(&b.0)));
        Ok(Profiles { ordered })
    }

    /// The settings a message scans under: the profile `Settings-ID` names
    /// (an unknown id is ignored, as rspamd only logs it), else the first
    /// whose selectors all hold, with the request's inline settings over it.
    pub fn select(&self, envelope: &Envelope, request: &ScanRequest) -> Applied {
        let by_id = request
            .settings_id
            .as_deref()
            .and_then(|id| self.ordered.iter().find(|(name, ..)| name == id));
        let chosen = by_id.or_else(|| {
            self.ordered.iter().find(|(_, config, networks)| {
                matches(&config.selectors, networks, envelope, request)
            })
        });
        let (profile, settings) = match chosen {
            Some((name, config, _)) => (Some(name.clone()), config.settings.clone()),
            None => (None, Settings::default()),
        };
        let settings = match &request.settings {
            Some(inline) => settings.merged(inline),
            None => settings,
        };
        Applied { profile, settings }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ordered.iter().map(|(name, ..)| name.as_str())
    }
}

/// Whether every selector given holds for this envelope; a profile with
/// none matches only by name.
fn matches(
    selectors: &Selectors,
    networks: &[ipnet::IpNet],
    envelope: &Envelope,
    request: &ScanRequest,
) -> bool {
    let mut any = false;
    let mut check = |given: bool, holds: bool| {
        any |= given;
        !given || holds
    };
    let user = envelope.user.as_deref().filter(|u| !u.is_empty());
    let from = envelope.mail_from.as_deref().unwrap_or("");
    let from_domain = domain_of(from);
    let ip: Option<IpAddr> = envelope.client_ip;
    check(
        selectors.authenticated.is_some(),
        selectors.authenticated == Some(user.is_some()),
    ) && check(
        !selectors.user.is_empty(),
        user.is_some_and(|u| any_glob(&selectors.user, u)),
    ) && check(!selectors.from.is_empty(), any_glob(&selectors.from, from))
        && check(
            !selectors.from_domain.is_empty(),
            any_glob(&selectors.from_domain, from_domain),
        )
        && check(
            !selectors.rcpt.is_empty(),
            envelope
                .recipients
                .iter()
                .any(|r| any_glob(&selectors.rcpt, r)),
        )
        && check(
            !selectors.rcpt_domain.is_empty(),
            envelope
                .recipients
                .iter()
                .any(|r| any_glob(&selectors.rcpt_domain, domain_of(r))),
        )
        && check(
            !networks.is_empty(),
            ip.is_some_and(|ip| networks.iter().any(|n| n.contains(&ip))),
        )
        && check(
            !selectors.helo.is_empty(),
            envelope
                .helo
                .as_deref()
                .is_some_and(|h| any_glob(&selectors.helo, h)),
        )
        && check(
            !selectors.spamd_user.is_empty(),
            request
                .spamd_user
                .as_deref()
                .is_some_and(|u| any_glob(&selectors.spamd_user, u)),
        )
        && any
}

/// The part after the last `@`, or the whole text.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

fn any_glob(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob(p, text))
}

/// Case-insensitive match of `pattern`, where `*` stands for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(text: &str) -> Profiles {
        let configs: BTreeMap<String, ProfileConfig> = toml::from_str(text).unwrap();
        Profiles::new(&configs).unwrap()
    }

    fn envelope(user: Option<&str>, rcpt: &str, ip: &str) -> Envelope {
        Envelope {
            user: user.map(str::to_owned),
            recipients: vec![rcpt.to_owned()],
            client_ip: ip.parse().ok(),
            mail_from: Some("<alice@example.com>".into()),
            ..Envelope::default()
        }
    }

    #[test]
    fn the_first_profile_whose_selectors_all_hold_applies() {
        let p = profiles(
            r#"
            [outbound]
            priority = 10
            match.authenticated = true
            apply.actions.reject = "off"
            [postmaster]
            match.rcpt = ["postmaster@*"]
            apply.scores.BAYES_SPAM = 0.0
            [lan]
            match.ip = ["10.0.0.0/8"]
            match.rcpt_domain = ["example.org"]
            [by_name_only]
            apply.actions.reject = 99.0
            "#,
        );
        let request = ScanRequest::default();
        let out = p.select(&envelope(Some("bob"), "x@y.z", "192.0.2.1"), &request);
        assert_eq!(out.profile.as_deref(), Some("outbound"));
        assert_eq!(out.settings.threshold(Action::Reject), Some(None));
        let pm = p.select(&envelope(None, "<postmaster@y.z>", "192.0.2.1"), &request);
        assert_eq!(pm.profile.as_deref(), Some("postmaster"));
        // Both of `lan`'s selectors must hold.
        let lan = p.select(&envelope(None, "a@example.org", "10.1.2.3"), &request);
        assert_eq!(lan.profile.as_deref(), Some("lan"));
        let not_lan = p.select(&envelope(None, "a@example.net", "10.1.2.3"), &request);
        assert!(not_lan.profile.is_none() && not_lan.is_plain());
        let by_id = p.select(
            &envelope(None, "a@example.net", "10.1.2.3"),
            &ScanRequest {
                settings_id: Some("by_name_only".into()),
                ..ScanRequest::default()
            },
        );
        assert_eq!(by_id.settings.threshold(Action::Reject), Some(Some(99.0)));
    }

    #[test]
    fn rspamd_settings_json_reads_actions_null_and_legacy_scores() {
        let s = Settings::from_rspamd_json(
            r#"{"actions": {"reject": null, "add header": 3.5}, "GTUBE": 1.0,
                "symbols_disabled": ["BAYES_SPAM"], "scores": {"R_SPF_FAIL": 4}}"#,
        )
        .unwrap();
        assert_eq!(s.threshold(Action::Reject), Some(None));
        assert_eq!(s.threshold(Action::AddHeader), Some(Some(3.5)));
        assert_eq!(s.scores.get("GTUBE"), Some(&1.0));
        assert_eq!(s.scores.get("R_SPF_FAIL"), Some(&4.0));
        assert!(!s.counts("BAYES_SPAM", None));
        let wrapped =
            Settings::from_rspamd_json(r#"{"apply": {"actions": {"reject": 30}}}"#).unwrap();
        assert_eq!(wrapped.threshold(Action::Reject), Some(Some(30.0)));
        for bad in [
            "[1]",
            "{",
            r#"{"whitelist": true}"#,
            r#"{"actions": {"reject": "x"}}"#,
        ] {
            assert!(Settings::from_rspamd_json(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_settings_or_a_refusal(text in "\\PC{0,80}") {
            let _ = Settings::from_rspamd_json(&text);
        }

        #[test]
        fn any_json_object_is_settings_or_a_refusal(
            keys in proptest::collection::vec("[a-z_ A-Z]{1,12}", 0..4),
            value in proptest::prop_oneof![
                proptest::prelude::Just("null".to_owned()),
                "-?[0-9]{1,4}(\\.[0-9])?",
                "\\[\"[A-Z_]{1,8}\"\\]",
                "\\{\"[a-z ]{1,10}\": (null|[0-9]{1,3})\\}",
            ],
        ) {
            let body: Vec<String> = keys.iter().map(|k| format!("\"{k}\": {value}")).collect();
            let _ = Settings::from_rspamd_json(&format!("{{{}}}", body.join(",")));
        }

        #[test]
        fn a_glob_of_the_text_itself_matches(text in "[a-z@.]{0,20}") {
            proptest::prop_assert!(glob(&text, &text));
            proptest::prop_assert!(glob("*", &text));
        }
    }

    #[test]
    fn globs_match_case_insensitively() {
        assert!(glob("*@Example.com", "<bob@example.COM>"));
        assert!(glob("post*@*", "postmaster@x"));
        assert!(!glob("*@example.com", "bob@example.org"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "ac"));
    }

    #[test]
    fn an_unknown_action_or_network_is_refused_by_name() {
        let configs: BTreeMap<String, ProfileConfig> =
            toml::from_str("[p]\napply.actions.explode = 1.0\n").unwrap();
        let error = Profiles::new(&configs).unwrap_err();
        assert!(
            error.to_string().contains("p.apply.actions.explode"),
            "{error}"
        );
        let configs: BTreeMap<String, ProfileConfig> =
            toml::from_str("[p]\nmatch.ip = [\"nope\"]\n").unwrap();
        assert!(Profiles::new(&configs).is_err());
    }
}
