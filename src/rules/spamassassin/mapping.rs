//! One `.cf` rule line to a chaff rule: which target a `header`,
//! `mimeheader`, `body`, `rawbody`, `uri` or `full` test reads, which
//! SpamAssassin evals chaff runs itself (and the FreeMail plugin's, as
//! patterns), and for the rest a skip with its class.

use super::translate::{split_regex, split_regex_tail, translate};
use crate::rules::eval::EvalFn;
use crate::rules::expr::{self, Policy};
use crate::rules::input::{HeaderForm, Target};
use crate::rules::spec::{PatternError, SkipClass, SpecKind};

#[derive(Debug, Clone)]
pub(super) enum Def {
    Rule(SpecKind),
    Skip(SkipClass, String),
    /// The FreeMail plugin's `check_freemail_from([regex])` (`header` None)
    /// and `check_freemail_header(header[, regex])`: built at the end of
    /// parsing, once every `freemail_domains` line has been read.
    Freemail {
        header: Option<String>,
        regex: Option<String>,
    },
}

/// Parses a rule definition's body for `kind`.
pub(super) fn rule_def(kind: &str, body: &str) -> Def {
    if let Some(rest) = body.strip_prefix("eval:") {
        return match eval_call(rest) {
            Some((name, arguments)) => known_eval(name, &arguments)
                .unwrap_or_else(|| Def::Skip(SkipClass::Eval, name.to_owned())),
            None => Def::Skip(
                SkipClass::Eval,
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
            Err(e) => Def::Skip(SkipClass::Meta, format!("cannot parse: {e}")),
        },
        "header" => header_def(body, false),
        "mimeheader" => header_def(body, true),
        _ => {
            let (pattern, flags) = match split_regex(body) {
                Ok(p) => p,
                Err(e) => return Def::Skip(SkipClass::Regex, e.0),
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
                    lookup: None,
                }),
                Err(e) => Def::Skip(SkipClass::Regex, e.0),
            }
        }
    }
}

/// A `header` rule, or with `mime` a `mimeheader` rule (same syntax, read
/// from every MIME part's headers).
pub(super) fn header_def(body: &str, mime: bool) -> Def {
    if mime && body.starts_with("exists:") {
        return Def::Skip(SkipClass::MimeHeader, "exists: not supported".into());
    }
    if let Some(name) = body.strip_prefix("exists:") {
        return Def::Rule(SpecKind::Exists {
            header: name.trim().to_owned(),
            negate: false,
        });
    }
    let Some((spec, rest)) = body.split_once(char::is_whitespace) else {
        return Def::Skip(SkipClass::Header, "no operator".into());
    };
    let rest = rest.trim_start();
    let (negate, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (false, r.trim_start())
    } else if let Some(r) = rest.strip_prefix("!~") {
        (true, r.trim_start())
    } else {
        return Def::Skip(SkipClass::Header, format!("unknown operator in `{rest}`"));
    };
    let (pattern, flags, tail) = match split_regex_tail(rest) {
        Ok(p) => p,
        Err(e) => return Def::Skip(SkipClass::Regex, e.0),
    };
    if tail.contains("if-unset:") {
        return Def::Skip(SkipClass::Header, "if-unset: not supported".into());
    }
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let mut form = HeaderForm::Decoded;
    for modifier in parts {
        form = match modifier {
            "raw" => HeaderForm::Raw,
            "addr" => HeaderForm::Addr,
            "name" => HeaderForm::Name,
            other => return Def::Skip(SkipClass::Header, format!(":{other} not supported")),
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
        return Def::Skip(SkipClass::Header, format!("pseudo-header {name}"));
    }
    let target = if mime {
        Target::MimeHeader(lower, form)
    } else {
        Target::Header(crate::rules::input::header_key(name), form)
    };
    match translate(&pattern, &flags, false) {
        Ok(source) => Def::Rule(SpecKind::Pattern {
            target,
            source,
            negate,
            lookup: None,
        }),
        Err(e) => Def::Skip(SkipClass::Regex, e.0),
    }
}

/// `name(arg, 'arg', "arg")` → the name and its arguments, unquoted.
/// Commas inside quotes (a regex argument's `{1,3}`) do not split.
pub(super) fn eval_call(call: &str) -> Option<(&str, Vec<String>)> {
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
pub(super) fn known_eval(name: &str, arguments: &[String]) -> Option<Def> {
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
pub(super) fn freemail_pattern(
    domains: &[String],
    welcome: &[String],
    regex: Option<&str>,
) -> Result<String, PatternError> {
    if domains.is_empty() {
        return Err("no freemail_domains read".into());
    }
    let domain_alternatives: Vec<String> = domains
        .iter()
        .map(|d| crate::rules::domains::domain_pattern(d))
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
