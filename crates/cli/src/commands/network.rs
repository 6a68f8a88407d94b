//! `kiln network ls|inspect`: the built-in networks. Bridge and user-defined networks are not
//! supported yet; `create` says so.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    Ls,
    /// Show a built-in network as JSON.
    Inspect { name: String },
    /// Create a user-defined network (not supported yet).
    Create { name: String },
    /// Remove a user-defined network (not supported yet).
    Rm { name: String },
}

/// The networks every container can use today.
const BUILTIN: [(&str, &str); 2] = [
    (
        "none",
        "its own namespace with only lo; -p ports are proxied into it (the default)",
    ),
    ("host", "the host's network namespace"),
];

pub fn run(command: NetworkCommand) -> anyhow::Result<ExitCode> {
    match command {
        NetworkCommand::Ls => {
            println!("{:<8}  {:<8}  DESCRIPTION", "NAME", "DRIVER");
            for (name, what) in BUILTIN {
                println!("{name:<8}  {name:<8}  {what}");
            }
        }
        NetworkCommand::Inspect { name } => {
            let Some((n, what)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
                bail!("no such network: {name}");
            };
            let v = serde_json::json!([{"Name": n, "Driver": n, "Scope": "local", "Description": what}]);
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        NetworkCommand::Create { name } => {
            bail!("not supported yet: user-defined networks ({name})")
        }
        NetworkCommand::Rm { name } => bail!("no such network: {name}"),
    }
    Ok(ExitCode::SUCCESS)
}
