//! The shapes of SpamAssassin's spamd replies, pure: the status line, the
//! `Spam:` header, the symbol list, the report, and the message rewritten
//! as spamd's PROCESS returns it (X-Spam-* headers on ham, the
//! `report_safe` wrapper around spam). What spamc, Exim and Haraka parse
//! is copied from SpamAssassin 4.0.1's spamd (`spamd`'s `check`,
//! `PerMsgStatus::rewrite_mail`), measured against the real spamc in
//! `tests/spamd.rs`.
//!
//! "Spam" in the spamd sense is chaff's add-header action or worse, and the
//! required score printed is the add-header threshold: what a SpamAssassin
//! admin calls `required_score`.

use chaff::engine::Scan;

/// sysexits codes spamd answers with.
pub const EX_PROTOCOL: u8 = 76;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_TIMEOUT: u8 = 79;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_DATAERR: u8 = 65;

/// What a spamd request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Check,
    Symbols,
    Report,
    ReportIfSpam,
    Process,
    Headers,
    Tell,
    Ping,
    Skip,
}

impl Method {
    pub fn parse(word: &str) -> Option<Method> {
        Some(match word {
            "CHECK" => Method::Check,
            "SYMBOLS" => Method::Symbols,
            "REPORT" => Method::Report,
            "REPORT_IFSPAM" => Method::ReportIfSpam,
            "PROCESS" => Method::Process,
            "HEADERS" => Method::Headers,
            "TELL" => Method::Tell,
            "PING" => Method::Ping,
            "SKIP" => Method::Skip,
            _ => return None,
        })
    }
}

/// A spamd error line (`SPAMD/1.0 76 Bad header line: ...`).
pub fn error(code: u8, text: &str) -> Vec<u8> {
    format!("SPAMD/1.0 {code} {text}\r\n").into_bytes()
}

/// The verdict in spamd's terms.
pub struct SpamdVerdict<'a> {
    pub scan: &'a Scan,
    /// The add-header threshold (spamd's `required_score`).
    pub required: f64,
    pub is_spam: bool,
}

impl SpamdVerdict<'_> {
    /// `score` with one decimal as spamd prints it: a ham whose score
    /// rounds up to the threshold shows a tenth below it.
    fn score_text(&self) -> String {
        let score = one_decimal(self.scan.verdict.score);
        let required = one_decimal(self.required);
        if self.is_spam || score.parse::<f64>().unwrap_or(0.0) < required.parse().unwrap_or(0.0) {
            score
        } else {
            format!("{:.1}", self.required - 0.1)
        }
    }

    fn spam_header(&self, method: Method) -> String {
        let word = match (method, self.is_spam) {
            (Method::ReportIfSpam, true) => "Yes",
            (Method::ReportIfSpam, false) => "No",
            (_, true) => "True",
            (_, false) => "False",
        };
        format!(
            "Spam: {word} ; {} / {}",
            self.score_text(),
            one_decimal(self.required)
        )
    }

    /// The symbol names, sorted, comma-separated (no trailing newline).
    pub fn symbol_list(&self) -> String {
        let mut names: Vec<&str> = self
            .scan
            .verdict
            .symbols
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        names.join(",")
    }

    /// The whole reply for a scanning method (not TELL, PING or SKIP), in
    /// the shape the client's protocol `version` gets from spamd: from
    /// SPAMC/1.3 a `Content-length` beside `Spam:`, before it none (what
    /// Exim's default `spam =`, which speaks 1.2, parses); PROCESS before
    /// 1.2 gets the message alone.
    pub fn reply(&self, method: Method, version: f64, message: &[u8], host: &str) -> Vec<u8> {
        let spam = self.spam_header(method);
        let body: Vec<u8> = match method {
            Method::Check => {
                return format!("SPAMD/1.1 0 EX_OK\r\n{spam}\r\n\r\n").into_bytes();
            }
            Method::Symbols => {
                let mut list = self.symbol_list();
                if version < 1.3 {
                    list.push_str("\r\n");
                }
                list.into_bytes()
            }
            Method::Report => self.report(host).into_bytes(),
            Method::ReportIfSpam if self.is_spam => self.report(host).into_bytes(),
            Method::ReportIfSpam => Vec::new(),
            Method::Process => self.rewrite(message, host),
            Method::Headers => {
                let rewritten = self.rewrite(message, host);
                let end = header_end(&rewritten).unwrap_or(rewritten.len());
                rewritten[..end].to_vec()
            }
            Method::Tell | Method::Ping | Method::Skip => Vec::new(),
        };
        let rewrites = matches!(method, Method::Process | Method::Headers);
        let head = if version >= 1.3 {
            format!(
                "SPAMD/1.1 0 EX_OK\r\nContent-length: {}\r\n{spam}\r\n\r\n",
                body.len()
            )
        } else if rewrites && version >= 1.2 {
            format!(
                "SPAMD/1.1 0 EX_OK\r\nContent-length: {}\r\n\r\n",
                body.len()
            )
        } else if rewrites {
            "SPAMD/1.0 0 EX_OK\r\n".to_owned()
        } else {
            format!("SPAMD/1.1 0 EX_OK\r\n{spam}\r\n\r\n")
        };
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// SpamAssassin's report: who looked, a preview, every rule with its
    /// points and description.
    pub fn report(&self, host: &str) -> String {
        let verdict = &self.scan.verdict;
        let mut out = format!(
            "Spam detection software, running on the system \"{host}\",\n\
             has{} identified this incoming email as{} spam.  The original\n\
             message has been attached to this so you can view it or label\n\
             similar future email.  If you have any questions, see\n\
             the administrator of that system for details.\n\n",
            if self.is_spam { "" } else { " NOT" },
            if self.is_spam { " possible" } else { "" }
        );
        out.push_str(&format!(
            "Content analysis details:   ({} points, {} required)\n\n",
            one_decimal(verdict.score),
            one_decimal(self.required)
        ));
        out.push_str(" pts rule name              description\n");
        out.push_str(
            "---- ---------------------- --------------------------------------------------\n",
        );
        for symbol in &verdict.symbols {
            let mut points = one_decimal(symbol.score);
            if points.len() > 4 {
                points = format!("{:.0}", symbol.score);
            }
            let mut description = symbol.description.clone().unwrap_or_default();
            if !symbol.options.is_empty() {
                description.push_str(&format!(" [{}]", symbol.options.join(", ")));
            }
            out.push_str(&format!("{points:>4} {:<22} {description}\n", symbol.name));
        }
        out.push('\n');
        out
    }

    /// The X-Spam-* headers chaff adds, each ending in `eol`.
    fn added_headers(&self, host: &str, eol: &str) -> String {
        let score = self.scan.verdict.score;
        let stars = if score >= 1.0 {
            (score.floor() as usize).min(50)
        } else {
            0
        };
        let mut out = format!(
            "X-Spam-Checker-Version: chaff {} on {host}{eol}",
            env!("CARGO_PKG_VERSION")
        );
        if self.is_spam {
            out.push_str(&format!("X-Spam-Flag: YES{eol}"));
        }
        out.push_str(&format!("X-Spam-Level: {}{eol}", "*".repeat(stars)));
        let status = format!(
            "X-Spam-Status: {}, score={} required={} tests={} version=chaff-{}",
            if self.is_spam { "Yes" } else { "No" },
            self.score_text(),
            one_decimal(self.required),
            self.symbol_list(),
            env!("CARGO_PKG_VERSION")
        );
        out.push_str(&fold(&status, eol));
        out.push_str(eol);
        out
    }

    /// The message as PROCESS returns it: ham with the X-Spam-* headers
    /// inserted at the top (after a leading Return-Path), old ones
    /// removed, every other byte as it came; spam wrapped as
    /// SpamAssassin's `report_safe` does, the original byte-identical as a
    /// `message/rfc822` part.
    pub fn rewrite(&self, message: &[u8], host: &str) -> Vec<u8> {
        let end = header_end(message).unwrap_or(message.len());
        let eol = if memchr::memmem::find(&message[..end], b"\r\n").is_some() {
            "\r\n"
        } else {
            "\n"
        };
        let fields = split_fields(&message[..end]);
        if self.is_spam {
            return self.wrap(message, &fields, host, eol);
        }
        let mut out = Vec::with_capacity(message.len() + 512);
        let mut added = false;
        for (index, field) in fields.iter().enumerate() {
            let name = field_name(field);
            let leading_return_path = index == 0 && name.eq_ignore_ascii_case("return-path");
            if !added && !leading_return_path {
                out.extend_from_slice(self.added_headers(host, eol).as_bytes());
                added = true;
            }
            if !name.to_ascii_lowercase().starts_with("x-spam-") {
                out.extend_from_slice(field);
            }
        }
        if !added {
            out.extend_from_slice(self.added_headers(host, eol).as_bytes());
        }
        out.extend_from_slice(&message[fields_len(&fields)..]);
        out
    }

    fn wrap(&self, message: &[u8], fields: &[&[u8]], host: &str, eol: &str) -> Vec<u8> {
        let mut head = format!(
            "Received: from localhost by {host}{eol}\twith chaff (version {});{eol}\t{}{eol}",
            env!("CARGO_PKG_VERSION"),
            rfc822_now()
        );
        for wanted in ["from", "to", "cc", "subject", "date", "message-id"] {
            if let Some(field) = fields
                .iter()
                .find(|f| field_name(f).eq_ignore_ascii_case(wanted))
            {
                head.push_str(&String::from_utf8_lossy(field));
            }
        }
        head.push_str(&self.added_headers(host, eol));
        let boundary = boundary_for(message);
        let content_type = fields
            .iter()
            .find(|f| field_name(f).eq_ignore_ascii_case("content-type"))
            .map(|f| String::from_utf8_lossy(f).to_ascii_lowercase());
        let disposition = match content_type {
            Some(ct) if !ct.contains("text/plain") => "attachment",
            _ => "inline",
        };
        let mut out = head.into_bytes();
        let text = format!(
            "MIME-Version: 1.0{eol}Content-Type: multipart/mixed; boundary=\"{boundary}\"{eol}{eol}\
             This is a multi-part message in MIME format.{eol}{eol}\
             --{boundary}{eol}Content-Type: text/plain; charset=UTF-8{eol}\
             Content-Disposition: inline{eol}Content-Transfer-Encoding: 8bit{eol}{eol}\
             {}{eol}--{boundary}{eol}\
             Content-Type: message/rfc822; x-spam-type=original{eol}\
             Content-Description: original message before chaff{eol}\
             Content-Disposition: {disposition}{eol}Content-Transfer-Encoding: 8bit{eol}{eol}",
            self.report(host).replace('\n', eol)
        );
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(message);
        out.extend_from_slice(format!("{eol}--{boundary}--{eol}{eol}").as_bytes());
        out
    }
}

fn one_decimal(value: f64) -> String {
    format!("{value:.1}")
}

/// Where the header block ends (just past its blank line).
fn header_end(message: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(message, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(message, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The header block's fields, each with its folded lines and line end;
/// the blank line is not among them.
fn split_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut position = 0;
    while position < head.len() {
        let line_end =
            memchr::memchr(b'\n', &head[position..]).map_or(head.len(), |i| position + i + 1);
        let line = &head[position..line_end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if !continues && position > start {
            fields.push(&head[start..position]);
            start = position;
        }
        position = line_end;
    }
    if position > start {
        fields.push(&head[start..position]);
    }
    fields
}

fn fields_len(fields: &[&[u8]]) -> usize {
    fields.iter().map(|f| f.len()).sum()
}

fn field_name(field: &[u8]) -> &str {
    let end = memchr::memchr(b':', field).unwrap_or(0);
    std::str::from_utf8(&field[..end]).unwrap_or("").trim()
}

/// Folds a header line at spaces and commas near 78 columns, as
/// SpamAssassin folds its X-Spam-Status.
fn fold(line: &str, eol: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for word in line.split_inclusive([' ', ',']) {
        if width + word.len() > 78 && width > 0 {
            out = out.trim_end_matches(' ').to_owned();
            out.push_str(eol);
            out.push('\t');
            width = 8;
        }
        out.push_str(word);
        width += word.len();
    }
    out.trim_end().to_owned()
}

/// A boundary no line of the original is, as SpamAssassin's.
fn boundary_for(message: &[u8]) -> String {
    let seed = xxhash_rust::xxh3::xxh3_64(message);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut boundary = format!("----------=_{:08X}.{:08X}", now as u32, seed as u32);
    while memchr::memmem::find(message, boundary.as_bytes()).is_some() {
        boundary.push_str(&format!("/{:08X}", (seed >> 32) as u32));
    }
    boundary
}

/// Now as an RFC 5322 date in UTC.
fn rfc822_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    mail_parser::DateTime::from_timestamp(now).to_rfc822()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_folding_and_line_ends() {
        let head = b"Return-Path: <a@b>\r\nSubject: one\r\n two\r\nX-Spam-Flag: YES\r\n\r\n";
        let fields = split_fields(head);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1], b"Subject: one\r\n two\r\n");
        assert_eq!(field_name(fields[2]), "X-Spam-Flag");
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"no blank line"), None);
    }

    #[test]
    fn long_status_lines_fold_with_a_tab() {
        let line = format!(
            "X-Spam-Status: No, score=1.0 required=6.0 tests={}",
            ["SYMBOL_NUMBER_ONE"; 6].join(",")
        );
        let folded = fold(&line, "\n");
        assert!(folded.contains("\n\t"), "{folded}");
        assert!(folded.lines().all(|l| l.len() <= 80), "{folded}");
        let words = |text: &str| text.split_whitespace().collect::<String>();
        assert_eq!(words(&folded), words(&line));
    }
}
