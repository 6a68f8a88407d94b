//! Go's `time.ParseDuration`, for HEALTHCHECK intervals like `30s` or `1m30s`.

/// Parses a Go duration string into signed nanoseconds. `None` when it is not one.
///
/// A duration is an optional sign and a sequence of decimal numbers, each with an optional
/// fraction and a unit: `ns`, `us` (or `µs`, `μs`), `ms`, `s`, `m`, `h`. A bare `0` is allowed.
pub(crate) fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        // Integer part, then as many fraction digits as can still matter at ns precision.
        let whole: i128 = if int.is_empty() {
            0
        } else {
            int.parse::<i128>().ok()?
        };
        let mut part = whole.checked_mul(scale)?;
        let mut denom: i128 = 1;
        let mut frac_val: i128 = 0;
        for d in frac.bytes().take(30) {
            frac_val = frac_val * 10 + i128::from(d - b'0');
            denom *= 10;
        }
        part = part.checked_add(frac_val * scale / denom)?;
        total = total.checked_add(part)?;
        // Go rejects anything beyond i64 nanoseconds (about 290 years).
        if total > i128::from(i64::MAX) {
            return None;
        }
        rest = after;
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    #[test]
    fn go_durations() {
        assert_eq!(p("30s"), Some(30_000_000_000));
        assert_eq!(p("1m30s"), Some(90_000_000_000));
        assert_eq!(p("1.5h"), Some(5_400_000_000_000));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("0s"), Some(0));
        assert_eq!(p("-2ms"), Some(-2_000_000));
        assert_eq!(p(".5s"), Some(500_000_000));
        assert_eq!(p("10µs"), Some(10_000));
        assert_eq!(p(""), None);
        assert_eq!(p("5"), None);
        assert_eq!(p("s"), None);
        assert_eq!(p("5x"), None);
        assert_eq!(p("1.s"), Some(1_000_000_000));
        assert_eq!(p("."), None);
        assert_eq!(p("300000000h"), None);
    }
}
