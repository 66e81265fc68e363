//! Whether the text an HTML renderer would draw can actually be seen.
//!
//! Spam hides words for the filter that the reader must not see: in an
//! element with `display:none` or a zero font size, or in a colour equal to
//! its background (white on white). A regex over the raw HTML cannot tell
//! those from a newsletter's white menu on a dark cell or a stylesheet that
//! defines a white class, so [`super::html`] keeps a stack of [`Look`]s, one
//! per open element, from each element's inline `style`, `bgcolor` and
//! `<font color>`, and counts the letters drawn where they cannot be seen.
//! `<style>` sheets are not applied: matching selectors needs a CSS engine,
//! and hidden-text tricks are inline because many mail readers drop sheets.

use std::sync::LazyLock;

use regex::Regex;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// How text inside an element is drawn, as far as visibility goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// `display:none`, `visibility:hidden`, a zero font size, transparent text.
    pub hidden: bool,
    /// Text colour; `None` when unknown (an unparsed colour name).
    pub foreground: Option<Rgb>,
    /// Background colour; `None` when unknown (an image, an unparsed name).
    pub background: Option<Rgb>,
    /// The background as SpamAssassin 4.0's HTML.pm tracks it, for its
    /// font_low_contrast test only: the page's white, changed by a CSS
    /// `background(-color)` on the tags it reads styles of, and never by a
    /// `bgcolor` attribute (its code converts that attribute and then does
    /// not apply it), so white text in a coloured cell is "low contrast"
    /// there.
    pub sa_background: Option<Rgb>,
}

impl Default for Look {
    /// A mail reader's default page: black text on white.
    fn default() -> Look {
        Look {
            hidden: false,
            foreground: Some(Rgb(0, 0, 0)),
            background: Some(Rgb(255, 255, 255)),
            sa_background: Some(Rgb(255, 255, 255)),
        }
    }
}

/// Colours closer than this (Euclidean distance in sRGB, out of 441) are
/// treated as the same: #fefefe on #ffffff is as invisible as white on white.
const MIN_VISIBLE_DISTANCE: f64 = 24.0;

impl Look {
    /// Whether text drawn with this look cannot be seen.
    pub fn invisible(&self) -> bool {
        self.hidden || self.low_contrast()
    }

    /// Text coloured (nearly) as its background.
    pub fn low_contrast(&self) -> bool {
        match (self.foreground, self.background) {
            (Some(fg), Some(bg)) => distance(fg, bg) < MIN_VISIBLE_DISTANCE,
            _ => false,
        }
    }

    /// SpamAssassin's font_low_contrast test (HTML.pm): against
    /// [`Look::sa_background`], the same colour or a distance under 12 with
    /// each channel weighted by its share of luminance (out of 191).
    /// Stricter than [`Look::low_contrast`] on green, looser on blue; kept
    /// apart so SpamAssassin's rule means what it means there.
    pub fn sa_low_contrast(&self) -> bool {
        match (self.foreground, self.sa_background) {
            (Some(fg), Some(bg)) => {
                let d = |x: u8, y: u8, weight: f64| weight * (f64::from(x) - f64::from(y));
                let distance = (d(fg.0, bg.0, 0.2126).powi(2)
                    + d(fg.1, bg.1, 0.7152).powi(2)
                    + d(fg.2, bg.2, 0.0722).powi(2))
                .sqrt();
                distance < 12.0
            }
            _ => false,
        }
    }

    /// The look of an element inside one with look `self`, given its tag
    /// name and attribute getter.
    pub fn child(&self, tag: &str, attr: impl Fn(&str) -> Option<String>) -> Look {
        let mut look = *self;
        if let Some(colour) = attr("bgcolor") {
            look.background = parse_colour(&colour);
        }
        if attr("background").is_some() {
            // A background image: the text may well stand out on it.
            look.background = None;
        }
        // <font color> and <body text> are the old ways to colour text.
        let colour_attribute = match tag {
            "font" => attr("color"),
            "body" => attr("text"),
            _ => None,
        };
        if let Some(colour) = colour_attribute {
            set_foreground(&mut look, &colour);
        }
        if let Some(style) = attr("style") {
            let background = look.sa_background;
            apply_style(&mut look, &style);
            // HTML.pm reads the styles of these tags only.
            if !SA_STYLED_TAGS.contains(&tag) {
                look.sa_background = background;
            }
        }
        look
    }
}

/// The tags whose `style` SpamAssassin's HTML.pm applies (`th` read as `td`).
const SA_STYLED_TAGS: [&str; 8] = ["table", "td", "th", "tr", "span", "p", "div", "a"];

fn distance(a: Rgb, b: Rgb) -> f64 {
    let d = |x: u8, y: u8| f64::from(x) - f64::from(y);
    (d(a.0, b.0).powi(2) + d(a.1, b.1).powi(2) + d(a.2, b.2).powi(2)).sqrt()
}

fn set_foreground(look: &mut Look, value: &str) {
    if value.trim().eq_ignore_ascii_case("transparent") {
        look.hidden = true;
    } else {
        look.foreground = parse_colour(value);
    }
}

/// Applies the declarations of an inline `style` attribute that bear on
/// visibility; everything else is ignored.
fn apply_style(look: &mut Look, style: &str) {
    for declaration in style.split(';') {
        let Some((property, value)) = declaration.split_once(':') else {
            continue;
        };
        let property = property.trim().to_ascii_lowercase();
        let value = value
            .trim()
            .trim_end_matches("!important")
            .trim()
            .to_ascii_lowercase();
        match property.as_str() {
            "display" if value == "none" => look.hidden = true,
            "visibility" if value == "hidden" || value == "collapse" => look.hidden = true,
            "font-size" if is_zero_size(&value) => look.hidden = true,
            "opacity" if value.parse::<f64>().is_ok_and(|o| o < 0.05) => look.hidden = true,
            "color" => set_foreground(look, &value),
            "background-color" => {
                look.background = parse_colour(&value);
                look.sa_background = look.background;
            }
            "background" => {
                // SpamAssassin takes the colour even beside an image.
                look.sa_background = value.split_whitespace().find_map(parse_colour);
                look.background = if value.contains("url(") {
                    None
                } else {
                    look.sa_background
                }
            }
            _ => {}
        }
    }
}

/// A CSS font size that draws nothing readable: 0 in any unit, or at most
/// one pixel or point.
fn is_zero_size(value: &str) -> bool {
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let Ok(number) = value[..number_end].parse::<f64>() else {
        return false;
    };
    let unit = value[number_end..].trim();
    number == 0.0 || (number <= 1.0 && matches!(unit, "px" | "pt"))
}

/// Parses `#rgb`, `#rrggbb` (with or without `#`, as old mail writes
/// `bgcolor=ffffff`), `rgb(r, g, b)` and the common colour names.
pub fn parse_colour(value: &str) -> Option<Rgb> {
    let value = value.trim().to_ascii_lowercase();
    if let Some(inner) = value
        .strip_prefix("rgb(")
        .or_else(|| value.strip_prefix("rgba("))
    {
        let mut channels = inner.trim_end_matches(')').split(',').map(|c| {
            let c = c.trim();
            match c.strip_suffix('%') {
                Some(percent) => percent.parse::<f64>().ok().map(|p| p * 2.55),
                None => c.parse::<f64>().ok(),
            }
            .map(|v| v.clamp(0.0, 255.0).round() as u8)
        });
        return Some(Rgb(channels.next()??, channels.next()??, channels.next()??));
    }
    if let Some(rgb) = named_colour(&value) {
        return Some(rgb);
    }
    let hex = value.strip_prefix('#').unwrap_or(&value);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |s: &str| u8::from_str_radix(s, 16).ok();
    match hex.len() {
        3 => {
            let digit = |i: usize| channel(&hex[i..=i]).map(|v| v * 17);
            Some(Rgb(digit(0)?, digit(1)?, digit(2)?))
        }
        6 => Some(Rgb(
            channel(&hex[0..2])?,
            channel(&hex[2..4])?,
            channel(&hex[4..6])?,
        )),
        _ => None,
    }
}

fn named_colour(name: &str) -> Option<Rgb> {
    Some(match name {
        "white" => Rgb(255, 255, 255),
        "black" => Rgb(0, 0, 0),
        "red" => Rgb(255, 0, 0),
        "lime" => Rgb(0, 255, 0),
        "green" => Rgb(0, 128, 0),
        "blue" => Rgb(0, 0, 255),
        "yellow" => Rgb(255, 255, 0),
        "aqua" | "cyan" => Rgb(0, 255, 255),
        "fuchsia" | "magenta" => Rgb(255, 0, 255),
        "silver" => Rgb(192, 192, 192),
        "gray" | "grey" => Rgb(128, 128, 128),
        "maroon" => Rgb(128, 0, 0),
        "olive" => Rgb(128, 128, 0),
        "navy" => Rgb(0, 0, 128),
        "purple" => Rgb(128, 0, 128),
        "teal" => Rgb(0, 128, 128),
        "orange" => Rgb(255, 165, 0),
        "snow" => Rgb(255, 250, 250),
        "ivory" => Rgb(255, 255, 240),
        "whitesmoke" => Rgb(245, 245, 245),
        "ghostwhite" => Rgb(248, 248, 255),
        "floralwhite" => Rgb(255, 250, 240),
        "mintcream" => Rgb(245, 255, 250),
        "azure" => Rgb(240, 255, 255),
        "linen" => Rgb(250, 240, 230),
        "lightgray" | "lightgrey" => Rgb(211, 211, 211),
        _ => return None,
    })
}

/// SpamAssassin's HTML tests (`html_test('…')`, from its HTML.pm) that
/// chaff computes while rendering, with SpamAssassin's meaning, for its
/// rule files. chaff's own rules read [`InvisibleText`] instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HtmlTests {
    /// `font_low_contrast`: some text (not white space) is drawn within
    /// SpamAssassin's luminance-weighted distance of its background
    /// ([`Look::sa_low_contrast`]).
    pub font_low_contrast: bool,
    /// `font_face_bad`: a `<font face>` that is not a list of plain font
    /// names.
    pub font_face_bad: bool,
    /// `max_size` of each HTML part, as a set: bit `n` when some part's
    /// largest `<font size>` was `n` (SpamAssassin's `html_range` asks
    /// whether any part's value lies in a range). Sizes are SpamAssassin's:
    /// 3 by default, `+n`/`-n` relative to `<basefont size>`; above 127
    /// counts as 127.
    pub max_font_sizes: u128,
}

impl HtmlTests {
    pub fn add(&mut self, other: HtmlTests) {
        self.font_low_contrast |= other.font_low_contrast;
        self.font_face_bad |= other.font_face_bad;
        self.max_font_sizes |= other.max_font_sizes;
    }

    /// Whether some HTML part's largest font size is in `(above, up_to]`
    /// (`up_to` `None`: no upper end), SpamAssassin's
    /// `html_range('max_size', above, up_to)`.
    pub fn max_font_size_in(&self, above: i64, up_to: Option<i64>) -> bool {
        (0..128i64).any(|size| {
            self.max_font_sizes & (1u128 << size) != 0
                && size > above
                && up_to.is_none_or(|up_to| size <= up_to)
        })
    }
}

/// The leading number of a `size` attribute, and whether it was relative
/// (`+n`/`-n`), as SpamAssassin's HTML.pm reads it.
pub(super) fn font_size(value: &str) -> Option<(i64, bool)> {
    let value = value.trim_start();
    let (sign, digits) = match value.strip_prefix(['+', '-']) {
        Some(rest) => (if value.starts_with('-') { -1 } else { 1 }, rest),
        None => (0, value),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let number: i64 = digits[..end.min(6)].parse().ok()?;
    Some(if sign == 0 {
        (number, false)
    } else {
        (sign * number, true)
    })
}

/// SpamAssassin's pattern of an acceptable `<font face>`: font names of
/// letters, spaces and hyphens (a digit may end one), optionally quoted,
/// separated by commas. (`None` cannot happen: the pattern is a constant.)
pub(super) static FONT_FACE_OK: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)^\s*["'.]?[a-z ][a-z -]*[a-z][0-9]?["']?(?:,\s*["']?[a-z][a-z -]*[a-z][0-9]?["']?)*;?\n?$"#,
    )
    .ok()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn colours_parse_in_every_form_mail_uses() {
        assert_eq!(parse_colour("#FFF"), Some(Rgb(255, 255, 255)));
        assert_eq!(parse_colour("#ffeedd"), Some(Rgb(255, 238, 221)));
        assert_eq!(parse_colour("ffffff"), Some(Rgb(255, 255, 255)));
        assert_eq!(parse_colour(" White "), Some(Rgb(255, 255, 255)));
        assert_eq!(parse_colour("rgb(255, 0, 10)"), Some(Rgb(255, 0, 10)));
        assert_eq!(parse_colour("rgb(100%,0%,0%)"), Some(Rgb(255, 0, 0)));
        assert_eq!(parse_colour("papayawhip"), None);
        assert_eq!(parse_colour("#ffff"), None);
        assert_eq!(parse_colour("rgb(1,2)"), None);
    }

    #[test]
    fn white_on_white_is_invisible_and_white_on_dark_is_not() {
        let page = Look::default();
        let white = page.child("font", attrs(&[("color", "#ffffff")]));
        assert!(white.invisible());
        let dark_cell = page.child("td", attrs(&[("bgcolor", "#003366")]));
        assert!(!dark_cell.invisible());
        assert!(
            !dark_cell
                .child("font", attrs(&[("color", "white")]))
                .invisible()
        );
        let near_white = page.child("span", attrs(&[("style", "color: #fdfdfd")]));
        assert!(near_white.invisible());
        // An image behind the text: no verdict on contrast.
        let on_image = page.child("td", attrs(&[("background", "bg.gif")]));
        assert!(
            !on_image
                .child("font", attrs(&[("color", "#fff")]))
                .invisible()
        );
    }

    #[test]
    fn hiding_styles_hide_and_small_fonts_do_not() {
        let page = Look::default();
        for style in [
            "display:none",
            "DISPLAY: None !important",
            "visibility:hidden",
            "font-size:0",
            "font-size: 1px",
            "font-size:0.5pt",
            "opacity:0",
            "color:transparent",
        ] {
            assert!(
                page.child("div", attrs(&[("style", style)])).invisible(),
                "{style}"
            );
        }
        for style in [
            "font-size: 8pt",
            "font-size:10px",
            "display:block",
            "color:#333",
        ] {
            assert!(
                !page.child("div", attrs(&[("style", style)])).invisible(),
                "{style}"
            );
        }
        // <font size=1> is small, not hidden.
        assert!(!page.child("font", attrs(&[("size", "1")])).invisible());
        let dark_page = page.child("body", attrs(&[("bgcolor", "black"), ("text", "white")]));
        assert!(!dark_page.invisible());
        assert!(
            dark_page
                .child("font", attrs(&[("color", "#000")]))
                .invisible()
        );
    }
}
