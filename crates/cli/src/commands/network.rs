//! `kiln network create|ls|inspect|rm`: user-defined networks (a bridge and a /24 each), beside
//! the built-in `none`, `host` and the default `bridge` (made by the first container that joins
//! it, which is any `kiln run` without `--network`).

use std::process::ExitCode;

use super::listing;
use crate::backend::Context;
use clap::Subcommand;
use kiln_runtime::network;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    Ls {
        /// Only show IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Format the output with a Go template (`table ...`, `json`, `{{.Name}}`).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate the network IDs.
        #[arg(long)]
        no_trunc: bool,
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
    /// Connect a container to a network (at once when it runs).
    Connect { network: String, container: String },
    /// Disconnect a container from a network it was connected to.
    Disconnect {
        /// Accepted for docker compatibility.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove every user-defined network no container uses.
    Prune {
        /// Accepted for docker compatibility; kiln never asks.
        #[arg(short, long)]
        force: bool,
        /// until=TIME.
        #[arg(long)]
        filter: Vec<String>,
    },
}

pub fn run(command: NetworkCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        NetworkCommand::Ls {
            quiet,
            format,
            no_trunc,
        } => {
            let mut rows = Vec::new();
            for n in network::listing(ctx.root())? {
                let inspected = network::inspect_json(ctx.root(), &n.name)?;
                let id = inspected["Id"].as_str().unwrap_or_default();
                let id = if no_trunc {
                    id
                } else {
                    id.get(..12).unwrap_or(id)
                };
                rows.push(serde_json::json!({
                    "CreatedAt": inspected["Created"].as_str().map(crate::age::docker_time).unwrap_or_default(),
                    "Driver": n.driver,
                    "ID": id,
                    "IPv4": "true",
                    "IPv6": "false",
                    "Internal": "false",
                    "Labels": "",
                    "Name": n.name,
                    "Scope": "local",
                }));
            }
            let format = if quiet {
                Some("{{.ID}}")
            } else {
                format.as_deref()
            };
            listing::print(format, &crate::format::NETWORKS, &rows)?;
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
        NetworkCommand::Connect { network, container } => {
            let rt = ctx.runtime()?;
            let c = rt.get(&container)?;
            rt.network_connect(&c, &network)?;
        }
        NetworkCommand::Disconnect {
            network, container, ..
        } => {
            let rt = ctx.runtime()?;
            let c = rt.get(&container)?;
            rt.network_disconnect(&c, &network)?;
        }
        NetworkCommand::Prune { filter, .. } => {
            let rt = ctx.runtime()?;
            let pruned = rt.prune_networks(&kiln_runtime::prune::PruneFilter::parse(&filter)?)?;
            if !pruned.removed.is_empty() {
                println!("Deleted Networks:");
                for n in &pruned.removed {
                    println!("{n}");
                }
            }
            for e in &pruned.errors {
                eprintln!("error: {e}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
