//! Container commands that change or look into a container after `run`: `pause`, `unpause`,
//! `rename`, `update`, `top`, `diff`, `commit`, `export`, `events`, and the prunes
//! (`container prune`, `image prune`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kiln_runtime::events::{EventFilter, parse_time_nanos};
use kiln_runtime::prune::{PruneFilter, Pruned};
use kiln_runtime::system::human_size;
use kiln_runtime::{CommitOptions, UpdateOptions};

use super::run::kiln_exe;
use crate::backend::Context;

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    memory: Option<String>,
    /// Memory plus swap (-1 for unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU limit in CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Relative CPU weight.
    #[arg(short = 'c', long)]
    cpu_shares: Option<i64>,
    /// CPUs the container may use (0-2,4).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Maximum number of processes (-1 for no limit).
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// no, always, unless-stopped, on-failure[:N].
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    container: String,
    /// Options for ps (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author of the image.
    #[arg(short, long)]
    author: Option<String>,
    /// A Dockerfile instruction for the image's config (CMD, ENV, LABEL, ...).
    #[arg(short, long)]
    change: Vec<String>,
    /// The commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Freeze the container while committing (default true).
    #[arg(short, long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pause: String,
    container: String,
    /// REPOSITORY[:TAG] of the new image.
    reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file instead of stdout.
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    container: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events since this time (RFC 3339, Unix time, or a duration such as 10m).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (without it, events stream until interrupted).
    #[arg(long)]
    until: Option<String>,
    /// type=, event=, container=, image=, label=, network=, volume=.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format events with a Go template (`{{json .}}`, `{{.Action}}`).
    #[arg(long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Accepted for docker compatibility; kiln never asks.
    #[arg(short, long)]
    force: bool,
    /// until=TIME, label=K[=V], label!=K[=V].
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove all stopped containers.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses (without it nothing goes: kiln keeps no
    /// dangling images).
    #[arg(short, long)]
    all: bool,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove unused images.
    Prune(ImagePruneArgs),
}

/// Runs `f` on each named container, printing the name on success (as Docker does).
fn each(
    names: &[String],
    ctx: &Context,
    f: impl Fn(
        &kiln_runtime::Runtime,
        &kiln_runtime::Container,
    ) -> Result<(), kiln_runtime::RuntimeError>,
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

pub fn pause(args: NamesArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    each(&args.containers, ctx, |rt, c| rt.pause(c))
}

pub fn unpause(args: NamesArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    each(&args.containers, ctx, |rt, c| rt.unpause(c))
}

pub fn rename(args: RenameArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    rt.rename(&c, &args.new_name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn update(args: UpdateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let opts = UpdateOptions {
        memory: args.memory,
        memory_swap: args.memory_swap,
        cpus: args.cpus,
        cpu_shares: args.cpu_shares,
        cpuset_cpus: args.cpuset_cpus,
        pids_limit: args.pids_limit,
        restart: args.restart,
    };
    each(&args.containers, ctx, |rt, c| rt.update(c, &opts))
}

pub fn top(args: TopArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    print!("{}", rt.top(&c, &args.ps_args)?);
    Ok(ExitCode::SUCCESS)
}

pub fn diff(args: DiffArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    let mut out = std::io::stdout().lock();
    for change in rt.diff(&c)? {
        writeln!(out, "{} {}", change.kind, change.path)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn commit(args: CommitArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let pause = match args.pause.as_str() {
        "true" | "1" => true,
        "false" | "0" => false,
        other => bail!("invalid argument {other:?} for \"-p, --pause\" flag"),
    };
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    let image = rt.commit(
        &c,
        &CommitOptions {
            reference: args.reference,
            author: args.author,
            message: args.message,
            changes: args.change,
            pause,
        },
    )?;
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let c = rt.get(&args.container)?;
    let exe = kiln_exe()?;
    match &args.output {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            rt.export(&c, &mut f, &exe)?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = std::io::stdout();
            rt.export(&c, &mut out, &exe)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's event line: `TIME TYPE ACTION ID (k=v, ...)`, the time in RFC 3339 with
/// nanoseconds.
fn event_line(e: &kiln_runtime::events::Event) -> String {
    let secs = e.time_nano.div_euclid(1_000_000_000);
    let nanos = e.time_nano.rem_euclid(1_000_000_000) as u32;
    let time = kiln_llb::image::format_rfc3339(secs, nanos);
    let time = match time.split_once('.') {
        // Docker prints all nine digits.
        Some((whole, frac)) => format!("{whole}.{:0<9}+00:00", frac.trim_end_matches('Z')),
        None => format!("{}.000000000+00:00", time.trim_end_matches('Z')),
    };
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{time} {} {} {} ({})",
        e.kind,
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}

pub fn events(args: EventsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut filter = EventFilter {
        since: args.since.as_deref().map(parse_time_nanos).transpose()?,
        until: args.until.as_deref().map(parse_time_nanos).transpose()?,
        filters: Vec::new(),
    };
    for f in &args.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        filter.filters.push((k.to_string(), v.to_string()));
    }
    filter.check()?;
    if let Some(t) = args.format.as_deref() {
        crate::format::precheck(t, &crate::format::EVENTS)?;
    }
    let follow = filter.until.is_none();
    let mut failed = None;
    let mut out = std::io::stdout();
    kiln_runtime::events::read(ctx.root(), &filter, follow, &mut |e| {
        let line = match args.format.as_deref() {
            None => Ok(format!("{}\n", event_line(e))),
            Some(t) => serde_json::to_value(e)
                .map_err(anyhow::Error::from)
                .and_then(|v| {
                    crate::format::render_rows(Some(t), &crate::format::EVENTS, &[v])
                        .map_err(anyhow::Error::from)
                }),
        };
        match line {
            Ok(l) => out
                .write_all(l.as_bytes())
                .and_then(|()| out.flush())
                .is_ok(),
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn print_pruned(what: &str, pruned: &Pruned) -> ExitCode {
    if !pruned.removed.is_empty() {
        println!("Deleted {what}:");
        for r in &pruned.removed {
            println!("{r}");
        }
        println!();
    }
    for e in &pruned.errors {
        eprintln!("error: {e}");
    }
    println!("Total reclaimed space: {}", human_size(pruned.reclaimed));
    if pruned.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn container(command: ContainerCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ContainerCommand::Prune(args) => {
            let rt = ctx.runtime()?;
            let pruned = rt.prune_containers(&PruneFilter::parse(&args.filter)?)?;
            Ok(print_pruned("Containers", &pruned))
        }
    }
}

pub fn image(command: ImageCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::Prune(args) => {
            let rt = ctx.runtime()?;
            let mut pruned = rt.prune_images(args.all, &PruneFilter::parse(&args.prune.filter)?)?;
            for r in &mut pruned.removed {
                *r = format!("untagged: {r}");
            }
            Ok(print_pruned("Images", &pruned))
        }
    }
}
