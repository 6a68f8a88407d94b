//! Image commands: `images`, `rmi`, `tag`, `inspect`, `history`, `import`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_image::{Image, familiar};
use kiln_llb::image::ImageConfig;
use kiln_runtime::system::human_size;
use serde_json::json;

use crate::backend::Context;

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

pub fn images(args: ImagesArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for (name, image) in ctx.backend()?.images()? {
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

pub fn rmi(args: RmiArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = ctx.backend()?;
    let mut failed = false;
    for name in &args.images {
        match backend.remove(name, args.force) {
            Ok(removed) => {
                for n in &removed.untagged {
                    println!("Untagged: {}", familiar(n));
                }
                if let Some(id) = removed.deleted {
                    println!("Deleted: {id}");
                }
            }
            Err(e) => {
                eprintln!("error: {}", crate::error::chain(&e));
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

pub fn tag(args: TagArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    ctx.backend()?.tag(&args.source, &args.target)?;
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

pub fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = ctx.backend()?;
    let all = backend.images()?;
    let mut out = Vec::new();
    for name in &args.images {
        let image = backend.image(name)?;
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

pub fn history(args: HistoryArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let image = ctx.backend()?.image(&args.image)?;
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

pub fn import(args: ImportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut config = ImageConfig::default();
    for change in &args.changes {
        kiln_frontend::change::apply_change(&mut config.config, change)
            .with_context(|| format!("invalid --change {change:?}"))?;
    }
    let mut input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("failed to open {}", args.file.display()))?,
        )
    };
    let image = ctx.backend()?.import(
        &mut input,
        args.name.as_deref(),
        config,
        &args.file.display().to_string(),
    )?;
    println!("sha256:{}", image.id().hex());
    Ok(ExitCode::SUCCESS)
}
