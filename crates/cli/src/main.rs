//! `kiln`: build container images from Dockerfiles. Parses the command line and dispatches to
//! one module per command group under `commands/`.

#![deny(unsafe_code)]

mod commands;

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build container images from Dockerfiles"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::run(cli.command)
}
