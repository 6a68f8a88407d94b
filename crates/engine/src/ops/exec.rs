//! Exec ops (RUN): a snapshot prepared on the root input, the user and working directory
//! resolved in its layers, the op's `--mount`s, the sandbox spec (network, entitlements), the
//! process run with its output sent to the step's log, and the upper dir committed.

use std::path::{Path, PathBuf};

use kiln_executor::sandbox::{
    self, CancelToken, Network, Rlimit, RlimitResource, RootFs, SandboxSpec, User,
};
use kiln_executor::snapshot::{Mounts, SnapshotId};
use kiln_image::rootfs::clean_abs;
use kiln_image::rootfs::user::{self as owner, ResolvedUser};
use kiln_image::{ImageStore, with_private_mounts};
use kiln_llb::{Digest, ExecOp, NetworkMode, SecurityMode};
use kiln_solver::{ExecCtx, Stream};

use super::{Vertex, commit_or_discard, input_indexes, value_of};
use crate::error::EngineError;
use crate::extras::RunSettings;
use crate::mounts::{self, Secrets};
use crate::ssh::SshAgents;
use crate::value::Value;
use kiln_executor::emulation;

impl Vertex {
    pub(super) async fn exec(
        &self,
        exec: &ExecOp,
        inputs: &[Value],
        ctx: &ExecCtx,
    ) -> Result<Value, EngineError> {
        if exec.security == SecurityMode::Insecure && !self.env.allow_insecure {
            return Err(insecure_not_allowed());
        }
        if let Some(platform) = &exec.platform {
            let host = kiln_llb::Platform::host();
            fn view(p: &kiln_llb::Platform) -> kiln_executor::emulation::Platform<'_> {
                kiln_executor::emulation::Platform {
                    os: &p.os,
                    architecture: &p.architecture,
                    variant: p.variant.as_deref(),
                }
            }
            emulation::check(&view(platform), &view(&host), &emulation::binfmt_dir())
                .map_err(EngineError::Emulation)?;
        }
        let index = input_indexes(&self.op);
        let parent = match value_of(&index, inputs, &exec.root.vertex)? {
            Value::Snapshot(id) => Some(id.clone()),
            Value::Scratch => None,
            Value::Local(_) => {
                return Err(EngineError::NotSupported(
                    "running a command on the build context as root filesystem".into(),
                ));
            }
        };
        let images = self.env.images.clone();
        let network = match (exec.network, self.env.default_network) {
            (NetworkMode::None, _) | (NetworkMode::Default, NetworkMode::None) => Network::None,
            _ => Network::Host,
        };
        let mut exec = exec.clone();
        exec.env.extend(self.extra_env.iter().cloned());
        let digest = self.digest;
        let log_ctx = ctx.clone();
        let cancel = CancelToken::new();
        let watcher = {
            let cancel = cancel.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.cancelled().await;
                cancel.cancel();
            })
        };
        let inputs = inputs.to_vec();
        let env = self.env.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mounts = ExecMounts {
                index: &index,
                inputs: &inputs,
                secrets: &env.secrets,
                ssh: &env.ssh,
            };
            let limits = run_limits(&env.run)?;
            run_exec(
                &images,
                &exec,
                parent.as_ref(),
                network,
                &digest,
                &log_ctx,
                &cancel,
                &mounts,
                &limits,
            )
        })
        .await
        .map_err(EngineError::task("exec"));
        watcher.abort();
        result?
    }
}

/// What an Exec op's `--mount`s are made from.
struct ExecMounts<'a> {
    index: &'a [Digest],
    inputs: &'a [Value],
    secrets: &'a Secrets,
    ssh: &'a SshAgents,
}

/// The build's `--add-host`, `--ulimit` and `--shm-size`, as the sandbox takes them.
struct RunLimits {
    extra_hosts: Vec<(String, std::net::IpAddr)>,
    rlimits: Vec<Rlimit>,
    shm_size: Option<u64>,
}

fn run_limits(run: &RunSettings) -> Result<RunLimits, EngineError> {
    let mut rlimits = Vec::new();
    for u in &run.ulimits {
        let resource = rlimit_resource(&u.name).ok_or_else(|| {
            EngineError::NotSupported(format!("--ulimit {}: unknown resource", u.name))
        })?;
        rlimits.push(Rlimit {
            resource,
            soft: u.soft,
            hard: u.hard,
        });
    }
    Ok(RunLimits {
        extra_hosts: run.extra_hosts.clone(),
        rlimits,
        shm_size: run.shm_size,
    })
}

/// Docker's `--ulimit` names.
fn rlimit_resource(name: &str) -> Option<RlimitResource> {
    use RlimitResource::*;
    Some(match name {
        "core" => Core,
        "cpu" => Cpu,
        "data" => Data,
        "fsize" => Fsize,
        "locks" => Locks,
        "memlock" => Memlock,
        "msgqueue" => Msgqueue,
        "nice" => Nice,
        "nofile" => Nofile,
        "nproc" => Nproc,
        "rss" => Rss,
        "rtprio" => Rtprio,
        "rttime" => Rttime,
        "sigpending" => Sigpending,
        "stack" => Stack,
        _ => return None,
    })
}

/// Runs the sandbox, with the op's `--mount`s prepared around it (in a private mount namespace
/// when some of them are mounted here).
fn run_sandbox(
    images: &ImageStore,
    exec: &ExecOp,
    spec: &SandboxSpec,
    digest: &Digest,
    extra: &ExecMounts<'_>,
    ctx: &ExecCtx,
    cancel: &CancelToken,
) -> Result<sandbox::ExitInfo, EngineError> {
    let start = |spec: &SandboxSpec| {
        let mut sink = |stream: sandbox::Stream, data: &[u8]| {
            let stream = match stream {
                sandbox::Stream::Stdout => Stream::Stdout,
                sandbox::Stream::Stderr => Stream::Stderr,
            };
            ctx.log(stream, data);
        };
        match sandbox::run(spec, &mut sink, cancel) {
            Err(sandbox::SandboxError::Cancelled) => Err(EngineError::Cancelled),
            other => Ok(other?),
        }
    };
    if exec.mounts.is_empty() && exec.secret_env.is_empty() {
        return start(spec);
    }
    let with_mounts = || {
        let prepared = mounts::prepare(
            images,
            exec,
            digest,
            extra.index,
            extra.inputs,
            extra.secrets,
            extra.ssh,
        )?;
        let mut spec = spec.clone();
        spec.mounts.extend(prepared.mounts.iter().cloned());
        spec.env
            .extend(prepared.env.iter().map(|(k, v)| format!("{k}={v}")));
        let result = start(&spec);
        prepared.release(images);
        result
    };
    if mounts::needs_namespace(exec) {
        with_private_mounts(with_mounts)
    } else {
        with_mounts()
    }
}

#[allow(clippy::too_many_arguments)]
fn run_exec(
    images: &ImageStore,
    exec: &ExecOp,
    parent: Option<&SnapshotId>,
    network: Network,
    digest: &Digest,
    ctx: &ExecCtx,
    cancel: &CancelToken,
    extra: &ExecMounts<'_>,
    limits: &RunLimits,
) -> Result<Value, EngineError> {
    let active = images
        .snapshots()
        .prepare(&format!("exec-{}", digest.hex()), parent)?;
    let result = (|| {
        let (lowerdirs, upperdir, workdir) = match active.mounts().clone() {
            Mounts::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => (lowerdirs, upperdir, workdir),
            Mounts::Bind { source, .. } => (Vec::new(), source.clone(), PathBuf::new()),
            Mounts::OverlayReadonly { .. } => {
                return Err(EngineError::Bug("prepare gave a read-only mount".into()));
            }
        };
        let rootfs = if workdir.as_os_str().is_empty() {
            RootFs::Path(upperdir.clone())
        } else {
            RootFs::Overlay {
                lowerdirs: lowerdirs.clone(),
                upperdir: upperdir.clone(),
                workdir,
            }
        };
        let mut layers = vec![upperdir.clone()];
        layers.extend(lowerdirs.iter().cloned());
        let (user, home) = resolve_exec_user(&layers, &exec.user)?;
        let mut spec = SandboxSpec::new(rootfs, exec.args.clone());
        spec.env = exec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !exec.env.iter().any(|(k, _)| k == "HOME") {
            spec.env.push(format!("HOME={home}"));
        }
        spec.cwd = PathBuf::from(if exec.cwd.is_empty() { "/" } else { &exec.cwd });
        spec.user = user;
        spec.hostname = exec
            .hostname
            .clone()
            .unwrap_or_else(|| "buildkitsandbox".to_string());
        spec.etc_hostname = false;
        spec.network = network;
        spec.state_dir = images.root().join("run");
        if !exec.devices.is_empty() {
            spec.devices = step_devices(exec)?;
        }
        spec.extra_hosts = limits.extra_hosts.clone();
        spec.rlimits = limits.rlimits.clone();
        spec.shm_size = limits.shm_size;
        if exec.security == SecurityMode::Insecure {
            // BuildKit's insecure mode: every capability, no seccomp filter, /proc and /sys
            // unmasked (the entitlement was checked before the step started).
            spec.capabilities = all_capabilities();
            spec.seccomp = kiln_executor::sandbox::Seccomp::Unconfined;
            spec.masked_paths.clear();
            spec.readonly_paths.clear();
        }
        ensure_cwd(&upperdir, &layers, &exec.cwd, spec.user.uid, spec.user.gid)?;
        let info = run_sandbox(images, exec, &spec, digest, extra, ctx, cancel)?;
        let command = exec.args.join(" ");
        if info.oom_killed {
            return Err(EngineError::OutOfMemory { command });
        }
        if !info.status.success() {
            return Err(EngineError::ProcessFailed {
                command,
                code: info.status.shell_code(),
            });
        }
        mounts::keep_mount_points(&upperdir, &layers)
    })();
    commit_or_discard(images, active, result)
}

/// Reads a file of a snapshot that is not mounted: the first layer (top-most first) that has it.
fn read_from_layers(layers: &[PathBuf], path: &str) -> Option<String> {
    let rel = path.trim_start_matches('/');
    layers
        .iter()
        .find_map(|layer| std::fs::read_to_string(layer.join(rel)).ok())
}

/// The user a RUN runs as, and the HOME it gets when the image sets none (passwd's, as in
/// BuildKit).
fn resolve_exec_user(layers: &[PathBuf], user: &str) -> Result<(User, String), EngineError> {
    let ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    } = owner::resolve_exec_user_with(&|p| read_from_layers(layers, p), user)?;
    // `USER uid:gid` gives no supplementary groups from /etc/group; the process still has its
    // primary group in its list, as under containerd (`id` prints `groups=1234`).
    let additional_gids = if additional_gids.is_empty() {
        vec![gid]
    } else {
        additional_gids
    };
    Ok((
        User {
            uid,
            gid,
            additional_gids,
        },
        home,
    ))
}

/// The working directory of a RUN exists before the command starts, as in BuildKit; when it is
/// missing from every layer it is created in the upper dir.
fn ensure_cwd(
    upper: &Path,
    layers: &[PathBuf],
    cwd: &str,
    uid: u32,
    gid: u32,
) -> Result<(), EngineError> {
    let rel = clean_abs(cwd);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || layers.iter().any(|l| l.join(rel).is_dir()) {
        return Ok(());
    }
    let dir = upper.join(rel);
    std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
        what: format!("create the working directory {cwd}"),
        source,
    })?;
    let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
    Ok(())
}

/// Why a `RUN --security=insecure` step may not run: the build was not granted it.
pub(crate) fn insecure_not_allowed() -> EngineError {
    EngineError::NotAllowed(
        "RUN --security=insecure needs the security.insecure entitlement: build with \
         --allow security.insecure"
            .into(),
    )
}

/// Why a `RUN --device` step may not run: the build was not granted it.
pub(crate) fn devices_not_allowed() -> EngineError {
    EngineError::NotAllowed(
        "RUN --device needs the device entitlement: build with --allow device".into(),
    )
}

/// The sandbox devices for a step's `RUN --device`s: each host device node at its own path
/// (bound, so it opens where the rest of `/dev` is nodev). CDI device names need a CDI
/// registry, which kiln does not read yet.
fn step_devices(exec: &ExecOp) -> Result<Vec<kiln_executor::sandbox::Device>, EngineError> {
    use kiln_executor::sandbox::{Device, DeviceKind};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for device in &exec.devices {
        if !device.name.starts_with("/dev/") {
            if device.required {
                return Err(EngineError::NotSupported(format!(
                    "CDI device {} (RUN --device takes a host device path such as /dev/fuse)",
                    device.name
                )));
            }
            continue;
        }
        let path = PathBuf::from(clean_abs(&device.name));
        match std::fs::metadata(&path) {
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {
                let kind = if m.file_type().is_char_device() {
                    DeviceKind::Char
                } else {
                    DeviceKind::Block
                };
                let rdev = m.rdev();
                out.push(Device {
                    host_path: path.clone(),
                    path,
                    kind,
                    major: libc::major(rdev),
                    minor: libc::minor(rdev),
                    access: "rwm".into(),
                });
            }
            Ok(_) => {
                return Err(EngineError::NotAllowed(format!(
                    "RUN --device={}: not a device node",
                    device.name
                )));
            }
            Err(_) if !device.required => {}
            Err(source) => {
                return Err(EngineError::Io {
                    what: format!("find device {}", device.name),
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Every capability this kernel has (bits 0 to `cap_last_cap`).
fn all_capabilities() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63);
    if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}
