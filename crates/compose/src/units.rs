//! Durations (`1m30s`, Go's syntax and printing) and byte sizes (`512m`, Docker's binary units).

use serde::{Serialize, Serializer};

/// A duration in nanoseconds, printed as Go prints a `time.Duration` (`90s` → `1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

impl Duration {
    /// Parses Go's duration syntax: one or more `{number}{unit}`, units `ns us µs ms s m h`,
    /// numbers possibly with a fraction; `0` alone is zero. Negative durations are refused.
    pub fn parse(text: &str) -> Option<Duration> {
        let s = text.strip_prefix('+').unwrap_or(text);
        if s == "0" {
            return Some(Duration(0));
        }
        if s.is_empty() {
            return None;
        }
        let mut total: f64 = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let num = &rest[..num_len];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return None;
            }
            let value: f64 = num.parse().ok()?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ns" => NS,
                "us" | "µs" | "μs" => US,
                "ms" => MS,
                "s" => SEC,
                "m" => 60 * SEC,
                "h" => 3600 * SEC,
                _ => return None,
            };
            rest = &rest[unit_len..];
            total += value * unit as f64;
        }
        if total > u64::MAX as f64 {
            return None;
        }
        Some(Duration(total.round() as u64))
    }

    /// Go's `Duration.String()`.
    pub fn go_string(self) -> String {
        let d = self.0;
        if d == 0 {
            return "0s".into();
        }
        if d < SEC {
            let (unit, name) = if d < US {
                (NS, "ns")
            } else if d < MS {
                (US, "µs")
            } else {
                (MS, "ms")
            };
            return format!("{}{name}", fraction(d, unit));
        }
        let hours = d / (3600 * SEC);
        let minutes = (d / (60 * SEC)) % 60;
        let secs = fraction(d % (60 * SEC), SEC);
        if hours > 0 {
            format!("{hours}h{minutes}m{secs}s")
        } else if minutes > 0 {
            format!("{minutes}m{secs}s")
        } else {
            format!("{secs}s")
        }
    }
}

/// `value / unit` as a decimal without trailing zeros.
fn fraction(value: u64, unit: u64) -> String {
    let whole = value / unit;
    let rem = value % unit;
    if rem == 0 {
        return whole.to_string();
    }
    let width = (unit as f64).log10().round() as usize;
    let frac = format!("{rem:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.go_string())
    }
}

/// Parses a byte size as Docker does (`RAMInBytes`): a number, an optional space, an optional
/// unit `k m g t p` (1024-based, any case), an optional `i` and an optional `b`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let s = text.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let value: f64 = s[..num_len].parse().ok()?;
    let unit = s[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    // "1ib" is not a size: an `i` needs a unit before it.
    if unit.is_empty() && s[num_len..].to_ascii_lowercase().contains('i') {
        return None;
    }
    let bytes = value * mult as f64;
    (bytes <= u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_as_go() {
        let d = |s| Duration::parse(s).unwrap().go_string();
        assert_eq!(d("90s"), "1m30s");
        assert_eq!(d("1h"), "1h0m0s");
        assert_eq!(d("1.5s"), "1.5s");
        assert_eq!(d("500ms"), "500ms");
        assert_eq!(d("1m30s"), "1m30s");
        assert_eq!(d("2h45m"), "2h45m0s");
        assert_eq!(d("10us"), "10µs");
        assert_eq!(d("0"), "0s");
        assert_eq!(d("1500ms"), "1.5s");
        assert_eq!(d("3s100ms"), "3.1s");
        for bad in ["", "10", "s", "1x", "-1s", "1..2s"] {
            assert_eq!(Duration::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("2KiB"), Some(2048));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("12 mb"), Some(12 << 20));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("1x"), None);
    }
}
