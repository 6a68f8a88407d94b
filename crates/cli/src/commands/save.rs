//! `kiln save`: images from the store as a docker archive (`docker save`'s format) or an OCI
//! archive, to a file or stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kiln_image::SaveFormat;

use crate::backend::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// `docker save`'s format (loads with `docker load`).
    Docker,
    /// An OCI image layout as a tar.
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save (names or IDs).
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    format: FormatArg,
}

pub fn save(args: SaveArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = ctx.backend()?;
    let format = match args.format {
        FormatArg::Docker => SaveFormat::Docker,
        FormatArg::Oci => SaveFormat::Oci,
    };
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            // Write next to the destination and rename, so a failed save leaves no half archive.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let mut tmp = tempfile::Builder::new()
                .prefix(".kiln-save-")
                .tempfile_in(dir)
                .with_context(|| format!("failed to create a file in {}", dir.display()))?;
            backend
                .save(
                    &args.images,
                    format,
                    &mut std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
                )
                .with_context(|| format!("failed to write {}", path.display()))?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("failed to write {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("failed to write {}", path.display()))?;
        }
        _ => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            backend.save(
                &args.images,
                format,
                &mut std::io::BufWriter::with_capacity(1 << 20, stdout.lock()),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
