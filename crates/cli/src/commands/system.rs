//! Store maintenance: `builder prune`, `system df`, `system check`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kiln_cache::PruneOptions;
use kiln_engine::gc::Snapshots;

use super::open_worker;

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache.
    Prune(PruneArgs),
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
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage of images and build cache.
    Df,
    /// Verify every blob and record; report problems without changing anything.
    Check {
        /// Drop what is broken.
        #[arg(long)]
        repair: bool,
    },
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

pub fn builder(command: BuilderCommand, root: &Path) -> anyhow::Result<ExitCode> {
    let BuilderCommand::Prune(args) = command;
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
    let worker = open_worker(root)?;
    let report = worker.store().prune(&opts, &Snapshots(&worker))?;
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

pub fn system(command: SystemCommand, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    match command {
        SystemCommand::Df => {
            let usage = worker.store().df()?;
            println!(
                "{:<14} {:>8} {:>14} {:>14}",
                "TYPE", "TOTAL", "SIZE", "RECLAIMABLE"
            );
            for (kind, line) in [
                ("Images", usage.images),
                ("Build Cache", usage.build_cache),
                ("Snapshots", usage.snapshots),
                ("Blobs", usage.blobs),
            ] {
                println!(
                    "{:<14} {:>8} {:>14} {:>14}",
                    kind, line.count, line.bytes, line.reclaimable
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Check { repair } => {
            let report = worker.store().check(repair, &Snapshots(&worker))?;
            for problem in &report.problems {
                println!("problem: {problem}");
            }
            if report.is_clean() {
                println!("store at {} is consistent", root.display());
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
    }
}
