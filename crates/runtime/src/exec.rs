//! `kiln exec`: runs a command inside a running container by joining its namespaces.
//!
//! A dedicated thread unshares its filesystem attributes (so it may change mount namespace in
//! a multi-threaded process), joins the cgroups and the ipc, uts, net, pid, cgroup and mount
//! namespaces of the container's pid 1, and spawns the command: a child of a thread that joined
//! a pid namespace is born inside it.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns, unshare};

use crate::container::Runtime;
use crate::error::{RuntimeError, io_err};
use crate::store::{self, Container, Status};

/// The options of `kiln exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    /// `K=V` entries added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Pass this process's stdin to the command (else /dev/null).
    pub interactive: bool,
    pub tty: bool,
}

impl Runtime {
    /// Runs `opts.argv` in `c` with this process's stdout and stderr; returns the shell-style
    /// exit code (128 + signal when killed).
    pub fn exec(&self, c: &Container, opts: &ExecOptions) -> Result<i32, RuntimeError> {
        if opts.tty {
            return Err(RuntimeError::NotSupported(
                "a pseudo-terminal for exec (-t)".into(),
            ));
        }
        if opts.argv.is_empty() {
            return Err(RuntimeError::Invalid("exec needs a command".into()));
        }
        let c = self.get(c.id())?;
        if c.state.status != Status::Running || !store::is_alive(c.state.pid, c.state.pid_start) {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        let pid = c.state.pid;
        // Open every namespace before joining any: after the mount namespace, /proc is the
        // container's.
        let mut namespaces = Vec::new();
        for (name, flag) in [
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("pid", CloneFlags::CLONE_NEWPID),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            let path = format!("/proc/{pid}/ns/{name}");
            // Skip namespaces the container shares with us (host network, no cgroup ns).
            if fs::read_link(&path).ok() == fs::read_link(format!("/proc/self/ns/{name}")).ok() {
                continue;
            }
            let f = fs::File::open(&path).map_err(io_err(format!("open {path}")))?;
            namespaces.push((name, flag, f));
        }
        let mut env = c.config.env.clone();
        for e in &opts.env {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
            if e.contains('=') {
                env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                env.push(format!("{e}={v}"));
            }
        }
        let cwd = opts
            .workdir
            .clone()
            .unwrap_or_else(|| c.config.working_dir.clone());
        let user = opts.user.clone().unwrap_or_else(|| c.config.user.clone());
        let user = if user.is_empty() { "root".into() } else { user };
        let cgroups = c.state.cgroup_dirs.clone();
        let argv = opts.argv.clone();
        let interactive = opts.interactive;
        std::thread::spawn(move || -> Result<i32, RuntimeError> {
            unshare(CloneFlags::CLONE_FS).map_err(|e| RuntimeError::Io {
                what: "unshare filesystem attributes for exec".into(),
                source: e.into(),
            })?;
            // Join the cgroups first (through the host's /sys): the child inherits them, so
            // the container's limits cover it.
            let tid = nix::unistd::gettid();
            for dir in &cgroups {
                let tasks = if dir.join("tasks").exists() {
                    dir.join("tasks")
                } else {
                    dir.join("cgroup.procs")
                };
                fs::write(&tasks, tid.to_string())
                    .map_err(io_err(format!("join cgroup {}", dir.display())))?;
            }
            for (name, flag, f) in &namespaces {
                setns(f, *flag).map_err(|e| RuntimeError::Io {
                    what: format!("join the container's {name} namespace"),
                    source: e.into(),
                })?;
            }
            // Docker's default capabilities, like the container's own processes: the bounding
            // set of this thread limits what the command gets when it runs as root.
            crate::sys::drop_bounding_except(
                kiln_executor::sandbox::DOCKER_DEFAULT_CAPS,
                crate::sys::last_cap(),
            )
            .map_err(io_err("drop capabilities for exec"))?;
            let resolved =
                kiln_engine::fileop::owner::resolve_user(Some(&PathBuf::from("/")), &user)?;
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .envs(env.iter().filter_map(|e| e.split_once('=')))
                .current_dir(&cwd)
                .uid(resolved.uid)
                .gid(resolved.gid)
                .stdin(if interactive {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                });
            let status = cmd.status().map_err(|source| {
                RuntimeError::Sandbox(kiln_executor::sandbox::SandboxError::Exec {
                    program: argv[0].clone(),
                    source,
                })
            })?;
            Ok(status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
        })
        .join()
        .map_err(|_| RuntimeError::Bug("the exec thread panicked".into()))?
    }
}
