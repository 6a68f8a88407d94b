//! `kiln network create|ls|inspect|rm`: user-defined networks (a bridge and a /24 each), beside
//! the built-in `none` and `host`; `bridge` is created on first use by `run --network bridge`.

use std::path::Path;
use std::process::ExitCode;

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
        "its own namespace with only lo; -p ports are proxied into it (the default)",
    ),
    ("host", "the host's network namespace"),
];

pub fn run(command: NetworkCommand, root: &Path) -> anyhow::Result<ExitCode> {
    match command {
        NetworkCommand::Ls { quiet } => {
            if !quiet {
                println!("{:<24}  {:<8}  SUBNET", "NAME", "DRIVER");
            }
            for (name, _) in BUILTIN {
                if quiet {
                    println!("{name}");
                } else {
                    println!("{name:<24}  {name:<8}");
                }
            }
            for n in network::list(root)? {
                if quiet {
                    println!("{}", n.name);
                } else {
                    println!("{:<24}  {:<8}  {}", n.name, "bridge", n.subnet());
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            for name in &names {
                if let Some((n, what)) = BUILTIN.iter().find(|(n, _)| n == name) {
                    out.push(serde_json::json!({"Name": n, "Driver": n, "Scope": "local", "Description": what}));
                    continue;
                }
                let n = network::inspect(root, name)?;
                out.push(serde_json::json!({
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
            println!("{}", network::create(root, &name)?.id);
        }
        NetworkCommand::Rm { names } => {
            let mut code = ExitCode::SUCCESS;
            for n in &names {
                match network::remove(root, n) {
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
