//! Image commands: `images`, `rmi`, `tag`, `inspect`, `history`, `import`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_engine::Image;
use kiln_engine::reference::familiar;
use kiln_frontend::syntax::{self, Args as NodeArgs};
use kiln_llb::image::{ImageConfig, RunConfig};
use kiln_runtime::system::human_size;
use serde_json::json;

use super::open_worker;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show full image IDs.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Also remove a name given by ID (all names of that image).
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    image: String,
    /// Don't truncate the CREATED BY column.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The root filesystem tar (plain or compressed); `-` reads stdin.
    file: PathBuf,
    /// The name to give the image.
    name: Option<String>,
    /// A Dockerfile instruction applied to the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER,
    /// LABEL, EXPOSE, STOPSIGNAL, VOLUME); repeatable.
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
}

fn short_id(image: &Image, full: bool) -> String {
    let hex = image.id().hex();
    if full {
        format!("sha256:{hex}")
    } else {
        hex[..12].to_string()
    }
}

pub fn images(args: ImagesArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    let mut rows = Vec::new();
    for (name, image) in worker.images()? {
        let short = familiar(&name);
        let (repo, tag) = match short.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (short.clone(), "<none>".to_string()),
        };
        rows.push((repo, tag, image));
    }
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    if args.quiet {
        for (_, _, image) in &rows {
            println!("{}", short_id(image, args.no_trunc));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<40} {:<15} {:<15} {:<20} SIZE",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
    );
    for (repo, tag, image) in &rows {
        println!(
            "{:<40} {:<15} {:<15} {:<20} {}",
            repo,
            tag,
            short_id(image, args.no_trunc),
            image
                .config
                .created
                .as_deref()
                .map(crate::age::ago)
                .unwrap_or_default(),
            human_size(image.size())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(args: RmiArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    let mut failed = false;
    for name in &args.images {
        let canonical = kiln_engine::reference::normalize(name);
        if worker.store().image_ref(&canonical)?.is_some() {
            worker.untag(name)?;
            println!("Untagged: {}", familiar(name));
            continue;
        }
        // An image ID: remove every name pointing at it when forced or when there is one.
        match worker.image(name) {
            Ok(image) => {
                let names: Vec<String> = worker
                    .images()?
                    .into_iter()
                    .filter(|(_, i)| i.id() == image.id())
                    .map(|(n, _)| n)
                    .collect();
                if names.len() > 1 && !args.force {
                    eprintln!(
                        "error: image {name} is referenced by several names ({}); use -f or remove them by name",
                        names
                            .iter()
                            .map(|n| familiar(n))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    failed = true;
                    continue;
                }
                for n in names {
                    worker.untag(&n)?;
                    println!("Untagged: {}", familiar(&n));
                }
                println!("Deleted: sha256:{}", image.id().hex());
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn tag(args: TagArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    worker.tag(&args.source, &args.target)?;
    Ok(ExitCode::SUCCESS)
}

/// `docker image inspect`-style JSON for one image.
pub fn inspect_json(name: &str, image: &Image, repo_tags: Vec<String>) -> serde_json::Value {
    let config = &image.config;
    json!({
        "Id": format!("sha256:{}", image.id().hex()),
        "RepoTags": repo_tags,
        "RepoDigests": [],
        "Created": config.created,
        "Author": config.author.clone().unwrap_or_default(),
        "Config": config.config,
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": image.size(),
        "RootFS": {"Type": "layers", "Layers": config.rootfs.diff_ids},
        "History": config.history,
        "Descriptor": {
            "digest": image.manifest_digest.to_string(),
            "mediaType": image.manifest.media_type,
        },
        "Name": name,
    })
}

pub fn inspect(args: InspectArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    let all = worker.images()?;
    let mut out = Vec::new();
    for name in &args.images {
        let image = worker.image(name)?;
        let tags = all
            .iter()
            .filter(|(_, i)| i.id() == image.id())
            .map(|(n, _)| familiar(n))
            .collect();
        out.push(inspect_json(name, &image, tags));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn history(args: HistoryArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    let image = worker.image(&args.image)?;
    let sizes: Vec<u64> = image.manifest.layers.iter().map(|l| l.size).collect();
    let mut layer = sizes.len();
    println!(
        "{:<20} {:<60} {:>10}  COMMENT",
        "CREATED", "CREATED BY", "SIZE"
    );
    for h in image.config.history.iter().rev() {
        let size = if h.empty_layer {
            0
        } else {
            layer = layer.saturating_sub(1);
            sizes.get(layer).copied().unwrap_or(0)
        };
        let mut created_by = h.created_by.clone();
        if !args.no_trunc && created_by.chars().count() > 60 {
            created_by = created_by.chars().take(57).collect::<String>() + "...";
        }
        println!(
            "{:<20} {:<60} {:>10}  {}",
            h.created
                .as_deref()
                .map(crate::age::ago)
                .unwrap_or_default(),
            created_by,
            human_size(size),
            h.comment
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: ImportArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let worker = open_worker(root)?;
    let mut config = ImageConfig::default();
    for change in &args.changes {
        apply_change(&mut config.config, change)
            .with_context(|| format!("invalid --change {change:?}"))?;
    }
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("failed to open {}", args.file.display()))?,
        )
    };
    let image = worker.import_rootfs(
        input,
        args.name.as_deref(),
        config,
        &args.file.display().to_string(),
    )?;
    println!("sha256:{}", image.id().hex());
    Ok(ExitCode::SUCCESS)
}

/// Applies one `-c` Dockerfile instruction to a config, as `docker import --change` does.
fn apply_change(config: &mut RunConfig, change: &str) -> anyhow::Result<()> {
    let ast = syntax::parse(change.as_bytes()).map_err(|d| anyhow::anyhow!("{}", d.message))?;
    let [node] = ast.children.as_slice() else {
        bail!("expected exactly one instruction");
    };
    let keyword = node.keyword.as_str().to_ascii_uppercase();
    let words = |args: &NodeArgs| -> Vec<String> {
        match args {
            NodeArgs::Words(w) | NodeArgs::Json(w) => w.iter().map(|w| w.value.clone()).collect(),
            _ => Vec::new(),
        }
    };
    let command = |args: &NodeArgs| -> Vec<String> {
        match args {
            NodeArgs::Json(w) => w.iter().map(|w| w.value.clone()).collect(),
            NodeArgs::Words(w) => vec![
                "/bin/sh".into(),
                "-c".into(),
                w.iter()
                    .map(|w| w.value.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ],
            _ => Vec::new(),
        }
    };
    match keyword.as_str() {
        "CMD" => config.cmd = Some(command(&node.args)),
        "ENTRYPOINT" => config.entrypoint = Some(command(&node.args)),
        "WORKDIR" => config.working_dir = words(&node.args).join(" "),
        "USER" => config.user = words(&node.args).join(" "),
        "STOPSIGNAL" => config.stop_signal = words(&node.args).join(" "),
        "ENV" | "LABEL" => {
            let NodeArgs::Pairs(pairs) = &node.args else {
                bail!("{keyword} needs key=value pairs");
            };
            for pair in pairs {
                let value = unquote(&pair.value.value);
                if keyword == "ENV" {
                    config.set_env(&pair.key.value, &value);
                } else {
                    config.labels.insert(unquote(&pair.key.value), value);
                }
            }
        }
        "EXPOSE" => {
            for port in words(&node.args) {
                let port = if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                };
                config.exposed_ports.insert(port);
            }
        }
        "VOLUME" => {
            for v in words(&node.args) {
                config.volumes.insert(v);
            }
        }
        other => bail!("not supported yet: {other} in --change"),
    }
    Ok(())
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}
