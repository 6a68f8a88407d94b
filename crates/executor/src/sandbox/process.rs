//! A sandbox from start to end: [`Sandbox::spawn`] runs the setup phases in the order of
//! docs/dev/sandbox.md, each in its own module: `validate`, the pty and pipes (`stdio`),
//! detached mounts and the child's mount ops (`mounts`), cgroups (`cgroup`), the child's plan
//! and the clone (`plan`), the child program itself (`crate::sys::child`), its reports
//! (`status`); then `wait` streams the command's output and `teardown` cleans up.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::SandboxError;
use super::cgroup::{self, Cgroups};
use super::io::{PtyMaster, Stdin};
use super::mounts::Mounts;
use super::spec::{Namespace, Network, SandboxSpec};
use super::stdio::{self, ParentEnds, Pty, StdinFeed};
use super::teardown::Cleanup;
use super::validate::validate;
use super::{plan, status};
use crate::sys;

/// A started sandbox. Dropping it without [`Sandbox::wait`] kills it and cleans up.
#[derive(Debug)]
pub struct Sandbox {
    pub(super) id: String,
    pub(super) pid: i32,
    pub(super) pidfd: OwnedFd,
    pub(super) stdout: Option<fs::File>,
    pub(super) stderr: Option<fs::File>,
    pub(super) stdin: Option<StdinFeed>,
    /// The pty's master side, kept for [`Sandbox::pty`] (output is read through `stdout`).
    pub(super) pty: Option<OwnedFd>,
    pub(super) cgroups: Option<Cgroups>,
    /// Whether pid 1 is the init of a pid namespace of its own (else what it leaves behind in
    /// the cgroup is killed when it exits).
    pub(super) own_pid_namespace: bool,
    pub(super) cleanup: Cleanup,
    pub(super) started: Instant,
    pub(super) exit: Option<(sys::Exit, Instant)>,
    pub(super) done: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sandbox id unique on this host: pid, a counter and the clock's nanoseconds.
pub(crate) fn new_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{t:08x}", std::process::id())
}

pub(super) fn io_err(what: String) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Setup { what, source }
}

impl Sandbox {
    /// Starts the command of `spec` and returns once it runs (setup failures are errors here).
    pub fn spawn(spec: &SandboxSpec, stdin: Stdin) -> Result<Sandbox, SandboxError> {
        validate(spec)?;
        // Compiled once per process; the Arc keeps the instructions alive until the child has
        // installed them (the parent thread is suspended until exec).
        let seccomp = super::seccomp::program(&spec.seccomp, spec.capabilities)?;
        let started = Instant::now();
        let id = new_id();
        let state = spec.state_dir.join(&id);
        let mountpoint = state.join("root");
        fs::create_dir_all(&mountpoint).map_err(io_err(format!(
            "failed to create sandbox state dir {}",
            state.display()
        )))?;
        let mut cleanup = Cleanup::default();
        cleanup.state_dir = Some(state.clone());

        let (devpts, pty) = match Pty::open(spec)? {
            Some(p) => (Some(p.devpts), Some((p.master, p.slave))),
            None => (None, None),
        };
        // Before the mounts: a container shows its cgroup directories at /sys/fs/cgroup.
        let cgroups = if spec.cgroup.is_empty() {
            None
        } else {
            let privileged = spec.sysfs_writable;
            Some(Cgroups::create(
                &id,
                &cgroup::Request {
                    limits: &spec.cgroup,
                    device_rules: (!privileged).then(|| cgroup::device_rules(&spec.devices)),
                },
            )?)
        };
        let views = match (&cgroups, spec.cgroup.container) {
            (Some(c), true) => c.views().to_vec(),
            _ => Vec::new(),
        };
        let mut mounts = Mounts::prepare(spec, &state, devpts, &views, &mut cleanup)?;
        let cgroup_procs = match &cgroups {
            Some(c) => c.procs_files()?,
            None => Vec::new(),
        };

        let netns = match &spec.network {
            Network::Namespace(p) => Some(OwnedFd::from(fs::File::open(p).map_err(io_err(
                format!("failed to open network namespace {}", p.display()),
            ))?)),
            _ => None,
        };

        let mut join_ns = Vec::new();
        for (ns, kind, what) in [
            (&spec.ipc_namespace, libc::CLONE_NEWIPC, "IPC"),
            (&spec.uts_namespace, libc::CLONE_NEWUTS, "UTS"),
        ] {
            if let Namespace::Join(p) = ns {
                let f = fs::File::open(p).map_err(io_err(format!(
                    "failed to open {what} namespace {}",
                    p.display()
                )))?;
                join_ns.push((OwnedFd::from(f), kind));
            }
        }
        let pidns = match &spec.pid_namespace {
            Namespace::Join(p) => Some(OwnedFd::from(fs::File::open(p).map_err(io_err(
                format!("failed to open pid namespace {}", p.display()),
            ))?)),
            _ => None,
        };

        let (parent, child) = stdio::pipes(stdin, pty)?;
        let plan = plan::build(
            spec,
            plan::Parts {
                mountpoint: &mountpoint,
                mounts: &mut mounts,
                child: &child,
                cgroup_procs: &cgroup_procs,
                netns: netns.as_ref(),
                join_ns: &join_ns,
                seccomp: seccomp.as_deref(),
            },
        )?;
        let flags = plan::clone_flags(spec);
        let spawned = match &pidns {
            // The child is born in the other sandbox's pid namespace.
            Some(ns) => sys::with_child_pid_namespace(ns.as_fd(), || sys::spawn(&plan, flags)),
            None => sys::spawn(&plan, flags),
        };
        drop(join_ns);
        drop(pidns);
        // The child has its copies; ours must go so EOF on the pipes means "child done", and
        // only the command may hold the pty's slave (the master reads EIO once it is gone).
        drop(child);
        let Mounts { rootfs, ops, keep } = mounts;
        drop(keep);
        drop(rootfs);
        drop(netns);
        drop(cgroup_procs);
        let spawned = spawned.map_err(io_err("failed to clone the sandbox process".into()))?;

        let ParentEnds {
            status,
            stdout: out_r,
            stderr: err_r,
            stdin: stdin_parent,
            pty_master: pty,
        } = parent;
        // With a pty its master carries all output (as Docker's stdout); the pipes were unused.
        let (stdout, stderr) = match &pty {
            Some(master) => (
                fs::File::from(
                    master
                        .try_clone()
                        .map_err(io_err("failed to duplicate the pty's master".into()))?,
                ),
                None,
            ),
            None => (fs::File::from(out_r), Some(fs::File::from(err_r))),
        };
        let mut sandbox = Sandbox {
            id,
            pid: spawned.pid,
            pidfd: spawned.pidfd,
            stdout: Some(stdout),
            stderr,
            stdin: stdin_parent,
            pty,
            cgroups,
            own_pid_namespace: spec.pid_namespace == Namespace::New,
            cleanup,
            started,
            exit: None,
            done: false,
        };

        let failure = status::read_reports(status, &ops.tracked, &mut sandbox.cleanup.created);
        if let Some(r) = failure {
            // The child exits right after reporting; reap it and undo everything.
            let _ = sandbox.finish_blocking();
            return Err(status::describe_failure(spec, &ops.what, &mountpoint, r));
        }
        sandbox.set_nonblocking()?;
        tracing::debug!(id = %sandbox.id, pid = sandbox.pid, "sandbox started");
        Ok(sandbox)
    }

    /// Makes the parent's ends of the pipes non-blocking, for `wait`'s poll loop.
    fn set_nonblocking(&self) -> Result<(), SandboxError> {
        for fd in [&self.stdout, &self.stderr].into_iter().flatten() {
            sys::set_nonblocking(fd.as_fd(), true)
                .map_err(io_err("failed to make output pipe non-blocking".into()))?;
        }
        if let Some(feed) = &self.stdin {
            sys::set_nonblocking(feed.to.as_fd(), true)
                .map_err(io_err("failed to make stdin pipe non-blocking".into()))?;
        }
        Ok(())
    }

    /// The host pid of the sandbox's pid 1.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The sandbox id (the name of its state dir and cgroups).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The master side of the command's pseudo-terminal (a duplicate), to resize it while
    /// [`Sandbox::wait`] runs; `None` without [`SandboxSpec::tty`].
    pub fn pty(&self) -> Option<PtyMaster> {
        let fd = self.pty.as_ref()?.try_clone().ok()?;
        Some(PtyMaster::from_fd(fd))
    }

    /// The sandbox's cgroup directories on the host (empty without limits).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroups
            .as_ref()
            .map(|c| c.dirs().map(Path::to_path_buf).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to pid 1. SIGKILL ends the whole sandbox: the kernel kills every other
    /// process of a pid namespace when its init dies.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if self.exit.is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal).map_err(io_err(format!(
            "failed to send signal {signal} to sandbox {}",
            self.id
        )))
    }
}
