//! HTML to visible text, in one forward pass.
//!
//! Spam hides in HTML: text in `<script>`/`<style>` that no reader sees, link
//! text that names another site than the link goes to. Checks want the text a
//! reader sees plus every link and image target, nothing else. A full HTML5
//! parser would build a DOM we never use and cost more than the rest of the
//! scan, so this is a tolerant tag scanner: it cannot fail, treats anything it
//! does not understand as text, and runs in time linear in its input. It
//! keeps just enough of the open elements' styles ([`super::html_style`]) to
//! count the text drawn where no reader can see it.

use super::html_form::{Form, note_form_tag};
use super::html_style::{FONT_FACE_OK, HtmlTests, Look, font_size};

/// What [`html_to_text`] finds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HtmlText {
    /// The visible text, block elements separated by newlines.
    pub text: String,
    /// `href` and `src` targets, in document order, entity-decoded.
    pub links: Vec<String>,
    /// Each `<a href>` with the visible text inside it, in document order.
    pub anchors: Vec<Anchor>,
    /// Each `<form>`, and the inputs outside any form (a page's script
    /// posts those), in document order.
    pub forms: Vec<Form>,
    /// Letters and digits the reader cannot see ([`InvisibleText`]).
    pub invisible: InvisibleText,
    /// SpamAssassin's HTML tests ([`HtmlTests`]).
    pub tests: HtmlTests,
}

/// Letters and digits an HTML part draws where no reader sees them, by why.
/// They stay in [`HtmlText::text`]: the statistics learn them like any word,
/// and only the rules ask how much was hidden.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvisibleText {
    /// Inside `display:none`, `visibility:hidden`, a zero font size, or
    /// transparent text.
    pub hidden_chars: usize,
    /// In (nearly) the colour of their background: white on white.
    pub low_contrast_chars: usize,
}

impl InvisibleText {
    pub fn add(&mut self, other: InvisibleText) {
        self.hidden_chars += other.hidden_chars;
        self.low_contrast_chars += other.low_contrast_chars;
    }
}

/// A link and the text a reader sees on it (to tell when they disagree).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Anchor {
    pub href: String,
    /// The text drawn inside the link where a reader can see it: a domain
    /// written in hidden text is no claim made to the reader.
    pub text: String,
}

/// Anchors kept per HTML part.
const MAX_ANCHORS: usize = 256;

/// Elements whose content is never shown to a reader, skipped up to their
/// closing tag. Not `head`: its hidden parts (`title`, `style`, `script`)
/// are skipped on their own, and a browser ends an unclosed head at the
/// first body content, where skipping to a `</head>` that never comes would
/// hide the whole message from the filter.
const INVISIBLE: &[&str] = &["script", "style", "title", "template", "noscript"];

/// Elements that never have content, so never get a closing tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements whose start tag closes an open one of the same name (`<p>a<p>b`).
const SELF_NESTING_NOT_ALLOWED: &[&str] = &["p", "li", "td", "th", "tr", "option", "dt", "dd"];

/// Open elements kept for their [`Look`]; deeper ones inherit the innermost
/// kept look. Bounds memory on tag soup that never closes anything.
const MAX_OPEN_ELEMENTS: usize = 256;

/// The looks of the open elements, innermost last.
struct OpenElements {
    stack: Vec<(String, Look)>,
    page: Look,
}

impl OpenElements {
    fn new() -> OpenElements {
        OpenElements {
            stack: Vec::new(),
            page: Look::default(),
        }
    }

    fn current(&self) -> &Look {
        self.stack.last().map_or(&self.page, |(_, look)| look)
    }

    fn open(&mut self, tag: &Tag<'_>) {
        let name = tag.name.as_str();
        if VOID.contains(&name) || tag.self_closing || name.starts_with(['!', '?']) {
            return;
        }
        if SELF_NESTING_NOT_ALLOWED.contains(&name)
            && self.stack.last().is_some_and(|(open, _)| open == name)
        {
            self.stack.pop();
        }
        // Most tags have no attributes, and those inherit the look as it is.
        let look = if tag.attributes.trim().is_empty() {
            *self.current()
        } else {
            self.current().child(name, |attribute| tag.attr(attribute))
        };
        if self.stack.len() < MAX_OPEN_ELEMENTS {
            self.stack.push((tag.name.clone(), look));
        }
    }

    /// Closes the innermost open element named `name` and everything opened
    /// inside it; a closing tag with nothing to close is ignored.
    fn close(&mut self, name: &str) {
        if let Some(at) = self.stack.iter().rposition(|(open, _)| open == name) {
            self.stack.truncate(at);
        }
    }
}

/// Elements that break a line when rendered.
const BLOCK: &[&str] = &[
    "br",
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "td",
    "th",
    "center",
    "section",
    "article",
];

/// Renders `html` to visible text and collects link targets.
pub fn html_to_text(html: &str) -> HtmlText {
    let mut out = HtmlText::default();
    // SpamAssassin's font sizes: the default is 3, and `+n` is relative to
    // the last `<basefont size>`.
    let (mut basefont, mut max_font_size) = (3i64, 3i64);
    let bytes = html.as_bytes();
    let mut pos = 0;
    let mut text_start = 0;
    // The open `<a href>`: its target and the visible text drawn in it.
    let mut open_anchor: Option<(String, String)> = None;
    let mut open_elements = OpenElements::new();
    while let Some(offset) = memchr::memchr(b'<', &bytes[pos..]) {
        let lt = pos + offset;
        push_text(
            &mut out,
            open_elements.current(),
            &html[text_start..lt],
            open_anchor.as_mut(),
        );
        let after = &html[lt + 1..];
        if after.starts_with("!--") {
            // Comments end at the first `-->`; unterminated ones swallow the rest.
            pos = match after.find("-->") {
                Some(end) => lt + 1 + end + 3,
                None => bytes.len(),
            };
            text_start = pos;
            continue;
        }
        let Some(tag) = parse_tag(after) else {
            // A lone `<` is text.
            out.text.push('<');
            pos = lt + 1;
            text_start = pos;
            continue;
        };
        pos = lt + 1 + tag.length;
        if tag.closing {
            open_elements.close(&tag.name);
        } else {
            open_elements.open(&tag);
            if tag.name == "font"
                && let Some(face) = tag.attr("face")
                && FONT_FACE_OK.as_ref().is_some_and(|ok| !ok.is_match(&face))
            {
                out.tests.font_face_bad = true;
            }
            if matches!(tag.name.as_str(), "font" | "basefont")
                && let Some((size, relative)) = tag.attr("size").as_deref().and_then(font_size)
            {
                if tag.name == "font" {
                    let size = if relative { basefont + size } else { size };
                    max_font_size = max_font_size.max(size);
                } else if !relative {
                    basefont = size;
                }
            }
        }
        if tag.name == "a" {
            if let Some((href, text)) = open_anchor.take() {
                close_anchor(&mut out, href, text);
            }
            if !tag.closing
                && let Some(href) = tag.attr("href")
                && !href.is_empty()
            {
                open_anchor = Some((href, String::new()));
            }
        }
        if !tag.closing && matches!(tag.name.as_str(), "form" | "input" | "select") {
            note_form_tag(&mut out.forms, &tag.name, &|attribute| tag.attr(attribute));
        }
        if !tag.closing {
            match tag.name.as_str() {
                "a" | "area" | "link" => collect(&mut out.links, tag.attr("href")),
                "img" | "iframe" | "frame" | "embed" | "script" => {
                    collect(&mut out.links, tag.attr("src"))
                }
                "form" => collect(&mut out.links, tag.attr("action")),
                _ => {}
            }
            if INVISIBLE.contains(&tag.name.as_str()) && !tag.self_closing {
                let closing = format!("</{}", tag.name);
                pos = find_ascii_case_insensitive(&html[pos..], &closing)
                    .map_or(bytes.len(), |end| pos + end);
                // Its closing tag is skipped with the content.
                open_elements.close(&tag.name);
            }
        }
        if BLOCK.contains(&tag.name.as_str()) {
            out.text.push('\n');
        } else if !out.text.ends_with([' ', '\n']) {
            // Inline tags still separate words (`<td>a</td><td>b</td>`).
            out.text.push(' ');
        }
        if let Some((_, text)) = open_anchor.as_mut()
            && !text.ends_with(' ')
        {
            text.push(' ');
        }
        text_start = pos;
    }
    push_text(
        &mut out,
        open_elements.current(),
        &html[text_start.min(html.len())..],
        open_anchor.as_mut(),
    );
    if let Some((href, text)) = open_anchor {
        close_anchor(&mut out, href, text);
    }
    out.tests.max_font_sizes = 1u128 << max_font_size.clamp(0, 127);
    out
}

/// Appends a run of text drawn with `look`, counting what no reader sees;
/// what a reader sees inside an open link is also that link's text.
fn push_text(out: &mut HtmlText, look: &Look, text: &str, anchor: Option<&mut (String, String)>) {
    let start = out.text.len();
    push_decoded(&mut out.text, text);
    if let Some((_, anchor_text)) = anchor
        && !look.invisible()
        && anchor_text.len() < MAX_ANCHOR_TEXT
    {
        anchor_text.push_str(&out.text[start..]);
    }
    if look.sa_low_contrast() && out.text[start..].chars().any(|c| !c.is_whitespace()) {
        out.tests.font_low_contrast = true;
    }
    if look.invisible() {
        let letters = out.text[start..]
            .chars()
            .filter(|c| c.is_alphanumeric())
            .count();
        if look.hidden {
            out.invisible.hidden_chars += letters;
        } else {
            out.invisible.low_contrast_chars += letters;
        }
    }
}

/// Bytes of one link's text kept: a link text that long names no domain.
const MAX_ANCHOR_TEXT: usize = 1024;

fn close_anchor(out: &mut HtmlText, href: String, text: String) {
    if out.anchors.len() < MAX_ANCHORS {
        let text = text.trim().to_owned();
        out.anchors.push(Anchor { href, text });
    }
}

struct Tag<'a> {
    name: String,
    closing: bool,
    self_closing: bool,
    attributes: &'a str,
    /// Bytes from just after `<` to just after `>`.
    length: usize,
}

impl Tag<'_> {
    /// The value of attribute `name` (given in lower case), unquoted;
    /// `None` if absent. A tag's attributes are asked for several names, so
    /// they are searched in place, ignoring ASCII case, not lower-cased into
    /// a copy per name.
    fn attr(&self, name: &str) -> Option<String> {
        let bytes = self.attributes.as_bytes();
        let mut from = 0;
        while let Some(found) = find_ascii_ignoring_case(&bytes[from..], name.as_bytes()) {
            let at = from + found;
            // An ASCII name matches only ASCII bytes, so both ends of the
            // match are char boundaries.
            from = at + name.len();
            let preceded_ok = at == 0 || bytes[at - 1].is_ascii_whitespace();
            let rest = self.attributes[from..].trim_start();
            if !preceded_ok || !rest.starts_with('=') {
                continue;
            }
            let value_start = self.attributes.len() - rest.len() + 1;
            let value = self.attributes[value_start..].trim_start();
            let (quote, body) = match value.chars().next() {
                Some(q @ ('"' | '\'')) => (Some(q), &value[1..]),
                _ => (None, value),
            };
            let end = match quote {
                Some(q) => body.find(q).unwrap_or(body.len()),
                None => body
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(body.len()),
            };
            let mut decoded = String::new();
            push_decoded(&mut decoded, body[..end].trim());
            return Some(decoded);
        }
        None
    }
}

/// Where `needle` (lower case ASCII, not empty) first occurs in `haystack`,
/// ASCII case ignored.
fn find_ascii_ignoring_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = haystack.len().checked_sub(needle.len())?;
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), &haystack[..=last_start])
        .find(|&at| haystack[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

/// Parses the tag that starts just after a `<`; `None` when it is not a tag.
fn parse_tag(after_lt: &str) -> Option<Tag<'_>> {
    let (closing, rest) = match after_lt.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, after_lt),
    };
    let first = rest.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '!' || first == '?') {
        return None;
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '!' || c == '?' || c == '-'))
        .unwrap_or(rest.len());
    let name = rest[..name_len].to_ascii_lowercase();
    let gt = quoted_aware_find_gt(&rest[name_len..]);
    let attributes_end = gt.unwrap_or(rest.len() - name_len);
    let attributes = &rest[name_len..name_len + attributes_end];
    let consumed = usize::from(closing) + name_len + gt.map_or(attributes_end, |g| g + 1);
    Some(Tag {
        name,
        closing,
        self_closing: attributes.trim_end().ends_with('/'),
        attributes,
        length: consumed,
    })
}

/// Finds the `>` that ends a tag, skipping `>` inside quoted attribute values.
/// A quote opens a value only where a value starts (after `=` and any white
/// space), as an HTML parser reads it; elsewhere it is a character. Read as
/// an opening quote, the stray one in `<img border=0">` hid everything up to
/// the next `"` in the document, and the text of the rest of the message
/// with it.
fn quoted_aware_find_gt(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut at = 0;
    let mut value_starts = false;
    while let Some(&b) = bytes.get(at) {
        if value_starts {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                    at += 1;
                    continue;
                }
                b'"' | b'\'' => {
                    let closing = memchr::memchr(b, &bytes[at + 1..])?;
                    at += closing + 2;
                    value_starts = false;
                    continue;
                }
                _ => value_starts = false,
            }
        }
        match b {
            b'>' => return Some(at),
            b'=' => value_starts = true,
            _ => {}
        }
        at += 1;
    }
    None
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn collect(links: &mut Vec<String>, value: Option<String>) {
    if let Some(value) = value
        && !value.is_empty()
    {
        links.push(value);
    }
}

/// Appends `text` with character references decoded and whitespace runs
/// folded to one space, as a browser renders it.
fn push_decoded(out: &mut String, text: &str) {
    let mut rest = text;
    while !rest.is_empty() {
        let next_special = rest.find(|c: char| c == '&' || c.is_whitespace());
        let Some(at) = next_special else {
            out.push_str(rest);
            return;
        };
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with('&') {
            match decode_entity(rest) {
                Some((c, used)) => {
                    push_char_folding_space(out, c);
                    rest = &rest[used..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        } else {
            let ws_len = rest
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(rest.len());
            if !out.is_empty() && !out.ends_with([' ', '\n']) {
                out.push(' ');
            }
            rest = &rest[ws_len..];
        }
    }
}

fn push_char_folding_space(out: &mut String, c: char) {
    if c.is_whitespace() {
        if !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
    } else {
        out.push(c);
    }
}

/// Decodes one character reference at the start of `s` (`&amp;`, `&#233;`,
/// `&#xE9;`); returns the character and the bytes used.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s[1..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
        .map_or(s.len(), |e| e + 1);
    if end > 32 {
        return None;
    }
    let body = &s[1..end];
    let used = if s[end..].starts_with(';') {
        end + 1
    } else {
        end
    };
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        char::from_u32(code).unwrap_or('\u{fffd}')
    } else {
        named_entity(body)?
    };
    Some((c, used))
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "copy" => '\u{a9}',
        "reg" => '\u{ae}',
        "trade" => '\u{2122}',
        "euro" => '\u{20ac}',
        "pound" => '\u{a3}',
        "cent" => '\u{a2}',
        "yen" => '\u{a5}',
        "mdash" => '\u{2014}',
        "ndash" => '\u{2013}',
        "hellip" => '\u{2026}',
        "laquo" => '\u{ab}',
        "raquo" => '\u{bb}',
        "rsquo" => '\u{2019}',
        "lsquo" => '\u{2018}',
        "rdquo" => '\u{201d}',
        "ldquo" => '\u{201c}',
        "bull" => '\u{2022}',
        "middot" => '\u{b7}',
        "shy" => '\u{ad}',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        "eacute" => '\u{e9}',
        "egrave" => '\u{e8}',
        "aacute" => '\u{e1}',
        "agrave" => '\u{e0}',
        "iacute" => '\u{ed}',
        "oacute" => '\u{f3}',
        "uacute" => '\u{fa}',
        "ntilde" => '\u{f1}',
        "ccedil" => '\u{e7}',
        "auml" => '\u{e4}',
        "ouml" => '\u{f6}',
        "uuml" => '\u{fc}',
        "Auml" => '\u{c4}',
        "Ouml" => '\u{d6}',
        "Uuml" => '\u{dc}',
        "szlig" => '\u{df}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_found_whatever_their_case() {
        let tag =
            parse_tag("A Data-HREF=\"no\" HrEf = 'http://x.example/\u{e9}' title=é>").unwrap();
        assert_eq!(tag.attr("href").as_deref(), Some("http://x.example/\u{e9}"));
        assert_eq!(tag.attr("title").as_deref(), Some("é"));
        assert_eq!(tag.attr("src"), None);
        assert_eq!(find_ascii_ignoring_case(b"xHReF", b"href"), Some(1));
        assert_eq!(find_ascii_ignoring_case(b"hre", b"href"), None);
        assert_eq!(find_ascii_ignoring_case("é".as_bytes(), b"e"), None);
    }

    #[test]
    fn an_unclosed_head_does_not_hide_the_body() {
        // No </head> and no <body>, as bulk tools write: a browser shows the
        // div; skipping to a </head> that never comes would show nothing.
        let r = html_to_text(
            "<html><head><title>Mail Campaign</title><meta http-equiv=\"Content-Type\">\n\
             <div align=center><a href=\"http://ship.example\">Ship anything anywhere</a></div>",
        );
        assert!(r.text.contains("Ship anything anywhere"), "{:?}", r.text);
        assert!(!r.text.contains("Mail Campaign"));
        assert_eq!(r.anchors.len(), 1);
    }

    #[test]
    fn script_and_style_are_invisible_and_link_text_stays() {
        let r = html_to_text(
            "<html><head><style>.x{color:red}</style></head><body><script>var secret=1;</script>\
             <p>Hello&nbsp;there &amp; caf&#233;</p><a href=\"http://a.example/x?y=1&amp;z=2\">Click here</a>\
             <img src='http://img.example/p.gif'></body></html>",
        );
        assert!(r.text.contains("Hello there & caf\u{e9}"), "{:?}", r.text);
        assert!(r.text.contains("Click here"));
        assert!(!r.text.contains("secret"));
        assert!(!r.text.contains("color"));
        assert_eq!(
            r.links,
            vec![
                "http://a.example/x?y=1&z=2".to_owned(),
                "http://img.example/p.gif".to_owned()
            ]
        );
    }

    #[test]
    fn anchors_keep_their_visible_text() {
        let r = html_to_text(
            "<p>See <a href=\"http://evil.example/x\">www.<b>bank</b>.example</a> and <a href=x>y",
        );
        assert_eq!(
            r.anchors,
            vec![
                Anchor {
                    href: "http://evil.example/x".into(),
                    text: "www. bank .example".into()
                },
                Anchor {
                    href: "x".into(),
                    text: "y".into()
                }
            ]
        );
    }

    #[test]
    fn adjacent_cells_do_not_glue_words() {
        let r = html_to_text("<td>cheap</td><td>pills</td>");
        assert!(r.text.contains("cheap") && r.text.contains("pills"));
        assert!(!r.text.contains("cheappills"));
    }

    #[test]
    fn invisible_text_is_counted_by_why_and_visible_text_is_not() {
        let r = html_to_text(
            "<html><head><style>.menu{color:#ffffff} .x{display:none}</style></head>\
             <body><p>Shown text here</p>\
             <div style=\"display:none\">cheap pills <b>online</b></div>\
             <font color=#ffffff>viagra cialis</font>\
             <table bgcolor=#003366><tr><td><font color=white>Home News</font></td></tr></table>\
             <font size=1>small print</font></body></html>",
        );
        // display:none: "cheap pills online" (16), inner <b> included.
        assert_eq!(r.invisible.hidden_chars, 16);
        // White on the white page: "viagra cialis" (12); white on the dark
        // cell and the stylesheet's white class do not count.
        assert_eq!(r.invisible.low_contrast_chars, 12);
        // The text stays for the statistics.
        assert!(r.text.contains("cheap pills"));
    }

    #[test]
    fn a_closing_tag_restores_the_outer_look_even_through_unclosed_ones() {
        let r = html_to_text(
            "<div style='display:none'><span>a<i>b</div>visible words after the div\
             </i></span><p>x<p style='font-size:0'>hidden<p>shown again",
        );
        assert_eq!(r.invisible.hidden_chars, 2 + "hidden".len());
        // A stray closing tag with nothing open changes nothing.
        let r = html_to_text("</div></td>plain text");
        assert_eq!(r.invisible, InvisibleText::default());
    }

    #[test]
    fn a_stray_quote_in_an_unquoted_value_does_not_swallow_the_text_after_it() {
        let text = html_to_text(
            "<p>Before <img src=\"x.gif\" border=0\"> after</p><p>Lowest Price: <b>$245</b></p>\
             <a href=\"http://example.com/a\">link</a> <i title='a>b'>quoted</i>",
        )
        .text;
        assert!(text.contains("after"), "{text}");
        assert!(text.contains("Lowest Price: $245"), "{text}");
        assert!(text.contains("link quoted"), "{text}");
    }

    #[test]
    fn broken_markup_is_text_not_a_panic() {
        for input in [
            "<",
            "<<>>",
            "a < b",
            "<a href=\"unterminated",
            "<!-- open",
            "&#xFFFFFFFF;",
            "&",
            "<script>never closed",
        ] {
            let _ = html_to_text(input);
        }
        assert!(html_to_text("a < b").text.contains("a < b"));
    }
}
