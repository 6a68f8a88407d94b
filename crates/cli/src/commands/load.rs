//! `kiln load`: an image archive (docker or OCI, plain or compressed) or an OCI layout
//! directory into the store, verified in full first.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::backend::Context;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this archive file or OCI layout directory instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print only the image IDs.
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(args: LoadArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let backend = ctx.backend()?;
    let loaded = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            if path.is_dir() {
                backend.load_dir(path)?
            } else {
                let mut file = std::fs::File::open(path)
                    .with_context(|| format!("failed to open {}", path.display()))?;
                backend.load_archive(&mut file)?
            }
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no archive to load: give -i FILE or pipe one to stdin");
            }
            backend.load_archive(&mut stdin.lock())?
        }
    };
    for l in &loaded {
        let id = format!("sha256:{}", l.image.id().hex());
        if args.quiet {
            println!("{id}");
            continue;
        }
        let named: Vec<&String> = l
            .names
            .iter()
            .filter(|n| !n.starts_with("sha256:"))
            .collect();
        if named.is_empty() {
            println!("Loaded image ID: {id}");
        }
        for name in named {
            println!("Loaded image: {}", kiln_image::familiar(name));
        }
    }
    Ok(ExitCode::SUCCESS)
}
