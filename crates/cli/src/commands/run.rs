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
    #[arg(short, long, value_parser = size)]
    memory: Option<String>,
    /// CPU limit in CPUs (e.g. 1.5).
    #[arg(long, value_parser = cpus)]
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
    /// Security options: `seccomp=unconfined|PROFILE.json`, `no-new-privileges`,
    /// `systempaths=unconfined`.
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP (IP may be `host-gateway`).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// Add a Linux capability (`NET_ADMIN`, `ALL`).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (`NET_RAW`, `ALL`).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Every capability, no seccomp filter or masked paths, the host's devices.
    #[arg(long)]
    privileged: bool,
    /// Run an init as pid 1 that reaps orphaned processes and forwards signals.
    #[arg(long)]
    init: bool,
    /// A resource limit: NAME=SOFT[:HARD] (`nofile=1024:2048`).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// Set a label: KEY=VALUE.
    #[arg(short = 'l', long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines.
    #[arg(long, value_name = "FILE")]
    label_file: Vec<PathBuf>,
    /// An additional group for the container's processes (name or number).
    #[arg(long = "group-add", value_name = "GROUP")]
    group_add: Vec<String>,
    /// Add a host device: HOST[:CONTAINER][:rwm].
    #[arg(long, value_name = "DEVICE")]
    device: Vec<String>,
    /// A name server for /etc/resolv.conf.
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// A search domain for /etc/resolv.conf.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// A resolver option for /etc/resolv.conf.
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    dns_option: Vec<String>,
    /// A namespaced kernel parameter: KEY=VALUE (`net.*`, `kernel.shm*`, ...).
    #[arg(long, value_name = "KEY=VALUE")]
    sysctl: Vec<String>,
    /// Size of /dev/shm (default 64m).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    shm_size: Option<String>,
    /// IPC namespace: private (default), shareable, host, container:NAME.
    #[arg(long, value_name = "MODE")]
    ipc: Option<String>,
    /// PID namespace: host or container:NAME (default: its own).
    #[arg(long, value_name = "MODE")]
    pid: Option<String>,
    /// UTS namespace: host (default: its own).
    #[arg(long, value_name = "MODE")]
    uts: Option<String>,
    /// The signal `stop` sends (default: the image's, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    stop_timeout: Option<i64>,
    /// Write the container ID to this file (which must not exist).
    #[arg(long, value_name = "FILE")]
    cidfile: Option<PathBuf>,
    /// Attach to STDIN, STDOUT or STDERR (default: STDOUT and STDERR).
    #[arg(short, long, value_name = "STREAM")]
    attach: Vec<String>,
    /// The key sequence that detaches from an interactive container (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    /// json-file (default), local or none.
    #[arg(long, value_name = "DRIVER")]
    log_driver: Option<String>,
    /// A log driver option: max-size=10m, max-file=3.
    #[arg(long, value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// When to pull the image: always, missing (default) or never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pull: String,
    /// Don't show the pull's progress.
    #[arg(short, long)]
    quiet: bool,
    /// Run the image's manifest for this platform (`linux/arm64`); programs for another
    /// architecture run through QEMU user emulation (binfmt_misc).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Memory plus swap (e.g. 1g; -1 for unlimited swap).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = swap)]
    memory_swap: Option<String>,
    /// Relative CPU weight (default 1024).
    #[arg(short = 'c', long, value_name = "SHARES")]
    cpu_shares: Option<i64>,
    /// CPUs the container may use (0-2,4).
    #[arg(long, value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// Don't let the OOM killer stop the container's processes.
    #[arg(long)]
    oom_kill_disable: bool,
    /// Publish this port too when -P is given (PORT[/PROTO]).
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    #[command(flatten)]
    unsupported: super::unsupported::RunUnsupported,
    image: String,
    /// The command and its arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Flag values checked while parsing, so a bad one is reported as Docker's client does
/// (`invalid argument "x" for "-m, --memory" flag: invalid size: 'x'`).
fn size(s: &str) -> Result<String, String> {
    kiln_runtime::check_size(s).map(|_| s.to_string())
}

fn swap(s: &str) -> Result<String, String> {
    if s.trim() == "-1" {
        Ok(s.to_string())
    } else {
        size(s)
    }
}

fn cpus(s: &str) -> Result<String, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(s.to_string()),
        _ => Err(format!("failed to parse {s} as a rational number")),
    }
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            image: self.image.clone(),
            platform: self.platform.clone(),
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
            add_hosts: self.add_host.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            init: self.init,
            ulimits: self.ulimit.clone(),
            labels: self.label.clone(),
            label_files: self.label_file.clone(),
            group_add: self.group_add.clone(),
            devices: self.device.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            sysctls: self.sysctl.clone(),
            shm_size: self.shm_size.clone(),
            ipc: self.ipc.clone(),
            pid: self.pid.clone(),
            uts: self.uts.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            log_driver: self.log_driver.clone(),
            log_opts: self.log_opt.clone(),
            memory_swap: self.memory_swap.clone(),
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus.clone(),
            oom_kill_disable: self.oom_kill_disable,
            expose: self.expose.clone(),
            // `--network-alias` is refused by the parser (`unsupported.rs`).
            network_aliases: Default::default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output (and with -i its input) until it exits.
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin (with -a).
    #[arg(short, long)]
    interactive: bool,
    /// The key sequence that detaches (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Say "attach" once the attach socket listens and wait for a client before starting.
    #[arg(long)]
    attach_first: bool,
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

/// A usage error: Docker's exit code 125 with its message.
fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(125)
}

/// Which output streams an attached run shows (`-a`): stdout and stderr unless named.
struct Attach {
    stdout: bool,
    stderr: bool,
}

impl RunArgs {
    /// The checks Docker's client makes before it talks to the daemon.
    fn check(&self) -> Result<Attach, String> {
        self.unsupported
            .check()
            .map_err(|flag| format!("not supported yet: {flag}"))?;
        let mut attach = Attach {
            stdout: self.attach.is_empty(),
            stderr: self.attach.is_empty(),
        };
        for a in &self.attach {
            match a.to_ascii_lowercase().as_str() {
                "stdout" => attach.stdout = true,
                "stderr" => attach.stderr = true,
                "stdin" => {}
                _ => {
                    return Err(format!(
                        "invalid argument {a:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                    ));
                }
            }
        }

        if self.detach && self.rm && self.restart.as_deref().is_some_and(|r| r != "no") {
            return Err("conflicting options: --restart and --rm".into());
        }
        if let Some(keys) = &self.detach_keys {
            kiln_runtime::attach::parse_detach_keys(keys).map_err(|e| e.to_string())?;
        }
        if !matches!(self.pull.as_str(), "always" | "missing" | "never") {
            return Err(format!(
                "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
                self.pull
            ));
        }
        if let Some(f) = &self.cidfile
            && f.exists()
        {
            return Err(format!(
                "container ID file found, make sure the other container isn't running or delete {}",
                f.display()
            ));
        }
        Ok(attach)
    }

    /// `--pull`: fetches the image when told to, or when it is missing (the default).
    fn pull_image(&self, ctx: &Context) -> Result<(), String> {
        let backend = ctx.backend().map_err(|e| format!("{e:#}"))?;
        let platform = self
            .platform
            .as_deref()
            .map(kiln_llb::Platform::parse)
            .transpose()
            .map_err(|e| e.to_string())?;
        let have = backend.image_for(&self.image, platform.as_ref()).is_ok();
        match (self.pull.as_str(), have) {
            ("never", false) => return Err(format!("No such image: {}", self.image)),
            ("missing", true) | ("never", true) => return Ok(()),
            ("missing", false) => eprintln!("Unable to find image '{}' locally", self.image),
            _ => {}
        }
        let quiet = self.quiet;
        backend
            .pull_for(&self.image, platform.as_ref(), &|event| {
                if !quiet {
                    eprintln!("{}", kiln_image::describe_pull(&event));
                }
            })
            .map(|_| ())
            .map_err(|e| crate::error::chain(&e))
    }

    /// Everything up to a created container (and its ID in `--cidfile`).
    fn prepare(
        &self,
        ctx: &Context,
    ) -> Result<(kiln_runtime::Runtime, kiln_runtime::Container, Attach), ExitCode> {
        let attach = self.check().map_err(usage)?;
        if self.detach && !self.attach.is_empty() {
            // Docker's client refuses it with exit code 1, not 125.
            eprintln!("Conflicting options: -a and -d");
            return Err(ExitCode::FAILURE);
        }
        let rt = ctx.runtime().map_err(|e| usage(format!("{e:#}")))?;
        self.pull_image(ctx).map_err(usage)?;
        let container = match rt.create(&self.options()) {
            Ok(created) => warn(created),
            Err(e) => return Err(failure(&e)),
        };
        if let Some(f) = &self.cidfile
            && let Err(e) = std::fs::write(f, container.id())
        {
            return Err(usage(format!(
                "failed to write the container ID to {}: {e}",
                f.display()
            )));
        }
        Ok((rt, container, attach))
    }
}

pub fn run(args: RunArgs, ctx: &Context) -> ExitCode {
    let (rt, container, attach) = match args.prepare(ctx) {
        Ok(p) => p,
        Err(code) => return code,
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
    if args.interactive {
        return super::attach::run_interactive(&rt, &container, args.detach_keys.as_deref());
    }
    let mut sink = |stream: Stream, data: &[u8]| {
        let shown = match stream {
            Stream::Stdout => attach.stdout,
            Stream::Stderr => attach.stderr,
        };
        if shown {
            terminal_sink(stream, data);
        }
    };
    match rt.run_attached(&container, Stdin::Null, &mut sink) {
        Ok(info) => ExitCode::from(info.status.shell_code().clamp(0, 255) as u8),
        Err(e) => failure(&e),
    }
}

/// `kiln create`: like `run` without starting.
pub fn create(args: RunArgs, ctx: &Context) -> ExitCode {
    match args.prepare(ctx) {
        Ok((_, container, _)) => {
            println!("{}", container.id());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `kiln start`: starts stopped containers under a monitor each.
pub fn start(args: StartArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let exe = kiln_exe()?;
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            anyhow::bail!("you cannot start and attach multiple containers at once");
        }
        let c = rt.get(&args.containers[0])?;
        let keys = match &args.detach_keys {
            Some(k) => kiln_runtime::attach::parse_detach_keys(k)?,
            None => kiln_runtime::attach::DEFAULT_DETACH_KEYS.to_vec(),
        };
        let opts = kiln_runtime::attach::AttachOptions {
            stdin: args.interactive && c.config.open_stdin,
            stdout: true,
            stderr: true,
            detach_keys: keys,
            close_stdin: args.interactive,
            tty: c.config.tty,
        };
        return Ok(match rt.start_attached(&c, &exe, &opts) {
            Ok(kiln_runtime::attach::AttachEnd::Exited(code)) => {
                ExitCode::from(code.clamp(0, 255) as u8)
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        });
    }
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
    let mut say = |line: &str| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    match rt.monitor(&args.id, args.attach_first, &mut tell, &mut say) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tell(Err(e.to_string()));
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
