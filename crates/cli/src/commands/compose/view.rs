//! `compose ps`, `compose logs` and `compose config`: what the project has, read-only.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_compose::Project;
use kiln_compose::plan::labels;
use kiln_runtime::{Container, LogOptions, Stream};

use super::containers;
use crate::backend::Context;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (also stopped ones).
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Display services.
    #[arg(long)]
    services: bool,
    /// `table` or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Only these services.
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs for each container (or `all`).
    #[arg(long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Produce monochrome output.
    #[arg(long)]
    no_color: bool,
    /// Don't print a prefix in logs.
    #[arg(long)]
    no_log_prefix: bool,
    /// Only these services.
    services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Only validate the configuration, print nothing.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print the service names, one per line.
    #[arg(long)]
    services: bool,
    /// Print the volume names, one per line.
    #[arg(long)]
    volumes: bool,
    /// `yaml` or `json`.
    #[arg(long, default_value = "yaml")]
    format: String,
}

fn service_of(c: &Container) -> &str {
    c.config
        .labels
        .get(labels::SERVICE)
        .map(String::as_str)
        .unwrap_or("")
}

fn number_of(c: &Container) -> u32 {
    c.config
        .labels
        .get(labels::NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The project's containers of `only` (all when empty), by service and number.
fn selected(
    project: &Project,
    ctx: &Context,
    only: &[String],
    all: bool,
) -> anyhow::Result<Vec<Container>> {
    for s in only {
        if !project.services.contains_key(s) && !project.disabled.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let rt = ctx.runtime()?;
    let mut list: Vec<Container> = containers(&rt, project)?
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|s| s == service_of(c)))
        .filter(|c| all || super::super::container::state_name(c) == "running")
        .collect();
    list.sort_by(|a, b| (service_of(a), number_of(a)).cmp(&(service_of(b), number_of(b))));
    Ok(list)
}

pub fn ps(args: PsArgs, project: &Project, ctx: &Context) -> anyhow::Result<ExitCode> {
    let list = selected(project, ctx, &args.names, args.all)?;
    if args.services {
        let mut names: Vec<&str> = list.iter().map(service_of).collect();
        names.dedup();
        for n in names {
            println!("{n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.quiet {
        for c in &list {
            println!("{}", c.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            let ports: Vec<String> = kiln_runtime::ports::published(c)
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}->{}/{}",
                        p.host_ip, p.host_port, p.container_port, p.protocol
                    )
                })
                .collect();
            serde_json::json!({
                "ID": c.id(),
                "Name": c.name(),
                "Image": c.config.image,
                "Command": c.config.argv().join(" "),
                "Project": project.name,
                "Service": service_of(c),
                "State": super::super::container::state_name(c),
                "Status": super::super::container::status_text(c),
                "Health": kiln_runtime::health::read(c).map(|h| h.status).unwrap_or_default(),
                "ExitCode": c.state.exit_code.unwrap_or(0),
                "Ports": ports.join(", "),
            })
        })
        .collect();
    match args.format.as_str() {
        "json" => println!("{}", serde_json::Value::Array(rows)),
        "table" => {
            let mut text = String::from("NAME\tIMAGE\tCOMMAND\tSERVICE\tSTATUS\tPORTS\n");
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                text.push_str(&format!(
                    "{}\t{}\t{:?}\t{}\t{}\t{}\n",
                    s("Name"),
                    s("Image"),
                    s("Command"),
                    s("Service"),
                    s("Status"),
                    s("Ports")
                ));
            }
            print!("{}", crate::table::align(&text));
        }
        other => bail!("not supported yet: compose ps --format {other}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes each line of one container's output with its `SERVICE-N  | ` prefix.
struct Prefixed {
    prefix: String,
    /// A line not finished yet, per stream.
    partial: [Vec<u8>; 2],
}

impl Prefixed {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        let i = usize::from(matches!(stream, Stream::Stderr));
        self.partial[i].extend_from_slice(data);
        while let Some(pos) = self.partial[i].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial[i].drain(..=pos).collect();
            let mut out = Vec::with_capacity(self.prefix.len() + line.len());
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(&line);
            // One write per line, so lines of concurrent containers never interleave.
            let _ = std::io::stdout().lock().write_all(&out);
        }
    }

    fn flush(&mut self) {
        for i in 0..2 {
            if !self.partial[i].is_empty() {
                let mut line = std::mem::take(&mut self.partial[i]);
                line.push(b'\n');
                let mut out = self.prefix.clone().into_bytes();
                out.extend_from_slice(&line);
                let _ = std::io::stdout().lock().write_all(&out);
            }
        }
    }
}

pub fn logs(args: LogsArgs, project: &Project, ctx: &Context) -> anyhow::Result<ExitCode> {
    let list = selected(project, ctx, &args.services, true)?;
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().with_context(|| format!("invalid --tail {n:?}"))?),
    };
    let opts = LogOptions {
        follow: args.follow,
        tail,
        timestamps: args.timestamps,
        since: None,
    };
    let rt = ctx.runtime()?;
    let errors = print_logs(&rt, &list, &opts, !args.no_log_prefix, !args.no_color);
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the logs of `list` at once, one thread per container, each line prefixed
/// `SERVICE-N  | ` (coloured on a terminal unless `colour` is off); with `opts.follow` until
/// every container stopped. Returns the failures, one line each.
pub fn print_logs(
    rt: &kiln_runtime::Runtime,
    list: &[Container],
    opts: &LogOptions,
    prefix: bool,
    colour: bool,
) -> Vec<String> {
    let width = list
        .iter()
        .map(|c| format!("{}-{}", service_of(c), number_of(c)).len())
        .max()
        .unwrap_or(0);
    let colour = colour && std::io::IsTerminal::is_terminal(&std::io::stdout());
    std::thread::scope(|scope| {
        let handles: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let label = format!("{}-{}", service_of(c), number_of(c));
                let prefix = match (prefix, colour) {
                    (false, _) => String::new(),
                    (true, false) => format!("{label:width$}  | "),
                    (true, true) => format!("\x1b[{}m{label:width$}  |\x1b[0m ", 31 + (i % 6)),
                };
                scope.spawn(move || {
                    let mut p = Prefixed {
                        prefix,
                        partial: [Vec::new(), Vec::new()],
                    };
                    let mut sink = |s: Stream, d: &[u8]| p.write(s, d);
                    let r = rt.logs(c, opts, &mut sink);
                    p.flush();
                    r.map_err(|e| format!("{}: {e}", c.name()))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().and_then(Result::err))
            .collect()
    })
}

pub fn config(args: ConfigArgs, project: &Project) -> anyhow::Result<ExitCode> {
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if args.services {
        for s in project.service_names() {
            println!("{s}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.volumes {
        for v in project.volume_names() {
            println!("{v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format.as_str() {
        "yaml" => print!("{}", project.to_yaml()),
        "json" => println!("{}", project.to_json()),
        other => bail!("unsupported format {other:?}: use yaml or json"),
    }
    Ok(ExitCode::SUCCESS)
}
