//! `kiln network create|ls|inspect|rm`: user-defined networks (a bridge and a /24 each), beside
//! the built-in `none`, `host` and the default `bridge` (made by the first container that joins
//! it, which is any `kiln run` without `--network`).

use std::process::ExitCode;

use crate::backend::Context;
use clap::Subcommand;
use kiln_runtime::network;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    Ls {
        /// Only show names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Create a user-defined network; its containers find each other by name.
    Create { name: String },
    /// Remove user-defined networks no container uses.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(command: NetworkCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        NetworkCommand::Ls { quiet } => {
            if !quiet {
                println!("{:<24}  {:<8}  SUBNET", "NAME", "DRIVER");
            }
            for n in network::listing(ctx.root())? {
                if quiet {
                    println!("{}", n.name);
                } else {
                    println!("{:<24}  {:<8}  {}", n.name, n.driver, n.subnet);
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let out = names
                .iter()
                .map(|name| network::inspect_json(ctx.root(), name))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Create { name } => {
            let created = network::create(ctx.root(), &name)?;
            for w in &created.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", created.info.id);
        }
        NetworkCommand::Rm { names } => {
            let mut code = ExitCode::SUCCESS;
            for n in &names {
                match network::remove(ctx.root(), n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        code = ExitCode::FAILURE;
                    }
                }
            }
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}
