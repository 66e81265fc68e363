//! Header fields as written: the top-level fields with their folding kept,
//! unfolding, and address lists split into (name, address). What the rule
//! texts, the maps and SpamAssassin's facts all read.

/// Folding line breaks removed, the whitespace after them kept.
pub fn unfold(value: &str) -> String {
    value
        .replace("\r\n", "\n")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// Unfolded as SpamAssassin unfolds a header for its rules (its
/// `Message::Node` header decoding): each line break and the blanks after
/// it become one space, then the ends are trimmed. `a;\r\n\tb` → `a; b`,
/// where [`unfold`] keeps the tab. Rule texts use this, so patterns written
/// for SpamAssassin (`; ` after a folded parameter) match as there.
pub fn unfold_as_spamassassin(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value.replace("\r\n", "\n");
    rest = rest.replace('\r', "\n");
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            if chars
                .peek()
                .is_some_and(|&next| next == ' ' || next == '\t')
            {
                while chars
                    .peek()
                    .is_some_and(|&next| next == ' ' || next == '\t')
                {
                    chars.next();
                }
                out.push(' ');
            }
            // A bare line break with no blank after it is not folding; as
            // before, it goes.
            continue;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

/// The top-level header fields as written: (name, value with folding kept,
/// without the final line break). Stops at the first empty line.
pub fn raw_header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let raw = strip_mbox_line(raw);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(&crate::message::lossy_text(line));
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = crate::message::lossy_text(&line[..colon]).trim().to_owned();
        let value = crate::message::lossy_text(&line[colon + 1..])
            .trim_start()
            .to_owned();
        fields.push((name, value));
        if fields.len() >= 4096 {
            break;
        }
    }
    fields
}

pub fn strip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(&raw[raw.len()..], |end| &raw[end + 1..])
    } else {
        raw
    }
}

/// `Name <addr>, "Other" <b@x>, c@y` → [(name, addr)].
pub fn split_addresses(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut angle = false;
    let mut pieces = Vec::new();
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                pieces.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    pieces.push(current);
    for piece in pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let (name, addr) = match (piece.rfind('<'), piece.rfind('>')) {
            (Some(open), Some(close)) if open < close => (
                piece[..open].trim().trim_matches('"').trim().to_owned(),
                piece[open + 1..close].trim().to_owned(),
            ),
            _ => {
                if piece.contains('@') {
                    (String::new(), piece.to_owned())
                } else {
                    (piece.trim_matches('"').to_owned(), String::new())
                }
            }
        };
        out.push((name, addr));
    }
    out
}

#[cfg(test)]
mod unfold_tests {
    use super::*;

    #[test]
    fn spamassassin_unfolding_turns_a_fold_into_one_space() {
        assert_eq!(
            unfold_as_spamassassin("text/plain;\r\n\tcharset=us-ascii"),
            "text/plain; charset=us-ascii"
        );
        assert_eq!(unfold_as_spamassassin(" a\n    b \n"), "a b");
        assert_eq!(unfold("text/plain;\n\tcharset=x"), "text/plain;\tcharset=x");
    }
}
