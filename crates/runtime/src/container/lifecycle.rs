//! A container's life after create: run attached to the caller, or started under a monitor
//! process that applies the restart policy; kill, stop, wait and remove; and the state records
//! only the owner writes.

use std::fs;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiln_executor::sandbox::{CancelToken, ExitInfo, OutputSink, Sandbox, Stdin, Stream};

use super::signals::{SignalForwarder, send_signal};
use super::{Runtime, STOP_MARKER, StartMode, lease_id, parse_signal};
use crate::attach::AttachServer;
use crate::error::{RuntimeError, io_err};
use crate::events;
use crate::logs::LogWriter;
use crate::ports;
use crate::store::{
    self, Container, ContainerState, MountConfig, NetworkMode, RestartPolicy, Status, now_rfc3339,
    write_json,
};
use crate::volume;

impl Runtime {
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
            paused: false,
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
        let code = e.exec_exit_code().map_or(128, i32::from);
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
        let warm = self.warm_cgroups();
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
        let spawned = Sandbox::spawn(&spec, stdin);
        drop(warm);
        let sb = match spawned {
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
        events::record(self.root(), events::container(c, "start"));
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
            Some(LogWriter::for_config(
                &c.log_path(),
                &c.config.host.log_config,
            )?)
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
        self.record_exit(c, &info);
        if !c.config.auto_remove {
            self.write_state(c, &self.exited_state(&running, &info))?;
        }
        Ok(info)
    }

    /// The `die` event (and `oom` before it when the OOM killer acted).
    fn record_exit(&self, c: &Container, info: &ExitInfo) {
        if info.oom_killed {
            events::record(self.root(), events::container(c, "oom"));
        }
        events::record(
            self.root(),
            events::container_with(
                c,
                "die",
                [("exitCode", info.status.shell_code().to_string())],
            ),
        );
    }

    /// Starts `c` under a new monitor process and returns once its command runs (or failed to
    /// start, which is an error here).
    pub fn start(&self, c: &Container, mode: &StartMode) -> Result<(), RuntimeError> {
        if c.state.is_running() {
            return Ok(());
        }
        let StartMode::Detached { kiln_exe } = mode;
        // The monitor starts the container; the lock is the kernel's, so warming it here
        // serves the monitor's process too.
        let _warm = self.warm_cgroups();
        let (child, out) = self.spawn_monitor(c, kiln_exe, false)?;
        self.monitor_answer(c, child, out)
    }

    /// Starts `c` under a monitor, attached from before its command runs (so no output is
    /// missed), and stays attached until it exits or is detached from (`run -i`, `start -a`).
    pub fn start_attached(
        &self,
        c: &Container,
        kiln_exe: &std::path::Path,
        opts: &crate::attach::AttachOptions,
    ) -> Result<crate::attach::AttachEnd, RuntimeError> {
        if c.state.is_running() {
            return self.attach(c, opts);
        }
        let (child, mut out) = self.spawn_monitor(c, kiln_exe, true)?;
        // The monitor says when its socket listens, then waits for us before it starts.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let conn = if line == b"attach" {
            Some(crate::attach::connect(&c.dir, opts)?)
        } else {
            None
        };
        let first = String::from_utf8_lossy(&line).into_owned();
        self.monitor_answer_after(c, child, out, first)?;
        let conn = conn.ok_or_else(|| {
            RuntimeError::Monitor("the monitor did not offer an attach socket".into())
        })?;
        events::record(self.root(), events::container(c, "attach"));
        conn.pump(opts)
    }

    /// Attaches to the running container `c` (through its monitor).
    pub fn attach(
        &self,
        c: &Container,
        opts: &crate::attach::AttachOptions,
    ) -> Result<crate::attach::AttachEnd, RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running {
            return Err(RuntimeError::Invalid(
                "you cannot attach to a stopped container, start it first".into(),
            ));
        }
        if c.state.paused {
            return Err(RuntimeError::Invalid(
                "you cannot attach to a paused container, unpause it first".into(),
            ));
        }
        let conn = crate::attach::connect(&c.dir, opts)?;
        events::record(self.root(), events::container(&c, "attach"));
        conn.pump(opts)
    }

    /// Runs `kiln container-monitor [--attach-first] ID`, its stdout a pipe to us.
    fn spawn_monitor(
        &self,
        c: &Container,
        kiln_exe: &std::path::Path,
        attach_first: bool,
    ) -> Result<(std::process::Child, std::process::ChildStdout), RuntimeError> {
        let _ = fs::remove_file(c.dir.join(STOP_MARKER));
        let log = fs::File::create(c.dir.join("monitor.log"))
            .map_err(io_err("create the monitor's log"))?;
        let mut cmd = std::process::Command::new(kiln_exe);
        cmd.arg("--root").arg(self.root()).arg("container-monitor");
        if attach_first {
            cmd.arg("--attach-first");
        }
        let mut child = cmd
            .arg(c.id())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!(
                "start the container monitor {}",
                kiln_exe.display()
            )))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| RuntimeError::Bug("the monitor has no stdout".into()))?;
        Ok((child, out))
    }

    /// Reads the monitor's "ok" (or "error: ...") once the command runs.
    fn monitor_answer(
        &self,
        c: &Container,
        child: std::process::Child,
        out: std::process::ChildStdout,
    ) -> Result<(), RuntimeError> {
        self.monitor_answer_after(c, child, out, String::new())
    }

    fn monitor_answer_after(
        &self,
        c: &Container,
        mut child: std::process::Child,
        mut out: std::process::ChildStdout,
        mut answer: String,
    ) -> Result<(), RuntimeError> {
        if answer == "attach" {
            answer.clear();
        }
        let _ = out.read_to_string(&mut answer);
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
        attach_first: bool,
        ready: &mut dyn FnMut(Result<(), String>),
        say: &mut dyn FnMut(&str),
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
        // Clients may attach while it runs; a start for `run -i` waits for its first one.
        let server = match AttachServer::start(&c.dir) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "attaching to this container will not work");
                None
            }
        };
        if attach_first && let Some(server) = &server {
            say("attach");
            server.wait_for_client(Duration::from_secs(30));
        }
        let mut state = c.state.clone();
        // A manual start begins a new series of restarts, as in Docker.
        state.restart_count = 0;
        let mut log = LogWriter::for_config(&c.log_path(), &c.config.host.log_config)?;
        let mut failures_in_a_row = 0u32;
        loop {
            let started = Instant::now();
            let warm = self.warm_cgroups();
            let net = match self.attach_network(&c) {
                Ok(n) => n,
                Err(e) => {
                    self.write_state(&c, &self.failed_state(&state, &e))?;
                    tell(Err(e.to_string()));
                    return Err(e);
                }
            };
            // With -i, the command's stdin is a pipe the attached clients write into.
            let (stdin, stdin_w) = if c.config.open_stdin {
                let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
                    RuntimeError::Io {
                        what: "create the container's stdin pipe".into(),
                        source: e.into(),
                    }
                })?;
                (Stdin::Fd(r), Some(fs::File::from(w)))
            } else {
                (Stdin::Null, None)
            };
            let spawned = self
                .sandbox_spec(&c)
                .and_then(|spec| Sandbox::spawn(&spec, stdin).map_err(Into::into));
            drop(warm);
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
            events::record(self.root(), events::container(&c, "start"));
            if let Some(server) = &server {
                server.set_input(stdin_w, sb.pty());
            }
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
            let mut sink = |stream: Stream, data: &[u8]| {
                log.write(stream, data);
                if let Some(mut server) = server.as_ref() {
                    server.write(stream, data);
                }
            };
            let info = sb.wait(&mut sink, &CancelToken::new());
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
            self.record_exit(&c, &info);
            if let Some(server) = &server {
                server.finish(info.status.shell_code());
            }
            state = self.exited_state(&state, &info);
            let stopped = c.dir.join(STOP_MARKER).exists();
            let code = info.status.shell_code();
            // `update --restart` may have changed the policy since the start.
            let restart = self
                .get(c.id())
                .map_or(c.config.restart, |now| now.config.restart);
            let again = !stopped
                && match restart {
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

    /// Sends `signal` to the container's pid 1 (a paused container gets it once thawed, as
    /// SIGKILL thaws it).
    pub fn kill(&self, c: &Container, signal: i32) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running || !store::is_alive(c.state.pid, c.state.pid_start) {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        send_signal(c.state.pid, signal)?;
        if signal == libc::SIGKILL {
            self.thaw(&c)?;
        }
        events::record(
            self.root(),
            events::container_with(&c, "kill", [("signal", signal.to_string())]),
        );
        Ok(())
    }

    /// Stops `c`: its stop signal, then SIGKILL after `timeout` (the container's
    /// `--stop-timeout`, else 10 seconds, when `None`); the restart policy does not apply.
    /// Returns once it is no longer running.
    pub fn stop(&self, c: &Container, timeout: Option<Duration>) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        let timeout = timeout.unwrap_or_else(|| {
            Duration::from_secs(c.config.host.stop_timeout.unwrap_or(10).into())
        });
        if !c.state.is_running() {
            return Ok(());
        }
        fs::write(c.dir.join(STOP_MARKER), b"")
            .map_err(io_err(format!("mark container {} as stopping", c.name())))?;
        if c.state.status == Status::Running && store::is_alive(c.state.pid, c.state.pid_start) {
            send_signal(c.state.pid, parse_signal(&c.config.stop_signal)?)?;
            // A frozen process takes its signal when thawed.
            self.thaw(&c)?;
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
            events::record(self.root(), events::container(&c, "stop"));
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
                self.thaw(&c)?;
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
        // The monitor may still be finishing (its last writes go through a handle on the
        // directory, which follows the rename) for a moment after the exit is recorded: try
        // again while the directory is not empty, up to a second.
        let mut tries = 0;
        loop {
            match fs::remove_dir_all(&trash) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => {
                    r.map_err(io_err(format!("remove container {}", c.name())))?;
                    break;
                }
            }
        }
        crate::network::release(self.root(), &c.config);
        events::record(self.root(), events::container(c, "destroy"));
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
}
