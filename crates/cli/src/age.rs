//! "2 minutes ago" and "Up 3 hours", as `docker images` and `docker ps` write them: RFC 3339
//! times from the store turned into Docker's rounded human durations.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of an RFC 3339 time in UTC or with an offset
/// (`2026-11-29T07:00:26.75Z`, `…+01:00`); fractions are dropped.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num =
        |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse::<i64>().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Skip a fraction, then read the zone.
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// A time as Docker's `CreatedAt` columns print it (Go's `2006-01-02 15:04:05 -0700 MST`),
/// in UTC: `2026-11-29 07:00:26 +0000 UTC`. Unparsable input is returned as it is.
pub fn docker_time(text: &str) -> String {
    let Some(secs) = parse_rfc3339(text) else {
        return text.to_owned();
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The date of a day number since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Docker's rounded duration ("Less than a second", "About a minute", "3 hours", "2 weeks").
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (minutes, hours) = (s / 60, s / 3600);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// How long ago `time` was, in Docker's words; the raw text when it does not parse.
pub fn ago(time: &str) -> String {
    match parse_rfc3339(time) {
        Some(t) => format!("{} ago", human_duration(now() - t)),
        None => time.to_string(),
    }
}

/// How long since `time`, without "ago" ("Up 3 hours"); `None` when it does not parse.
pub fn since(time: &str) -> Option<String> {
    parse_rfc3339(time).map(|t| human_duration(now() - t))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_created_at() {
        assert_eq!(
            docker_time("2026-11-29T07:00:26.75Z"),
            "2026-11-29 07:00:26 +0000 UTC"
        );
        assert_eq!(
            docker_time("2024-02-29T23:59:59+01:00"),
            "2024-02-29 22:59:59 +0000 UTC"
        );
        assert_eq!(
            docker_time("1970-01-01T00:00:00Z"),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(docker_time("garbage"), "garbage");
    }

    #[test]
    fn parses_what_the_store_writes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-29T07:00:26.753560171Z"),
            Some(1_795_935_626)
        );
        assert_eq!(
            parse_rfc3339("2026-11-29T08:00:26+01:00"),
            Some(1_795_935_626)
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn rounds_as_docker_does() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(20 * 86_400), "2 weeks");
        assert_eq!(human_duration(90 * 86_400), "3 months");
        assert_eq!(human_duration(800 * 86_400), "2 years");
        assert_eq!(ago("not a time"), "not a time");
    }
}
