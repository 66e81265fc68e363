//! Reading rule sources: chaff's TOML rule files and SpamAssassin `.cf`
//! files, into [`RuleSpec`]s (and map definitions).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use toml::Spanned;

use super::eval::EvalFn;
use super::expr::{self, Policy};
use super::input::{EnvelopeField, HeaderForm, Target};
use super::maps::{MapDef, MapSpec};
use super::spec::{
    LoadReport, MAX_HITS_LIMIT, Origin, RuleSpec, RulesError, SpecKind, line_of, with_flags,
};

/// Everything read so far.
#[derive(Default)]
pub(super) struct Sources {
    pub specs: Vec<RuleSpec>,
    pub maps: Vec<MapSpec>,
    pub watched: Vec<(PathBuf, Option<SystemTime>)>,
}

pub(super) fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// One `[[rule]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    symbol: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    form: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    pattern: Option<Spanned<String>>,
    #[serde(default)]
    flags: String,
    #[serde(default)]
    negate: bool,
    #[serde(default)]
    expression: Option<Spanned<String>>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    max_hits: Option<u32>,
    #[serde(default)]
    weight: f64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    force_action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDef>,
    #[serde(default)]
    map: Vec<MapDef>,
}

impl Sources {
    /// Parses one TOML rule file; `base` resolves relative map paths.
    pub fn parse_toml(
        &mut self,
        name: &str,
        text: &str,
        base: Option<&Path>,
    ) -> Result<(), RulesError> {
        let file: RuleFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            RulesError::new(
                Origin {
                    file: name.to_owned(),
                    line,
                },
                e.message().to_owned(),
            )
        })?;
        for def in file.rule {
            self.specs.push(rule_spec(name, text, def)?);
        }
        for def in file.map {
            self.maps.push(MapSpec::from_def(name, text, def, base)?);
        }
        Ok(())
    }

    /// A TOML rule file, or every `*.toml` in a directory (sorted).
    pub fn add_toml_path(&mut self, path: &Path) -> Result<(), RulesError> {
        let origin = |message: String| {
            RulesError::new(
                Origin {
                    file: path.display().to_string(),
                    line: 0,
                },
                message,
            )
        };
        let files = if path.is_dir() {
            self.watched.push((path.to_owned(), mtime(path)));
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| origin(format!("cannot read directory: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                RulesError::new(
                    Origin {
                        file: file.display().to_string(),
                        line: 0,
                    },
                    format!("cannot read: {e}"),
                )
            })?;
            self.watched.push((file.clone(), mtime(&file)));
            self.parse_toml(&file.display().to_string(), &text, file.parent())?;
        }
        Ok(())
    }

    /// SpamAssassin `.cf` files: one file or every `*.cf` in a directory.
    pub fn add_spamassassin(
        &mut self,
        path: &Path,
        score_set: usize,
        report: &mut LoadReport,
    ) -> Result<(), RulesError> {
        let files = super::spamassassin::cf_files(path).map_err(|e| {
            RulesError::new(
                Origin {
                    file: path.display().to_string(),
                    line: 0,
                },
                format!("cannot read: {e}"),
            )
        })?;
        if path.is_dir() {
            self.watched.push((path.to_owned(), mtime(path)));
        }
        let mut parser = super::spamassassin::CfParser::new(score_set);
        for file in files {
            let bytes = std::fs::read(&file).map_err(|e| {
                RulesError::new(
                    Origin {
                        file: file.display().to_string(),
                        line: 0,
                    },
                    format!("cannot read: {e}"),
                )
            })?;
            self.watched.push((file.clone(), mtime(&file)));
            parser.parse(
                &file.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
        self.specs.extend(parser.finish(report));
        Ok(())
    }
}

fn fail<T>(origin: Origin, message: String) -> Result<T, RulesError> {
    Err(RulesError::new(origin, message))
}

fn rule_spec(file: &str, text: &str, def: RuleDef) -> Result<RuleSpec, RulesError> {
    let at = |span: std::ops::Range<usize>| Origin {
        file: file.to_owned(),
        line: line_of(text, span.start),
    };
    let origin = at(def.symbol.span());
    let symbol = def.symbol.into_inner();
    let kind_origin = at(def.kind.span());
    let kind_name = def.kind.into_inner();
    let pattern = |def_pattern: Option<Spanned<String>>,
                   flags: &str,
                   multi_line: bool|
     -> Result<String, RulesError> {
        let Some(pattern) = def_pattern else {
            return fail(
                kind_origin.clone(),
                format!("{symbol}: a {kind_name} rule needs `pattern`"),
            );
        };
        let pattern_origin = at(pattern.span());
        let mut flags = flags.to_owned();
        if multi_line {
            flags.push('m');
        }
        with_flags(pattern.get_ref(), &flags)
            .map_err(|e| RulesError::new(pattern_origin.clone(), format!("{symbol}: {e}")))
            .and_then(|source| {
                // Parsed here so a syntax error names the pattern's line;
                // only parsed, as compiling every pattern twice was a third
                // of start-up. What parses but does not compile (too large)
                // is reported at compilation, at the rule's line.
                match fancy_regex::Expr::parse_tree(&source) {
                    Ok(_) => Ok(source),
                    Err(e) => Err(RulesError::new(
                        pattern_origin,
                        format!("bad regex for {symbol}: {e}"),
                    )),
                }
            })
    };
    let kind = match kind_name.as_str() {
        "header" | "mimeheader" => {
            let Some(header) = def.header.as_deref() else {
                return fail(
                    kind_origin,
                    format!("{symbol}: a {kind_name} rule needs `header`"),
                );
            };
            let form = match def.form.as_deref() {
                None => HeaderForm::Decoded,
                Some(form) => match HeaderForm::from_name(form) {
                    Some(f) => f,
                    None => {
                        return fail(
                            kind_origin,
                            format!("{symbol}: form `{form}` is not decoded, raw, addr or name"),
                        );
                    }
                },
            };
            let target = if kind_name == "mimeheader" {
                Target::MimeHeader(header.to_ascii_lowercase(), form)
            } else {
                Target::Header(super::input::header_key(header), form)
            };
            SpecKind::Pattern {
                target,
                source: pattern(def.pattern, &def.flags, false)?,
                negate: def.negate,
                lookup: None,
            }
        }
        "exists" => {
            let Some(header) = def.header else {
                return fail(
                    kind_origin,
                    format!("{symbol}: an exists rule needs `header`"),
                );
            };
            SpecKind::Exists {
                header,
                negate: def.negate,
            }
        }
        "body" | "rawbody" | "uri" | "full" => SpecKind::Pattern {
            target: match kind_name.as_str() {
                "body" => Target::Body,
                "rawbody" => Target::RawBody,
                "uri" => Target::Uri,
                _ => Target::Full,
            },
            // Body lines are paragraphs and uri lines links: `^`/`$` mean their
            // ends, as in SpamAssassin.
            source: pattern(
                def.pattern,
                &def.flags,
                matches!(kind_name.as_str(), "body" | "uri"),
            )?,
            negate: def.negate,
            lookup: None,
        },
        "envelope" => {
            let field = def.field.as_deref().unwrap_or_default();
            let Some(field) = EnvelopeField::from_name(field) else {
                return fail(
                    kind_origin,
                    format!(
                        "{symbol}: an envelope rule needs `field` = ip, helo, hostname, mail_from, rcpt or user"
                    ),
                );
            };
            SpecKind::Pattern {
                target: Target::Envelope(field),
                source: pattern(def.pattern, &def.flags, true)?,
                negate: def.negate,
                lookup: None,
            }
        }
        "eval" => {
            let name = def.function.as_deref().unwrap_or_default();
            let Some(function) = EvalFn::from_name(name) else {
                let known: Vec<&str> = EvalFn::ALL.iter().map(|(n, _)| *n).collect();
                return fail(
                    kind_origin,
                    format!(
                        "{symbol}: unknown eval function `{name}` (known: {})",
                        known.join(", ")
                    ),
                );
            };
            SpecKind::Eval {
                function,
                negate: def.negate,
            }
        }
        "meta" => {
            let Some(expression) = def.expression else {
                return fail(
                    kind_origin,
                    format!("{symbol}: a meta rule needs `expression`"),
                );
            };
            let expression_origin = at(expression.span());
            let expr = expr::parse(expression.get_ref())
                .map_err(|e| RulesError::new(expression_origin, format!("meta {symbol}: {e}")))?;
            let policy = match def.policy.as_deref() {
                None => Policy::RemoveAll,
                Some(name) => match Policy::from_name(name) {
                    Some(p) => p,
                    None => {
                        return fail(
                            kind_origin,
                            format!(
                                "{symbol}: policy `{name}` is not remove_all, remove_weight, remove_symbol or leave"
                            ),
                        );
                    }
                },
            };
            SpecKind::Meta { expr, policy }
        }
        other => {
            return fail(
                kind_origin,
                format!(
                    "{symbol}: unknown kind `{other}` (header, exists, body, rawbody, uri, full, envelope, eval, meta)"
                ),
            );
        }
    };
    let force_action = match def.force_action {
        Some(name) => Some(crate::verdict::Action::from_name(&name).ok_or_else(|| {
            RulesError::new(
                origin.clone(),
                format!("{symbol}: unknown force_action `{name}`"),
            )
        })?),
        None => None,
    };
    Ok(RuleSpec {
        hidden: symbol.starts_with("__"),
        symbol,
        origin,
        kind,
        weight: def.weight,
        description: def.description,
        group: def.group,
        force_action,
        lenient: false,
        max_hits: def.max_hits.unwrap_or(1).clamp(1, MAX_HITS_LIMIT),
    })
}
