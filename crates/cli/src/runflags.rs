//! Docker's syntax for the process settings `kiln build` and `kiln run` share: `--add-host`,
//! `--ulimit` and `--shm-size`. Small functions with plain results, so each command maps them
//! onto its own request type.

use std::net::IpAddr;

/// The resource names `--ulimit` accepts (Docker's).
pub const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--add-host NAME:IP` (or `NAME=IP`); an IPv6 address may be written in brackets.
pub fn parse_add_host(value: &str) -> Result<(String, IpAddr), String> {
    let (name, ip) = value
        .split_once('=')
        .or_else(|| value.split_once(':'))
        .ok_or_else(|| format!("invalid --add-host {value:?}: expected NAME:IP"))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid --add-host {value:?}: bad host name"));
    }
    if ip == "host-gateway" {
        return Err(format!(
            "not supported yet: --add-host {name}:host-gateway (give the address)"
        ));
    }
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| format!("invalid --add-host {value:?}: {ip:?} is not an IP address"))?;
    Ok((name.to_owned(), ip))
}

/// `--ulimit NAME=SOFT[:HARD]` (-1 is unlimited); the hard limit defaults to the soft one.
pub fn parse_ulimit(value: &str) -> Result<(String, u64, u64), String> {
    let (name, limits) = value
        .split_once('=')
        .ok_or_else(|| format!("invalid --ulimit {value:?}: expected NAME=SOFT[:HARD]"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!(
            "invalid --ulimit {value:?}: unknown resource {name:?} (one of {})",
            ULIMIT_NAMES.join(", ")
        ));
    }
    let number = |s: &str| -> Result<u64, String> {
        match s.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            n => n
                .parse::<u64>()
                .map_err(|_| format!("invalid --ulimit {value:?}: {n:?} is not a number")),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let n = number(limits)?;
            (n, n)
        }
    };
    if soft > hard {
        return Err(format!(
            "invalid --ulimit {value:?}: the soft limit is above the hard limit"
        ));
    }
    Ok((name.to_owned(), soft, hard))
}

/// A size as Docker writes them (`--shm-size 64m`): bytes, or a number with `b`, `k`, `m`,
/// `g`, `t` (powers of 1024, any case, an optional trailing `b`).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&v);
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "invalid size {value:?}: expected e.g. 512, 64k, 64m, 1g"
            ));
        }
    };
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("invalid size {value:?}: expected e.g. 512, 64k, 64m, 1g"))?;
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("invalid size {value:?}: out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".to_owned(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("v6=[::1]").unwrap(),
            ("v6".to_owned(), "::1".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("v6:::1").unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_add_host("db").is_err());
        assert!(parse_add_host("db:nope").is_err());
        assert!(
            parse_add_host("gw:host-gateway")
                .unwrap_err()
                .contains("not supported yet")
        );
    }

    #[test]
    fn ulimit() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            ("nofile".to_owned(), 1024, 2048)
        );
        assert_eq!(
            parse_ulimit("nproc=64").unwrap(),
            ("nproc".to_owned(), 64, 64)
        );
        assert_eq!(parse_ulimit("memlock=-1").unwrap().2, u64::MAX);
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("files=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5x").is_err());
    }
}
