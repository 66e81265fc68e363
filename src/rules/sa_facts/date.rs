//! SpamAssassin's lenient date parser (`Util::parse_rfc822_date`), for its
//! `check_for_shifted_date` rules.
//!
//! Those rules compare the Date header with Received stamps, and much of
//! the mail they fire on has broken dates: no zone, a zone without its sign
//! (`0530`), a year in two digits, an hour of 24. A strict RFC 5322 parser
//! rejects or reads these otherwise than SpamAssassin, and the rules then
//! disagree with it; so this reproduces its reading: the first
//! `day month year` (or `month day time year`), the first `h:mm[:ss]`, a
//! signed four-digit zone or a known zone name, anything else as UTC,
//! out-of-range fields pulled into range.

use std::sync::LazyLock;

use regex::Regex;

struct Patterns {
    day_month_year: Regex,
    month_day_time_year: Regex,
    day_month_short_year: Regex,
    time: Regex,
    numeric_zone: Regex,
    named_zone: Regex,
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| {
    const MONTHS: &str = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    Some(Patterns {
        day_month_year: Regex::new(&format!(r"(?i) (\d+) {MONTHS} (\d{{4}}) ")).ok()?,
        month_day_time_year: Regex::new(&format!(r"(?i) {MONTHS} +(\d+) \d+:\d+:\d+ (\d{{4}}) "))
            .ok()?,
        day_month_short_year: Regex::new(&format!(r"(?i) (\d+) {MONTHS} (\d{{2,3}}) ")).ok()?,
        time: Regex::new(r" (\d?\d):(\d\d)(?::(\d\d))? ").ok()?,
        numeric_zone: Regex::new(r" ([-+])(\d\d)(\d\d) ").ok()?,
        named_zone: Regex::new(r"\b([A-Z]{2,4}(?:-DST)?)\b").ok()?,
    })
});

/// Seconds since 1970 (UTC) of `date` as SpamAssassin reads it, or `None`
/// where it finds no date at all.
pub fn parse(date: &str) -> Option<i64> {
    let patterns = PATTERNS.as_ref()?;
    // ", " and runs of white space become one space, with one at each end,
    // so every part is matched between spaces.
    let mut text = format!(" {} ", date.replace(',', " "));
    text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text = format!(" {text} ");

    let (day, month, mut year, rest) = if let Some(c) = patterns.day_month_year.captures(&text) {
        (
            number(&c[1]),
            month_number(&c[2]),
            number(&c[3]),
            remove(&text, &c),
        )
    } else if let Some(c) = patterns.month_day_time_year.captures(&text) {
        (
            number(&c[2]),
            month_number(&c[1]),
            number(&c[3]),
            remove(&text, &c),
        )
    } else if let Some(c) = patterns.day_month_short_year.captures(&text) {
        let digits = c[3].len();
        let short = number(&c[3]);
        let year = if digits == 2 && short < 50 {
            short + 2000
        } else {
            short + 1900
        };
        (number(&c[1]), month_number(&c[2]), year, remove(&text, &c))
    } else {
        return None;
    };
    let (mut hour, mut minute, mut second, rest) = match patterns.time.captures(&rest) {
        Some(c) => (
            number(&c[1]),
            number(&c[2]),
            c.get(3).map_or(0, |s| number(s.as_str())),
            remove(&rest, &c),
        ),
        None => (0, 0, 0, rest),
    };
    let zone_seconds = if let Some(c) = patterns.numeric_zone.captures(&rest) {
        let offset = (number(&c[2]) * 60 + number(&c[3])) * 60;
        if &c[1] == "-" { -offset } else { offset }
    } else {
        patterns
            .named_zone
            .captures(&rest)
            .and_then(|c| zone_offset_minutes(&c[1]))
            .map_or(0, |minutes| minutes * 60)
    };

    second = second.min(59);
    minute = minute.min(59);
    hour = hour.min(23);
    let mut month = month;
    let mut day = day;
    if day > days_in_month(year, month) {
        day = 1;
        month += 1;
        if month > 12 {
            month = 1;
            year += 1;
        }
    }
    year = year.clamp(1970, 2037);
    let time = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    // A '+' zone is ahead of UTC; SpamAssassin stops at 1970.
    Some((time - zone_seconds).max(if zone_seconds > 0 { 0 } else { i64::MIN }))
}

fn remove(text: &str, captures: &regex::Captures<'_>) -> String {
    let whole = captures.get(0).map_or(0..0, |m| m.range());
    format!("{} {}", &text[..whole.start], &text[whole.end..])
}

fn number(digits: &str) -> i64 {
    digits.parse().unwrap_or(0)
}

fn month_number(name: &str) -> i64 {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| *n == lower)
        .map_or(0, |i| i as i64 + 1)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The zone names SpamAssassin knows, as minutes east of UTC.
fn zone_offset_minutes(name: &str) -> Option<i64> {
    Some(match name {
        "UT" | "UTC" | "GMT" | "WET" => 0,
        "NDT" => -150,
        "NST" => -210,
        "AST" | "EDT" => -240,
        "ADT" | "BRST" => -180,
        "EST" | "CDT" => -300,
        "CST" | "MDT" => -360,
        "MST" | "PDT" => -420,
        "PST" | "AKDT" => -480,
        "HST" | "HAST" => -600,
        "AKST" | "HADT" => -540,
        "BRT" => -180,
        "BST" | "IST" | "WEST" | "CET" | "MET" | "MEZ" => 60,
        "CEST" | "EET" | "MEST" | "MESZ" => 120,
        "EEST" | "MSK" | "IDT" => 180,
        "MSD" => 240,
        "AEST" => 600,
        "AEDT" => 660,
        "ACST" => 570,
        "ACDT" => 630,
        "AWST" | "HKT" | "SGT" | "PHT" => 480,
        "NZST" => 720,
        "NZDT" => 780,
        "JST" | "KST" => 540,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_dates_read_as_rfc_5322_says() {
        assert_eq!(
            parse("Fri, 23 Aug 2002 08:41:13 +0100"),
            Some(1_030_088_473)
        );
        assert_eq!(parse(" 23 Aug 2002 06:06:37 -0400"), Some(1_030_097_197));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
    }

    #[test]
    fn broken_dates_read_as_spamassassin_reads_them() {
        let utc = parse("Sat, 18 May 2002 01:27:10 +0000");
        // No zone, an unsigned zone, an unknown zone: all UTC.
        assert_eq!(parse("Sat, 18 May 2002 01:27:10"), utc);
        assert_eq!(parse("Sat, 18 May 2002 01:27:10 0530"), utc);
        assert_eq!(parse("Sat, 18 May 2002 01:27:10 XYZ"), utc);
        // A zone name in parentheses counts.
        assert_eq!(
            parse("Sat, 18 May 2002 01:27:10 (EDT)"),
            utc.map(|t| t + 4 * 3600)
        );
        // Two-digit years, "month day time year", out-of-range fields.
        assert_eq!(parse("18 May 02 01:27:10 +0000"), utc);
        // ctime order: the time goes with the date, so SpamAssassin reads
        // midnight.
        assert_eq!(
            parse("Sat May 18 01:27:10 2002"),
            parse("18 May 2002 00:00:00 +0000")
        );
        assert_eq!(
            parse("31 Apr 2002 25:61:61 +0000"),
            parse("1 May 2002 23:59:59 +0000")
        );
        assert_eq!(parse("no date here"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_to_nothing_or_a_time_in_range(text in "\\PC{0,60}") {
            if let Some(time) = parse(&text) {
                // 1970 to the end of 2037, a day of zone either side.
                proptest::prop_assert!((-86_400..2_145_916_800 + 86_400).contains(&time));
            }
        }

        #[test]
        fn date_shaped_text_always_parses(
            day in 0u32..40, month in 0usize..12, year in 0u32..3000,
            hour in 0u32..100, zone in "[-+ ]?[0-9]{4}|[A-Z]{2,4}|",
        ) {
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let text = format!("{day} {} {year:04} {hour}:00:00 {zone}", months[month]);
            proptest::prop_assert!(parse(&text).is_some(), "{}", text);
        }
    }
}
