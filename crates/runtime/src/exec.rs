//! `kiln exec`: runs a command inside a running container by joining its namespaces.
//!
//! A dedicated thread unshares its filesystem attributes (so it may change mount namespace in
//! a multi-threaded process), joins the cgroups and the ipc, uts, net, pid, cgroup and mount
//! namespaces of the container's pid 1, and spawns the command: a child of a thread that joined
//! a pid namespace is born inside it. With `-t` the same thread opens a pty in the container's
//! `/dev/pts` (so the command's terminal is one of the container's) and the calling thread
//! copies between it and this process's stdin and stdout. Health checks capture the output
//! instead, with a deadline.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_executor::sandbox::PtyMaster;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns, unshare};

use crate::container::{Runtime, SignalForwarder};
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

/// What a captured exec (a health probe) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecOutput {
    /// The shell-style exit code; -1 when it was killed for running past the timeout.
    pub exit_code: i32,
    /// Stdout and stderr as they interleaved, cut at the capture limit.
    pub output: Vec<u8>,
    pub timed_out: bool,
}

/// Where an exec's standard streams go.
enum ExecIo {
    /// This process's stdout and stderr (and stdin with `interactive`).
    Inherit,
    /// A new pty of the container as stdin, stdout, stderr and controlling terminal.
    Pty,
    /// Stdin `/dev/null`, stdout and stderr into one pipe read by the caller; the command
    /// leads its own process group so a timeout kills whatever it started.
    Capture,
}

impl Runtime {
    /// Runs `opts.argv` in `c` with this process's stdout and stderr (with `opts.tty`, through
    /// a pty of the container, this process's terminal in raw mode while input is attached);
    /// returns the shell-style exit code (128 + signal when killed).
    pub fn exec(&self, c: &Container, opts: &ExecOptions) -> Result<i32, RuntimeError> {
        let action = |what: &str| format!("{what}: {}", opts.argv.join(" "));
        crate::events::record(
            self.root(),
            crate::events::container(c, &action("exec_start")),
        );
        let code = self.exec_inner(c, opts);
        if let Ok(code) = &code {
            crate::events::record(
                self.root(),
                crate::events::container_with(c, "exec_die", [("exitCode", code.to_string())]),
            );
        }
        code
    }

    fn exec_inner(&self, c: &Container, opts: &ExecOptions) -> Result<i32, RuntimeError> {
        if !opts.tty {
            let (mut child, _) = self.spawn_in(c, opts, ExecIo::Inherit)?;
            let status = child
                .wait()
                .map_err(io_err("wait for the exec'd command"))?;
            return Ok(shell_code(status));
        }
        // Signals for kiln go to the command instead, so kiln always gets to restore the
        // terminal.
        let forward = SignalForwarder::start();
        let (mut child, master) = self.spawn_in(c, opts, ExecIo::Pty)?;
        forward.set_pid(child.id() as i32);
        let master = master.ok_or_else(|| RuntimeError::Bug("exec -t without a pty".into()))?;
        let dup = master
            .fd()
            .try_clone_to_owned()
            .map_err(io_err("duplicate the pty's master"))?;
        let session = crate::pty::TerminalSession::attach(Some(master), opts.interactive);
        let input = if opts.interactive {
            Some(
                std::io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(io_err("duplicate stdin"))?,
            )
        } else {
            None
        };
        let result = pump_pty(dup, input, &mut child);
        drop(session);
        forward.set_pid(0);
        let status = child
            .wait()
            .map_err(io_err("wait for the exec'd command"))?;
        result?;
        Ok(shell_code(status))
    }

    /// Runs `opts.argv` in `c` with its output captured (at most `limit` bytes kept), killing
    /// it and everything it started once `timeout` passes.
    pub(crate) fn exec_capture(
        &self,
        c: &Container,
        opts: &ExecOptions,
        timeout: Duration,
        limit: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        let (mut child, _) = self.spawn_in(c, opts, ExecIo::Capture)?;
        let deadline = Instant::now() + timeout;
        let mut output = Vec::new();
        let mut timed_out = false;
        if let Some(out) = child.stdout.take() {
            let mut out = fs::File::from(OwnedFd::from(out));
            let mut buf = [0u8; 4096];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    break;
                }
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(io_err("poll the probe's output")(e.into())),
                }
                match out.read(&mut buf) {
                    // End of output: every process that held the pipe is gone.
                    Ok(0) => break,
                    Ok(n) => {
                        let room = limit.saturating_sub(output.len());
                        output.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err("read the probe's output")(e)),
                }
            }
        }
        if timed_out {
            // The command leads its process group: take everything it started with it.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Ok(ExecOutput {
                exit_code: -1,
                output,
                timed_out: true,
            });
        }
        let status = child.wait().map_err(io_err("wait for the probe"))?;
        Ok(ExecOutput {
            exit_code: shell_code(status),
            output,
            timed_out: false,
        })
    }

    /// Starts `opts.argv` inside `c` (see the module docs) and returns the child, with the
    /// pty's master for [`ExecIo::Pty`].
    fn spawn_in(
        &self,
        c: &Container,
        opts: &ExecOptions,
        io: ExecIo,
    ) -> Result<(Child, Option<PtyMaster>), RuntimeError> {
        if opts.argv.is_empty() {
            return Err(RuntimeError::Invalid("exec needs a command".into()));
        }
        // The command joins the container's cgroups below: the lock's grace period passes
        // while the rest is prepared (`Runtime::warm_cgroups`).
        let _warm = self.warm_cgroups();
        let c = self.get(c.id())?;
        if c.state.status != Status::Running || !store::is_alive(c.state.pid, c.state.pid_start) {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        if c.state.paused {
            return Err(RuntimeError::Invalid(format!(
                "container {} is paused, unpause the container before exec",
                c.id()
            )));
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
        let seccomp = crate::container::seccomp_of(&c.config);
        let caps = crate::container::capabilities_of(&c.config)?;
        let no_new_privs = c.config.host.no_new_privileges;
        let mut as_user = c.config.clone();
        as_user.user = user.clone();
        let argv = opts.argv.clone();
        let interactive = opts.interactive;
        let tty_size = crate::pty::caller_size();
        std::thread::spawn(
            move || -> Result<(Child, Option<PtyMaster>), RuntimeError> {
                unshare(CloneFlags::CLONE_FS).map_err(|e| RuntimeError::Io {
                    what: "unshare filesystem attributes for exec".into(),
                    source: e.into(),
                })?;
                // Between fork and execve the command is kiln's own binary inside the
                // container's pid namespace: non-dumpable, a container process cannot open its
                // /proc/PID/exe (and rewrite kiln through it, runc's CVE-2019-5736). execve of
                // the command makes it dumpable again.
                nix::sys::prctl::set_dumpable(false).map_err(|e| RuntimeError::Io {
                    what: "make kiln exec non-dumpable".into(),
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
                // The container's capabilities, like its own processes: the bounding set of this
                // thread limits what the command gets when it runs as root.
                crate::sys::drop_bounding_except(caps, crate::sys::last_cap())
                    .map_err(io_err("drop capabilities for exec"))?;
                // And the container's seccomp filter, on this throwaway thread (still root with
                // CAP_SYS_ADMIN, so without no_new_privs): the command inherits it.
                seccomp.apply_to_current_thread(caps)?;
                // Read inside the container's mount namespace: its own passwd and group files.
                let resolved =
                    crate::container::user_of(&as_user, &|p| fs::read_to_string(p).ok())?;
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .env_clear()
                    .envs(env.iter().filter_map(|e| e.split_once('=')))
                    .current_dir(&cwd);
                let program =
                    crate::sys::Program::new(&argv, &env).map_err(io_err("prepare the command"))?;
                crate::sys::prepare_exec(
                    &mut cmd,
                    matches!(io, ExecIo::Pty),
                    Some(crate::sys::Credentials {
                        uid: resolved.uid,
                        gid: resolved.gid,
                        groups: resolved.additional_gids.clone(),
                        no_new_privs,
                    }),
                    Some(program),
                );
                let mut master = None;
                match io {
                    ExecIo::Inherit => {
                        cmd.stdin(if interactive {
                            Stdio::inherit()
                        } else {
                            Stdio::null()
                        });
                    }
                    ExecIo::Pty => {
                        // Opened after joining the mount namespace: one of the container's ptys.
                        let (m, slave) = kiln_executor::sandbox::open_pty(Path::new("/dev/pts"))
                            .map_err(io_err("open a pseudo-terminal in the container"))?;
                        if let Some(size) = tty_size {
                            let _ = m.resize(size);
                        }
                        if resolved.uid != 0 {
                            // The user owns its terminal, as after a login.
                            let _ = nix::unistd::fchown(
                                &slave,
                                Some(nix::unistd::Uid::from_raw(resolved.uid)),
                                None,
                            );
                        }
                        let dup =
                            |fd: &OwnedFd| fd.try_clone().map_err(io_err("duplicate the pty"));
                        cmd.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(slave);
                        master = Some(m);
                    }
                    ExecIo::Capture => {
                        let (r, w) = nix::unistd::pipe().map_err(|e| RuntimeError::Io {
                            what: "create a pipe for the probe's output".into(),
                            source: e.into(),
                        })?;
                        let w2 = w.try_clone().map_err(io_err("duplicate a pipe"))?;
                        cmd.stdin(Stdio::null())
                            .stdout(w)
                            .stderr(w2)
                            .process_group(0);
                        let child = spawn(&mut cmd, &argv[0]);
                        // Our copy of the write end goes with `cmd`; hand the read end over as
                        // the child's stdout.
                        drop(cmd);
                        let mut child = child?;
                        child.stdout = Some(std::process::ChildStdout::from(r));
                        return Ok((child, None));
                    }
                }
                let child = spawn(&mut cmd, &argv[0])?;
                // The slave's copies in `cmd` close with it: the master then reads EIO once the
                // command (and whatever it started on the terminal) is gone.
                drop(cmd);
                Ok((child, master))
            },
        )
        .join()
        .map_err(|_| RuntimeError::Bug("the exec thread panicked".into()))?
    }
}

fn spawn(cmd: &mut Command, program: &str) -> Result<Child, RuntimeError> {
    cmd.spawn().map_err(|source| {
        RuntimeError::Sandbox(kiln_executor::sandbox::SandboxError::Exec {
            program: program.to_string(),
            source,
        })
    })
}

fn shell_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies the pty's output to stdout and (with `input`) stdin into the pty until the terminal
/// hangs up, or the command has exited and its terminal has been quiet for a moment (a
/// process it left behind may hold the terminal open).
fn pump_pty(
    master: OwnedFd,
    input: Option<OwnedFd>,
    child: &mut Child,
) -> Result<(), RuntimeError> {
    let mut master = fs::File::from(master);
    let mut input = input.map(fs::File::from);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut exited = false;
    let mut stdout = std::io::stdout();
    loop {
        let mut fds = Vec::with_capacity(2);
        let mut flags = PollFlags::POLLIN;
        if !pending.is_empty() {
            flags |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(master.as_fd(), flags));
        let reading = pending.is_empty() && input.is_some();
        if let Some(i) = input.as_ref().filter(|_| reading) {
            fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
        }
        let n = match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_err("poll the pty")(e.into())),
        };
        let master_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let input_ev = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if n == 0 {
            if exited {
                return Ok(());
            }
            exited = child
                .try_wait()
                .map_err(io_err("wait for the exec'd command"))?
                .is_some();
            continue;
        }
        if master_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match master.read(&mut buf) {
                // EIO: every holder of the slave is gone.
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush());
                }
            }
        }
        if master_ev.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match master.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => pending.clear(),
            }
        }
        if reading
            && input_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && let Some(i) = &mut input
        {
            match i.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // End of our input: the terminal's end-of-file character (^D).
                    pending.push(0x04);
                    input = None;
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}
