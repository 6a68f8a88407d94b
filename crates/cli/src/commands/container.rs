//! Container commands: `ps`, `logs`, `stop`, `kill`, `rm`, `wait`, `restart`, `exec`, `cp`,
//! `stats`, and `inspect` for containers (images otherwise).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_runtime::system::{human_size, human_size_binary};
use kiln_runtime::{Container, CopyDirection, ExecOptions, LogOptions, StartMode, Status};

use super::listing;
use super::run::{kiln_exe, terminal_sink};
use crate::backend::Context;
use crate::format;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Format the output with a Go template (`table ...`, `json`, `{{.Names}}`).
    #[arg(long)]
    format: Option<String>,
    /// Show all containers, not just running ones.
    #[arg(short, long)]
    all: bool,
    /// Only show IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Only containers that match: id=, name=, label=K[=V], status=, exited=, ancestor=,
    /// network=, volume= (one key's values are alternatives; all keys must match).
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Only the last created container (of all states).
    #[arg(short = 'l', long)]
    latest: bool,
    /// Only the last N created containers (of all states).
    #[arg(short = 'n', long)]
    last: Option<usize>,
}

/// `ps --filter` as Docker reads it.
struct PsFilter {
    filters: Vec<(String, String)>,
}

impl PsFilter {
    fn parse(raw: &[String]) -> anyhow::Result<PsFilter> {
        let mut filters = Vec::new();
        for f in raw {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
            if !matches!(
                k,
                "id" | "name" | "label" | "status" | "exited" | "ancestor" | "network" | "volume"
            ) {
                bail!("invalid filter '{k}'");
            }
            if k == "status"
                && !matches!(
                    v,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                bail!("invalid filter 'status={v}'");
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                bail!("invalid filter 'exited={v}'");
            }
            filters.push((k.to_string(), v.to_string()));
        }
        Ok(PsFilter { filters })
    }

    /// Whether `status` filters ask for stopped containers too (then `-a` is implied).
    fn wants_stopped(&self) -> bool {
        self.filters
            .iter()
            .any(|(k, v)| k == "exited" || (k == "status" && v != "running" && v != "paused"))
    }

    fn admits(&self, c: &Container) -> bool {
        let mut keys: Vec<&str> = self.filters.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter().all(|key| {
            self.filters
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, v)| Self::one(key, v, c))
        })
    }

    fn one(key: &str, v: &str, c: &Container) -> bool {
        let cfg = &c.config;
        match key {
            "id" => cfg.id.starts_with(v),
            "name" => cfg.name.contains(v.trim_start_matches('/')),
            "label" => match v.split_once('=') {
                Some((k, val)) => cfg.labels.get(k).map(String::as_str) == Some(val),
                None => cfg.labels.contains_key(v),
            },
            "status" => state_name(c) == v,
            "exited" => {
                c.state.status == Status::Exited
                    && c.state.exit_code.map(|e| e.to_string()).as_deref() == Some(v)
            }
            "ancestor" => {
                cfg.image == v
                    || cfg.image_id == v
                    || cfg
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || cfg.image.split(':').next() == Some(v)
            }
            "network" => {
                let mode = match cfg.network {
                    kiln_runtime::NetworkMode::None => Some("none"),
                    kiln_runtime::NetworkMode::Host => Some("host"),
                    kiln_runtime::NetworkMode::Named => cfg.network_name.as_deref(),
                };
                mode == Some(v) || cfg.extra_networks.iter().any(|l| l.name == v)
            }
            "volume" => cfg.mounts.iter().any(|m| match m {
                kiln_runtime::MountConfig::Volume { name, target, .. } => name == v || target == v,
                kiln_runtime::MountConfig::Bind { source, target, .. } => {
                    source.to_str() == Some(v) || target == v
                }
                kiln_runtime::MountConfig::Tmpfs { target, .. } => target == v,
            }),
            _ => false,
        }
    }
}

/// Docker's `State` word for a container.
pub(crate) fn state_name(c: &Container) -> &'static str {
    match c.state.status {
        Status::Running if c.state.paused => "paused",
        Status::Running => "running",
        Status::Exited => "exited",
        Status::Restarting => "restarting",
        Status::Created => "created",
        Status::Dead => "dead",
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    container: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
    #[arg(short, long)]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal to send.
    #[arg(short, long, default_value = "SIGKILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short, long)]
    force: bool,
    /// Also remove the container's anonymous volumes.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal for the command.
    #[arg(short, long)]
    tty: bool,
    /// User (name or uid, with optional :group).
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set an environment variable.
    #[arg(short, long = "env")]
    env: Vec<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// CONTAINER:PATH or a host path.
    source: String,
    /// CONTAINER:PATH or a host path.
    dest: String,
}

/// The hidden `kiln container-cp ROOT pack|unpack ...`: the container side of `kiln cp`,
/// chrooted into the container's root.
#[derive(Debug, Args)]
pub struct CpHelperArgs {
    /// The container's root directory (or /proc/PID/root).
    container_root: PathBuf,
    #[command(subcommand)]
    action: CpHelperAction,
}

#[derive(Debug, clap::Subcommand)]
enum CpHelperAction {
    /// Write PATH to stdout as a tar stream.
    Pack { path: String },
    /// Write the whole root to stdout as a tar stream (`kiln export`).
    Export,
    /// Unpack a tar stream from stdin at DEST; NAME is the source's name.
    Unpack {
        dest: String,
        name: String,
        #[arg(long)]
        contents: bool,
    },
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Format the output with a Go template (`table ...`, `json`, `{{.CPUPerc}}`).
    #[arg(long)]
    format: Option<String>,
    /// Print one sample and exit instead of redrawing every second.
    #[arg(long)]
    no_stream: bool,
    containers: Vec<String>,
}

pub(crate) fn status_text(c: &Container) -> String {
    match c.state.status {
        Status::Running => {
            let health = kiln_runtime::health::read(c)
                .map(|h| format!(" ({})", h.status))
                .unwrap_or_default();
            let up = c
                .state
                .started_at
                .as_deref()
                .and_then(crate::age::since)
                .unwrap_or_else(|| "?".into());
            let paused = if c.state.paused { " (Paused)" } else { "" };
            format!("Up {up}{paused}{health}")
        }
        Status::Exited => {
            let when = c
                .state
                .finished_at
                .as_deref()
                .map(|t| format!(" {}", crate::age::ago(t)))
                .unwrap_or_default();
            format!("Exited ({}){when}", c.state.exit_code.unwrap_or(-1))
        }
        Status::Restarting => format!("Restarting ({})", c.state.exit_code.unwrap_or(-1)),
        Status::Created => "Created".into(),
        Status::Dead => "Dead".into(),
    }
}

pub fn ps(args: PsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let format = if args.quiet {
        Some("{{.ID}}")
    } else {
        args.format.as_deref()
    };
    // Docker checks the template before it lists anything.
    if let Some(f) = format {
        format::precheck(f, &format::CONTAINERS)?;
    }
    let filter = PsFilter::parse(&args.filter)?;
    let rt = ctx.runtime()?;
    let all = args.all || args.latest || args.last.is_some() || filter.wants_stopped();
    let mut containers: Vec<Container> = rt.list(all)?;
    containers.reverse();
    let limit = if args.latest { Some(1) } else { args.last };
    if let Some(n) = limit {
        containers.truncate(n);
    }
    let rows: Vec<serde_json::Value> = containers
        .iter()
        .filter(|c| filter.admits(c))
        .map(|c| container_row(c, !args.no_trunc))
        .collect();
    listing::print(format, &format::CONTAINERS, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// One `docker ps` row: Docker's field names, values as Docker prints them.
fn container_row(c: &Container, trunc: bool) -> serde_json::Value {
    let mut command = c.config.argv().join(" ");
    if trunc && crate::table::display_width(&command) > 20 {
        command = command.chars().take(19).collect::<String>() + "…";
    }
    let ports: Vec<String> = kiln_runtime::ports::published(c)
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip, p.host_port, p.container_port, p.protocol
            )
        })
        .collect();
    let state = state_name(c);
    let labels: Vec<String> = c
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    serde_json::json!({
        "Command": format!("{command:?}"),
        "CreatedAt": crate::age::docker_time(&c.config.created),
        "ID": if trunc { &c.id()[..12] } else { c.id() },
        "Image": c.config.image,
        "Labels": labels.join(","),
        "Label": c.config.labels,
        "LocalVolumes": "0",
        "Mounts": "",
        "Names": c.name(),
        "Networks": "",
        "Ports": ports.join(", "),
        "RunningFor": crate::age::ago(&c.config.created),
        "Size": "",
        "State": state,
        "Status": status_text(c),
    })
}

pub fn logs(args: LogsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse().with_context(|| format!("invalid --tail {n:?}"))?),
    };
    let opts = LogOptions {
        follow: args.follow,
        tail,
        timestamps: args.timestamps,
        since: args.since,
    };
    let mut sink = terminal_sink;
    rt.logs(&c, &opts, &mut sink)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on each named container, printing the name on success (as Docker does).
fn each(
    names: &[String],
    ctx: &Context,
    f: impl Fn(&kiln_runtime::Runtime, &Container) -> Result<(), kiln_runtime::RuntimeError>,
) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let mut code = ExitCode::SUCCESS;
    for name in names {
        match rt.get(name).and_then(|c| f(&rt, &c)) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

pub fn stop(args: StopArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let t = args.time.map(Duration::from_secs);
    each(&args.containers, ctx, |rt, c| rt.stop(c, t))
}

pub fn restart(args: StopArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let t = args.time.map(Duration::from_secs);
    let exe = kiln_exe()?;
    each(&args.containers, ctx, |rt, c| {
        rt.stop(c, t)?;
        let c = rt.get(c.id())?;
        rt.start(
            &c,
            &StartMode::Detached {
                kiln_exe: exe.clone(),
            },
        )
    })
}

pub fn kill(args: KillArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let sig = kiln_runtime::parse_signal(&args.signal)?;
    each(&args.containers, ctx, |rt, c| rt.kill(c, sig))
}

pub fn rm(args: RmArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    each(&args.containers, ctx, |rt, c| {
        rt.remove(c, args.force, args.volumes)
    })
}

pub fn wait(args: WaitArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let mut code = ExitCode::SUCCESS;
    for name in &args.containers {
        match rt.get(name).and_then(|c| rt.wait(&c)) {
            Ok(state) => println!("{}", state.exit_code.unwrap_or(0)),
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

pub fn exec(args: ExecArgs, ctx: &Context) -> ExitCode {
    let rt = match ctx.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(125);
        }
    };
    let opts = ExecOptions {
        argv: args.command,
        env: args.env,
        user: args.user,
        workdir: args.workdir,
        interactive: args.interactive,
        tty: args.tty,
    };
    match rt.get(&args.container).and_then(|c| rt.exec(&c, &opts)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // Docker's exec exits 126 whenever the command cannot be started, found or not.
        Err(e) if e.exec_exit_code().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(126)
        }
        // Any other failure (no such container, not running) is Docker's exit code 1.
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Splits `CONTAINER:PATH`; a path with a slash before any colon is a host path.
fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

pub fn cp(args: CpArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let (name, inner, host, direction) =
        match (container_path(&args.source), container_path(&args.dest)) {
            (Some((c, p)), None) => (c, p, &args.dest, CopyDirection::FromContainer),
            (None, Some((c, p))) => (c, p, &args.source, CopyDirection::ToContainer),
            (Some(_), Some(_)) => bail!("copying between containers is not supported"),
            (None, None) => bail!("one of source and destination must be CONTAINER:PATH"),
        };
    let c = rt.get(name)?;
    rt.copy(&c, inner, host, direction, &kiln_exe()?)?;
    Ok(ExitCode::SUCCESS)
}

/// The container side of `kiln cp` (see `kiln_runtime::cp`).
pub fn cp_helper(args: CpHelperArgs) -> anyhow::Result<ExitCode> {
    let action = match args.action {
        CpHelperAction::Pack { path } => kiln_runtime::cp::HelperAction::Pack { path },
        CpHelperAction::Export => kiln_runtime::cp::HelperAction::Export,
        CpHelperAction::Unpack {
            dest,
            name,
            contents,
        } => kiln_runtime::cp::HelperAction::Unpack {
            dest,
            source: kiln_runtime::cp::Source {
                path: PathBuf::new(),
                name,
                contents_only: contents,
            },
        },
    };
    kiln_runtime::cp::helper_main(&args.container_root, &action)?;
    Ok(ExitCode::SUCCESS)
}

/// Containers first; names that are not containers are looked up as images.
pub fn stats(args: StatsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let containers = || -> anyhow::Result<Vec<Container>> {
        Ok(if args.containers.is_empty() {
            rt.list(false)?
        } else {
            args.containers
                .iter()
                .map(|n| rt.get(n))
                .collect::<Result<Vec<_>, _>>()?
        })
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // CPU % needs two samples; --no-stream waits for the second as `docker stats` does.
    let interval = if args.no_stream {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let mut list = containers()?;
    let mut before = rt.stats_sample(&list)?;
    loop {
        std::thread::sleep(interval);
        let after = rt.stats_sample(&list)?;
        if terminal && !args.no_stream {
            // Redraw in place, as `docker stats` does.
            print!("\x1b[2J\x1b[H");
        }
        let rows: Vec<serde_json::Value> = list
            .iter()
            .zip(after.usage_since(&before))
            .map(|(c, u)| {
                let net = u
                    .net
                    .map(|n| format!("{} / {}", human_size(n.rx_bytes), human_size(n.tx_bytes)))
                    .unwrap_or_else(|| "--".into());
                serde_json::json!({
                    "BlockIO": "--",
                    "CPUPerc": format!("{:.2}%", u.cpu_percent),
                    "Container": &c.id()[..12],
                    "ID": &c.id()[..12],
                    "MemPerc": format!("{:.2}%", u.memory_percent),
                    "MemUsage": format!(
                        "{} / {}",
                        human_size_binary(u.memory_bytes),
                        human_size_binary(u.memory_limit)
                    ),
                    "Name": c.name(),
                    "NetIO": net,
                    "PIDs": u.pids.to_string(),
                })
            })
            .collect();
        listing::print(args.format.as_deref(), &format::STATS, &rows)?;
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // Containers come and go while streaming without names given.
        let next = containers()?;
        before = if next
            .iter()
            .map(Container::id)
            .eq(list.iter().map(Container::id))
        {
            after
        } else {
            rt.stats_sample(&next)?
        };
        list = next;
    }
}
