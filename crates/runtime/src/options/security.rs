//! The security flags of `kiln run`: capabilities (`--cap-add`, `--cap-drop`,
//! `--privileged`), `--security-opt`, `--device` and `--sysctl`, checked as Docker checks
//! them.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use kiln_executor::sandbox::{CAPABILITY_NAMES, DOCKER_DEFAULT_CAPS, Device, DeviceKind, Seccomp};

use crate::error::RuntimeError;
use crate::store::DeviceMapping;

/// `sys_admin`, `SYS_ADMIN`, `CAP_SYS_ADMIN` → `CAP_SYS_ADMIN` (and `all` → `ALL`).
pub(crate) fn normalize_cap(name: &str) -> Result<String, RuntimeError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if CAPABILITY_NAMES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::Invalid(format!(
            "unknown capability: {name:?}"
        )))
    }
}

fn cap_bit(name: &str) -> u64 {
    CAPABILITY_NAMES
        .iter()
        .position(|n| *n == name)
        .map_or(0, |i| 1u64 << i)
}

/// The capabilities this process may hand out: its own bounding set (a host may withhold
/// some, e.g. a VM's root without `CAP_SYS_RESOURCE`).
pub(crate) fn available_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The container's capability set, by Docker's rules: everything when privileged or with
/// `--cap-add ALL` (less the drops), only the adds with `--cap-drop ALL`, else the default
/// set less the drops plus the adds. "Everything" is what kiln itself holds; a capability
/// asked for by name that kiln does not hold is an error rather than silently missing.
pub(crate) fn capabilities(
    adds: &[String],
    drops: &[String],
    privileged: bool,
) -> Result<u64, RuntimeError> {
    let normalize = |names: &[String]| -> Result<Vec<String>, RuntimeError> {
        names.iter().map(|n| normalize_cap(n)).collect()
    };
    let (adds, drops) = (normalize(adds)?, normalize(drops)?);
    let (adds, drops) = (adds.as_slice(), drops.as_slice());
    let available = available_caps();
    if privileged {
        return Ok(available);
    }
    let bits = |names: &[String]| {
        names
            .iter()
            .filter(|n| *n != "ALL")
            .fold(0u64, |m, n| m | cap_bit(n))
    };
    let (add, drop) = (bits(adds), bits(drops));
    let caps = if adds.iter().any(|a| a == "ALL") {
        available & !drop
    } else if drops.iter().any(|d| d == "ALL") {
        add
    } else {
        (DOCKER_DEFAULT_CAPS & !drop) | add
    };
    let missing = add & !available;
    if missing != 0 {
        let names: Vec<&str> = (0..64)
            .filter(|i| missing & (1u64 << i) != 0)
            .filter_map(|i| CAPABILITY_NAMES.get(i).copied())
            .collect();
        return Err(RuntimeError::Invalid(format!(
            "--cap-add {}: this kiln process does not hold the capability (it is not in the host's bounding set)",
            names.join(", ")
        )));
    }
    Ok(caps & available)
}

/// What `--security-opt` entries set up: how Docker records them (a profile file's path
/// replaced by its text, as Docker's client does), and `no-new-privileges`.
pub(crate) struct SecurityOpts {
    pub(crate) recorded: Vec<String>,
    pub(crate) no_new_privileges: bool,
}

/// Checks `--security-opt` values (Docker accepts `=` or `:` as the separator):
/// `seccomp=unconfined|builtin|PROFILE.json`, `no-new-privileges[=true|false]`,
/// `apparmor=unconfined` and `label=disable` (kiln applies neither AppArmor nor SELinux
/// labels, so these are what it does anyway), `systempaths=unconfined`. Anything else is
/// refused by name.
pub(crate) fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, RuntimeError> {
    let mut out = SecurityOpts {
        recorded: Vec::new(),
        no_new_privileges: false,
    };
    for o in opts {
        let (key, value) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None) => {
                out.no_new_privileges = true;
                out.recorded.push(o.clone());
            }
            ("no-new-privileges", Some(v)) => {
                out.no_new_privileges = match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(RuntimeError::Invalid(format!(
                            "invalid --security-opt {o:?}: no-new-privileges takes true or false"
                        )));
                    }
                };
                out.recorded.push(o.clone());
            }
            ("seccomp", Some(v @ ("unconfined" | "builtin" | "default"))) => {
                out.recorded.push(format!("seccomp={v}"))
            }
            ("seccomp", Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    RuntimeError::Invalid(format!("opening seccomp profile ({path}) failed: {e}"))
                })?;
                Seccomp::from_security_opt(&text)
                    .map_err(|e| RuntimeError::Invalid(format!("seccomp profile {path}: {e}")))?;
                out.recorded.push(format!("seccomp={text}"));
            }
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {
                out.recorded.push(o.clone())
            }
            ("systempaths", Some("unconfined")) => out.recorded.push(o.clone()),
            _ => {
                return Err(RuntimeError::NotSupported(format!("--security-opt {o}")));
            }
        }
    }
    Ok(out)
}

/// The seccomp filter recorded `--security-opt` entries ask for (the last one wins).
pub(crate) fn seccomp_of(security_opt: &[String]) -> Seccomp {
    security_opt
        .iter()
        .rev()
        .filter_map(|o| o.strip_prefix("seccomp="))
        .find_map(|v| Seccomp::from_security_opt(v).ok())
        .unwrap_or_default()
}

/// Whether `systempaths=unconfined` was asked for (no masked or read-only `/proc` paths).
pub(crate) fn system_paths_unconfined(security_opt: &[String]) -> bool {
    security_opt
        .iter()
        .any(|o| o == "systempaths=unconfined" || o == "systempaths:unconfined")
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (permissions some of `rwm`, default `rwm`).
pub(crate) fn parse_device(s: &str) -> Result<DeviceMapping, RuntimeError> {
    let bad = |why: &str| RuntimeError::Invalid(format!("invalid device mode {s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    let is_mode = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_mode(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_mode(p) => (*h, *c, *p),
        [_, _, _] => return Err(bad("permissions must be some of r, w and m")),
        _ => return Err(bad("expected HOST[:CONTAINER][:PERMISSIONS]")),
    };
    if !host.starts_with('/') || !ctr.starts_with('/') {
        return Err(bad("device paths must be absolute"));
    }
    let meta = std::fs::metadata(host).map_err(|e| {
        RuntimeError::Invalid(format!(
            "error gathering device information while adding custom device {host:?}: {e}"
        ))
    })?;
    let ft = meta.file_type();
    if !(ft.is_char_device() || ft.is_block_device() || ft.is_dir()) {
        return Err(RuntimeError::Invalid(format!(
            "{host} is not a device node"
        )));
    }
    Ok(DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: ctr.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// The sandbox devices of a mapping, read from the host now: its node, or for a directory
/// every device node below it (as Docker does).
pub(crate) fn devices_of(m: &DeviceMapping) -> Result<Vec<Device>, RuntimeError> {
    let mut out = Vec::new();
    let host = Path::new(&m.path_on_host);
    let mut stack = vec![(
        host.to_path_buf(),
        std::path::PathBuf::from(&m.path_in_container),
    )];
    while let Some((h, c)) = stack.pop() {
        let meta = std::fs::metadata(&h)
            .map_err(|e| RuntimeError::Invalid(format!("device {} is gone: {e}", h.display())))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&h) {
                for e in rd.flatten() {
                    stack.push((e.path(), c.join(e.file_name())));
                }
            }
            continue;
        }
        let kind = if ft.is_char_device() {
            DeviceKind::Char
        } else if ft.is_block_device() {
            DeviceKind::Block
        } else {
            continue;
        };
        let rdev = meta.rdev();
        out.push(Device {
            host_path: h,
            path: c,
            kind,
            major: nix::sys::stat::major(rdev) as u32,
            minor: nix::sys::stat::minor(rdev) as u32,
            access: m.cgroup_permissions.clone(),
        });
    }
    Ok(out)
}

/// Every device node of the host's `/dev` (a privileged container's devices), but the ones
/// the sandbox makes itself and the terminals.
pub(crate) fn host_devices() -> Vec<Device> {
    let mapping = DeviceMapping {
        path_on_host: "/dev".into(),
        path_in_container: "/dev".into(),
        cgroup_permissions: "rwm".into(),
    };
    let skip = |p: &Path| {
        let s = p.to_string_lossy();
        s.starts_with("/dev/pts/")
            || s.starts_with("/dev/shm/")
            || s.starts_with("/dev/mqueue/")
            || matches!(
                s.as_ref(),
                "/dev/null"
                    | "/dev/zero"
                    | "/dev/full"
                    | "/dev/random"
                    | "/dev/urandom"
                    | "/dev/tty"
                    | "/dev/ptmx"
                    | "/dev/console"
            )
    };
    devices_of(&mapping)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !skip(&d.path))
        .collect()
}

/// The kernel parameters of an IPC namespace (Docker's list).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// `--sysctl KEY=VALUE`: only parameters of a namespace the container has of its own, as
/// Docker allows (IPC ones and `fs.mqueue.*` unless `--ipc host`, `net.*` unless
/// `--network host`).
pub(crate) fn parse_sysctl(
    s: &str,
    ipc_host: bool,
    net_host: bool,
) -> Result<(String, String), RuntimeError> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--sysctl\" flag: sysctl '{s}' is not whitelisted"
        ))
    })?;
    let k = k.trim();
    let ipc = IPC_SYSCTLS.contains(&k) || k.starts_with("fs.mqueue.");
    let net = k.starts_with("net.");
    if !(ipc || net) {
        return Err(RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--sysctl\" flag: sysctl '{s}' is not whitelisted"
        )));
    }
    if ipc && ipc_host {
        return Err(RuntimeError::Invalid(format!(
            "sysctl {k:?} is not allowed in the host's IPC namespace"
        )));
    }
    if net && net_host {
        return Err(RuntimeError::Invalid(format!(
            "sysctl {k:?} is not allowed in the host's network namespace"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| normalize_cap(s).unwrap()).collect()
    }

    #[test]
    fn capabilities_follow_dockers_rules() {
        let have = available_caps();
        let sys_admin = 1u64 << 21;
        let net_raw = 1u64 << 13;
        assert_eq!(
            capabilities(&[], &[], false).unwrap(),
            DOCKER_DEFAULT_CAPS & have
        );
        assert_eq!(capabilities(&[], &names(&["all"]), false).unwrap(), 0);
        assert_eq!(
            capabilities(&names(&["chown"]), &names(&["ALL"]), false).unwrap(),
            1
        );
        assert_eq!(
            capabilities(&names(&["sys_admin"]), &names(&["CAP_NET_RAW"]), false).unwrap(),
            ((DOCKER_DEFAULT_CAPS & !net_raw) | sys_admin) & have
        );
        assert_eq!(capabilities(&[], &[], true).unwrap(), have);
        assert_eq!(
            capabilities(&names(&["ALL"]), &names(&["sys_admin"]), false).unwrap(),
            have & !sys_admin
        );
        assert!(normalize_cap("CAP_NOPE").is_err());
    }

    #[test]
    fn security_opts() {
        let v = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = parse_security_opts(&v(&["no-new-privileges", "seccomp:unconfined"])).unwrap();
        assert!(p.no_new_privileges);
        assert_eq!(p.recorded, ["no-new-privileges", "seccomp=unconfined"]);
        assert_eq!(seccomp_of(&p.recorded), Seccomp::Unconfined);
        assert_eq!(seccomp_of(&[]), Seccomp::DockerDefault);
        assert!(
            !parse_security_opts(&v(&["no-new-privileges=false"]))
                .unwrap()
                .no_new_privileges
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let p = parse_security_opts(&v(&[&format!("seccomp={}", f.display())])).unwrap();
        assert!(matches!(seccomp_of(&p.recorded), Seccomp::Custom(_)));
        assert!(parse_security_opts(&v(&["seccomp=/no/such.json"])).is_err());
        for bad in ["apparmor=docker-default", "label=type:x"] {
            assert!(matches!(
                parse_security_opts(&v(&[bad])),
                Err(RuntimeError::NotSupported(_))
            ));
        }
    }

    #[test]
    fn devices_and_sysctls() {
        let d = parse_device("/dev/null:/dev/mynull:r").unwrap();
        assert_eq!(d.path_in_container, "/dev/mynull");
        assert_eq!(d.cgroup_permissions, "r");
        assert_eq!(
            parse_device("/dev/zero:rw").unwrap().path_in_container,
            "/dev/zero"
        );
        assert!(parse_device("/etc/passwd").is_err());
        let devs = devices_of(&d).unwrap();
        assert_eq!((devs[0].major, devs[0].minor), (1, 3));
        assert_eq!(
            parse_sysctl("net.ipv4.ip_forward=1", false, false).unwrap(),
            ("net.ipv4.ip_forward".into(), "1".into())
        );
        assert!(parse_sysctl("vm.swappiness=1", false, false).is_err());
        assert!(parse_sysctl("kernel.shmmax=1", true, false).is_err());
        assert!(parse_sysctl("net.core.somaxconn=1", false, true).is_err());
    }
}
