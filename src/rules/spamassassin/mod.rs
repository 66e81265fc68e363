//! SpamAssassin `.cf` rule files, with SpamAssassin's meaning.
//!
//! Read: `header` (with the relay pseudo-headers, and the FreeMail plugin's
//! `check_freemail_from`/`check_freemail_header` evals over
//! `freemail_domains`, `check_for_shifted_date`, and the few argument-free
//! evals chaff has a test for), `mimeheader`, `body`, `rawbody`, `uri`, `full`, `meta`, `score`,
//! `describe`, `tflags`, and the `ifplugin`/`if`/`else`/`endif`
//! conditionals (a plugin counts as loaded when a `loadplugin` line for it
//! was read, from the `.pre` files beside the rules or in
//! `/etc/spamassassin`). Left out and counted, with the reason: `eval:`
//! tests (Perl code), network evals (`tflags net` on an eval) in the score
//! sets with network tests (in the others SpamAssassin does not run them
//! either: they are counted as not run, and metas read them as 0), tag replacement
//! (`tflags replace`), header options chaff does not implement (`:host`,
//! `if-unset:`, `ALL-TRUSTED` and kin), other rule types
//! (`uri_detail`, DNS lists), and patterns that neither
//! `regex` nor `fancy-regex` accepts after translation. Metas naming a
//! skipped rule are skipped too.
//!
//! Perl regexes are translated where Perl and Rust differ, so nothing is
//! silently mis-compiled: `$` without `/m` (Perl: end or before a final
//! newline), `\Z`, `\h`, `\v`, `\e`, octal `\0NN`, and inside character
//! classes the characters Rust gives meaning to (`[`, `&&`, `--`, `~~`,
//! whitespace under `/x`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod mapping;
mod tags;
mod translate;

pub use translate::translate;

use mapping::{Def, freemail_pattern, header_def, rule_def};
use tags::replace_tags;

use super::domains::DomainGate;
use super::input::{HeaderForm, Target};
use super::spec::{LoadReport, MAX_HITS_LIMIT, Origin, RuleSpec, Skip, SkipClass, SpecKind};

/// `.cf` files of `path` (a file, or a directory's `*.cf` in name order).
pub fn cf_files(path: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    if !path.is_dir() {
        return if path.exists() {
            Ok(vec![path.to_owned()])
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        };
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cf"))
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Debug, Clone)]
struct Entry {
    origin: Origin,
    kind: &'static str,
    def: Def,
    tflags: String,
    /// The directive and the text after the rule's name, kept for
    /// `replace_rules`, which rewrites the pattern once every file is read.
    source: Option<(&'static str, String)>,
}

/// The ReplaceTags plugin's configuration: `<TAG>` placeholders that the
/// rules named in `replace_rules` have replaced in their patterns.
#[derive(Debug, Default)]
struct ReplaceTags {
    start: Option<String>,
    end: Option<String>,
    tags: HashMap<String, String>,
    pre: HashMap<String, String>,
    post: HashMap<String, String>,
    inter: HashMap<String, String>,
    rules: HashSet<String>,
}

/// Reads `.cf` files in order; [`CfParser::finish`] yields the specs.
pub struct CfParser {
    score_set: usize,
    plugins: HashSet<String>,
    rules: HashMap<String, Entry>,
    order: Vec<String>,
    scores: HashMap<String, f64>,
    describe: HashMap<String, String>,
    tflags: HashMap<String, String>,
    /// `freemail_domains` entries, lowercased (`*` and `?` wildcards kept).
    freemail_domains: Vec<String>,
    /// `freemail_welcomelist` addresses and domains, lowercased.
    freemail_welcome: Vec<String>,
    /// Conditional stack: whether each open block is active.
    conditions: Vec<bool>,
    replace: ReplaceTags,
}

impl CfParser {
    pub fn new(score_set: usize) -> CfParser {
        let mut plugins = HashSet::new();
        for dir in ["/etc/spamassassin", "/etc/mail/spamassassin"] {
            for pre in std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pre"))
            {
                if let Ok(text) = std::fs::read_to_string(&pre) {
                    for line in text.lines() {
                        if let Some(rest) = line.trim().strip_prefix("loadplugin")
                            && let Some(name) = rest.split_whitespace().next()
                        {
                            plugins.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        CfParser {
            score_set: score_set.min(3),
            plugins,
            rules: HashMap::new(),
            order: Vec::new(),
            scores: HashMap::new(),
            describe: HashMap::new(),
            tflags: HashMap::new(),
            freemail_domains: Vec::new(),
            freemail_welcome: Vec::new(),
            conditions: Vec::new(),
            replace: ReplaceTags::default(),
        }
    }

    fn active(&self) -> bool {
        self.conditions.iter().all(|&c| c)
    }

    pub fn parse(&mut self, file: &str, text: &str) {
        for (number, raw_line) in text.lines().enumerate() {
            let line = strip_comment(raw_line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (directive, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(d, r)| (d, r.trim()));
            match directive {
                "ifplugin" => {
                    let loaded = self.plugins.contains(rest) || self.plugins.is_empty();
                    self.conditions.push(loaded);
                    continue;
                }
                "if" => {
                    self.conditions.push(eval_if(rest, &self.plugins));
                    continue;
                }
                "else" => {
                    if let Some(last) = self.conditions.last_mut() {
                        *last = !*last;
                    }
                    continue;
                }
                "endif" => {
                    self.conditions.pop();
                    continue;
                }
                _ => {}
            }
            if !self.active() {
                continue;
            }
            if directive == "loadplugin" {
                if let Some(name) = rest.split_whitespace().next() {
                    self.plugins.insert(name.to_owned());
                }
                continue;
            }
            let origin = Origin {
                file: file.to_owned(),
                line: number + 1,
            };
            let (name, body) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(n, b)| (n, b.trim()));
            match directive {
                "score" => {
                    let values: Vec<f64> = body
                        .split_whitespace()
                        .map_while(|v| v.trim_start_matches('(').trim_end_matches(')').parse().ok())
                        .collect();
                    let value = match values.len() {
                        0 => continue,
                        1 => values[0],
                        _ => values
                            .get(self.score_set)
                            .copied()
                            .unwrap_or(values[values.len() - 1]),
                    };
                    self.scores.insert(name.to_owned(), value);
                }
                "describe" => {
                    self.describe.insert(name.to_owned(), body.to_owned());
                }
                "tflags" => {
                    self.tflags.insert(name.to_owned(), body.to_owned());
                }
                "freemail_domains" => {
                    // As the plugin: letters, digits, `.`, `-` and wildcards.
                    self.freemail_domains.extend(
                        rest.split_whitespace()
                            .filter(|d| {
                                d.bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"._*?-".contains(&b))
                            })
                            .map(str::to_ascii_lowercase),
                    );
                }
                "replace_start" => self.replace.start = Some(name.to_owned()),
                "replace_end" => self.replace.end = Some(name.to_owned()),
                "replace_tag" | "replace_pre" | "replace_post" | "replace_inter" => {
                    let table = match directive {
                        "replace_tag" => &mut self.replace.tags,
                        "replace_pre" => &mut self.replace.pre,
                        "replace_post" => &mut self.replace.post,
                        _ => &mut self.replace.inter,
                    };
                    table.insert(name.to_owned(), body.to_owned());
                }
                "replace_rules" => {
                    self.replace
                        .rules
                        .extend(rest.split_whitespace().map(str::to_owned));
                }
                "freemail_welcomelist" | "freemail_whitelist" => {
                    self.freemail_welcome
                        .extend(rest.split_whitespace().map(str::to_ascii_lowercase));
                }
                "header" | "mimeheader" | "body" | "rawbody" | "uri" | "full" | "meta" => {
                    let kind: &'static str = match directive {
                        "header" => "header",
                        "mimeheader" => "mimeheader",
                        "body" => "body",
                        "rawbody" => "rawbody",
                        "uri" => "uri",
                        "full" => "full",
                        _ => "meta",
                    };
                    let directive_kind = kind;
                    let def = rule_def(kind, body);
                    let kind = match (&def, kind) {
                        (Def::Rule(SpecKind::Exists { .. }), _) => "exists",
                        (Def::Skip(SkipClass::Eval, _), _) => "eval",
                        _ => kind,
                    };
                    if !self.rules.contains_key(name) {
                        self.order.push(name.to_owned());
                    }
                    self.rules.insert(
                        name.to_owned(),
                        Entry {
                            origin,
                            kind,
                            def,
                            tflags: String::new(),
                            source: Some((directive_kind, body.to_owned())),
                        },
                    );
                }
                "uri_detail" | "askdns" | "urirhsbl" | "urirhssub" | "urinsrhsbl"
                | "urinsrhssub" | "urifullnsrhsbl" | "hashbl_acl" | "check_rbl" => {
                    let kind: &'static str = match directive {
                        "uri_detail" => "uri_detail",
                        _ => "dns",
                    };
                    if !self.rules.contains_key(name) {
                        self.order.push(name.to_owned());
                    }
                    self.rules.insert(
                        name.to_owned(),
                        Entry {
                            origin,
                            kind,
                            def: Def::Skip(SkipClass::UnsupportedType, directive.to_owned()),
                            tflags: String::new(),
                            source: None,
                        },
                    );
                }
                _ => {}
            }
        }
    }

    /// Rewrites the patterns of the rules named in `replace_rules`, as the
    /// ReplaceTags plugin does once all configuration is read. Without it
    /// such a rule would run with its `<TAG>` placeholders as literal text.
    fn apply_replace_tags(&mut self) {
        let names: Vec<String> = self.replace.rules.iter().cloned().collect();
        for name in names {
            let Some(entry) = self.rules.get_mut(&name) else {
                continue;
            };
            let Some((directive, body)) = entry.source.clone() else {
                continue;
            };
            let replaced = replace_tags(&body, &self.replace);
            if replaced == body {
                continue;
            }
            entry.def = match directive {
                "header" => header_def(&replaced, false),
                "mimeheader" => header_def(&replaced, true),
                "meta" => continue,
                kind => rule_def(kind, &replaced),
            };
        }
    }

    /// The rules read, in definition order; skips go to `report`.
    pub fn finish(mut self, report: &mut LoadReport) -> Vec<RuleSpec> {
        self.apply_replace_tags();
        // Every FreeMail check first looks the domain up, as the plugin does
        // (`domains.rs`); the pattern then decides.
        let freemail_gate = DomainGate::new(&self.freemail_domains).ok().map(Arc::new);
        let mut specs = Vec::new();
        for name in &self.order {
            let Some(mut entry) = self.rules.get(name).cloned() else {
                continue;
            };
            entry.tflags = self.tflags.get(name).cloned().unwrap_or_default();
            let score = self.scores.get(name).copied();
            let hidden = name.starts_with("__") || score == Some(0.0);
            // SpamAssassin's default score: 1, 0.01 for a T_ rule on
            // probation, negative for a `tflags nice` rule.
            let weight = score.unwrap_or_else(|| {
                let magnitude = if name.starts_with("T_") { 0.01 } else { 1.0 };
                let nice = entry.tflags.split_whitespace().any(|flag| flag == "nice");
                if nice { -magnitude } else { magnitude }
            });
            let mut spec = RuleSpec {
                symbol: name.clone(),
                origin: entry.origin.clone(),
                kind: SpecKind::Exists {
                    header: String::new(),
                    negate: false,
                },
                weight,
                description: self.describe.get(name).cloned(),
                group: Some("spamassassin".into()),
                force_action: None,
                hidden,
                lenient: true,
                max_hits: 1,
            };
            let flags: Vec<&str> = entry.tflags.split_whitespace().collect();
            if flags.contains(&"multiple") {
                // SpamAssassin counts without end unless told `maxhits=N`;
                // chaff stops at MAX_HITS_LIMIT either way.
                spec.max_hits = flags
                    .iter()
                    .find_map(|f| f.strip_prefix("maxhits="))
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(MAX_HITS_LIMIT)
                    .clamp(1, MAX_HITS_LIMIT);
            }
            // SpamAssassin skips only *eval* rules flagged `net`, and only in
            // the score sets without network tests (0 and 2); a `net` meta
            // or regex still runs, and metas read a skipped eval as 0.
            // chaff does not make SpamAssassin's own DNS lookups: in those
            // score sets such an eval is "not run" and metas may name it
            // (as 0, as SpamAssassin's do); in the network sets it is
            // skipped, and so are metas naming it.
            let net_eval = flags.contains(&"net") && entry.kind == "eval";
            if net_eval && self.score_set & 1 == 0 {
                report.not_run.push(Skip {
                    origin: entry.origin,
                    symbol: name.clone(),
                    kind: entry.kind.to_owned(),
                    class: SkipClass::Net,
                    detail: format!(
                        "SpamAssassin does not run it in score set {} either",
                        self.score_set
                    ),
                });
                continue;
            }
            let skip = match entry.def {
                _ if net_eval => Some((SkipClass::Net, String::new(), entry.kind)),
                _ if flags.contains(&"replace") => Some((
                    SkipClass::TagReplacement,
                    "tag replacement".to_owned(),
                    entry.kind,
                )),
                Def::Skip(class, detail) => Some((class, detail, entry.kind)),
                Def::Rule(kind) => {
                    spec.kind = kind;
                    None
                }
                Def::Freemail { header, regex } => {
                    match freemail_pattern(
                        &self.freemail_domains,
                        &self.freemail_welcome,
                        regex.as_deref(),
                    ) {
                        Ok(source) => {
                            let key = header.map_or_else(
                                || ":allfrom".to_owned(),
                                |h| crate::rules::input::header_key(&h),
                            );
                            spec.kind = SpecKind::Pattern {
                                target: Target::Header(key, HeaderForm::Addr),
                                source,
                                negate: false,
                                lookup: freemail_gate.clone(),
                            };
                            None
                        }
                        Err(reason) => Some((SkipClass::Eval, reason.0, entry.kind)),
                    }
                }
            };
            match skip {
                Some((class, detail, kind)) => report.skipped.push(Skip {
                    origin: entry.origin,
                    symbol: name.clone(),
                    kind: kind.to_owned(),
                    class,
                    detail,
                }),
                None => specs.push(spec),
            }
        }
        specs
    }
}

/// `#` starts a comment unless escaped (`\#`), as SpamAssassin reads it.
fn strip_comment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'#') => {
                out.push_str("\\#");
                chars.next();
            }
            '#' => break,
            c => out.push(c),
        }
    }
    out
}

/// The SpamAssassin version whose rules chaff reads as its own: 4.0.1,
/// as SpamAssassin writes it in `if (version …)` conditions.
const SPAMASSASSIN_VERSION: f64 = 4.000001;

/// `if (version >= 3.004000)`, `if can(...)`, `if plugin(...)`: chaff
/// answers as SpamAssassin 4.0.1 with its plugins would.
fn eval_if(condition: &str, plugins: &HashSet<String>) -> bool {
    let c = condition.replace(' ', "");
    let negated = c.starts_with("!") || c.starts_with("(!");
    let bare = c.trim_start_matches(['!', '(']).trim_end_matches(')');
    let truth = if c.contains("plugin(") {
        let name = c
            .split("plugin(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_default();
        plugins.contains(name)
    } else if let Some(comparison) = bare.strip_prefix("version") {
        // A version we cannot read is taken as met, as before: the rules
        // written for SpamAssassin 4 are the ones to load.
        compare_version(comparison).unwrap_or(true)
    } else {
        // can(feature) checks: SpamAssassin 4.0 has them.
        true
    };
    truth != negated
}

/// `>=3.004000` and the like, against [`SPAMASSASSIN_VERSION`].
fn compare_version(comparison: &str) -> Option<bool> {
    let operator_length = comparison
        .chars()
        .take_while(|c| matches!(c, '<' | '>' | '=' | '!'))
        .count();
    let (operator, number) = comparison.split_at(operator_length);
    let number: f64 = number.parse().ok()?;
    let v = SPAMASSASSIN_VERSION;
    Some(match operator {
        ">=" => v >= number,
        ">" => v > number,
        "<=" => v <= number,
        "<" => v < number,
        "==" => v == number,
        "!=" => v != number,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
