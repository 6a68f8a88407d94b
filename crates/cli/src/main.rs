//! `kiln`: build container images from Dockerfiles. Parses the command line, sets up logging,
//! and dispatches to one module per command group under `commands/`, which reach builds and
//! images through a `backend::Backend`.

#![deny(unsafe_code)]

mod age;
mod backend;
mod commands;
mod error;
mod format;
mod progress;
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
    /// Diagnostic logging to stderr: error, warn, info, debug, trace, or a filter such as
    /// `kiln_engine=debug` (default: $KILN_LOG, else off).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A worker says what it does (builds accepted, refused connections) unless told otherwise.
    let default = matches!(cli.command, commands::Command::Serve(_)).then_some("kiln_serve=info");
    init_logging(cli.log_level.as_deref(), default);
    let root = cli.root.unwrap_or_else(kiln_image::default_root);
    commands::run(cli.command, &backend::Context::new(root))
}

/// Shows the spans and events the libraries emit when asked (`--log-level`, `KILN_LOG`); by
/// default nothing, so ordinary output stays as Docker users expect.
fn init_logging(level: Option<&str>, default: Option<&str>) {
    let filter = match level
        .map(str::to_owned)
        .or_else(|| std::env::var("KILN_LOG").ok())
        .or_else(|| default.map(str::to_owned))
    {
        Some(f) if !f.is_empty() => f,
        _ => return,
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: ignoring the log filter {filter:?}: {e}");
            return;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}
