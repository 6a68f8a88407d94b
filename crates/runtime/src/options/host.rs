//! The host-side flags of `kiln run` as Docker parses and checks them: `--ulimit`,
//! `--add-host`, `--dns*`, `--label`/`--label-file`, `--ipc`/`--pid`/`--uts`, `--log-driver`/
//! `--log-opt`, `--memory-swap`, `--cpuset-cpus`; and the `/etc/hosts` and
//! `/etc/resolv.conf` Docker writes for a container.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use kiln_executor::sandbox::{Rlimit, RlimitResource};

use crate::error::RuntimeError;
use crate::store::{LogConfig, Ulimit};

const ULIMITS: [(&str, RlimitResource); 15] = [
    ("core", RlimitResource::Core),
    ("cpu", RlimitResource::Cpu),
    ("data", RlimitResource::Data),
    ("fsize", RlimitResource::Fsize),
    ("locks", RlimitResource::Locks),
    ("memlock", RlimitResource::Memlock),
    ("msgqueue", RlimitResource::Msgqueue),
    ("nice", RlimitResource::Nice),
    ("nofile", RlimitResource::Nofile),
    ("nproc", RlimitResource::Nproc),
    ("rss", RlimitResource::Rss),
    ("rtprio", RlimitResource::Rtprio),
    ("rttime", RlimitResource::Rttime),
    ("sigpending", RlimitResource::Sigpending),
    ("stack", RlimitResource::Stack),
];

/// `--ulimit NAME=SOFT[:HARD]` (`-1` or `unlimited` for no limit).
pub(crate) fn parse_ulimit(s: &str) -> Result<Ulimit, RuntimeError> {
    let bad = |why: String| {
        RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--ulimit\" flag: {why}"
        ))
    };
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| bad(format!("invalid ulimit argument: {s}")))?;
    if !ULIMITS.iter().any(|(n, _)| *n == name) {
        return Err(bad(format!("invalid ulimit type: {name}")));
    }
    let num = |v: &str| -> Result<i64, RuntimeError> {
        match v {
            "unlimited" | "-1" => Ok(-1),
            v => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad(format!("invalid ulimit value: {v}"))),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(values)?, num(values)?),
    };
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u(soft) > as_u(hard) {
        return Err(bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// A recorded ulimit for the sandbox.
pub(crate) fn rlimit(u: &Ulimit) -> Option<Rlimit> {
    let resource = ULIMITS.iter().find(|(n, _)| *n == u.name)?.1;
    let v = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    Some(Rlimit {
        resource,
        soft: v(u.soft),
        hard: v(u.hard),
    })
}

/// `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address keeps its colons); `host-gateway` is
/// left for the caller to resolve. Returns `(name, ip text)`.
pub(crate) fn parse_add_host(s: &str) -> Result<(String, String), RuntimeError> {
    let bad = || {
        RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--add-host\" flag: invalid IP address in add-host: {s:?}"
        ))
    };
    let (name, ip) = match s.split_once('=') {
        Some(p) => p,
        None => s.split_once(':').ok_or_else(bad)?,
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
        return Err(bad());
    }
    Ok((name.to_string(), ip.to_string()))
}

/// `--dns IP`.
pub(crate) fn check_dns(s: &str) -> Result<(), RuntimeError> {
    s.parse::<IpAddr>().map(|_| ()).map_err(|_| {
        RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--dns\" flag: ip address is not correctly formatted: {s}"
        ))
    })
}

/// `--label K=V` / `--label K` and `--label-file` lines (`#` comments and blank lines
/// skipped), over the image's labels; later wins.
pub(crate) fn labels(
    image: &BTreeMap<String, String>,
    files: &[std::path::PathBuf],
    flags: &[String],
) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut out = image.clone();
    let mut add = |entry: &str| {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        out.insert(k.to_string(), v.to_string());
    };
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            RuntimeError::Invalid(format!("failed to read label file {}: {e}", f.display()))
        })?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            add(line);
        }
    }
    for l in flags {
        if l.starts_with('=') {
            return Err(RuntimeError::Invalid(format!(
                "invalid label {l:?}: empty key"
            )));
        }
        add(l);
    }
    Ok(out)
}

/// `--ipc`, `--pid` and `--uts` values: `""`, `host`, `container:NAME` (ipc: also `private`,
/// the default, and `shareable`, which others may join). Returns the mode to record with any
/// container reference still by name.
pub(crate) fn namespace_mode(flag: &str, value: &str) -> Result<String, RuntimeError> {
    let ok = match (flag, value) {
        (_, "" | "host") => true,
        ("ipc", "private") => return Ok(String::new()),
        ("ipc", "shareable") => true,
        ("ipc" | "pid", v) if v.starts_with("container:") && v.len() > "container:".len() => true,
        ("ipc", "none") => {
            return Err(RuntimeError::NotSupported(
                "--ipc none (a container without /dev/shm)".into(),
            ));
        }
        _ => false,
    };
    if !ok {
        return Err(RuntimeError::Invalid(format!(
            "invalid argument {value:?} for \"--{flag}\" flag: invalid {} mode",
            flag.to_uppercase()
        )));
    }
    Ok(value.to_string())
}

/// `--log-driver` and `--log-opt`: `json-file`, `local` or `none`; `max-size` and
/// `max-file` (and `compress=false`) for the first two.
pub(crate) fn log_config(driver: Option<&str>, opts: &[String]) -> Result<LogConfig, RuntimeError> {
    let driver = driver.unwrap_or("json-file");
    if !matches!(driver, "json-file" | "local" | "none") {
        return Err(RuntimeError::NotSupported(format!(
            "--log-driver {driver} (json-file, local and none are)"
        )));
    }
    let mut config = BTreeMap::new();
    for o in opts {
        let (k, v) = o.split_once('=').ok_or_else(|| {
            RuntimeError::Invalid(format!("invalid --log-opt {o:?}: expected KEY=VALUE"))
        })?;
        match (driver, k) {
            ("none", _) => {
                return Err(RuntimeError::Invalid(format!(
                    "unknown log opt '{k}' for log driver none"
                )));
            }
            (_, "max-size") => {
                let n = super::parse_size(v)?;
                if n == 0 && v != "-1" {
                    return Err(RuntimeError::Invalid(format!("invalid max-size {v:?}")));
                }
            }
            (_, "max-file") => {
                if !v.parse::<u32>().is_ok_and(|n| n >= 1) {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid max-file {v:?}: must be a number of at least 1"
                    )));
                }
            }
            (_, "compress") if v == "false" => {}
            (_, "compress") => {
                return Err(RuntimeError::NotSupported(format!(
                    "--log-opt compress={v} (rotated logs are kept uncompressed)"
                )));
            }
            ("json-file", "labels" | "env" | "env-regex" | "tag") => {
                return Err(RuntimeError::NotSupported(format!("--log-opt {k}")));
            }
            _ => {
                return Err(RuntimeError::Invalid(format!(
                    "unknown log opt '{k}' for {driver} log driver"
                )));
            }
        }
        config.insert(k.to_string(), v.to_string());
    }
    if driver == "json-file"
        && config.get("max-file").is_some_and(|n| n != "1")
        && !config.contains_key("max-size")
    {
        return Err(RuntimeError::Invalid(
            "max-file cannot be greater than 1 without max-size".into(),
        ));
    }
    Ok(LogConfig {
        driver: driver.to_string(),
        config,
    })
}

/// `--memory-swap` (bytes of memory plus swap, `-1` for unlimited) against `--memory`.
pub(crate) fn memory_swap(value: &str, memory: Option<u64>) -> Result<i64, RuntimeError> {
    let swap = if value.trim() == "-1" {
        -1
    } else {
        super::parse_size(value)? as i64
    };
    let Some(memory) = memory else {
        return Err(RuntimeError::Invalid(
            "you should always set the memory limit when using the memoryswap limit, see usage"
                .into(),
        ));
    };
    if swap >= 0 && (swap as u64) < memory {
        return Err(RuntimeError::Invalid(
            "minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ));
    }
    Ok(swap)
}

/// `--cpuset-cpus 0-2,4`: well formed, and only CPUs this host has.
pub(crate) fn cpuset(value: &str) -> Result<String, RuntimeError> {
    let bad = || RuntimeError::Invalid(format!("invalid value {value} for cpuset cpus"));
    let mut wanted = Vec::new();
    for part in value.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b {
            return Err(bad());
        }
        wanted.extend(a..=b);
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let mut have = Vec::new();
    for part in online.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            have.extend(a..=b);
        }
    }
    if let Some(c) = wanted.iter().find(|c| !have.contains(c)) {
        return Err(RuntimeError::Invalid(format!(
            "requested CPUs are not available - requested {value}, available: {} (CPU {c})",
            online.trim()
        )));
    }
    Ok(value.to_string())
}

/// Docker's `/etc/hosts` for a container: the standard lines, the `--add-host` entries, then
/// the container's own address and name when it has an address.
pub(crate) fn hosts_file(extra: &[String], own: Option<(&str, &str)>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    s.push_str(&extra_host_lines(extra));
    if let Some((ip, name)) = own {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

/// The `--add-host` lines of a hosts file (recorded as `name:ip`; an IPv6 address keeps
/// its colons).
pub(crate) fn extra_host_lines(extra: &[String]) -> String {
    extra
        .iter()
        .filter_map(|e| e.split_once(':'))
        .map(|(name, ip)| format!("{ip}\t{name}\n"))
        .collect()
}

/// Docker's `/etc/resolv.conf`: the host's (its loopback name servers dropped unless on the
/// host's network; Google's public servers when none is left), with `--dns`,
/// `--dns-search` and `--dns-option` replacing its name servers, search list and options.
pub(crate) fn resolv_conf(
    host_text: &str,
    host_network: bool,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> String {
    let loopback = |ip: &str| ip.starts_with("127.") || ip == "::1";
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        if host_network {
            return host_text.to_string();
        }
        let mut out = String::new();
        let mut servers = 0;
        for l in host_text.lines() {
            let mut w = l.split_whitespace();
            if w.next() == Some("nameserver") {
                if w.next().is_some_and(loopback) {
                    continue;
                }
                servers += 1;
            }
            out.push_str(l);
            out.push('\n');
        }
        if servers == 0 {
            out.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
        return out;
    }
    let field = |key: &str| -> Vec<String> {
        host_text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.map(str::to_string).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    };
    let servers: Vec<String> = if dns.is_empty() {
        field("nameserver")
            .into_iter()
            .filter(|ip| host_network || !loopback(ip))
            .collect()
    } else {
        dns.to_vec()
    };
    let search: Vec<String> = if search.is_empty() {
        field("search")
    } else {
        search.iter().filter(|s| *s != ".").cloned().collect()
    };
    let options: Vec<String> = if options.is_empty() {
        field("options")
    } else {
        options.to_vec()
    };
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The host's `/etc/resolv.conf`, or nothing.
pub(crate) fn host_resolv_conf() -> String {
    std::fs::read_to_string(Path::new("/etc/resolv.conf")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1234:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1234, 2048));
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, -1);
        assert!(parse_ulimit("nofile=3:2").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert_eq!(rlimit(&u).unwrap().soft, 1234);
    }

    #[test]
    fn hosts_and_dns_as_docker_writes_them() {
        assert_eq!(
            parse_add_host("b:::1").unwrap(),
            ("b".to_string(), "::1".to_string())
        );
        assert!(parse_add_host("x:nope").is_err());
        assert_eq!(parse_add_host("h=host-gateway").unwrap().1, "host-gateway");
        let h = hosts_file(&["a.test:1.2.3.4".into()], Some(("10.0.0.2", "abc")));
        assert!(h.ends_with("ff02::2\tip6-allrouters\n1.2.3.4\ta.test\n10.0.0.2\tabc\n"));
        let host = "# comment\nnameserver 127.0.0.53\noptions edns0\nsearch lan\n";
        assert_eq!(
            resolv_conf(host, false, &[], &[], &[]),
            "# comment\noptions edns0\nsearch lan\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(host, true, &[], &[], &[]), host);
        assert_eq!(
            resolv_conf(
                "nameserver 10.0.0.1\n",
                false,
                &["9.9.9.9".into()],
                &["x.test".into()],
                &["ndots:2".into()]
            ),
            "search x.test\nnameserver 9.9.9.9\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.0.0.1\n", false, &[], &["x.test".into()], &[]),
            "search x.test\nnameserver 10.0.0.1\n"
        );
    }

    #[test]
    fn labels_modes_logs_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("labels");
        std::fs::write(&f, "# c\na=1\n\nb=2\n").unwrap();
        let image = BTreeMap::from([("a".to_string(), "0".to_string())]);
        let l = labels(&image, &[f], &["b=3".into(), "c".into()]).unwrap();
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            [
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("c".into(), String::new())
            ]
        );
        assert_eq!(namespace_mode("ipc", "private").unwrap(), "");
        assert_eq!(namespace_mode("ipc", "shareable").unwrap(), "shareable");
        assert!(namespace_mode("uts", "container:x").is_err());
        assert_eq!(namespace_mode("pid", "container:x").unwrap(), "container:x");
        assert!(log_config(Some("syslog"), &[]).is_err());
        assert!(log_config(None, &["max-file=3".into()]).is_err());
        assert_eq!(
            log_config(Some("local"), &["max-size=1m".into()])
                .unwrap()
                .driver,
            "local"
        );
        assert!(memory_swap("32m", Some(64 << 20)).is_err());
        assert!(memory_swap("128m", None).is_err());
        assert_eq!(memory_swap("-1", Some(1)).unwrap(), -1);
        assert!(cpuset("0").is_ok());
        assert!(cpuset("999").is_err());
        assert!(cpuset("2-1").is_err());
    }
}
