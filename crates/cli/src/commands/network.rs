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

/// The networks every container can use without creating one.
const BUILTIN: [(&str, &str); 2] = [
    (
        "none",
        "its own namespace with only lo; -p ports are proxied into it",
    ),
    ("host", "the host's network namespace"),
];

pub fn run(command: NetworkCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        NetworkCommand::Ls { quiet } => {
            if !quiet {
                println!("{:<24}  {:<8}  SUBNET", "NAME", "DRIVER");
            }
            let mut nets = network::list(ctx.root())?;
            // The default bridge is always listed, as Docker's, even before its first use.
            let default = match nets.iter().position(|n| n.name == network::DEFAULT_BRIDGE) {
                Some(i) => nets.remove(i).subnet(),
                None => String::new(),
            };
            let rows = [
                (network::DEFAULT_BRIDGE.to_string(), "bridge", default),
                ("host".into(), "host", String::new()),
                ("none".into(), "null", String::new()),
            ]
            .into_iter()
            .chain(nets.into_iter().map(|n| {
                let subnet = n.subnet();
                (n.name, "bridge", subnet)
            }));
            for (name, driver, subnet) in rows {
                if quiet {
                    println!("{name}");
                } else {
                    println!("{name:<24}  {driver:<8}  {subnet}");
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                if let Some((n, what)) = BUILTIN.iter().find(|(n, _)| n == name) {
                    let driver = if *n == "none" { "null" } else { n };
                    out.push(serde_json::json!({"Name": n, "Driver": driver, "Scope": "local", "Description": what}));
                    continue;
                }
                if name == network::DEFAULT_BRIDGE && network::inspect(ctx.root(), name).is_err() {
                    out.push(serde_json::json!({
                        "Name": name,
                        "Driver": "bridge",
                        "Scope": "local",
                        "Description": "the default network; its bridge is made when the first container joins it",
                    }));
                    continue;
                }
                let n = network::inspect(ctx.root(), name)?;
                // Members, as Docker lists them: by ID, with their name and address.
                let members: serde_json::Map<String, serde_json::Value> =
                    ctx.runtime()?.list(true)?
                        .into_iter()
                        .filter(|c| c.config.network_name.as_deref() == Some(n.name.as_str()))
                        .map(|c| {
                            let ip = c.config.ip.clone().unwrap_or_default();
                            (
                                c.config.id.clone(),
                                serde_json::json!({"Name": c.config.name, "IPv4Address": format!("{ip}/24")}),
                            )
                        })
                        .collect();
                out.push(serde_json::json!({
                    "Containers": members,
                    "Name": n.name,
                    "Id": n.id,
                    "Driver": "bridge",
                    "Scope": "local",
                    "Created": n.created,
                    "IPAM": {"Config": [{"Subnet": n.subnet(), "Gateway": n.gateway().to_string()}]},
                    "Options": {"com.docker.network.bridge.name": n.bridge},
                }));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Create { name } => {
            println!("{}", network::create(ctx.root(), &name)?.id);
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
