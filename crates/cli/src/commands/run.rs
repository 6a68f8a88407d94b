//! `kiln run`, `kiln create`, `kiln start` and the hidden `kiln container-monitor` that keeps a
//! detached container.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kiln_runtime::{Created, RunOptions, RuntimeError, StartMode, Stdin, Stream};

use crate::backend::Context;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background under a monitor and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Name the container.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (K=V, or K to pass this shell's value).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read environment variables from a file (K=V lines).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name or uid, with optional :group).
    #[arg(short, long)]
    user: Option<String>,
    /// Replace the image's ENTRYPOINT (drops its CMD).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind a host path or a named volume: /host:/path[:ro], NAME:/path[:ro], or /path.
    #[arg(short, long = "volume", value_name = "SPEC")]
    volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,target=…[,readonly]
    #[arg(long = "mount", value_name = "SPEC")]
    mount: Vec<String>,
    /// Mount a tmpfs: /path[:size=…,mode=…].
    #[arg(long, value_name = "PATH")]
    tmpfs: Vec<String>,
    /// Publish a port: [IP:][HOST:]CTR[/tcp|udp] (no HOST: a random free port).
    #[arg(short, long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a random host port.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// bridge (the default), none, host, or a network from `kiln network create`.
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// The container's hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU limit in CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// no, always, unless-stopped, on-failure[:N].
    #[arg(long)]
    restart: Option<String>,
    /// Keep stdin open (pass this terminal's stdin to the command).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal for the command.
    #[arg(short, long)]
    tty: bool,
    /// Command to run to check health (with /bin/sh -c).
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s, 1m30s).
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// Maximum time a health check may run before it counts as failed.
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Time to initialize before failed checks count.
    #[arg(long, value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Disable any HEALTHCHECK the image specifies.
    #[arg(long)]
    no_healthcheck: bool,
    /// Security options; `seccomp=unconfined` runs without the seccomp filter.
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    image: String,
    /// The command and its arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            image: self.image.clone(),
            command: self.command.clone(),
            name: self.name.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            network: self.network.clone(),
            volumes: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            memory: self.memory.clone(),
            cpus: self.cpus.clone(),
            pids_limit: self.pids_limit,
            read_only: self.read_only,
            restart: self.restart.clone(),
            auto_remove: self.rm,
            interactive: self.interactive,
            tty: self.tty,
            health: kiln_runtime::health::HealthOverrides {
                cmd: self.health_cmd.clone(),
                interval: self.health_interval.clone(),
                timeout: self.health_timeout.clone(),
                start_period: self.health_start_period.clone(),
                retries: self.health_retries,
                disable: self.no_healthcheck,
            },
            security_opt: self.security_opt.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    id: String,
}

/// Docker's exit codes for a container that never ran: 125 for kiln's own errors, 126 when the
/// command cannot be invoked, 127 when it is not found.
pub(crate) fn failure(e: &RuntimeError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exec_exit_code().unwrap_or(125))
}

/// Shows what the run engine warned about while creating the container.
fn warn(created: Created) -> kiln_runtime::Container {
    for w in &created.warnings {
        eprintln!("warning: {w}");
    }
    created.container
}

pub(crate) fn kiln_exe() -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    std::env::current_exe().context("failed to find the kiln binary to start a container monitor")
}

/// Writes container output to this process's stdout and stderr as it comes.
pub(crate) fn terminal_sink(stream: Stream, data: &[u8]) {
    let _ = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(data).and_then(|()| out.flush())
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(data).and_then(|()| err.flush())
        }
    };
}

pub fn run(args: RunArgs, ctx: &Context) -> ExitCode {
    let rt = match ctx.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(125);
        }
    };
    let container = match rt.create(&args.options()) {
        Ok(created) => warn(created),
        Err(e) => return failure(&e),
    };
    if args.detach {
        let exe = match kiln_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(125);
            }
        };
        return match rt.start(&container, &StartMode::Detached { kiln_exe: exe }) {
            Ok(()) => {
                println!("{}", container.id());
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        };
    }
    let stdin = if args.interactive {
        match std::io::stdin().lock().as_fd_owned() {
            Ok(fd) => Stdin::Fd(fd),
            Err(e) => {
                eprintln!("error: failed to pass stdin to the container: {e}");
                return ExitCode::from(125);
            }
        }
    } else {
        Stdin::Null
    };
    let mut sink = terminal_sink;
    match rt.run_attached(&container, stdin, &mut sink) {
        Ok(info) => ExitCode::from(info.status.shell_code().clamp(0, 255) as u8),
        Err(e) => failure(&e),
    }
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl AsFdOwned for std::io::StdinLock<'_> {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd as _;
        self.as_fd().try_clone_to_owned()
    }
}

/// `kiln create`: like `run` without starting.
pub fn create(args: RunArgs, ctx: &Context) -> ExitCode {
    let rt = match ctx.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(125);
        }
    };
    match rt.create(&args.options()) {
        Ok(created) => {
            println!("{}", warn(created).id());
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

/// `kiln start`: starts stopped containers under a monitor each.
pub fn start(args: StartArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let exe = kiln_exe()?;
    let mut code = ExitCode::SUCCESS;
    for name in &args.containers {
        let result = rt.get(name).and_then(|c| {
            rt.start(
                &c,
                &StartMode::Detached {
                    kiln_exe: exe.clone(),
                },
            )
        });
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// The hidden `kiln container-monitor ID`: tells the starting CLI "ok" (or the error) on
/// stdout, then lets go of it and keeps the container until it stops.
pub fn monitor(args: MonitorArgs, ctx: &Context) -> ExitCode {
    let mut tell = |r: Result<(), String>| {
        let mut out = std::io::stdout();
        let _ = match r {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
        // Closing our end of the pipe ends the CLI's read.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
        }
    };
    let rt = match ctx.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tell(Err(format!("{e:#}")));
            return ExitCode::FAILURE;
        }
    };
    match rt.monitor(&args.id, &mut tell) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tell(Err(e.to_string()));
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
