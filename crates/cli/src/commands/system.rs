//! Store maintenance: `builder prune`, `system df`, `system prune`, `system check`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kiln_image::PruneOptions;
use kiln_runtime::system::{SystemPruneOptions, human_size};

use serde_json::json;

use super::listing;
use crate::backend::Context;
use crate::format;

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache.
    Prune(PruneArgs),
    /// Show disk usage of the build cache.
    Du(super::builder_remote::RemoteArgs),
    /// Show the workers `--builder` names: version, protocol, platform, limits and load.
    Info(super::builder_remote::RemoteArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all build cache, not just records no image uses.
    #[arg(short, long)]
    all: bool,
    /// Keep this much build cache (e.g. 500MB, 2GB).
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    /// `until=DURATION`: only remove cache unused for at least this long (e.g. 24h, 30m).
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Do not ask for confirmation (kiln never asks; accepted for docker compatibility).
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    remote: super::builder_remote::RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage of images, containers, local volumes and build cache.
    Df(DfArgs),
    /// Remove stopped containers, unused networks, unused images (-a) and volumes (--volumes),
    /// and build cache.
    Prune(SystemPruneArgs),
    /// Verify every blob and record; report problems without changing anything.
    Check {
        /// Drop what is broken.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Format the output with a Go template (`table ...`, `json`, `{{.Type}}`).
    #[arg(long)]
    format: Option<String>,
    /// List every image, container, volume and the store's lines.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove every image no container uses and all build cache.
    #[arg(short, long)]
    all: bool,
    /// Also remove anonymous volumes no container uses.
    #[arg(long)]
    volumes: bool,
    /// Do not ask for confirmation (kiln never asks; accepted for docker compatibility).
    #[arg(short, long)]
    force: bool,
}

/// Parses `500MB`, `2GiB`, `1024` into bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("invalid size {s:?}"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("invalid size unit {other:?} in {s:?}"),
    };
    Ok((number * factor) as u64)
}

/// Parses Go-style durations such as `24h`, `1h30m`, `90s`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let value: f64 = number
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        number.clear();
        total += value
            * match unit.as_str() {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                other => bail!("invalid duration unit {other:?} in {s:?}"),
            };
        any = true;
    }
    if !number.is_empty() || !any {
        bail!("invalid duration {s:?} (expected e.g. 24h, 30m, 90s)");
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn builder(command: BuilderCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let args = match command {
        BuilderCommand::Prune(args) => args,
        BuilderCommand::Du(remote) if remote.is_remote() => {
            return super::builder_remote::du(&remote, ctx);
        }
        BuilderCommand::Du(_) => return builder_du(ctx),
        BuilderCommand::Info(remote) => return super::builder_remote::info(&remote, ctx),
    };
    let _ = args.force;
    let mut opts = PruneOptions {
        all: args.all,
        keep_storage: args.keep_storage.as_deref().map(parse_size).transpose()?,
        until: None,
    };
    for filter in &args.filter {
        match filter.split_once('=') {
            Some(("until", d)) => opts.until = Some(parse_duration(d)?),
            _ => bail!("not supported yet: prune filter {filter:?} (only until=DURATION)"),
        }
    }
    if args.remote.is_remote() {
        return super::builder_remote::prune(&args.remote, &opts, ctx);
    }
    let report = ctx.backend()?.prune_cache(&opts)?;
    for (_, record) in &report.records_removed {
        if !record.description.is_empty() {
            println!("deleted: {}", record.description);
        }
    }
    for error in &report.errors {
        eprintln!("warning: {error}");
    }
    println!(
        "Total reclaimed space: {} ({} records, {} snapshots, {} blobs)",
        report.reclaimed,
        report.records_removed.len(),
        report.snapshots_removed.len(),
        report.blobs_removed.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `kiln builder du`: the build cache's size and what a prune would free, as `buildx du`
/// sums it up.
fn builder_du(ctx: &Context) -> anyhow::Result<ExitCode> {
    let usage = ctx.backend()?.disk_usage()?;
    let cache = usage.build_cache;
    println!("{:<14}{}", "Records:", cache.count);
    println!("{:<14}{}", "Reclaimable:", human_size(cache.reclaimable));
    println!("{:<14}{}", "Total:", human_size(cache.bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn system(command: SystemCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        SystemCommand::Df(args) => df(&args, ctx),
        SystemCommand::Prune(args) => prune(&args, ctx),
        SystemCommand::Check { repair } => check(repair, ctx),
    }
}

/// `SIZE (PCT%)` as Docker prints reclaimable space.
fn with_percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return human_size(part);
    }
    format!("{} ({}%)", human_size(part), part * 100 / whole)
}

fn df(args: &DfArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let usage = rt.disk_usage()?;
    let format = args.format.as_deref();
    if !args.verbose {
        let rows: Vec<serde_json::Value> = usage
            .summary()
            .iter()
            .map(|row| {
                let reclaimable = if row.kind == "Build Cache" {
                    human_size(row.reclaimable)
                } else {
                    with_percent(row.reclaimable, row.size)
                };
                json!({
                    "Type": row.kind,
                    "TotalCount": row.total.to_string(),
                    "Active": row.active.to_string(),
                    "Size": human_size(row.size),
                    "Reclaimable": reclaimable,
                })
            })
            .collect();
        listing::print(format, &format::SYSTEM_DF, &rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let images: Vec<serde_json::Value> = usage
        .images
        .iter()
        .map(|i| {
            let short = i
                .names
                .first()
                .map_or_else(|| "<none>:<none>".to_string(), |n| kiln_image::familiar(n));
            let (repo, tag) = short
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .unwrap_or((short.as_str(), "<none>"));
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": i.id.trim_start_matches("sha256:").get(..12).unwrap_or(&i.id),
                "CreatedSince": crate::age::ago(&i.created),
                "CreatedAt": crate::age::docker_time(&i.created),
                "Size": human_size(i.size),
                "SharedSize": human_size(i.size - i.unique_size.min(i.size)),
                "UniqueSize": human_size(i.unique_size),
                "Containers": i.containers.to_string(),
            })
        })
        .collect();
    let containers: Vec<serde_json::Value> = usage
        .containers
        .iter()
        .map(|c| {
            let mut command = format!("{:?}", c.command);
            if command.chars().count() > 20 {
                command = command.chars().take(19).collect::<String>() + "…";
            }
            json!({
                "ID": &c.id[..12.min(c.id.len())],
                "Image": c.image,
                "Command": command,
                "LocalVolumes": c.volumes.to_string(),
                "Size": human_size(c.size),
                "RunningFor": crate::age::ago(&c.created),
                "Status": c.status,
                "Names": c.name,
            })
        })
        .collect();
    let volumes: Vec<serde_json::Value> = usage
        .volumes
        .iter()
        .map(|v| json!({"Name": v.name, "Links": v.links.to_string(), "Size": human_size(v.size)}))
        .collect();
    print!("Images space usage:\n\n");
    listing::print(format, &format::SYSTEM_DF_IMAGES, &images)?;
    print!("\nContainers space usage:\n\n");
    listing::print(format, &format::SYSTEM_DF_CONTAINERS, &containers)?;
    print!("\nLocal Volumes space usage:\n\n");
    listing::print(format, &format::SYSTEM_DF_VOLUMES, &volumes)?;
    print!(
        "\nBuild cache usage: {}\n\n",
        human_size(usage.build_cache.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn prune(args: &SystemPruneArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let _ = args.force;
    let rt = ctx.runtime()?;
    let report = rt.system_prune(&SystemPruneOptions {
        all: args.all,
        volumes: args.volumes,
    })?;
    let section = |title: &str, items: &[String]| {
        if !items.is_empty() {
            println!("{title}:");
            for i in items {
                println!("{i}");
            }
            println!();
        }
    };
    section("Deleted Containers", &report.containers);
    section("Deleted Networks", &report.networks);
    let untagged: Vec<String> = report
        .images
        .iter()
        .map(|n| format!("untagged: {}", kiln_image::familiar(n)))
        .collect();
    section("Deleted Images", &untagged);
    section("Deleted Volumes", &report.volumes);
    if report.build_cache_records > 0 {
        println!(
            "Deleted build cache objects: {}\n",
            report.build_cache_records
        );
    }
    for e in &report.errors {
        eprintln!("warning: {e}");
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed));
    Ok(ExitCode::SUCCESS)
}

fn check(repair: bool, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = ctx.backend()?;
    let report = backend.check(repair)?;
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.is_clean() {
        println!("{} is consistent", backend.describe());
        Ok(ExitCode::SUCCESS)
    } else if repair {
        println!("repaired {} problems", report.problems.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} problems found (run with --repair to drop what is broken)",
            report.problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
