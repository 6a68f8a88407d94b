//! Running a [`SandboxSpec`] with an external OCI runtime (`runc`, `crun`) instead of our own
//! code: the spec becomes a bundle's `config.json`, the runtime runs it in the foreground.
//!
//! Differences from the built-in sandbox: `ExitInfo::oom_killed` is always false (the runtime
//! removes its cgroup before we could look), a command killed by signal N is reported from
//! the runtime's exit code 128+N, and the runtime decides how /dev is populated.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use super::io::{CancelToken, ExitInfo, ExitStatus, OutputSink, Stream};
use super::spec::{CAPABILITY_NAMES, Mount, Namespace, Network, RootFs, SandboxSpec};
use super::validate::validate;
use super::{SandboxError, etc, process};
use crate::sys;

fn caps(mask: u64) -> Vec<&'static str> {
    CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// The OCI runtime spec (`config.json`) for `spec`, with the rootfs at `rootfs` and the
/// generated /etc files in `etc_dir`; `cgroups_path` names the cgroup the runtime creates.
pub fn config(spec: &SandboxSpec, rootfs: &Path, etc_dir: &Path, cgroups_path: &str) -> Value {
    let c = caps(spec.capabilities);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for m in &spec.mounts {
        mounts.push(match m {
            Mount::Bind {
                source,
                target,
                readonly,
            } => {
                let mut opts = vec!["rbind"];
                if *readonly {
                    opts.push("ro");
                }
                json!({"destination": target, "type": "bind", "source": source, "options": opts})
            }
            // Refused by `run` before a config is made.
            Mount::BindFrom { target, .. } => {
                json!({"destination": target, "type": "bind", "source": "/nonexistent", "options": ["rbind"]})
            }
            Mount::Tmpfs {
                target,
                size,
                mode,
                readonly,
                noexec,
            } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                if *noexec {
                    opts.push("noexec".into());
                }
                if let Some(mode) = mode {
                    opts.push(format!("mode={mode:o}"));
                }
                if let Some(size) = size {
                    opts.push(format!("size={size}"));
                }
                if *readonly {
                    opts.push("ro".into());
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
        });
    }
    for (inner, name, _) in etc::files(spec) {
        if spec.mounts.iter().any(|m| m.target() == Path::new(inner)) {
            continue;
        }
        mounts.push(json!({"destination": inner, "type": "bind",
                           "source": etc_dir.join(name), "options": ["rbind"]}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match &spec.network {
        Network::None => namespaces.push(json!({"type": "network"})),
        Network::Host => {}
        Network::Namespace(p) => namespaces.push(json!({"type": "network", "path": p})),
    }
    let mut resources = serde_json::Map::new();
    if let Some(m) = spec.cgroup.memory_bytes {
        resources.insert("memory".into(), json!({"limit": m, "swap": m}));
    }
    if let Some(q) = spec.cgroup.cpu {
        resources.insert(
            "cpu".into(),
            json!({"quota": q.quota_us, "period": q.period_us}),
        );
    }
    if let Some(p) = spec.cgroup.pids_max {
        resources.insert("pids".into(), json!({"limit": p}));
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.user.uid, "gid": spec.user.gid,
                     "additionalGids": spec.user.additional_gids},
            "args": spec.argv,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {"bounding": c, "effective": c, "permitted": c},
            "rlimits": spec.rlimits.iter().map(|r| json!({
                "type": r.resource.oci_name(), "hard": r.hard, "soft": r.soft})).collect::<Vec<_>>(),
            "noNewPrivileges": spec.no_new_privs,
        },
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": spec.masked_paths,
            "readonlyPaths": spec.readonly_paths,
            "resources": resources,
            "cgroupsPath": cgroups_path,
        },
    });
    // The runtime compiles the same rules with libseccomp (which also covers x32 and i386).
    if let Some(profile) = super::seccomp::oci_profile(&spec.seccomp, spec.capabilities) {
        config["linux"]["seccomp"] = profile;
    }
    config
}

fn setup_err(what: String) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Setup { what, source }
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidSpec(format!("path {} contains a NUL byte", p.display())))
}

/// Undoes what [`run`] set up on the host: the overlay mount, stubs, the bundle.
struct Bundle {
    dir: PathBuf,
    mounted: Option<CString>,
    stub_root: PathBuf,
    created: Vec<PathBuf>,
    upper_had: Vec<PathBuf>,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take()
            && let Err(e) = sys::unmount_detach(&m)
        {
            tracing::warn!(error = %e, "failed to unmount runc bundle rootfs");
        }
        for e in etc::remove_stubs(&self.stub_root, &self.created, &self.upper_had) {
            tracing::warn!(error = %e, "runc stub left behind");
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `spec` with the OCI runtime binary `runtime` (`runc run --bundle`), streaming output
/// to `io`. An overlay rootfs is mounted on the host for the runtime's sake and unmounted after.
pub fn run(
    runtime: &Path,
    spec: &SandboxSpec,
    io: &mut dyn OutputSink,
    cancel: &CancelToken,
) -> Result<ExitInfo, SandboxError> {
    validate(spec)?;
    if spec.tty {
        return Err(SandboxError::NotSupported(
            "a pseudo-terminal with an external OCI runtime".into(),
        ));
    }
    // What only the built-in sandbox does (the benchmark's spec needs none of it).
    let unsupported = [
        (spec.init, "an init"),
        (!spec.devices.is_empty(), "extra devices"),
        (spec.cgroup.container, "container cgroups"),
        (
            spec.pid_namespace != Namespace::New
                || spec.ipc_namespace != Namespace::New
                || spec.uts_namespace != Namespace::New,
            "shared namespaces",
        ),
        (
            spec.mounts
                .iter()
                .any(|m| matches!(m, Mount::BindFrom { .. })),
            "mounts from another namespace",
        ),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(SandboxError::NotSupported(format!(
            "{what} with an external OCI runtime"
        )));
    }
    if cancel.is_cancelled() {
        return Err(SandboxError::Cancelled);
    }
    let started = Instant::now();
    let id = format!("kiln-{}", process::new_id());
    let dir = spec.state_dir.join(&id);
    fs::create_dir_all(&dir).map_err(setup_err(format!(
        "failed to create bundle {}",
        dir.display()
    )))?;
    let mut bundle = Bundle {
        dir: dir.clone(),
        mounted: None,
        stub_root: PathBuf::new(),
        created: Vec::new(),
        upper_had: Vec::new(),
    };
    let rootfs = match &spec.rootfs {
        RootFs::Path(p) => {
            bundle.stub_root = p.clone();
            p.clone()
        }
        RootFs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => {
            bundle.stub_root = upperdir.clone();
            let target = dir.join("rootfs");
            fs::create_dir(&target)
                .map_err(setup_err(format!("failed to create {}", target.display())))?;
            let fd = if lowerdirs.is_empty() {
                sys::open_tree_clone(&cpath(upperdir)?, true)
                    .map_err(setup_err(format!("failed to bind {}", upperdir.display())))?
            } else {
                let lowers = lowerdirs
                    .iter()
                    .map(|l| cpath(l))
                    .collect::<Result<Vec<_>, _>>()?;
                sys::overlay_mount_fd(&lowers, &cpath(upperdir)?, &cpath(workdir)?).map_err(
                    |(step, source)| SandboxError::Setup {
                        what: format!("failed to mount overlay rootfs ({step})"),
                        source,
                    },
                )?
            };
            let t = cpath(&target)?;
            sys::attach_mount(fd.as_fd(), &t).map_err(setup_err(format!(
                "failed to mount rootfs at {}",
                target.display()
            )))?;
            bundle.mounted = Some(t);
            target
        }
    };
    // The runtime creates missing mount targets and leaves them; note which exist now.
    let mut targets: Vec<PathBuf> = [
        "/proc",
        "/dev",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    targets.extend(spec.mounts.iter().map(|m| m.target().to_path_buf()));
    let mut missing = Vec::new();
    for t in &targets {
        let mut anc: Vec<&Path> = t.ancestors().filter(|a| *a != Path::new("/")).collect();
        anc.reverse();
        for a in anc {
            if etc::safe_join(&rootfs, a).is_some_and(|p| fs::symlink_metadata(p).is_err())
                && !missing.iter().any(|m: &PathBuf| m == a)
            {
                missing.push(a.to_path_buf());
            }
        }
    }
    bundle.upper_had = etc::existing_ancestors(&bundle.stub_root, &missing);
    bundle.created = missing;

    for (_, name, content) in etc::files(spec) {
        fs::write(dir.join(name), content)
            .map_err(setup_err(format!("failed to write {name} for the bundle")))?;
    }
    let cgroups_path = format!("/{}/{id}", spec.cgroup.parent.display());
    let config = config(spec, &rootfs, &dir, &cgroups_path);
    fs::write(dir.join("config.json"), config.to_string())
        .map_err(setup_err("failed to write config.json".into()))?;

    let mut child = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(&dir)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(setup_err(format!("failed to start {}", runtime.display())))?;
    let pidfd = sys::pidfd_open(child.id()).map_err(setup_err(format!(
        "failed to open a pidfd for {}",
        runtime.display()
    )))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    for fd in [
        out.as_ref().map(|o| o.as_fd()),
        err.as_ref().map(|e| e.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        sys::set_nonblocking(fd, true).map_err(setup_err("failed to configure pipes".into()))?;
    }
    let mut cancelled = false;
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    while !(exited && out.is_none() && err.is_none()) {
        let mut fds = Vec::new();
        let mut kinds = Vec::new();
        if let Some(o) = &out {
            fds.push((o.as_fd(), false));
            kinds.push(0);
        }
        if let Some(e) = &err {
            fds.push((e.as_fd(), false));
            kinds.push(1);
        }
        if !exited {
            fds.push((pidfd.as_fd(), false));
            kinds.push(2);
        }
        if !cancelled {
            fds.push((cancel.fd(), false));
            kinds.push(3);
        }
        let timeout = if exited { 5000 } else { -1 };
        let ready = sys::poll(&fds, timeout).map_err(setup_err("failed to poll runtime".into()))?;
        drop(fds);
        let Some(ready) = ready else {
            break;
        };
        for (kind, r) in kinds.into_iter().zip(ready) {
            if !(r.readable || r.hangup) {
                continue;
            }
            match kind {
                0 => pump(&mut out, Stream::Stdout, &mut buf, io),
                1 => pump_err(&mut err, &mut buf, io),
                2 => exited = true,
                _ => {
                    cancelled = true;
                    let _ = Command::new(runtime)
                        .args(["kill", id.as_str(), "KILL"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
    let status = child.wait().map_err(setup_err(format!(
        "failed to wait for {}",
        runtime.display()
    )))?;
    let wall_time = started.elapsed();
    let _ = Command::new(runtime)
        .args(["delete", "--force", id.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    drop(bundle);
    if cancelled {
        return Err(SandboxError::Cancelled);
    }
    use std::os::unix::process::ExitStatusExt;
    let status = match (status.code(), status.signal()) {
        (Some(c), _) if c > 128 && c <= 128 + 64 => ExitStatus::Signal(c - 128),
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Code(-1),
    };
    Ok(ExitInfo {
        status,
        oom_killed: false,
        wall_time,
    })
}

fn pump<R: Read>(slot: &mut Option<R>, stream: Stream, buf: &mut [u8], io: &mut dyn OutputSink) {
    if let Some(r) = slot {
        match r.read(buf) {
            Ok(0) => *slot = None,
            Ok(n) => io.write(stream, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => *slot = None,
        }
    }
}

fn pump_err<R: Read>(slot: &mut Option<R>, buf: &mut [u8], io: &mut dyn OutputSink) {
    pump(slot, Stream::Stderr, buf, io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{CpuQuota, Rlimit, RlimitResource};

    #[test]
    fn config_carries_dockers_defaults_and_the_spec() {
        let mut spec = SandboxSpec::new(RootFs::Path("/r".into()), vec!["sh".into()]);
        spec.network = Network::Namespace("/run/netns/x".into());
        spec.cgroup.memory_bytes = Some(1 << 20);
        spec.cgroup.cpu = Some(CpuQuota {
            quota_us: 50_000,
            period_us: 100_000,
        });
        spec.rlimits.push(Rlimit {
            resource: RlimitResource::Nofile,
            soft: 10,
            hard: 20,
        });
        let c = config(&spec, Path::new("/r"), Path::new("/b"), "/kiln/x");
        let bounding: Vec<&str> = c["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            bounding,
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_CHROOT",
                "CAP_MKNOD",
                "CAP_AUDIT_WRITE",
                "CAP_SETFCAP"
            ]
        );
        let ns = &c["linux"]["namespaces"];
        assert!(
            ns.as_array()
                .unwrap()
                .contains(&json!({"type": "network", "path": "/run/netns/x"}))
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(c["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(c["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
        let dests: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(dests.contains(&"/etc/resolv.conf") && dests.contains(&"/dev/pts"));
    }
}
