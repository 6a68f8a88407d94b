//! `kiln compose`: multi-container applications from a compose file. The model comes from
//! `kiln_compose` (load, validate, plan); this module parses `docker compose`'s flags, loads the
//! project, and runs the planner's actions through the run engine (`up.rs`; `attached.rs` for
//! `up` without `-d`), builds through `kiln build`'s path (`build.rs`); `view.rs` has `ps`,
//! `logs` and `config`.

mod attached;
mod build;
mod spec;
mod up;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kiln_compose::plan::{Observed, labels};
use kiln_compose::{LoadOptions, Project};

use crate::backend::Context;

/// `kiln compose [GLOBAL FLAGS] COMMAND`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose configuration files (default: compose.yaml and friends in the current directory
    /// or above, plus an override file).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Project name (default: the `name:` in the file, else the directory's name).
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    /// Alternate working directory (default: the first file's directory).
    #[arg(long)]
    project_directory: Option<PathBuf>,
    /// Alternate environment files (instead of PROJECT_DIR/.env).
    #[arg(long = "env-file")]
    env_files: Vec<PathBuf>,
    /// Profiles to enable.
    #[arg(long = "profile")]
    profiles: Vec<String>,
    #[command(subcommand)]
    command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
enum ComposeCommand {
    /// Create and start containers (converging what exists to the file).
    Up(up::UpArgs),
    /// Stop and remove containers and networks (named volumes with -v).
    Down(up::DownArgs),
    /// List the project's containers.
    Ps(view::PsArgs),
    /// Show the output of the project's containers.
    Logs(view::LogsArgs),
    /// Show the resolved, merged, interpolated model.
    Config(view::ConfigArgs),
    /// Build or rebuild the services' images.
    Build(build::BuildArgs),
    /// Any other `docker compose` command: refused by name.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

pub fn run(args: ComposeArgs, ctx: &Context) -> ExitCode {
    if let ComposeCommand::Other(words) = &args.command {
        let name = words.first().map(String::as_str).unwrap_or("");
        eprintln!("not supported yet: compose {name}");
        return ExitCode::from(125);
    }
    let mut opts = match LoadOptions::from_process() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    opts.files = args.files;
    opts.project_name = args.project_name;
    opts.project_directory = args.project_directory;
    opts.env_files = args.env_files;
    opts.profiles.extend(args.profiles);
    if opts.files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("error: cannot read the compose file from stdin: {e}");
            return ExitCode::FAILURE;
        }
        opts.stdin = Some(text);
    }
    let loaded = match Project::load(&opts) {
        Ok(l) => l,
        Err(e) => {
            eprint!("{}", e.render());
            return ExitCode::FAILURE;
        }
    };
    let quiet_config = matches!(&args.command, ComposeCommand::Config(c) if c.quiet);
    if !quiet_config {
        for w in &loaded.warnings {
            eprint!("{}", w.render());
        }
    }
    let mut project = loaded.project;
    let result = match args.command {
        ComposeCommand::Up(a) => up::up(a, &mut project, ctx),
        ComposeCommand::Down(a) => up::down(a, &project, ctx),
        ComposeCommand::Ps(a) => view::ps(a, &project, ctx),
        ComposeCommand::Logs(a) => view::logs(a, &project, ctx),
        ComposeCommand::Config(a) => view::config(a, &project),
        ComposeCommand::Build(a) => build::build(a, &project, ctx),
        ComposeCommand::Other(_) => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The project's containers (every state), by their labels.
fn containers(
    rt: &kiln_runtime::Runtime,
    project: &Project,
) -> anyhow::Result<Vec<kiln_runtime::Container>> {
    Ok(rt
        .list(true)?
        .into_iter()
        .filter(|c| c.config.labels.get(labels::PROJECT) == Some(&project.name))
        .collect())
}

/// What the planner needs to know of a container.
fn observed(c: &kiln_runtime::Container) -> Observed {
    let l = &c.config.labels;
    let get = |k: &str| l.get(k).cloned().unwrap_or_default();
    Observed {
        name: c.name().to_string(),
        service: get(labels::SERVICE),
        number: get(labels::NUMBER).parse().unwrap_or(0),
        config_hash: get(labels::CONFIG_HASH),
        running: matches!(
            c.state.status,
            kiln_runtime::Status::Running | kiln_runtime::Status::Restarting
        ),
        oneoff: get(labels::ONEOFF) == "True",
        image_id: c.config.image_id.clone(),
    }
}
