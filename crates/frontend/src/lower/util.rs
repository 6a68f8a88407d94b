//! Small pure helpers for lowering: POSIX path cleaning, and
//! the Go formatting BuildKit's history strings use (`%q`, durations).

/// The PATH BuildKit gives a stage whose base image sets none.
pub fn default_path_env() -> &'static str {
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

/// `path.Clean` from Go: lexical cleaning of a slash path.
pub(crate) fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `path.Join(dir, p)` then cleaned; `p` absolute replaces nothing (Go joins, not resolves).
pub(crate) fn join(dir: &str, p: &str) -> String {
    if p.is_empty() {
        return clean(dir);
    }
    clean(&format!("{dir}/{p}"))
}

/// BuildKit's `NormalizePath(dir, p, keepSlash=true)`: `p` relative to `dir` (or absolute),
/// cleaned, with a trailing `/` kept when `p` had one (or ended in `/.`), because a trailing
/// slash on a COPY destination means "into this directory".
pub(crate) fn dest_path(cwd: &str, p: &str) -> String {
    let p = if p.is_empty() || p == "." { "./" } else { p };
    let base = if p.starts_with('/') {
        p.to_owned()
    } else {
        join(cwd, p)
    };
    let mut out = clean(&base);
    let keep_slash = p.ends_with('/') || p.ends_with("/.") || p == ".";
    if keep_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Go's `strconv.Quote` (what `%q` prints for a string).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// `%v` of a `[]string`: `[a b]`.
pub(crate) fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`.
pub(crate) fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Sub-second: one unit with a fraction.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
    } else {
        let hours = u / 3_600_000_000_000;
        let minutes = u / 60_000_000_000 % 60;
        let secs = u % 60_000_000_000;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&frac(secs, 1_000_000_000));
        out.push('s');
    }
    if neg { format!("-{out}") } else { out }
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Whether `s` names a signal `docker` accepts for STOPSIGNAL (`SIGTERM`, `TERM`, `9`,
/// `SIGRTMIN+3`).
pub(crate) fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return n > 0 && n <= 64;
    }
    let name = s.strip_prefix("SIG").unwrap_or(s).to_ascii_uppercase();
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ", "RTMIN", "RTMAX",
    ];
    if NAMES.contains(&name.as_str()) {
        return true;
    }
    let rt = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 1 && n <= max)
    };
    rt("RTMIN+", 15) || rt("RTMAX-", 14)
}

/// Parses EXPOSE port specs (`80`, `80/udp`, `8000-8002/tcp`, `[ip:][host:]port`) into
/// `port/proto` strings, in order.
pub(crate) fn parse_ports(spec: &str) -> Result<Vec<String>, String> {
    // [ip:]hostPort:containerPort: only the container part matters for EXPOSE.
    let container = match spec.rfind(':') {
        Some(i) if !spec.ends_with(']') => &spec[i + 1..],
        _ => spec,
    };
    let (port, proto) = match container.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (container, "tcp"),
    };
    if port.is_empty() {
        return Err(format!(
            "invalid port: {}: no port specified",
            go_quote(spec)
        ));
    }
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid port: {}: invalid proto: {proto}",
            go_quote(spec)
        ));
    }
    let num = |p: &str| p.parse::<u32>().ok().filter(|n| *n <= 65535);
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(port), num(port)),
    };
    match (start, end) {
        (Some(start), Some(end)) if end >= start => {
            Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
        }
        _ => Err(format!("invalid containerPort: {port}")),
    }
}

/// A git source as ADD understands it, or `None` when `src` is not one.
pub(crate) struct GitRef {
    pub remote: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

pub(crate) fn git_ref(src: &str) -> Option<GitRef> {
    let (url, fragment) = match src.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (src, None),
    };
    let is_git = url.starts_with("git://")
        || url.starts_with("git@")
        || url.starts_with("ssh://")
        || ((url.starts_with("https://") || url.starts_with("http://")) && url.ends_with(".git"));
    if !is_git {
        return None;
    }
    let (reference, subdir) = match fragment {
        Some(f) => match f.split_once(':') {
            Some((r, d)) => (
                Some(r.to_owned()).filter(|r| !r.is_empty()),
                Some(d.to_owned()).filter(|d| !d.is_empty()),
            ),
            None => (Some(f.to_owned()).filter(|r| !r.is_empty()), None),
        },
        None => (None, None),
    };
    Some(GitRef {
        remote: url.to_owned(),
        reference,
        subdir,
    })
}

pub(crate) fn is_http(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && git_ref(src).is_none()
}

/// Splits a CSV record as Go's `encoding/csv` reads one line: commas separate fields, double
/// quotes group (and `""` inside quotes is a quote).
pub(crate) fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if at_start && c == '"' {
            // Quoted field.
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(ch) => cur.push(ch),
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                }
            }
            at_start = false;
            match chars.peek() {
                None | Some(',') => {}
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
            continue;
        }
        if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
            continue;
        }
        at_start = false;
        cur.push(c);
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean("/a/../b/./c/"), "/b/c");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/.."), "/");
        assert_eq!(dest_path("/test1/test2", "./"), "/test1/test2/");
        assert_eq!(dest_path("/test1/test2", "bar/baz"), "/test1/test2/bar/baz");
        assert_eq!(dest_path("/test5/test6", "../"), "/test5/");
        assert_eq!(dest_path("/var/www", "."), "/var/www/");
        assert_eq!(dest_path("/var/www", ""), "/var/www/");
        assert_eq!(dest_path("/", "/sample/"), "/sample/");
        assert_eq!(dest_path("/", "/"), "/");
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            r#"["/bin/sh" "-c" "echo hi"]"#
        );
        assert_eq!(format_go_duration(30_000_000_000), "30s");
        assert_eq!(format_go_duration(90_000_000_000), "1m30s");
        assert_eq!(format_go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_go_duration(1_500_000_000), "1.5s");
        assert_eq!(format_go_duration(500_000_000), "500ms");
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_ports("4000/UDP").unwrap(), ["4000/udp"]);
        assert_eq!(
            parse_ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_ports("abc").is_err());
        assert!(parse_ports("70000").is_err());
        assert!(
            valid_signal("SIGTERM")
                && valid_signal("KILL")
                && valid_signal("9")
                && valid_signal("SIGRTMIN+3")
        );
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
    }

    #[test]
    fn csv() {
        assert_eq!(
            csv_fields("type=cache,target=/x").unwrap(),
            ["type=cache", "target=/x"]
        );
        assert_eq!(csv_fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert!(csv_fields("\"a").is_err());
    }
}
