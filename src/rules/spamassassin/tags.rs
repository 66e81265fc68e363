//! SpamAssassin's ReplaceTags plugin: `<TAG>` placeholders in `tflags
//! replace` rules, replaced once every `replace_tag`/`replace_pre`/
//! `replace_post`/`replace_inter` line of every file has been read.

use super::ReplaceTags;

/// One rule's pattern text with its tags replaced, step for step as
/// ReplaceTags.pm's `finish_parsing_end`: take out the `pre`/`post`/`inter`
/// modifier tags, split at `<...>`, put the `pre` text before and the `post`
/// text after each tag and the `inter` text between adjacent tags, replace
/// each known tag, and go again (at most five more times) while a
/// replacement brought in tags of its own. Unknown tags stay as written.
pub(super) fn replace_tags(pattern: &str, config: &ReplaceTags) -> String {
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
pub(super) fn split_at_tags(re: &str) -> Vec<String> {
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

pub(super) fn has_tag(text: &str) -> bool {
    text.find('<')
        .is_some_and(|open| text[open + 1..].find('>').is_some_and(|close| close > 0))
}
