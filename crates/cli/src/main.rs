//! `kiln`: build container images from Dockerfiles. Parses the command line and dispatches to
//! one module per command group under `commands/`.

#![deny(unsafe_code)]

mod age;
mod commands;
// `--format` templates and Docker's table layout; the lead wires them into the listing
// commands and `inspect` (issue 13). Until then only their tests call them.
#[allow(dead_code)]
mod format;
mod progress;
#[allow(dead_code)]
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build container images from Dockerfiles, without a daemon"
)]
struct Cli {
    /// The store directory (default: $KILN_ROOT, /var/lib/kiln for root, else $XDG_DATA_HOME/kiln).
    #[arg(long, global = true, env = "KILN_ROOT")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = cli.root.unwrap_or_else(kiln_cache::default_root);
    commands::run(cli.command, &root)
}
