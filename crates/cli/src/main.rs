//! `kiln`: build container images from Dockerfiles. Parses the command line, sets up logging,
//! and dispatches to one module per command group under `commands/`, which reach builds and
//! images through a `backend::Backend`.

#![deny(unsafe_code)]

mod age;
mod backend;
mod commands;
mod error;
mod explain;
mod format;
mod progress;
mod runflags;
mod stdout;
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
    stdout::exit_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    // A worker says what it does (builds accepted, refused connections) unless told otherwise.
    let default = matches!(cli.command, commands::Command::Serve(_)).then_some("kiln_serve=info");
    init_logging(cli.log_level.as_deref(), default);
    let root = cli.root.unwrap_or_else(kiln_image::default_root);
    commands::run(cli.command, &backend::Context::new(root))
}

/// A command line the parser refused, as Docker's CLI reports one: its own short message,
/// where to get help, exit code 125 (help and version requests print and succeed).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(125)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    let message = match e.kind() {
        ErrorKind::UnknownArgument if arg.starts_with('-') => {
            format!("unknown flag: {}", arg.split('=').next().unwrap_or(&arg))
        }
        ErrorKind::MissingRequiredArgument => {
            format!("\"{}\" requires at least 1 argument.", command_words())
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => format!(
            "invalid argument {:?} for \"{}\" flag: {}",
            text(ContextKind::InvalidValue).unwrap_or_default(),
            flag_label(arg.split_whitespace().next().unwrap_or(&arg)),
            e.source()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid value".into())
        ),
        _ => {
            let rendered = e.render().to_string();
            rendered
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ")
                .to_string()
        }
    };
    eprintln!("{message}\nSee '{} --help'.", command_words());
    ExitCode::from(125)
}

/// `kiln run` (or `kiln network create`): the words of the command line that name the
/// command, global options skipped.
fn command_words() -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut words = vec!["kiln".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" || a == "--log-level" {
            args.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(&a) {
            Some(sub) => {
                words.push(a.clone());
                cmd = sub.clone();
            }
            None => break,
        }
    }
    words.join(" ")
}

/// `--memory` as Docker's messages show a flag: with its short form (`-m, --memory`).
fn flag_label(long: &str) -> String {
    use clap::CommandFactory;
    let name = long.trim_start_matches('-');
    let mut stack = vec![Cli::command()];
    while let Some(cmd) = stack.pop() {
        if let Some(short) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .and_then(|a| a.get_short())
        {
            return format!("-{short}, --{name}");
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    long.to_string()
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
