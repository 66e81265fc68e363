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

use super::expr::{self, Policy};
use super::input::{HeaderForm, Target};
use super::{LoadReport, Origin, RuleSpec, SpecKind};

/// `.cf` files of `path` (a file, or a directory's `*.cf` in name order).
pub fn cf_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return if path.exists() {
            Ok(vec![path.to_owned()])
        } else {
            Err("no such file or directory".into())
        };
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot read directory: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cf"))
        .collect();
    files.sort();
    Ok(files)
}

#[derive(Debug, Clone)]
enum Def {
    Rule(SpecKind),
    Skip(&'static str, String),
    /// The FreeMail plugin's `check_freemail_from([regex])` (`header` None)
    /// and `check_freemail_header(header[, regex])`: built at the end of
    /// parsing, once every `freemail_domains` line has been read.
    Freemail {
        header: Option<String>,
        regex: Option<String>,
    },
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
                        (Def::Skip("eval", _), _) => "eval",
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
                            def: Def::Skip("unsupported rule type", directive.to_owned()),
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
        let mut specs = Vec::new();
        for name in &self.order {
            let Some(mut entry) = self.rules.get(name).cloned() else {
                continue;
            };
            entry.tflags = self.tflags.get(name).cloned().unwrap_or_default();
            let score = self.scores.get(name).copied();
            let hidden = name.starts_with("__") || score == Some(0.0);
            let weight = score.unwrap_or(if name.starts_with("T_") { 0.01 } else { 1.0 });
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
                    .unwrap_or(super::load::MAX_HITS_LIMIT)
                    .clamp(1, super::load::MAX_HITS_LIMIT);
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
                report.not_run.push(super::Skip {
                    origin: entry.origin,
                    symbol: name.clone(),
                    kind: entry.kind.to_owned(),
                    reason: format!(
                        "net: SpamAssassin does not run it in score set {} either",
                        self.score_set
                    ),
                });
                continue;
            }
            let skip = match entry.def {
                _ if net_eval => Some(("net".to_owned(), entry.kind)),
                _ if flags.contains(&"replace") => {
                    Some(("tflags replace: tag replacement".to_owned(), entry.kind))
                }
                Def::Skip(class, detail) => Some((format!("{class}: {detail}"), entry.kind)),
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
                                |h| super::input::header_key(&h),
                            );
                            spec.kind = SpecKind::Pattern {
                                target: Target::Header(key, HeaderForm::Addr),
                                source,
                                negate: false,
                            };
                            None
                        }
                        Err(reason) => Some((format!("eval: {reason}"), entry.kind)),
                    }
                }
            };
            match skip {
                Some((reason, kind)) => report.skipped.push(super::Skip {
                    origin: entry.origin,
                    symbol: name.clone(),
                    kind: kind.to_owned(),
                    reason,
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

/// `if (version >= 3.004000)`, `if can(...)`, `if plugin(...)`: chaff
/// answers as SpamAssassin 4.0 with its plugins would.
fn eval_if(condition: &str, plugins: &HashSet<String>) -> bool {
    let c = condition.replace(' ', "");
    let negated = c.starts_with("!") || c.starts_with("(!");
    let truth = if c.contains("plugin(") {
        let name = c
            .split("plugin(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_default();
        plugins.contains(name)
    } else {
        // version checks and can(feature) checks: SpamAssassin 4.0 has them.
        true
    };
    truth != negated
}

/// Parses a rule definition's body for `kind`.
/// One rule's pattern text with its tags replaced, step for step as
/// ReplaceTags.pm's `finish_parsing_end`: take out the `pre`/`post`/`inter`
/// modifier tags, split at `<...>`, put the `pre` text before and the `post`
/// text after each tag and the `inter` text between adjacent tags, replace
/// each known tag, and go again (at most five more times) while a
/// replacement brought in tags of its own. Unknown tags stay as written.
fn replace_tags(pattern: &str, config: &ReplaceTags) -> String {
    let start = config.start.as_deref().unwrap_or("<");
    let end = config.end.as_deref().unwrap_or(">");
    let mut re = pattern.to_owned();
    for _pass in 0..=5 {
        let pre = take_modifier(&mut re, start, end, "pre").and_then(|n| config.pre.get(&n));
        let post = take_modifier(&mut re, start, end, "post").and_then(|n| config.post.get(&n));
        let inter = take_modifier(&mut re, start, end, "inter").and_then(|n| config.inter.get(&n));
        let mut pieces = split_at_tags(&re);
        let mut again = false;
        for piece in &mut pieces {
            if let Some(inter) = inter
                && piece.is_empty()
            {
                piece.clone_from(inter);
            }
            let Some((at, tag_end, tag)) = first_tag(piece, start, end) else {
                continue;
            };
            let tag = tag.to_owned();
            if let Some(pre) = pre {
                piece.insert_str(at, pre);
            }
            if let Some(post) = post {
                let after_tag = tag_end + end.len() + pre.map_or(0, String::len);
                piece.insert_str(after_tag, post);
            }
            if let Some(replacement) = config.tags.get(&tag).filter(|r| !r.is_empty()) {
                *piece = piece.replace(&format!("{start}{tag}{end}"), replacement);
                again |= has_tag(replacement);
            }
        }
        re = pieces.concat();
        if !again {
            break;
        }
    }
    re
}

/// Removes the first `<kind NAME>` modifier from `re` and returns NAME.
fn take_modifier(re: &mut String, start: &str, end: &str, kind: &str) -> Option<String> {
    let open = format!("{start}{kind} ");
    let at = re.find(&open)?;
    let name_start = at + open.len();
    let close = re[name_start..].find(end)? + name_start;
    if close == name_start {
        return None;
    }
    let name = re[name_start..close].to_owned();
    re.replace_range(at..close + end.len(), "");
    Some(name)
}

/// Perl's `split(/(<[^<>]+>)/, $re)`: text and tags in turn, an empty piece
/// between adjacent tags and before a leading tag, none after a trailing one.
fn split_at_tags(re: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut from = 0;
    while let Some(open) = re[from..].find('<').map(|i| from + i) {
        // A tag is `<`, then no `<` or `>`, then `>`.
        match re[open + 1..].find(['<', '>']).map(|i| open + 1 + i) {
            Some(close) if close > open + 1 && re.as_bytes()[close] == b'>' => {
                pieces.push(re[text_start..open].to_owned());
                pieces.push(re[open..=close].to_owned());
                text_start = close + 1;
                from = close + 1;
            }
            _ => from = open + 1,
        }
    }
    pieces.push(re[text_start..].to_owned());
    while pieces.last().is_some_and(String::is_empty) {
        pieces.pop();
    }
    pieces
}

/// The first `start NAME end` in `piece`: where it starts, where its end
/// marker starts, and NAME.
fn first_tag<'p>(piece: &'p str, start: &str, end: &str) -> Option<(usize, usize, &'p str)> {
    let at = piece.find(start)?;
    let name_start = at + start.len();
    let close = piece[name_start..].find(end)? + name_start;
    (close > name_start).then(|| (at, close, &piece[name_start..close]))
}

fn has_tag(text: &str) -> bool {
    text.find('<')
        .is_some_and(|open| text[open + 1..].find('>').is_some_and(|close| close > 0))
}

fn rule_def(kind: &str, body: &str) -> Def {
    if let Some(rest) = body.strip_prefix("eval:") {
        return match eval_call(rest) {
            Some((name, arguments)) => {
                known_eval(name, &arguments).unwrap_or_else(|| Def::Skip("eval", name.to_owned()))
            }
            None => Def::Skip(
                "eval",
                rest.split('(').next().unwrap_or_default().to_owned(),
            ),
        };
    }
    match kind {
        "meta" => match expr::parse(body) {
            Ok(expr) => Def::Rule(SpecKind::Meta {
                expr,
                policy: Policy::Leave,
            }),
            Err(e) => Def::Skip("meta", format!("cannot parse: {e}")),
        },
        "header" => header_def(body, false),
        "mimeheader" => header_def(body, true),
        _ => {
            let (pattern, flags) = match split_regex(body) {
                Ok(p) => p,
                Err(e) => return Def::Skip("regex", e),
            };
            let target = match kind {
                "body" => Target::Body,
                "rawbody" => Target::RawBody,
                "uri" => Target::Uri,
                _ => Target::Full,
            };
            // SpamAssassin matches body paragraphs and URIs one at a time.
            let per_line = matches!(kind, "body" | "uri");
            match translate(&pattern, &flags, per_line) {
                Ok(source) => Def::Rule(SpecKind::Pattern {
                    target,
                    source,
                    negate: false,
                }),
                Err(e) => Def::Skip("regex", e),
            }
        }
    }
}

/// A `header` rule, or with `mime` a `mimeheader` rule (same syntax, read
/// from every MIME part's headers).
fn header_def(body: &str, mime: bool) -> Def {
    if mime && body.starts_with("exists:") {
        return Def::Skip("mimeheader", "exists: not supported".into());
    }
    if let Some(name) = body.strip_prefix("exists:") {
        return Def::Rule(SpecKind::Exists {
            header: name.trim().to_owned(),
            negate: false,
        });
    }
    let Some((spec, rest)) = body.split_once(char::is_whitespace) else {
        return Def::Skip("header", "no operator".into());
    };
    let rest = rest.trim_start();
    let (negate, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (false, r.trim_start())
    } else if let Some(r) = rest.strip_prefix("!~") {
        (true, r.trim_start())
    } else {
        return Def::Skip("header", format!("unknown operator in `{rest}`"));
    };
    let (pattern, flags, tail) = match split_regex_tail(rest) {
        Ok(p) => p,
        Err(e) => return Def::Skip("regex", e),
    };
    if tail.contains("if-unset:") {
        return Def::Skip("header", "if-unset: not supported".into());
    }
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let mut form = HeaderForm::Decoded;
    for modifier in parts {
        form = match modifier {
            "raw" => HeaderForm::Raw,
            "addr" => HeaderForm::Addr,
            "name" => HeaderForm::Name,
            other => return Def::Skip("header", format!(":{other} not supported")),
        };
    }
    let lower = name.to_ascii_lowercase();
    let relay_pseudo_header = matches!(
        lower.as_str(),
        "x-spam-relays-trusted"
            | "x-spam-relays-untrusted"
            | "x-spam-relays-internal"
            | "x-spam-relays-external"
    );
    if (lower.starts_with("x-spam-relays") && !relay_pseudo_header)
        || lower.starts_with("all-")
        || lower == "x-spam-status"
    {
        return Def::Skip("header", format!("pseudo-header {name}"));
    }
    let target = if mime {
        Target::MimeHeader(lower, form)
    } else {
        Target::Header(super::input::header_key(name), form)
    };
    match translate(&pattern, &flags, false) {
        Ok(source) => Def::Rule(SpecKind::Pattern {
            target,
            source,
            negate,
        }),
        Err(e) => Def::Skip("regex", e),
    }
}

/// `name(arg, 'arg', "arg")` → the name and its arguments, unquoted.
/// Commas inside quotes (a regex argument's `{1,3}`) do not split.
fn eval_call(call: &str) -> Option<(&str, Vec<String>)> {
    let (name, rest) = call.trim().split_once('(')?;
    let inside = rest.trim_end().strip_suffix(')')?;
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in inside.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, ',') => arguments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    arguments.push(current);
    let arguments: Vec<String> = arguments
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    Some((name.trim(), arguments))
}

/// The SpamAssassin evals chaff runs itself; `None` for the rest, which
/// are skipped. FreeMail checks become patterns at the end of parsing,
/// once every `freemail_domains` line is read.
fn known_eval(name: &str, arguments: &[String]) -> Option<Def> {
    use super::EvalFn;
    let eval = |function| {
        Def::Rule(SpecKind::Eval {
            function,
            negate: false,
        })
    };
    // check_for_shifted_date's bounds: hours, or `undef` for an open end.
    let hours = |text: &str| -> Option<Option<i64>> {
        if text == "undef" {
            Some(None)
        } else {
            text.parse().ok().map(Some)
        }
    };
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    Some(match (name, arguments.as_slice()) {
        ("html_test", ["html"]) | ("check_for_mime_html", []) => eval(EvalFn::HtmlPart),
        ("html_test", ["font_low_contrast"]) => eval(EvalFn::FontLowContrast),
        ("html_test", ["font_face_bad"]) => eval(EvalFn::FontFaceBad),
        ("html_range", ["max_size", above, up_to]) => eval(EvalFn::HtmlMaxFontSize {
            above: above.trim().parse().ok()?,
            up_to: match up_to.trim() {
                "inf" => None,
                number => Some(number.parse().ok()?),
            },
        }),
        ("subject_is_all_caps", []) => eval(EvalFn::SubjectAllCaps),
        ("check_for_missing_to_header", []) => eval(EvalFn::ToMissing),
        ("check_for_mime_html_only", []) => eval(EvalFn::MimeHtmlOnly),
        ("check_equal_from_domains", []) => eval(EvalFn::FromDomainsDiffer),
        ("check_outlook_message_id", []) => eval(EvalFn::OutlookMessageIdInvalid),
        ("check_for_shifted_date", [min, max]) => eval(EvalFn::ShiftedDate {
            min_hours: hours(min)?,
            max_hours: hours(max)?,
        }),
        ("check_freemail_from", regex) if regex.len() <= 1 => Def::Freemail {
            header: None,
            regex: regex.first().map(|r| (*r).to_owned()),
        },
        ("check_freemail_header", [header, regex @ ..]) if regex.len() <= 1 => Def::Freemail {
            header: Some(header.trim_end_matches(":addr").to_owned()),
            regex: regex.first().map(|r| (*r).to_owned()),
        },
        _ => return None,
    })
}

/// The FreeMail plugin's test as one pattern over addresses, one per line:
/// the domain is a freemail domain (exact, or a wildcard with `*` for one
/// label's characters and `?` for one character), the address is not on the
/// plugin's built-in or configured welcome lists, and it matches `regex`.
fn freemail_pattern(
    domains: &[String],
    welcome: &[String],
    regex: Option<&str>,
) -> Result<String, String> {
    if domains.is_empty() {
        return Err("no freemail_domains read".into());
    }
    let domain_alternatives: Vec<String> = domains
        .iter()
        .map(|d| {
            regex::escape(d)
                .replace("\\*", "[^.\\n]*")
                .replace("\\?", "[^\\n]")
        })
        .collect();
    // The plugin's default welcome list: role and bounce addresses.
    let mut unwelcome = vec![
        "(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master\
         |undisclosed[^\\n]*|request-[a-f0-9]{16}|bounced?-\
         |[a-f0-9]{8}(?:\\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})\
         |[^\\n]+=[^\\n]+=[^\\n]+)@"
            .to_owned(),
    ];
    for entry in welcome {
        let escaped = regex::escape(entry);
        // An address, or a domain after the `@`.
        unwelcome.push(if entry.contains('@') {
            format!("{escaped}$")
        } else {
            format!("[^\\n]*@{escaped}$")
        });
    }
    let wanted = match regex {
        Some(re) => format!("(?=[^\\n]*(?:{}))", translate(re, "", false)?),
        None => String::new(),
    };
    Ok(format!(
        "(?mi)^(?!{}){wanted}[^\\n@]*@(?:{})$",
        unwelcome.join("|"),
        domain_alternatives.join("|")
    ))
}

fn split_regex(text: &str) -> Result<(String, String), String> {
    let (pattern, flags, tail) = split_regex_tail(text)?;
    if !tail.trim().is_empty() {
        return Err(format!("text after the pattern: `{}`", tail.trim()));
    }
    Ok((pattern, flags))
}

/// `/re/flags rest` or `m{re}flags rest` → (re, flags, rest).
fn split_regex_tail(text: &str) -> Result<(String, String, String), String> {
    let text = text.trim_start();
    let (open, body) = if let Some(rest) = text.strip_prefix('m') {
        let mut chars = rest.chars();
        let open = chars.next().ok_or("empty m//")?;
        (open, chars.as_str())
    } else if let Some(rest) = text.strip_prefix('/') {
        ('/', rest)
    } else {
        return Err(format!(
            "not a /pattern/: `{}`",
            text.chars().take(20).collect::<String>()
        ));
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    let mut depth = 0usize;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == open && open != close {
            depth += 1;
        } else if c == close {
            if depth == 0 {
                end = Some(i);
                break;
            }
            depth -= 1;
        }
    }
    let end = end.ok_or("unterminated pattern")?;
    let mut pattern = body[..end].to_owned();
    if open == close && open != '/' {
        // `\!` inside m!…! is a plain `!`.
        pattern = pattern.replace(&format!("\\{open}"), &open.to_string());
    } else if open == '/' {
        pattern = pattern.replace("\\/", "/");
    }
    let after = &body[end + close.len_utf8()..];
    let flags_len = after
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(after.len());
    Ok((
        pattern,
        after[..flags_len].to_owned(),
        after[flags_len..].to_owned(),
    ))
}

const HORIZONTAL: &str = r"\t\x20\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}";
const VERTICAL: &str = r"\n\x0B\x0C\r\x{85}\x{2028}\x{2029}";

/// Appends a character given as a byte value. Bytes 0x80–0xFF are refused:
/// SpamAssassin matches them against raw bytes in the message's charset,
/// chaff matches decoded text, so no translation means the same.
fn push_byte(out: &mut String, value: u32) -> Result<(), String> {
    if (0x80..=0xFF).contains(&value) {
        return Err(byte_escape_reason(value));
    }
    out.push_str(&format!(r"\x{{{value:X}}}"));
    Ok(())
}

fn byte_escape_reason(value: u32) -> String {
    format!("byte escape \\x{value:02X}: SpamAssassin matches raw bytes, chaff decoded text")
}

/// A Perl pattern and its flags → a Rust pattern with inline flags, or why
/// it cannot be translated faithfully.
pub fn translate(pattern: &str, flags: &str, per_line: bool) -> Result<String, String> {
    if pattern.contains("%{") {
        return Err("captured-tag template %{…}: not supported".into());
    }
    if pattern.contains('\u{FFFD}') {
        return Err("raw non-UTF-8 bytes in the pattern: SpamAssassin matches bytes".into());
    }
    let mut inline = String::new();
    for f in flags.chars() {
        match f {
            'i' | 'm' | 's' | 'x' => {
                if !inline.contains(f) {
                    inline.push(f)
                }
            }
            'g' | 'o' => {}
            other => return Err(format!("flag /{other} not supported")),
        }
    }
    if per_line && !inline.contains('m') {
        inline.push('m');
    }
    let multi_line = inline.contains('m');
    let verbose = inline.contains('x');
    let mut out = String::with_capacity(pattern.len() + 8);
    if !inline.is_empty() {
        out.push_str("(?");
        out.push_str(&inline);
        out.push(')');
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                return Err("trailing backslash".into());
            };
            i += 2;
            match next {
                'h' | 'v' => {
                    let set = if next == 'h' { HORIZONTAL } else { VERTICAL };
                    if in_class {
                        out.push_str(set);
                    } else {
                        out.push('[');
                        out.push_str(set);
                        out.push(']');
                    }
                }
                'H' | 'V' => {
                    if in_class {
                        return Err(format!("\\{next} inside a class not supported"));
                    }
                    let set = if next == 'H' { HORIZONTAL } else { VERTICAL };
                    out.push_str("[^");
                    out.push_str(set);
                    out.push(']');
                }
                'e' => out.push_str(r"\x1B"),
                'Z' => out.push_str(r"(?:\n?\z)"),
                // Octal: `\0NN`, any `\NNN` inside a class, three digits outside.
                '0'..='7'
                    if next == '0'
                        || in_class
                        || chars[i..].iter().take(2).filter(|d| d.is_digit(8)).count() == 2 =>
                {
                    let mut value = next.to_digit(8).unwrap_or(0);
                    let mut used = 0;
                    while used < 2 && chars.get(i).is_some_and(|d| d.is_digit(8)) {
                        value = value * 8 + chars[i].to_digit(8).unwrap_or(0);
                        i += 1;
                        used += 1;
                    }
                    push_byte(&mut out, value)?;
                }
                'c' | 'G' | 'K' | 'Q' | 'E' | 'l' | 'u' | 'L' | 'U' | 'N' | 'R' | 'X' | 'C' => {
                    return Err(format!("\\{next} not supported"));
                }
                'x' => {
                    // Perl allows one hex digit (`\x9`); Rust needs two or braces.
                    if chars.get(i) == Some(&'{') {
                        let digits: String = chars[i + 1..]
                            .iter()
                            .take_while(|d| d.is_ascii_hexdigit())
                            .collect();
                        let value = u32::from_str_radix(&digits, 16).unwrap_or(0);
                        if (0x80..=0xFF).contains(&value) {
                            return Err(byte_escape_reason(value));
                        }
                        out.push_str("\\x");
                    } else {
                        let digits: String = chars[i..]
                            .iter()
                            .take(2)
                            .take_while(|d| d.is_ascii_hexdigit())
                            .collect();
                        i += digits.len();
                        let value = u32::from_str_radix(&digits, 16).unwrap_or(0);
                        push_byte(&mut out, value)?;
                    }
                }
                'b' if in_class => out.push_str(r"\x08"),
                _ => {
                    out.push('\\');
                    out.push(next);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                '[' => {
                    if chars.get(i + 1) == Some(&':') {
                        // A POSIX class `[:alpha:]`: copy through `:]`.
                        let rest: String = chars[i..].iter().collect();
                        match rest.find(":]") {
                            Some(end) => {
                                out.push_str(&rest[..end + 2]);
                                i += rest[..end + 2].chars().count();
                                continue;
                            }
                            None => out.push_str(r"\["),
                        }
                    } else {
                        out.push_str(r"\[");
                    }
                }
                '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '-' if chars.get(i + 1) == Some(&'-') => out.push_str(r"\-"),
                c if verbose && c.is_whitespace() => {
                    out.push_str(&format!(r"\x{{{:X}}}", c as u32));
                }
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    // SpamAssassin matches a paragraph or a URI at a time:
                    // joined one per line here, so no class may cross one.
                    if per_line {
                        out.push_str(r"\n");
                    }
                    i += 1;
                }
                // A `]` right after `[` or `[^` is literal.
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                continue;
            }
            '$' if !multi_line => out.push_str(r"(?:\n?\z)"),
            '#' if verbose => {
                // A comment to the end of the pattern's line.
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    if in_class {
        return Err("unterminated character class".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_patterns_translate_without_changing_meaning() {
        assert_eq!(translate("a$", "", false).unwrap(), r"a(?:\n?\z)");
        assert_eq!(translate("a$", "m", false).unwrap(), "(?m)a$");
        assert_eq!(translate("a[^b]c", "", true).unwrap(), r"(?m)a[^\nb]c");
        assert_eq!(translate("a[^b]c", "", false).unwrap(), "a[^b]c");
        assert_eq!(translate(r"[[(]x", "i", false).unwrap(), r"(?i)[\[(]x");
        assert_eq!(translate(r"[a&&b]", "", false).unwrap(), r"[a\&\&b]");
        assert_eq!(translate(r"[]a]", "", false).unwrap(), r"[\]a]");
        assert_eq!(translate(r"\x9\0", "", false).unwrap(), r"\x{9}\x{0}");
        assert_eq!(
            translate(r"[\042]\101(a)\1", "", false).unwrap(),
            r"[\x{22}]\x{41}(a)\1"
        );
        assert!(
            translate(r"[\223]", "", false)
                .unwrap_err()
                .contains("raw bytes")
        );
        assert!(translate(r"\xe9", "", false).is_err());
        assert_eq!(translate(r"[[:alpha:]]", "", false).unwrap(), "[[:alpha:]]");
        assert!(translate(r"\Qa.b\E", "", false).is_err());
        let re = regex::Regex::new(&translate(r"^foo$", "", false).unwrap()).unwrap();
        assert!(re.is_match("foo\n") && !re.is_match("foo\nbar"));
    }

    #[test]
    fn cf_lines_become_specs_and_skips() {
        let mut parser = CfParser::new(0);
        parser.parse(
            "t.cf",
            "header FOO Subject =~ /viagra/i\nscore FOO 2.5\ndescribe FOO Pills\n\
             body __BAR m{cheap\\s+meds}i\nheader EV eval:check_for_x()\n\
             meta BAZ FOO && __BAR\nmeta QUX EV || FOO\nheader EX exists:X-Foo\n\
             uri NET /x/\ntflags NET net\nheader HOST From:host =~ /x/\n\
             header DNSBL eval:check_rbl('x', 'y.example.')\ntflags DNSBL net\n",
        );
        let mut report = LoadReport::default();
        let specs = parser.finish(&mut report);
        let names: Vec<&str> = specs.iter().map(|s| s.symbol.as_str()).collect();
        // A `net` regex runs (SpamAssassin skips only `net` evals).
        assert_eq!(names, vec!["FOO", "__BAR", "BAZ", "QUX", "EX", "NET"]);
        assert_eq!(specs[0].weight, 2.5);
        assert!(specs[1].hidden);
        let reasons: Vec<&str> = report.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons.contains(&"eval: check_for_x"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains(":host")));
        // Score set 0 has no network tests: the DNS eval is not run, as in
        // SpamAssassin, rather than skipped.
        let not_run: Vec<&str> = report.not_run.iter().map(|r| r.symbol.as_str()).collect();
        assert_eq!(not_run, vec!["DNSBL"]);
        assert!(!report.skipped.iter().any(|s| s.symbol == "DNSBL"));
    }

    #[test]
    fn replace_rules_substitute_tags_as_replace_tags_does() {
        let mut config = ReplaceTags::default();
        config.tags.insert("A".into(), "(?:a|4)".into());
        config.tags.insert("B".into(), "b".into());
        config.tags.insert("AB".into(), "<A><B>".into());
        config.inter.insert("W1".into(), r"\W?".into());
        config.post.insert("P2".into(), "{1,2}".into());
        // Modifiers apply to every tag; `inter` fills the empty pieces
        // between adjacent tags (and before a leading one, as in Perl).
        assert_eq!(
            replace_tags("/<inter W1><post P2><A><B>/i", &config),
            r"/(?:a|4){1,2}\W?b{1,2}/i"
        );
        // A replacement with tags of its own is expanded on the next pass;
        // unknown tags stay as written.
        assert_eq!(replace_tags("/x<AB><NOPE>/", &config), "/x(?:a|4)b<NOPE>/");
        assert_eq!(split_at_tags("<A><B>x"), ["", "<A>", "", "<B>", "x"]);
        assert_eq!(split_at_tags("a<>b<<c>"), ["a<>b<", "<c>"]);

        let mut parser = CfParser::new(0);
        parser.parse(
            "t.cf",
            "replace_tag A (?:a|4)\nreplace_tag LATIN [a\\xe4]\nbody FOO /v<A>gr<A>/i\n\
             body BAR /<LATIN>x/\nreplace_rules FOO BAR\n",
        );
        let mut report = LoadReport::default();
        let specs = parser.finish(&mut report);
        let names: Vec<&str> = specs.iter().map(|s| s.symbol.as_str()).collect();
        assert_eq!(names, vec!["FOO"]);
        let SpecKind::Pattern { source, .. } = &specs[0].kind else {
            panic!("FOO is a pattern: {:?}", specs[0].kind);
        };
        assert!(source.ends_with("v(?:a|4)gr(?:a|4)"), "{source}");
        // A tag with a byte escape makes its rule skipped, not compiled with
        // a literal `<LATIN>`.
        assert!(report.skipped.iter().any(|s| s.symbol == "BAR"));
    }

    proptest::proptest! {
        #[test]
        fn replace_tags_takes_any_pattern(pattern in "[<>a-zA-Z ()|]{0,40}") {
            let mut config = ReplaceTags::default();
            config.tags.insert("A".into(), "<B>x".into());
            config.tags.insert("B".into(), "<A>".into());
            config.pre.insert("P".into(), "y".into());
            config.inter.insert("I".into(), "z".into());
            // Tags that expand to each other stop after the sixth pass.
            let replaced = replace_tags(&format!("<pre P><inter I>{pattern}"), &config);
            proptest::prop_assert!(replaced.len() < 10_000);
        }
    }

    #[test]
    fn net_evals_are_skipped_in_network_score_sets() {
        let mut parser = CfParser::new(1);
        parser.parse(
            "t.cf",
            "header DNSBL eval:check_rbl('x', 'y.example.')\ntflags DNSBL net\n",
        );
        let mut report = LoadReport::default();
        assert!(parser.finish(&mut report).is_empty());
        assert!(report.not_run.is_empty());
        assert_eq!(report.skipped[0].reason, "net");
    }

    #[test]
    fn eval_calls_split_arguments_outside_quotes_only() {
        let (name, arguments) =
            eval_call("check_freemail_header('Reply-To', '\\d{1,3}@')").unwrap();
        assert_eq!(name, "check_freemail_header");
        assert_eq!(arguments, vec!["Reply-To", "\\d{1,3}@"]);
        let (name, arguments) = eval_call(" check_for_shifted_date(\"undef\", -96) ").unwrap();
        assert_eq!(
            (name, arguments),
            ("check_for_shifted_date", vec!["undef".into(), "-96".into()])
        );
        assert_eq!(eval_call("html_test()").unwrap().1, Vec::<String>::new());
        assert!(eval_call("no_parentheses").is_none());
        assert!(known_eval("check_for_shifted_date", &["x".into(), "1".into()]).is_none());
    }
}
