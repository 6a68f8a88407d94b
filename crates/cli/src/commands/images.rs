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

use super::listing;
use crate::backend::Context;
use crate::format;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Format the output with a Go template (`table ...`, `json`, `{{.Repository}}:{{.Tag}}`).
    #[arg(long)]
    format: Option<String>,
    /// Show the manifest digests.
    #[arg(long)]
    digests: bool,
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
pub struct HistoryArgs {
    /// Format the output with a Go template (`table ...`, `json`, `{{.CreatedBy}}`).
    #[arg(long)]
    format: Option<String>,
    /// Print sizes and dates in machine-readable form (`-H=false`).
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
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
    /// The platform the files are for (`linux/arm64`), as Docker's `import --platform`; the
    /// host's by default.
    #[arg(long)]
    platform: Option<String>,
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
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|(repo, tag, image)| image_row(repo, tag, image, args.no_trunc))
        .collect();
    let format = if args.quiet {
        Some("{{.ID}}")
    } else {
        args.format.as_deref()
    };
    let listing = if args.digests {
        &format::IMAGES_DIGESTS
    } else {
        &format::IMAGES
    };
    listing::print(format, listing, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// One `docker images` row: Docker's field names, values as Docker prints them.
fn image_row(repo: &str, tag: &str, image: &Image, no_trunc: bool) -> serde_json::Value {
    let created = image.config.created.as_deref().unwrap_or_default();
    let size = human_size(image.size());
    json!({
        "Containers": "N/A",
        "CreatedAt": crate::age::docker_time(created),
        "CreatedSince": crate::age::ago(created),
        "Digest": image.manifest_digest.to_string(),
        "ID": short_id(image, no_trunc),
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
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
                crate::error::print(&crate::error::chain(&e), ctx.root());
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

pub fn history(args: HistoryArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let image = ctx.backend()?.image(&args.image)?;
    let sizes: Vec<u64> = image.manifest.layers.iter().map(|l| l.size).collect();
    let mut layer = sizes.len();
    let mut rows = Vec::new();
    for (i, h) in image.config.history.iter().rev().enumerate() {
        let size = if h.empty_layer {
            0
        } else {
            layer = layer.saturating_sub(1);
            sizes.get(layer).copied().unwrap_or(0)
        };
        // Docker names only the image itself; the layers below have no image of their own.
        let id = if i == 0 {
            short_id(&image, args.no_trunc)
        } else {
            "<missing>".to_string()
        };
        let mut created_by = h.created_by.replace('\t', " ");
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        let created = h.created.as_deref().unwrap_or_default();
        let (created_since, created_at, size) = if args.human {
            (
                crate::age::ago(created),
                crate::age::docker_time(created),
                human_size(size),
            )
        } else {
            (created.to_string(), created.to_string(), size.to_string())
        };
        rows.push(json!({
            "Comment": h.comment,
            "CreatedAt": created_at,
            "CreatedBy": created_by,
            "CreatedSince": created_since,
            "ID": id,
            "Size": size,
        }));
    }
    let format = if args.quiet {
        Some("{{.ID}}")
    } else {
        args.format.as_deref()
    };
    let listing = if args.human {
        &format::HISTORY
    } else {
        &format::HISTORY_NOT_HUMAN
    };
    listing::print(format, listing, &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub fn import(args: ImportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut config = ImageConfig::default();
    if let Some(p) = &args.platform {
        let p = kiln_llb::Platform::parse(p).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.os = p.os;
        config.architecture = p.architecture;
        config.variant = p.variant;
    }
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
