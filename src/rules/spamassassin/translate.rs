//! Perl regexes to Rust ones, where the two differ, so nothing is silently
//! mis-compiled: `$` without `/m`, `\Z`, `\h`, `\v`, `\e`, octal `\0NN`,
//! the characters Rust gives meaning to inside classes, whitespace under
//! `/x`; and what cannot be translated faithfully is refused with why.

use crate::rules::spec::PatternError;

pub(super) fn split_regex(text: &str) -> Result<(String, String), PatternError> {
    let (pattern, flags, tail) = split_regex_tail(text)?;
    if !tail.trim().is_empty() {
        return Err(format!("text after the pattern: `{}`", tail.trim()).into());
    }
    Ok((pattern, flags))
}

/// `/re/flags rest` or `m{re}flags rest` → (re, flags, rest).
pub(super) fn split_regex_tail(text: &str) -> Result<(String, String, String), PatternError> {
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
        )
        .into());
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
fn push_byte(out: &mut String, value: u32) -> Result<(), PatternError> {
    if (0x80..=0xFF).contains(&value) {
        return Err(PatternError(byte_escape_reason(value)));
    }
    out.push_str(&format!(r"\x{{{value:X}}}"));
    Ok(())
}

fn byte_escape_reason(value: u32) -> String {
    format!("byte escape \\x{value:02X}: SpamAssassin matches raw bytes, chaff decoded text")
}

/// A Perl pattern and its flags → a Rust pattern with inline flags, or why
/// it cannot be translated faithfully.
pub fn translate(pattern: &str, flags: &str, per_line: bool) -> Result<String, PatternError> {
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
            other => return Err(format!("flag /{other} not supported").into()),
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
                        return Err(format!("\\{next} inside a class not supported").into());
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
                    return Err(format!("\\{next} not supported").into());
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
                            return Err(PatternError(byte_escape_reason(value)));
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
                // Perl's `\<` and `\>` are the characters themselves; the
                // regex crate reads them as word boundaries.
                '<' | '>' => out.push(next),
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
