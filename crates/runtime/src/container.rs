//! The container lifecycle: create (records, rootfs dirs, lease, volumes), run attached or under
//! a monitor, stop, kill, wait, remove, and the sandbox spec every start is built from.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use kiln_cache::LeaseOptions;
use kiln_executor::sandbox::{
    self, CancelToken, CgroupLimits, CpuQuota, ExitInfo, Mount, Network, OutputSink, RootFs,
    Sandbox, SandboxSpec, Stdin, Stream, User,
};
use kiln_executor::snapshot::{Driver, SnapshotId};
use kiln_image::ImageStore;

use crate::error::{RuntimeError, io_err};
use crate::logs::{LogOptions, LogWriter};
use crate::options::{self, RunOptions};
use crate::ports;
use crate::store::{
    self, Container, ContainerConfig, ContainerState, MountConfig, NetworkMode, RestartPolicy,
    Status, now_rfc3339, write_json,
};
use crate::volume;

/// How `start` runs the container.
#[derive(Debug, Clone)]
pub enum StartMode {
    /// Under a monitor process: this kiln binary re-executed as `kiln container-monitor ID`.
    Detached { kiln_exe: PathBuf },
}

/// The run engine over one store root.
#[derive(Debug, Clone)]
pub struct Runtime {
    images: Arc<ImageStore>,
}

/// The name of the marker file `stop` leaves so the monitor does not restart the container.
const STOP_MARKER: &str = "stop-requested";

fn lease_id(id: &str) -> String {
    format!("container-{id}")
}

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    if let Ok(n) = s.parse::<i32>()
        && (1..=64).contains(&n)
    {
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| RuntimeError::Invalid(format!("invalid signal {s:?}")))
}

fn send_signal(pid: i32, signal: i32) -> Result<(), RuntimeError> {
    let sig = nix::sys::signal::Signal::try_from(signal)
        .map_err(|_| RuntimeError::Invalid(format!("invalid signal {signal}")))?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::Io {
            what: format!("send signal {signal} to pid {pid}"),
            source: e.into(),
        }),
    }
}

impl Runtime {
    pub fn new(images: Arc<ImageStore>) -> Runtime {
        Runtime { images }
    }

    pub fn root(&self) -> &Path {
        self.images.root()
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// All containers (only running ones unless `all`), oldest first.
    pub fn list(&self, all: bool) -> Result<Vec<Container>, RuntimeError> {
        Ok(store::list(self.root())?
            .into_iter()
            .filter(|c| all || c.state.is_running())
            .collect())
    }

    /// A container by ID, name or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Container, RuntimeError> {
        store::lookup(self.root(), name_or_id)
    }

    /// Creates a container from `opts`: resolves the image and command, prepares its
    /// directories, volumes and lease, and records it as `created`.
    pub fn create(&self, opts: &RunOptions) -> Result<Container, RuntimeError> {
        if self.images.snapshots().driver() == Driver::Copy {
            return Err(RuntimeError::NotSupported(
                "containers on the copy snapshot driver (the store needs overlayfs)".into(),
            ));
        }
        let (network, network_name, ip) =
            crate::network::resolve(self.root(), opts.network.as_deref())?;
        let image = self.images.image(&opts.image)?;
        let top = self.images.unpack(&image)?;
        let rc = &image.config.config;
        let (entrypoint, cmd) =
            options::resolve_command(rc, opts.entrypoint.as_deref(), &opts.command)?;
        let mut argv = entrypoint.clone();
        argv.extend(cmd.iter().cloned());

        let id = store::new_id()?;
        let name = match &opts.name {
            Some(n) => {
                let n = n.trim_start_matches('/');
                let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => store::generated_name(&id),
        };
        // A first check before the slow part; the one that counts is made under the lock.
        check_name_free(self.root(), &name)?;
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let user = opts.user.clone().unwrap_or_else(|| rc.user.clone());
        let working_dir = match opts.workdir.as_deref() {
            Some(w) if !w.starts_with('/') => {
                return Err(RuntimeError::Invalid(format!(
                    "the working directory {w:?} is not an absolute path"
                )));
            }
            Some(w) => w.to_string(),
            None if rc.working_dir.is_empty() => "/".to_string(),
            None => rc.working_dir.clone(),
        };
        let mut file_env = Vec::new();
        for f in &opts.env_files {
            file_env.extend(options::read_env_file(f)?);
        }
        let ports_ = options::published_ports(&opts.publish, opts.publish_all, &rc.exposed_ports)?;
        let mut mounts = Vec::new();
        for v in &opts.volumes {
            mounts.push(options::parse_volume(v)?);
        }
        for m in &opts.mounts {
            mounts.push(options::parse_mount(m)?);
        }
        for t in &opts.tmpfs {
            mounts.push(options::parse_tmpfs(t)?);
        }
        // Image VOLUME entries not covered by a mount get anonymous volumes.
        for v in &rc.volumes {
            let target = format!("/{}", v.trim_matches('/'));
            if !mounts.iter().any(|m| m.target() == target) {
                mounts.push(MountConfig::Volume {
                    name: String::new(),
                    target,
                    readonly: false,
                    anonymous: true,
                });
            }
        }
        for m in &mounts {
            if let MountConfig::Bind { source, .. } = m
                && !source.exists()
            {
                return Err(RuntimeError::Invalid(format!(
                    "bind source path does not exist: {}",
                    source.display()
                )));
            }
        }

        let dir = store::containers_dir(self.root()).join(&id);
        fs::create_dir_all(dir.join("upper")).map_err(io_err(format!(
            "create container directory {}",
            dir.display()
        )))?;
        fs::create_dir_all(dir.join("work")).map_err(io_err(format!(
            "create container directory {}",
            dir.display()
        )))?;
        let result = (|| {
            if let Some(top) = &top {
                let lease = self.images.store().create_lease(&LeaseOptions {
                    id: Some(lease_id(&id)),
                    ttl: None,
                    bind_to_process: false,
                })?;
                self.images
                    .store()
                    .lease_snapshot(&lease.id, top.as_str())?;
            }
            // HOME from the image's passwd entry of the user, as Docker does.
            let layers = self.layers(top.as_ref(), &dir)?;
            let home = home_of(&layers, &user);
            let env = options::merge_env(&rc.env, &file_env, &opts.env, &hostname, &home);
            for m in &mut mounts {
                if let MountConfig::Volume {
                    name, anonymous, ..
                } = m
                    && name.is_empty()
                {
                    *name = store::new_id()?;
                    *anonymous = true;
                }
            }
            for m in &mounts {
                if let MountConfig::Volume {
                    name,
                    target,
                    anonymous,
                    ..
                } = m
                {
                    let v = volume::create(self.root(), name, *anonymous)?;
                    if !v.initialized {
                        self.seed_volume(top.as_ref(), target, &v.mountpoint)?;
                        volume::mark_initialized(self.root(), v)?;
                    }
                }
            }
            let config = ContainerConfig {
                id: id.clone(),
                name: name.clone(),
                image: opts.image.clone(),
                image_id: image.id().to_string(),
                snapshot: top.as_ref().map(|t| t.as_str().to_string()),
                created: now_rfc3339(),
                path: argv[0].clone(),
                args: argv[1..].to_vec(),
                entrypoint,
                cmd,
                env,
                working_dir,
                user,
                hostname,
                network,
                mounts,
                ports: ports_,
                memory: opts
                    .memory
                    .as_deref()
                    .map(options::parse_size)
                    .transpose()?,
                cpus_millis: opts.cpus.as_deref().map(options::parse_cpus).transpose()?,
                pids_limit: match opts.pids_limit {
                    Some(n) if n > 0 => Some(n as u64),
                    _ => None,
                },
                read_only: opts.read_only,
                restart: options::parse_restart(opts.restart.as_deref().unwrap_or("no"))?,
                stop_signal: if rc.stop_signal.is_empty() {
                    "SIGTERM".into()
                } else {
                    rc.stop_signal.clone()
                },
                auto_remove: opts.auto_remove,
                open_stdin: opts.interactive,
                healthcheck: opts.health.apply(rc.healthcheck.clone())?,
                tty: opts.tty,
                network_name,
                ip,
                security_opt: options::parse_security_opts(&opts.security_opt)?,
            };
            parse_signal(&config.stop_signal)?;
            if config.auto_remove && config.restart != RestartPolicy::No {
                return Err(RuntimeError::Invalid(
                    "--restart and --rm cannot be used together".into(),
                ));
            }
            // The name check and the record that claims the name, as one step for concurrent
            // creates (`list` skips a record until its state.json exists).
            let names = store::lock_names(self.root())?;
            check_name_free(self.root(), &name)?;
            write_json(&dir.join("config.json"), &config)?;
            let state = ContainerState::created();
            write_json(&dir.join("state.json"), &state)?;
            drop(names);
            if let Some(n) = &config.network_name {
                crate::network::refresh_hosts(self.root(), n)?;
            }
            Ok(Container {
                config,
                state,
                dir: dir.clone(),
            })
        })();
        if result.is_err() {
            let _ = self.images.store().delete_lease(&lease_id(&id));
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// The rootfs layers top-most first, the container's upper dir included.
    fn layers(&self, top: Option<&SnapshotId>, dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
        let mut layers = vec![dir.join("upper")];
        if let Some(top) = top {
            for s in self.images.snapshots().chain(top)? {
                layers.push(self.images.snapshots().fs_dir(&s));
            }
        }
        Ok(layers)
    }

    /// Copies the image's content at `target` into a fresh volume, as Docker does at the first
    /// mount. The image is mounted read-only in a private mount namespace for the copy.
    fn seed_volume(
        &self,
        top: Option<&SnapshotId>,
        target: &str,
        data: &Path,
    ) -> Result<(), RuntimeError> {
        let Some(top) = top else { return Ok(()) };
        let is_empty = fs::read_dir(data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !is_empty {
            return Ok(());
        }
        let mnt = self.images.tempdir("volume-seed-")?;
        let images = self.images.clone();
        let top = top.clone();
        let (mnt_path, target, data) = (
            mnt.path().to_path_buf(),
            target.trim_start_matches('/').to_string(),
            data.to_path_buf(),
        );
        kiln_image::with_private_mounts(move || {
            images.snapshots().mount(&top, &mnt_path)?;
            let src = mnt_path.join(&target);
            // A symlink in the image could point anywhere on the host through the mount: only
            // copy a real directory.
            let is_dir = fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir());
            if is_dir {
                let status = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", src.display()))
                    .arg(&data)
                    .status()
                    .map_err(|source| kiln_image::ImageError::Io {
                        what: "run cp to fill a volume".into(),
                        source,
                    })?;
                if !status.success() {
                    return Err(kiln_image::ImageError::Io {
                        what: format!("fill a volume from the image's /{target}"),
                        source: std::io::Error::other(format!("cp exited with {status}")),
                    });
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// For a container on a user network: its namespace, wired to the bridge, until dropped.
    fn attach_network(
        &self,
        c: &Container,
    ) -> Result<Option<crate::network::Attachment>, RuntimeError> {
        match (&c.config.network_name, &c.config.ip) {
            (Some(name), Some(ip)) if c.config.network == NetworkMode::Named => {
                let info = crate::network::inspect(self.root(), name)?;
                crate::network::attach(self.root(), &info, c.id(), ip).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The sandbox spec for one start of `c`.
    pub fn sandbox_spec(&self, c: &Container) -> Result<SandboxSpec, RuntimeError> {
        let cfg = &c.config;
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
        let user_spec = if cfg.user.is_empty() {
            "root"
        } else {
            &cfg.user
        };
        let resolved =
            kiln_image::rootfs::resolve_user_with(&|p| read_from_layers(&layers, p), user_spec)?;
        let mut spec = SandboxSpec::new(rootfs, cfg.argv());
        spec.env = cfg.env.clone();
        spec.cwd = PathBuf::from(&cfg.working_dir);
        spec.user = User {
            uid: resolved.uid,
            gid: resolved.gid,
            additional_gids: resolved.additional_gids,
        };
        spec.hostname = cfg.hostname.clone();
        spec.readonly_rootfs = cfg.read_only;
        spec.seccomp = options::seccomp_of(&cfg.security_opt);
        spec.tty = cfg.tty;
        spec.network = match cfg.network {
            NetworkMode::None => Network::None,
            NetworkMode::Host => Network::Host,
            NetworkMode::Named => {
                let name = cfg.network_name.as_deref().unwrap_or_default();
                if crate::network::has_names(name) {
                    spec.mounts.push(Mount::Bind {
                        source: crate::network::hosts_path(self.root(), name),
                        target: "/etc/hosts".into(),
                        readonly: true,
                    });
                } else if let Some(ip) = cfg.ip.as_deref().and_then(|ip| ip.parse().ok()) {
                    spec.extra_hosts.push((cfg.hostname.clone(), ip));
                }
                Network::Namespace(crate::network::netns_path(&cfg.id))
            }
        };
        spec.state_dir = self.root().join("run");
        spec.cgroup = CgroupLimits {
            memory_bytes: cfg.memory,
            cpu: cfg.cpus_millis.map(|m| CpuQuota {
                quota_us: m * 100,
                period_us: 100_000,
            }),
            pids_max: cfg.pids_limit,
            ..CgroupLimits::default()
        };
        for m in &cfg.mounts {
            spec.mounts.push(match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
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
                MountConfig::Tmpfs { target, size, mode } => Mount::Tmpfs {
                    target: target.into(),
                    size: *size,
                    mode: *mode,
                    readonly: false,
                },
            });
        }
        Ok(spec)
    }

    fn write_state(&self, c: &Container, state: &ContainerState) -> Result<(), RuntimeError> {
        write_json(&c.dir.join("state.json"), state)
    }

    fn running_state(&self, sb: &Sandbox, prev: &ContainerState) -> ContainerState {
        let me = std::process::id() as i32;
        ContainerState {
            status: Status::Running,
            pid: sb.pid(),
            pid_start: store::process_start(sb.pid()).unwrap_or(0),
            owner_pid: me,
            owner_start: store::process_start(me).unwrap_or(0),
            exit_code: None,
            oom_killed: false,
            started_at: Some(now_rfc3339()),
            finished_at: None,
            restart_count: prev.restart_count,
            error: None,
            cgroup_dirs: sb.cgroup_dirs(),
        }
    }

    fn exited_state(&self, prev: &ContainerState, info: &ExitInfo) -> ContainerState {
        ContainerState {
            status: Status::Exited,
            pid: 0,
            pid_start: 0,
            exit_code: Some(info.status.shell_code()),
            oom_killed: info.oom_killed,
            finished_at: Some(now_rfc3339()),
            cgroup_dirs: Vec::new(),
            ..prev.clone()
        }
    }

    fn failed_state(&self, prev: &ContainerState, e: &RuntimeError) -> ContainerState {
        let code = match e {
            RuntimeError::Sandbox(sandbox::SandboxError::Exec { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                127
            }
            RuntimeError::Sandbox(sandbox::SandboxError::Exec { .. }) => 126,
            _ => 128,
        };
        ContainerState {
            status: if prev.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            },
            pid: 0,
            pid_start: 0,
            exit_code: Some(code),
            error: Some(e.to_string()),
            finished_at: Some(now_rfc3339()),
            ..prev.clone()
        }
    }

    /// Runs `c` in this process with its output going to `out` (and to its log unless it is
    /// removed afterwards) until it exits. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this
    /// process are forwarded to the container. Removes the container afterwards when it was
    /// created with `--rm`.
    pub fn run_attached(
        &self,
        c: &Container,
        stdin: Stdin,
        out: &mut dyn OutputSink,
    ) -> Result<ExitInfo, RuntimeError> {
        let result = self.run_attached_inner(c, stdin, out);
        if c.config.auto_remove
            && let Err(e) = self.remove_record(c, true)
        {
            tracing::warn!(container = %c.id(), error = %e, "failed to remove container");
        }
        result
    }

    fn run_attached_inner(
        &self,
        c: &Container,
        stdin: Stdin,
        out: &mut dyn OutputSink,
    ) -> Result<ExitInfo, RuntimeError> {
        let _ = fs::remove_file(c.dir.join(STOP_MARKER));
        let target = ports::Target::default();
        if !c.config.ports.is_empty() && c.config.network != NetworkMode::Host {
            ports::publish(c, &target)?;
        }
        let forward = SignalForwarder::start();
        let _net = self.attach_network(c)?;
        let mut spec = self.sandbox_spec(c)?;
        if spec.tty {
            spec.tty_size = crate::pty::caller_size();
        }
        let sb = match Sandbox::spawn(&spec, stdin) {
            Ok(sb) => sb,
            Err(e) => {
                let e = RuntimeError::from(e);
                if !c.config.auto_remove {
                    self.write_state(c, &self.failed_state(&c.state, &e))?;
                }
                return Err(e);
            }
        };
        forward.set_pid(sb.pid());
        // Raw mode and size changes for the caller's terminal, undone when this returns.
        let _terminal = c
            .config
            .tty
            .then(|| crate::pty::TerminalSession::attach(sb.pty(), c.config.open_stdin));
        let running = self.running_state(&sb, &c.state);
        if !c.config.auto_remove {
            self.write_state(c, &running)?;
        }
        if c.config.network != NetworkMode::Host {
            target.set(fs::File::open(format!("/proc/{}/ns/net", sb.pid())).ok());
        }
        let mut log = if c.config.auto_remove {
            None
        } else {
            Some(LogWriter::open(&c.log_path())?)
        };
        let mut sink = |stream: Stream, data: &[u8]| {
            out.write(stream, data);
            if let Some(l) = &mut log {
                l.write(stream, data);
            }
        };
        let info = sb.wait(&mut sink, &CancelToken::new());
        forward.set_pid(0);
        target.set(None);
        let info = info?;
        if !c.config.auto_remove {
            self.write_state(c, &self.exited_state(&running, &info))?;
        }
        Ok(info)
    }

    /// Starts `c` under a new monitor process and returns once its command runs (or failed to
    /// start, which is an error here).
    pub fn start(&self, c: &Container, mode: &StartMode) -> Result<(), RuntimeError> {
        if c.state.is_running() {
            return Ok(());
        }
        let StartMode::Detached { kiln_exe } = mode;
        let _ = fs::remove_file(c.dir.join(STOP_MARKER));
        let log = fs::File::create(c.dir.join("monitor.log"))
            .map_err(io_err("create the monitor's log"))?;
        let mut child = std::process::Command::new(kiln_exe)
            .arg("--root")
            .arg(self.root())
            .arg("container-monitor")
            .arg(c.id())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!(
                "start the container monitor {}",
                kiln_exe.display()
            )))?;
        let mut answer = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut answer);
        }
        match answer.trim_end().strip_prefix("error: ") {
            None if answer.trim_end() == "ok" => Ok(()),
            Some(msg) => {
                let _ = child.wait();
                Err(RuntimeError::Monitor(msg.to_string()))
            }
            None => {
                let status = child.wait();
                let log = fs::read_to_string(c.dir.join("monitor.log")).unwrap_or_default();
                Err(RuntimeError::Monitor(format!(
                    "the monitor ended without starting the container ({status:?}): {}",
                    log.trim()
                )))
            }
        }
    }

    /// The body of `kiln container-monitor ID`: runs the container until it stops for good,
    /// recording state and logs. `ready` gets `Ok` once the command runs, or the start error.
    pub fn monitor(
        &self,
        id: &str,
        ready: &mut dyn FnMut(Result<(), String>),
    ) -> Result<(), RuntimeError> {
        // Leave the CLI's session and process group, so its terminal's signals and hangup
        // never reach the monitor.
        let _ = nix::unistd::setsid();
        let c = self.get(id)?;
        let mut ready = Some(ready);
        let mut tell = |r: Result<(), String>| {
            if let Some(f) = ready.take() {
                f(r);
            }
        };
        let target = ports::Target::default();
        if !c.config.ports.is_empty()
            && c.config.network != NetworkMode::Host
            && let Err(e) = ports::publish(&c, &target)
        {
            tell(Err(e.to_string()));
            return Err(e);
        }
        let mut state = c.state.clone();
        // A manual start begins a new series of restarts, as in Docker.
        state.restart_count = 0;
        let mut log = LogWriter::open(&c.log_path())?;
        let mut failures_in_a_row = 0u32;
        loop {
            let started = Instant::now();
            let net = match self.attach_network(&c) {
                Ok(n) => n,
                Err(e) => {
                    self.write_state(&c, &self.failed_state(&state, &e))?;
                    tell(Err(e.to_string()));
                    return Err(e);
                }
            };
            let spawned = self
                .sandbox_spec(&c)
                .and_then(|spec| Sandbox::spawn(&spec, Stdin::Null).map_err(Into::into));
            let sb = match spawned {
                Ok(sb) => sb,
                Err(e) => {
                    self.write_state(&c, &self.failed_state(&state, &e))?;
                    tell(Err(e.to_string()));
                    return Err(e);
                }
            };
            state = self.running_state(&sb, &state);
            self.write_state(&c, &state)?;
            if c.config.network != NetworkMode::Host {
                target.set(fs::File::open(format!("/proc/{}/ns/net", sb.pid())).ok());
            }
            tell(Ok(()));
            let checks_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let running = Container {
                state: state.clone(),
                ..c.clone()
            };
            crate::health::start(self, &running, checks_done.clone());
            let info = sb.wait(&mut log, &CancelToken::new());
            checks_done.store(true, Ordering::SeqCst);
            target.set(None);
            drop(net);
            let info = match info {
                Ok(i) => i,
                Err(e) => {
                    let e = RuntimeError::from(e);
                    self.write_state(&c, &self.failed_state(&state, &e))?;
                    return Err(e);
                }
            };
            state = self.exited_state(&state, &info);
            let stopped = c.dir.join(STOP_MARKER).exists();
            let code = info.status.shell_code();
            let again = !stopped
                && match c.config.restart {
                    RestartPolicy::No => false,
                    RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
                    RestartPolicy::OnFailure(max) => {
                        code != 0 && (max == 0 || state.restart_count < max)
                    }
                };
            if !again {
                self.write_state(&c, &state)?;
                break;
            }
            // Back off like Docker: doubling from 100ms while it keeps failing fast.
            if started.elapsed() < Duration::from_secs(10) {
                failures_in_a_row += 1;
            } else {
                failures_in_a_row = 0;
            }
            state.status = Status::Restarting;
            state.restart_count += 1;
            self.write_state(&c, &state)?;
            let delay = Duration::from_millis(100u64 << failures_in_a_row.min(8));
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if c.dir.join(STOP_MARKER).exists() {
                    state.status = Status::Exited;
                    self.write_state(&c, &state)?;
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if c.config.auto_remove {
            self.remove_record(&c, true)?;
        }
        Ok(())
    }

    /// Sends `signal` to the container's pid 1.
    pub fn kill(&self, c: &Container, signal: i32) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running || !store::is_alive(c.state.pid, c.state.pid_start) {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        send_signal(c.state.pid, signal)
    }

    /// Stops `c`: its stop signal, then SIGKILL after `timeout`; the restart policy does not
    /// apply. Returns once it is no longer running.
    pub fn stop(&self, c: &Container, timeout: Duration) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        if !c.state.is_running() {
            return Ok(());
        }
        fs::write(c.dir.join(STOP_MARKER), b"")
            .map_err(io_err(format!("mark container {} as stopping", c.name())))?;
        if c.state.status == Status::Running && store::is_alive(c.state.pid, c.state.pid_start) {
            send_signal(c.state.pid, parse_signal(&c.config.stop_signal)?)?;
        }
        if self.wait_until_stopped(&c, timeout)? {
            return Ok(());
        }
        let now = self.get(c.id())?;
        if store::is_alive(now.state.pid, now.state.pid_start) {
            // pid 1's death takes every other process of the namespace with it.
            send_signal(now.state.pid, libc::SIGKILL)?;
        }
        if self.wait_until_stopped(&c, Duration::from_secs(30))? {
            Ok(())
        } else {
            Err(RuntimeError::Monitor(format!(
                "container {} did not stop after SIGKILL",
                c.name()
            )))
        }
    }

    fn wait_until_stopped(&self, c: &Container, timeout: Duration) -> Result<bool, RuntimeError> {
        let until = Instant::now() + timeout;
        loop {
            let now = self.get(c.id())?;
            if !now.state.is_running() {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Blocks until `c` is not running (restarts included) and returns its final state.
    pub fn wait(&self, c: &Container) -> Result<ContainerState, RuntimeError> {
        loop {
            let now = match self.get(c.id()) {
                Ok(now) => now,
                // Removed meanwhile (--rm): report what we last knew.
                Err(RuntimeError::NoSuchContainer(_)) => return Ok(c.state.clone()),
                Err(e) => return Err(e),
            };
            if !now.state.is_running() {
                return Ok(now.state);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes `c`; a running one only with `force` (killed first). With `volumes`, its
    /// anonymous volumes go too.
    pub fn remove(&self, c: &Container, force: bool, volumes: bool) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.is_running() {
            if !force {
                return Err(RuntimeError::Running(c.name().to_string()));
            }
            let _ = fs::write(c.dir.join(STOP_MARKER), b"");
            if store::is_alive(c.state.pid, c.state.pid_start) {
                send_signal(c.state.pid, libc::SIGKILL)?;
            }
            if !self.wait_until_stopped(&c, Duration::from_secs(30))? {
                return Err(RuntimeError::Monitor(format!(
                    "container {} did not stop after SIGKILL",
                    c.name()
                )));
            }
        }
        self.remove_record(&c, volumes)
    }

    fn remove_record(&self, c: &Container, volumes: bool) -> Result<(), RuntimeError> {
        let _ = self.images.store().delete_lease(&lease_id(c.id()));
        // Rename first: a half-removed container must not show up in `ps`.
        let trash = store::containers_dir(self.root()).join(format!(".trash-{}", c.id()));
        match fs::rename(&c.dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("remove container {}", c.name()))(e)),
        }
        fs::remove_dir_all(&trash).map_err(io_err(format!("remove container {}", c.name())))?;
        crate::network::release(self.root(), &c.config);
        if volumes {
            for m in &c.config.mounts {
                if let MountConfig::Volume {
                    name,
                    anonymous: true,
                    ..
                } = m
                    && let Err(e) = volume::remove(self.root(), name, false)
                {
                    tracing::warn!(volume = %name, error = %e, "failed to remove anonymous volume");
                }
            }
        }
        Ok(())
    }

    /// Writes the container's logs to `out`.
    pub fn logs(
        &self,
        c: &Container,
        opts: &LogOptions,
        out: &mut dyn OutputSink,
    ) -> Result<(), RuntimeError> {
        let id = c.id().to_string();
        let mut running = || self.get(&id).is_ok_and(|c| c.state.is_running());
        crate::logs::read_logs(&c.log_path(), opts, out, &mut running)
    }

    /// Docker-shaped `inspect` output for a container.
    pub fn inspect_json(&self, c: &Container) -> serde_json::Value {
        use serde_json::json;
        let cfg = &c.config;
        let st = &c.state;
        let ports = ports::docker_json(&cfg.ports);
        let mounts: Vec<serde_json::Value> = cfg
            .mounts
            .iter()
            .map(|m| match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
                } => json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
                MountConfig::Volume {
                    name,
                    target,
                    readonly,
                    ..
                } => json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": volume::volumes_dir(self.root()).join(name).join("_data"),
                    "Destination": target,
                    "RW": !readonly,
                }),
                MountConfig::Tmpfs { target, .. } => {
                    json!({"Type": "tmpfs", "Source": "", "Destination": target, "RW": true})
                }
            })
            .collect();
        let health = crate::health::read(c).filter(|_| st.status == Status::Running);
        json!({
            "Id": cfg.id,
            "Created": cfg.created,
            "Path": cfg.path,
            "Args": cfg.args,
            "State": {
                "Status": st.status.to_string(),
                "Running": st.status == Status::Running,
                "Paused": false,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code.unwrap_or(0),
                "Error": st.error.clone().unwrap_or_default(),
                "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "Health": health,
            },
            "Image": cfg.image_id,
            "LogPath": c.log_path(),
            "Name": format!("/{}", cfg.name),
            "RestartCount": st.restart_count,
            "HostConfig": {
                "NetworkMode": match cfg.network {
                    NetworkMode::None => "none",
                    NetworkMode::Host => "host",
                    NetworkMode::Named => cfg.network_name.as_deref().unwrap_or_default(),
                },
                "PortBindings": ports,
                "RestartPolicy": cfg.restart,
                "AutoRemove": cfg.auto_remove,
                "ReadonlyRootfs": cfg.read_only,
                "Memory": cfg.memory.unwrap_or(0),
                "NanoCpus": cfg.cpus_millis.unwrap_or(0) * 1_000_000,
                "PidsLimit": cfg.pids_limit,
                // Docker shows null unless --security-opt was given.
                "SecurityOpt": (!cfg.security_opt.is_empty()).then_some(&cfg.security_opt),
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": cfg.hostname,
                "User": cfg.user,
                "Env": cfg.env,
                "Cmd": cfg.cmd,
                "Entrypoint": cfg.entrypoint,
                "WorkingDir": cfg.working_dir,
                "Image": cfg.image,
                "StopSignal": cfg.stop_signal,
                "OpenStdin": cfg.open_stdin,
                "Tty": cfg.tty,
            },
            "NetworkSettings": { "Ports": ports::docker_json(&ports::published(c)), "IPAddress": cfg.ip.clone().unwrap_or_default() },
        })
    }
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory in use: its cgroup's charge when it has one (a memory limit gives it one), else
    /// the resident set of its processes.
    pub memory_bytes: Option<u64>,
    pub memory_limit: Option<u64>,
    /// Processes in its pid namespace.
    pub pids: u64,
    /// CPU time its processes have used (user + system), in nanoseconds.
    pub cpu_nanos: u64,
}

impl Runtime {
    /// Samples `c`'s memory (its cgroup, else its processes' RSS), CPU time and process count
    /// (both from the processes of its pid namespace).
    pub fn stats(&self, c: &Container) -> Result<Stats, RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running {
            return Ok(Stats::default());
        }
        let read = |dir: &Path, f: &str| -> Option<u64> {
            fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok()
        };
        let mut stats = Stats::default();
        for dir in &c.state.cgroup_dirs {
            if let Some(v) =
                read(dir, "memory.usage_in_bytes").or_else(|| read(dir, "memory.current"))
            {
                stats.memory_bytes = Some(v);
                stats.memory_limit =
                    read(dir, "memory.limit_in_bytes").or_else(|| read(dir, "memory.max"));
            }
        }
        let ns = fs::read_link(format!("/proc/{}/ns/pid", c.state.pid)).ok();
        let (Some(ns), Ok(procs)) = (ns, fs::read_dir("/proc")) else {
            return Ok(stats);
        };
        // Clock ticks and page size are fixed for the host; sysconf is the only way to ask.
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as u64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .unwrap_or(4096) as u64;
        let mut rss = 0u64;
        for entry in procs.flatten() {
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                || fs::read_link(entry.path().join("ns/pid")).ok().as_ref() != Some(&ns)
            {
                continue;
            }
            stats.pids += 1;
            if let Ok(stat) = fs::read_to_string(entry.path().join("stat"))
                && let Some((_, after_comm)) = stat.rsplit_once(')')
            {
                // Fields after the command name: state is the 3rd field, utime the 14th.
                let fields: Vec<&str> = after_comm.split_whitespace().collect();
                let cpu: u64 = [11, 12]
                    .iter()
                    .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                    .sum();
                stats.cpu_nanos += cpu * 1_000_000_000 / ticks;
            }
            if let Ok(statm) = fs::read_to_string(entry.path().join("statm")) {
                rss += statm
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * page;
            }
        }
        if stats.memory_bytes.is_none() {
            stats.memory_bytes = Some(rss);
        }
        Ok(stats)
    }
}

/// Fails with Docker's conflict error when a container already has `name`.
fn check_name_free(root: &Path, name: &str) -> Result<(), RuntimeError> {
    match store::list(root)?
        .into_iter()
        .find(|c| c.config.name == name)
    {
        Some(c) => Err(RuntimeError::NameInUse {
            name: name.to_string(),
            id: c.config.id,
        }),
        None => Ok(()),
    }
}

/// Reads a file of the rootfs without mounting it: from the top-most layer that has it.
/// Whiteouts are not consulted: a passwd deleted in an upper layer is rare enough.
pub(crate) fn read_from_layers(layers: &[PathBuf], path: &str) -> Option<String> {
    let rel = path.trim_start_matches('/');
    layers
        .iter()
        .find_map(|layer| fs::read_to_string(layer.join(rel)).ok())
}

/// The home directory of `user` (name or uid, before any `:group`) from the rootfs's passwd.
fn home_of(layers: &[PathBuf], user: &str) -> String {
    let user = user.split(':').next().unwrap_or("");
    let user = if user.is_empty() { "root" } else { user };
    read_from_layers(layers, "/etc/passwd")
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && (f[0] == user || f[2] == user)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            if user == "root" || user == "0" {
                "/root".into()
            } else {
                "/".into()
            }
        })
}

/// Forwards terminal signals that reach an attached `kiln run` to the container, as Docker's
/// sig-proxy does: the signals are blocked in the calling thread (and so in threads it starts
/// later) and a thread takes them with sigwait. The sandbox resets its mask before exec.
pub(crate) struct SignalForwarder {
    pid: Arc<AtomicI32>,
}

impl SignalForwarder {
    const SIGNALS: [nix::sys::signal::Signal; 4] = [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGQUIT,
    ];

    pub(crate) fn start() -> SignalForwarder {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        let pid = Arc::new(AtomicI32::new(0));
        let mut set = SigSet::empty();
        for s in Self::SIGNALS {
            set.add(s);
        }
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_ok() {
            let pid = pid.clone();
            std::thread::spawn(move || {
                while let Ok(sig) = set.wait() {
                    let p = pid.load(Ordering::SeqCst);
                    if p > 0 {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
                    }
                }
            });
        }
        SignalForwarder { pid }
    }

    pub(crate) fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::SeqCst);
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
        self.pid.store(0, Ordering::SeqCst);
        let mut set = SigSet::empty();
        for s in Self::SIGNALS {
            set.add(s);
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn home_comes_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        let layers = vec![dir.path().to_path_buf()];
        assert_eq!(home_of(&layers, "www"), "/var/www");
        assert_eq!(home_of(&layers, "33:33"), "/var/www");
        assert_eq!(home_of(&layers, ""), "/root");
        assert_eq!(home_of(&layers, "1234"), "/");
    }
}

/// Which way `Runtime::copy` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    FromContainer,
    ToContainer,
}

/// The copy helper's exit: its stderr carries the reason when it failed.
fn helper_result(out: std::process::Output) -> Result<(), RuntimeError> {
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim().trim_start_matches("error: ");
    Err(RuntimeError::Invalid(if text.is_empty() {
        format!("the copy failed ({})", out.status)
    } else {
        text.to_string()
    }))
}

impl Runtime {
    /// `kiln_exe container-cp ROOT`, the rest of the arguments to be added.
    fn cp_helper(&self, kiln_exe: &Path, root: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(kiln_exe);
        cmd.arg("--root")
            .arg(self.root())
            .arg("container-cp")
            .arg(root)
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// `kiln cp`: copies between `container_path` in `c` and `host_path` (as the user wrote
    /// them: a trailing `/` or `/.` matters). The container side runs in `kiln_exe
    /// container-cp`, chrooted into the container's root, so the container's symlinks never
    /// reach the host (see `cp.rs`). A running container is reached through
    /// `/proc/<pid>/root`; a stopped one has its rootfs overlay mounted in a private mount
    /// namespace for the copy.
    pub fn copy(
        &self,
        c: &Container,
        container_path: &str,
        host_path: &str,
        direction: CopyDirection,
        kiln_exe: &Path,
    ) -> Result<(), RuntimeError> {
        if !container_path.starts_with('/') {
            return Err(RuntimeError::Invalid(format!(
                "container path {container_path:?} must be absolute"
            )));
        }
        let c = self.get(c.id())?;
        let cp = |root: &Path| -> Result<(), RuntimeError> {
            match direction {
                CopyDirection::FromContainer => {
                    let source = crate::cp::Source::parse(container_path);
                    let mut child = self
                        .cp_helper(kiln_exe, root)
                        .arg("pack")
                        .arg(&source.path)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .map_err(io_err("start the copy helper"))?;
                    let unpacked = match child.stdout.take() {
                        Some(out) => {
                            crate::cp::unpack(std::io::BufReader::new(out), host_path, &source)
                        }
                        None => Err(RuntimeError::Bug("the copy helper has no stdout".into())),
                    };
                    let helper = child
                        .wait_with_output()
                        .map_err(io_err("wait for the copy helper"))?;
                    helper_result(helper)?;
                    unpacked
                }
                CopyDirection::ToContainer => {
                    let source = crate::cp::Source::parse(host_path);
                    let mut cmd = self.cp_helper(kiln_exe, root);
                    cmd.arg("unpack").arg(container_path).arg(&source.name);
                    if source.contents_only {
                        cmd.arg("--contents");
                    }
                    let mut child = cmd
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .map_err(io_err("start the copy helper"))?;
                    let packed = match child.stdin.take() {
                        Some(input) => {
                            crate::cp::pack(&source.path, std::io::BufWriter::new(input))
                        }
                        None => Err(RuntimeError::Bug("the copy helper has no stdin".into())),
                    };
                    let helper = child
                        .wait_with_output()
                        .map_err(io_err("wait for the copy helper"))?;
                    // The helper's error says more than the broken pipe the packer saw.
                    helper_result(helper)?;
                    packed
                }
            }
        };
        if c.state.status == Status::Running && store::is_alive(c.state.pid, c.state.pid_start) {
            return cp(Path::new(&format!("/proc/{}/root", c.state.pid)));
        }
        let top = c
            .config
            .snapshot
            .as_deref()
            .map(SnapshotId::parse)
            .transpose()?;
        let layers = self.layers(top.as_ref(), &c.dir)?;
        if layers.len() == 1 {
            // No image layers: the upper dir is the whole rootfs.
            return cp(&c.dir.join("upper"));
        }
        let mnt = self.images.tempdir("cp-")?;
        let mounts = kiln_executor::snapshot::Mounts::Overlay {
            lowerdirs: layers[1..].to_vec(),
            upperdir: c.dir.join("upper"),
            workdir: c.dir.join("work"),
        };
        let target = mnt.path().to_path_buf();
        let mut failure = None;
        kiln_image::with_private_mounts(|| {
            mounts
                .mount(&target)
                .map_err(|source| kiln_image::ImageError::Io {
                    what: format!("mount the rootfs of container {}", c.name()),
                    source,
                })?;
            // cp runs as a child of this thread and so inside its mount namespace.
            failure = cp(&target).err();
            Ok::<_, RuntimeError>(())
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
