//! `kiln volume create|ls|inspect|rm|prune`: named volumes under the root.

use std::process::ExitCode;

use super::listing;
use crate::backend::Context;
use clap::{Args, Subcommand};
use kiln_runtime::volume;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create { name: Option<String> },
    /// List volumes.
    Ls {
        /// Only show names.
        #[arg(short, long)]
        quiet: bool,
        /// Format the output with a Go template (`table ...`, `json`, `{{.Name}}`).
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes no container uses.
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused ones with --all).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Accepted for docker compatibility; kiln never asks.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Accepted for docker compatibility; a volume in use is never removed.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(command: VolumeCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        VolumeCommand::Create { name } => {
            let v = match name {
                Some(n) => volume::create(ctx.root(), &n, false)?,
                None => volume::create_unnamed(ctx.root())?,
            };
            println!("{}", v.name);
        }
        VolumeCommand::Ls { quiet, format } => {
            let rows: Vec<serde_json::Value> = volume::list(ctx.root())?
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "Driver": v.driver,
                        "Labels": "",
                        "Links": "N/A",
                        "Mountpoint": v.mountpoint,
                        "Name": v.name,
                        "Scope": "local",
                        "Size": "N/A",
                    })
                })
                .collect();
            let format = if quiet {
                Some("{{.Name}}")
            } else {
                format.as_deref()
            };
            listing::print(format, &crate::format::VOLUMES, &rows)?;
        }
        VolumeCommand::Inspect { names } => {
            let vs = names
                .iter()
                .map(|n| volume::inspect(ctx.root(), n))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&vs)?);
        }
        VolumeCommand::Rm(args) => {
            let _ = args.force;
            let mut code = ExitCode::SUCCESS;
            for n in &args.names {
                match volume::remove(ctx.root(), n, false) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        code = ExitCode::FAILURE;
                    }
                }
            }
            return Ok(code);
        }
        VolumeCommand::Prune { all, force: _ } => {
            let (removed, reclaimed) = volume::prune(ctx.root(), all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                kiln_runtime::system::human_size(reclaimed)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
