//! The sandbox spec of one start of a container: its rootfs, user and groups as Docker
//! computes them, capabilities, namespaces (its own, the host's, or another container's),
//! cgroups, mounts, devices and the /etc files Docker writes.

use std::path::PathBuf;

use kiln_executor::sandbox::{
    CgroupLimits, CpuQuota, Mount, Namespace, Network, RootFs, SandboxSpec, Seccomp, User,
};
use kiln_executor::snapshot::SnapshotId;

use super::{Runtime, read_from_layers};
use crate::error::RuntimeError;
use crate::options::{host, security};
use crate::store::{self, Container, ContainerConfig, MountConfig, NetworkMode, Status};
use crate::volume;

impl Runtime {
    /// The sandbox spec for one start of `c`.
    pub(crate) fn sandbox_spec(&self, c: &Container) -> Result<SandboxSpec, RuntimeError> {
        let cfg = &c.config;
        let hs = &cfg.host;
        let top = cfg.snapshot.as_deref().map(SnapshotId::parse).transpose()?;
        let layers = self.layers(top.as_ref(), &c.dir)?;
        let upper = c.dir.join("upper");
        let rootfs = if layers.len() == 1 {
            RootFs::Path(upper)
        } else {
            RootFs::Overlay {
                lowerdirs: layers[1..].to_vec(),
                upperdir: upper,
                workdir: c.dir.join("work"),
            }
        };
        let mut spec = SandboxSpec::new(rootfs, cfg.argv());
        spec.env = cfg.env.clone();
        spec.cwd = PathBuf::from(&cfg.working_dir);
        spec.user = user_of(cfg, &|p| read_from_layers(&layers, p))?;
        spec.hostname = cfg.hostname.clone();
        spec.readonly_rootfs = cfg.read_only;
        spec.tty = cfg.tty;
        spec.init = hs.init;
        spec.capabilities = capabilities_of(cfg)?;
        spec.no_new_privs = hs.no_new_privileges;
        spec.seccomp = seccomp_of(cfg);
        spec.rlimits = hs.ulimits.iter().filter_map(host::rlimit).collect();
        spec.sysctls = hs.sysctls.clone().into_iter().collect();
        spec.shm_size = hs.shm_size;
        if hs.privileged || security::system_paths_unconfined(&cfg.security_opt) {
            spec.masked_paths.clear();
            spec.readonly_paths.clear();
        }
        if hs.privileged {
            spec.sysfs_writable = true;
            spec.devices = security::host_devices();
        }
        for d in &hs.devices {
            spec.devices.extend(security::devices_of(d)?);
        }
        spec.uts_namespace = match hs.uts_mode.as_str() {
            "host" => Namespace::Host,
            _ => Namespace::New,
        };
        spec.pid_namespace = self.namespace_of(&hs.pid_mode, "pid")?;
        spec.ipc_namespace = self.namespace_of(&hs.ipc_mode, "ipc")?;
        if let Namespace::Join(ns) = &spec.ipc_namespace {
            // The other container's /dev/shm comes with its IPC namespace.
            spec.mounts.push(Mount::BindFrom {
                namespace: ns.with_file_name("mnt"),
                source: "/dev/shm".into(),
                target: "/dev/shm".into(),
                readonly: false,
            });
        }
        let host_resolv = host::host_resolv_conf();
        let own_ip = cfg.ip.as_deref().map(|ip| (ip, cfg.hostname.as_str()));
        spec.network = match cfg.network {
            NetworkMode::None => {
                spec.hosts = Some(host::hosts_file(&hs.extra_hosts, None));
                Network::None
            }
            NetworkMode::Host => {
                let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                hosts.push_str(&host::extra_host_lines(&hs.extra_hosts));
                spec.hosts = Some(hosts);
                Network::Host
            }
            NetworkMode::Named => {
                let name = cfg.network_name.as_deref().unwrap_or_default();
                if crate::network::has_names(name) {
                    // Kept up to date with the network's members (rewritten in place).
                    spec.mounts.push(Mount::Bind {
                        source: crate::network::member_hosts_path(&c.dir),
                        target: "/etc/hosts".into(),
                        readonly: false,
                    });
                } else {
                    spec.hosts = Some(host::hosts_file(&hs.extra_hosts, own_ip));
                }
                Network::Namespace(crate::network::netns_path(&cfg.id))
            }
        };
        spec.resolv_conf = Some(host::resolv_conf(
            &host_resolv,
            cfg.network == NetworkMode::Host,
            &hs.dns,
            &hs.dns_search,
            &hs.dns_options,
        ));
        spec.state_dir = self.root().join("run");
        spec.cgroup = CgroupLimits {
            container: true,
            memory_bytes: cfg.memory,
            memory_swap: hs.memory_swap,
            oom_kill_disable: hs.oom_kill_disable,
            cpu: cfg.cpus_millis.map(|m| CpuQuota {
                quota_us: m * 100,
                period_us: 100_000,
            }),
            cpu_shares: hs.cpu_shares,
            cpuset_cpus: hs.cpuset_cpus.clone(),
            pids_max: cfg.pids_limit,
            ..CgroupLimits::default()
        };
        for m in &cfg.mounts {
            spec.mounts.push(match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
                    ..
                } => Mount::Bind {
                    source: source.clone(),
                    target: target.into(),
                    readonly: *readonly,
                },
                MountConfig::Volume {
                    name,
                    target,
                    readonly,
                    ..
                } => Mount::Bind {
                    source: volume::inspect(self.root(), name)?.mountpoint,
                    target: target.into(),
                    readonly: *readonly,
                },
                MountConfig::Tmpfs {
                    target,
                    size,
                    mode,
                    readonly,
                    exec,
                } => Mount::Tmpfs {
                    target: target.into(),
                    size: *size,
                    mode: *mode,
                    readonly: *readonly,
                    noexec: !*exec,
                },
            });
        }
        Ok(spec)
    }

    /// `--pid`/`--ipc`: a new namespace, the host's, or that of a running container's pid 1.
    fn namespace_of(&self, mode: &str, kind: &str) -> Result<Namespace, RuntimeError> {
        Ok(match mode {
            "" | "shareable" => Namespace::New,
            "host" => Namespace::Host,
            m => {
                let id = m.strip_prefix("container:").unwrap_or(m);
                let other = self.get(id)?;
                // Docker's rule: only a `--ipc shareable` container's IPC may be joined.
                if kind == "ipc" && other.config.host.ipc_mode != "shareable" {
                    return Err(RuntimeError::Invalid(format!(
                        "cannot join IPC of a non-shareable container: {}",
                        other.name()
                    )));
                }
                if other.state.status != Status::Running
                    || !store::is_alive(other.state.pid, other.state.pid_start)
                {
                    return Err(RuntimeError::Invalid(format!(
                        "cannot join the {} namespace of a non running container: {}",
                        kind.to_uppercase(),
                        other.name()
                    )));
                }
                Namespace::Join(PathBuf::from(format!(
                    "/proc/{}/ns/{kind}",
                    other.state.pid
                )))
            }
        })
    }
}

/// The container's capability set (`--privileged`, `--cap-add`, `--cap-drop`).
pub(crate) fn capabilities_of(cfg: &ContainerConfig) -> Result<u64, RuntimeError> {
    security::capabilities(&cfg.host.cap_add, &cfg.host.cap_drop, cfg.host.privileged)
}

/// The container's seccomp filter: none when privileged, else what `--security-opt` says.
pub(crate) fn seccomp_of(cfg: &ContainerConfig) -> Seccomp {
    if cfg.host.privileged {
        Seccomp::Unconfined
    } else {
        security::seccomp_of(&cfg.security_opt)
    }
}

/// The user a container's processes run as, with the supplementary groups Docker gives:
/// the primary group first, then the groups the user is a member of (none when `-u` names
/// a group), then `--group-add` (names looked up in the container's /etc/group).
pub(crate) fn user_of(
    cfg: &ContainerConfig,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<User, RuntimeError> {
    let user_spec = if cfg.user.is_empty() {
        "root"
    } else {
        &cfg.user
    };
    let resolved = kiln_image::rootfs::resolve_user_with(read, user_spec)?;
    let mut groups = resolved.additional_gids;
    if groups.is_empty() {
        groups.push(resolved.gid);
    }
    for g in &cfg.host.group_add {
        groups.push(group_id(g, read)?);
    }
    // Once each, first place kept (runc's list of additional groups has no repeats).
    let mut seen = Vec::new();
    groups.retain(|g| {
        let new = !seen.contains(g);
        seen.push(*g);
        new
    });
    Ok(User {
        uid: resolved.uid,
        gid: resolved.gid,
        additional_gids: groups,
    })
}

/// A `--group-add` entry: a number, or a name in the container's /etc/group.
fn group_id(g: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<u32, RuntimeError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    read("/etc/group")
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == g)
                    .then(|| f[2].parse().ok())
                    .flatten()
            })
        })
        .ok_or_else(|| {
            RuntimeError::Invalid(format!(
                "unable to find group {g}: no matching entries in group file"
            ))
        })
}

/// The container's own hosts file on a network with names (see `network::refresh_hosts`).
pub(crate) fn member_hosts(cfg: &ContainerConfig, members: &str) -> String {
    let own = cfg.ip.as_deref().map(|ip| (ip, cfg.hostname.as_str()));
    let mut s = host::hosts_file(&cfg.host.extra_hosts, own);
    s.push_str(members);
    s
}
