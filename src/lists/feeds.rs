//! The formats phishing and malware feeds are downloaded in, read as the
//! one-entry-a-line form `url_list` matches: OpenPhish's plain list (one URL
//! a line, already that form), PhishTank's CSV and JSON, and URLhaus' CSV.
//! An admin points a `[url_lists.NAME]` at the file as downloaded; nothing
//! needs converting.
//!
//! Told apart by their text: JSON starts with `[` or `{` (every `url`
//! field is an entry); a line with a comma is CSV (the `url` column when a
//! header line, commented or not, names one, else the first field that is
//! an `http(s)://` URL); any other line is an entry as written.

/// The entries `text` lists, whatever its format.
pub fn entry_lines(text: &str) -> Vec<String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with(['[', '{'])
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        let mut urls = Vec::new();
        collect_json_urls(&value, &mut urls);
        return urls;
    }
    let mut url_column: Option<usize> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.contains(',') {
            out.push(line.to_owned());
            continue;
        }
        let fields = csv_fields(line.trim_start_matches('#').trim());
        if let Some(column) = fields
            .iter()
            .position(|field| field.eq_ignore_ascii_case("url"))
        {
            url_column = Some(column);
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        let url = match url_column {
            Some(column) => fields.get(column).cloned(),
            None => fields.into_iter().find(|field| {
                let lower = field.get(..8).unwrap_or(field).to_ascii_lowercase();
                lower.starts_with("http://") || lower.starts_with("https://")
            }),
        };
        // A URL with a `#` would lose its tail to the comment rule.
        out.extend(url.map(|url| url.replace('#', "%23")));
    }
    out
}

/// Every string under a `url` key, at any depth (PhishTank's JSON is an
/// array of objects with `url`; other feeds nest theirs).
fn collect_json_urls(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                collect_json_urls(item, out);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                match field {
                    serde_json::Value::String(url) if key.eq_ignore_ascii_case("url") => {
                        out.push(url.replace('#', "%23"));
                    }
                    _ => collect_json_urls(field, out),
                }
            }
        }
        _ => {}
    }
}

/// The fields of one CSV line: commas separate, double quotes quote, and
/// `""` inside quotes is a quote (RFC 4180).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field).trim().to_owned()),
            c => field.push(c),
        }
    }
    fields.push(field.trim().to_owned());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openphish_lines_pass_through() {
        let text = "http://a.example.com/login\nhttps://b.example.net/x\n";
        assert_eq!(
            entry_lines(text),
            vec!["http://a.example.com/login", "https://b.example.net/x"]
        );
    }

    #[test]
    fn phishtank_csv_and_json_give_their_url_column() {
        let csv = "phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target\n\
                   123,http://evil.example.com/paypal/,http://www.phishtank.com/phish_detail.php?phish_id=123,2026-12-01T00:00:00+00:00,yes,2026-12-01T00:10:00+00:00,yes,PayPal\n\
                   124,\"http://x.example.net/a,b\",http://www.phishtank.com/phish_detail.php?phish_id=124,2026,yes,2026,yes,Other\n";
        assert_eq!(
            entry_lines(csv),
            vec![
                "http://evil.example.com/paypal/",
                "http://x.example.net/a,b"
            ]
        );
        let json = r#"[{"phish_id":"123","url":"http://evil.example.com/paypal/","details":[{"ip_address":"192.0.2.1"}],"target":"PayPal"}]"#;
        assert_eq!(entry_lines(json), vec!["http://evil.example.com/paypal/"]);
    }

    #[test]
    fn urlhaus_csv_with_its_commented_header() {
        let csv = "################\n# abuse.ch URLhaus Database Dump (CSV)\n\
                   # id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\
                   \"3240000\",\"2026-12-01 10:00:00\",\"http://198.51.100.4/mozi.m\",\"online\",\"2026-12-01 10:00:00\",\"malware_download\",\"elf,mozi\",\"https://urlhaus.abuse.ch/url/3240000/\",\"geenensp\"\n";
        let lines: Vec<String> = entry_lines(csv)
            .into_iter()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(lines, vec!["http://198.51.100.4/mozi.m"]);
    }
}
