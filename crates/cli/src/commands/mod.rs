//! The `kiln` subcommands, one module per command group.

pub mod debug;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for looking inside kiln (parser output and the like).
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// Runs one command and turns its outcome into the process exit code.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Debug(c) => debug::run(c),
    }
}
