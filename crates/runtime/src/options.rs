//! What `kiln run` was asked for, and the pure rules that turn it plus the image config into a
//! container config: Docker's ENTRYPOINT/CMD table, environment merging, flag value parsing
//! (`mounts` for `-v`/`--tmpfs`/`--mount`, `security` for capabilities, security options,
//! devices and sysctls, `host` for the other host-side flags and the /etc files).

use std::path::{Path, PathBuf};

use kiln_llb::image::RunConfig;

use crate::error::RuntimeError;
use crate::store::{PortMapping, RestartPolicy};

pub(crate) mod host;
pub(crate) mod mounts;
pub(crate) mod security;

pub(crate) use mounts::{parse_mount, parse_tmpfs, parse_volume};

/// The options of `kiln run` / `kiln create`, as the user typed them.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub image: String,
    /// `--platform`: the manifest of an index to run (`linux/arm64`); the host's by default.
    pub platform: Option<String>,
    /// Arguments after the image: replace the image's CMD.
    pub command: Vec<String>,
    pub name: Option<String>,
    /// `--entrypoint`: replaces the image's ENTRYPOINT and drops its CMD; `""` clears it.
    pub entrypoint: Option<String>,
    /// `-e K=V` or `-e K` (taken from the caller's environment).
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `bridge` (the default), `none`, `host` or a user network's name.
    pub network: Option<String>,
    /// `-v` specs: `/host:/ctr[:ro]`, `name:/ctr[:ro]`, `/ctr`.
    pub volumes: Vec<String>,
    /// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]`.
    pub mounts: Vec<String>,
    /// `--tmpfs /path[:size=…,mode=…]`.
    pub tmpfs: Vec<String>,
    /// `-p [IP:][HOST:]CTR[/tcp|udp]`.
    pub publish: Vec<String>,
    /// `-P`: every port the image exposes, on a random host port.
    pub publish_all: bool,
    /// `-m 512m`.
    pub memory: Option<String>,
    /// `--cpus 1.5`.
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub interactive: bool,
    pub tty: bool,
    /// `--health-*` and `--no-healthcheck`.
    pub health: crate::health::HealthOverrides,
    /// `--security-opt` entries, e.g. `seccomp=unconfined`, `no-new-privileges`.
    pub security_opt: Vec<String>,
    /// `--add-host NAME:IP` (`IP` may be `host-gateway`).
    pub add_hosts: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--init`: a small init as pid 1 reaps orphans and forwards signals.
    pub init: bool,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--label K=V`.
    pub labels: Vec<String>,
    pub label_files: Vec<PathBuf>,
    /// `--group-add GROUP` (name or number).
    pub group_add: Vec<String>,
    /// `--device HOST[:CONTAINER][:rwm]`.
    pub devices: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--sysctl KEY=VALUE` (namespaced parameters only).
    pub sysctls: Vec<String>,
    /// `--shm-size 128m`.
    pub shm_size: Option<String>,
    /// `--ipc host|private|shareable|container:NAME`.
    pub ipc: Option<String>,
    /// `--pid host|container:NAME`.
    pub pid: Option<String>,
    /// `--uts host`.
    pub uts: Option<String>,
    pub stop_signal: Option<String>,
    /// `--stop-timeout SECONDS`.
    pub stop_timeout: Option<i64>,
    /// `--log-driver json-file|local|none`.
    pub log_driver: Option<String>,
    /// `--log-opt max-size=10m`, `max-file=3`.
    pub log_opts: Vec<String>,
    /// `--memory-swap 1g` or `-1`.
    pub memory_swap: Option<String>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub oom_kill_disable: bool,
    /// `--expose PORT[/PROTO]`: exposed as if the image said so (what `-P` publishes).
    pub expose: Vec<String>,
    /// Further names on networks (network name → names) that other members resolve, as
    /// Docker's `--network-alias` per endpoint (what compose gives a service's containers).
    pub network_aliases: std::collections::BTreeMap<String, Vec<String>>,
}

/// Docker's ENTRYPOINT/CMD rules: returns `(entrypoint, cmd)`; the command line is their
/// concatenation. `--entrypoint` replaces the image's ENTRYPOINT and drops the image's CMD
/// (an empty `--entrypoint ""` clears it); arguments after the image replace CMD.
pub(crate) fn resolve_command(
    image: &RunConfig,
    entrypoint: Option<&str>,
    args: &[String],
) -> Result<(Vec<String>, Vec<String>), RuntimeError> {
    let (ep, image_cmd) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if args.is_empty() {
        image_cmd
    } else {
        args.to_vec()
    };
    if ep.is_empty() && cmd.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    Ok((ep, cmd))
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Sets `entry` (`K=V`) in `env`, replacing an earlier value of the same key in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = env_key(&entry).to_string();
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// Reads `--env-file` lines: `K=V`, or `K` alone for the caller's value; `#` comments and blank
/// lines are skipped.
pub(crate) fn read_env_file(path: &Path) -> Result<Vec<String>, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuntimeError::Invalid(format!("failed to read env file {}: {e}", path.display()))
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if env_key(line).is_empty() || env_key(line).contains(char::is_whitespace) {
            return Err(RuntimeError::Invalid(format!(
                "invalid variable name in env file {} line {}: {line:?}",
                path.display(),
                n + 1
            )));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// The container's environment, in Docker's order: PATH (Docker's default), HOSTNAME, TERM
/// with a terminal, then the image's, env files and `-e`, later replacing earlier in place;
/// `-e K` without a value takes the caller's value (and is dropped when the caller has none).
/// HOME comes last, from the user's passwd entry, unless set.
pub(crate) fn merge_env(
    image_env: &[String],
    files: &[String],
    flags: &[String],
    hostname: &str,
    home: &str,
    tty: bool,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    set_env(
        &mut env,
        format!("PATH={}", kiln_executor::sandbox::DEFAULT_PATH),
    );
    set_env(&mut env, format!("HOSTNAME={hostname}"));
    if tty {
        set_env(&mut env, "TERM=xterm".to_string());
    }
    for e in image_env {
        set_env(&mut env, e.clone());
    }
    for e in files.iter().chain(flags) {
        if e.contains('=') {
            set_env(&mut env, e.clone());
        } else if let Ok(v) = std::env::var(e) {
            set_env(&mut env, format!("{e}={v}"));
        }
    }
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Checks a size as a flag parser wants it: bytes, or Docker's reason (`invalid size: 'x'`).
pub fn check_size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|_| format!("invalid size: '{s}'"))
}

/// `512`, `512k`, `64m`, `1g` (binary units, as Docker) into bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, RuntimeError> {
    let bad = || {
        RuntimeError::Invalid(format!(
            "invalid size {s:?}: expected a number with an optional b, k, m or g suffix"
        ))
    };
    let mut lower = s.trim().to_ascii_lowercase();
    // `2kb` means `2k`.
    if lower.len() > 2
        && lower.ends_with('b')
        && lower[..lower.len() - 1].ends_with(['k', 'm', 'g'])
    {
        lower.pop();
    }
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('b') => (&lower[..lower.len() - 1], 1),
        _ => (lower.as_str(), 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// `--cpus 1.5` into thousandths of a CPU.
pub(crate) fn parse_cpus(s: &str) -> Result<u64, RuntimeError> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| RuntimeError::Invalid(format!("invalid --cpus value {s:?}")))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(RuntimeError::Invalid(format!(
            "invalid --cpus value {s:?}: must be a positive number"
        )));
    }
    Ok((n * 1000.0).round().max(1.0) as u64)
}

/// `-p [IP:][HOST:]CTR[/tcp|udp]`. Without a host port (`CTR`, `IP::CTR`) the host port is 0:
/// the kernel picks a free one when the port is bound.
pub(crate) fn parse_publish(s: &str) -> Result<PortMapping, RuntimeError> {
    let bad = |why: &str| RuntimeError::Invalid(format!("invalid port mapping {s:?}: {why}"));
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, p.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if proto == "sctp" {
        return Err(RuntimeError::NotSupported(format!(
            "publishing sctp ports ({s})"
        )));
    }
    if proto != "tcp" && proto != "udp" {
        return Err(bad("protocol must be tcp or udp"));
    }
    if spec.contains('-') {
        return Err(RuntimeError::NotSupported(format!(
            "publishing port ranges ({s})"
        )));
    }
    let port = |p: &str| -> Result<u16, RuntimeError> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad("ports must be numbers from 1 to 65535")),
        }
    };
    // The host address may be an IPv6 literal in brackets, which has colons of its own.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6
                .split_once("]:")
                .ok_or_else(|| bad("expected [IPv6]:HOST:CTR"))?;
            (Some(ip), rest)
        }
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match (ip, parts.as_slice()) {
        (None, [ctr]) => ("", "", *ctr),
        (None, [ctr, host]) => ("", *host, *ctr),
        (None, [ctr, host, ip]) => (*ip, *host, *ctr),
        (Some(ip), [ctr, host]) => (ip, *host, *ctr),
        _ => return Err(bad("expected [IP:][HOST:]CTR")),
    };
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("the host address is not an IP address"));
    }
    Ok(PortMapping {
        host_ip: ip.to_string(),
        host_port: if host.is_empty() { 0 } else { port(host)? },
        container_port: port(ctr)?,
        protocol: proto,
    })
}

/// The container's published ports: each `-p`, then with `-P` every port the image exposes
/// (`80/tcp`, `53/udp`, `8080`) that no `-p` maps, on a random host port of every address.
pub(crate) fn published_ports<'a>(
    publish: &[String],
    publish_all: bool,
    exposed: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<PortMapping>, RuntimeError> {
    let mut out = Vec::new();
    for p in publish {
        out.push(parse_publish(p)?);
    }
    if publish_all {
        for e in exposed {
            let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let mapping = parse_publish(&format!("{port}/{proto}")).map_err(|_| {
                RuntimeError::Invalid(format!("the image exposes an invalid port {e:?}"))
            })?;
            let mapped = out.iter().any(|m: &PortMapping| {
                m.container_port == mapping.container_port && m.protocol == mapping.protocol
            });
            if !mapped {
                out.push(mapping);
            }
        }
    }
    Ok(out)
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub(crate) fn parse_restart(s: &str) -> Result<RestartPolicy, RuntimeError> {
    match s.split_once(':') {
        None if s == "no" || s.is_empty() => Ok(RestartPolicy::No),
        None if s == "always" => Ok(RestartPolicy::Always),
        None if s == "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        None if s == "on-failure" => Ok(RestartPolicy::OnFailure(0)),
        Some(("on-failure", n)) => n.parse().map(RestartPolicy::OnFailure).map_err(|_| {
            RuntimeError::Invalid(format!("invalid restart policy {s:?}: bad retry count"))
        }),
        _ => Err(RuntimeError::Invalid(format!(
            "invalid restart policy {s:?}: expected no, always, unless-stopped or on-failure[:N]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        RunConfig {
            entrypoint: ep.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..RunConfig::default()
        }
    }

    fn argv(c: &RunConfig, ep: Option<&str>, args: &[&str]) -> Result<Vec<String>, RuntimeError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        resolve_command(c, ep, &args).map(|(mut e, c)| {
            e.extend(c);
            e
        })
    }

    #[test]
    fn entrypoint_cmd_table() {
        // Dockerfile reference: "Understand how CMD and ENTRYPOINT interact".
        let none = cfg(None, None);
        assert!(matches!(
            argv(&none, None, &[]),
            Err(RuntimeError::NoCommand)
        ));
        let cmd_only = cfg(None, Some(&["p1_cmd", "p2_cmd"]));
        assert_eq!(argv(&cmd_only, None, &[]).unwrap(), ["p1_cmd", "p2_cmd"]);
        let exec_ep = cfg(Some(&["exec_entry", "p1_entry"]), None);
        assert_eq!(
            argv(&exec_ep, None, &[]).unwrap(),
            ["exec_entry", "p1_entry"]
        );
        let both = cfg(
            Some(&["exec_entry", "p1_entry"]),
            Some(&["p1_cmd", "p2_cmd"]),
        );
        assert_eq!(
            argv(&both, None, &[]).unwrap(),
            ["exec_entry", "p1_entry", "p1_cmd", "p2_cmd"]
        );
        let shell_ep = cfg(
            Some(&["/bin/sh", "-c", "exec_entry p1_entry"]),
            Some(&["p1_cmd"]),
        );
        assert_eq!(
            argv(&shell_ep, None, &[]).unwrap(),
            ["/bin/sh", "-c", "exec_entry p1_entry", "p1_cmd"]
        );
        // Arguments after the image replace CMD, keep ENTRYPOINT.
        assert_eq!(
            argv(&both, None, &["x", "y"]).unwrap(),
            ["exec_entry", "p1_entry", "x", "y"]
        );
        // --entrypoint replaces ENTRYPOINT and drops the image's CMD.
        assert_eq!(argv(&both, Some("ls"), &[]).unwrap(), ["ls"]);
        assert_eq!(argv(&both, Some("ls"), &["-l"]).unwrap(), ["ls", "-l"]);
        assert!(matches!(
            argv(&both, Some(""), &[]),
            Err(RuntimeError::NoCommand)
        ));
        assert_eq!(argv(&both, Some(""), &["echo"]).unwrap(), ["echo"]);
    }

    #[test]
    fn env_merges_in_order() {
        let env = merge_env(
            &["PATH=/img".into(), "A=1".into(), "B=2".into()],
            &["B=file".into()],
            &["A=flag".into(), "C=3".into()],
            "h",
            "/root",
            false,
        );
        assert_eq!(
            env,
            [
                "PATH=/img",
                "HOSTNAME=h",
                "A=flag",
                "B=file",
                "C=3",
                "HOME=/root"
            ]
        );
    }

    #[test]
    fn parses_flag_values() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1500);
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 8080, 80)
        );
        assert_eq!(parse_publish("8080:80/tcp").unwrap().host_ip, "0.0.0.0");
        assert!(parse_publish("x:80").is_err());
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            RestartPolicy::OnFailure(3)
        );
        assert!(parse_restart("sometimes").is_err());
    }

    fn mapping(s: &str) -> (String, u16, u16, String) {
        let p = parse_publish(s).unwrap();
        (p.host_ip, p.host_port, p.container_port, p.protocol)
    }

    #[test]
    fn publish_takes_udp_random_host_ports_and_ipv6_hosts() {
        let m = |ip: &str, h, c, p: &str| (ip.to_string(), h, c, p.to_string());
        assert_eq!(mapping("53:53/udp"), m("0.0.0.0", 53, 53, "udp"));
        assert_eq!(mapping("80"), m("0.0.0.0", 0, 80, "tcp"));
        assert_eq!(mapping("127.0.0.1::80"), m("127.0.0.1", 0, 80, "tcp"));
        assert_eq!(mapping(":8080:80/TCP"), m("0.0.0.0", 8080, 80, "tcp"));
        assert_eq!(mapping("[::1]:8080:80"), m("::1", 8080, 80, "tcp"));
        assert_eq!(mapping("[::1]::80/udp"), m("::1", 0, 80, "udp"));
        assert!(parse_publish("80/icmp").is_err());
        assert!(parse_publish("0").is_err());
        assert!(parse_publish("1.2.3:80:80").is_err());
        assert!(matches!(
            parse_publish("80/sctp"),
            Err(RuntimeError::NotSupported(_))
        ));
        assert!(matches!(
            parse_publish("8000-8010:80"),
            Err(RuntimeError::NotSupported(_))
        ));
    }

    #[test]
    fn publish_all_adds_exposed_ports_that_no_flag_maps() {
        let exposed: Vec<String> = vec!["80/tcp".into(), "53/udp".into(), "9000".into()];
        let ports = published_ports(&["8080:80".to_string()], true, &exposed).unwrap();
        let got: Vec<(u16, u16, &str)> = ports
            .iter()
            .map(|p| (p.host_port, p.container_port, p.protocol.as_str()))
            .collect();
        assert_eq!(got, [(8080, 80, "tcp"), (0, 53, "udp"), (0, 9000, "tcp")]);
        assert_eq!(published_ports(&[], false, &exposed).unwrap(), vec![]);
        let bad = vec!["http".to_string()];
        assert!(published_ports(&[], true, &bad).is_err());
    }
}
