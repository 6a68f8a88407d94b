//! `kiln inspect`: containers and images as Docker's JSON, in the order named, or through a
//! `--format` template.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kiln_image::familiar;

use super::{images, listing};
use crate::backend::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectType {
    Container,
    Image,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output with a Go template (`{{.Config.Cmd}}`, `json`).
    #[arg(short, long)]
    format: Option<String>,
    /// Only look for this kind of object.
    #[arg(long = "type", value_enum)]
    kind: Option<ObjectType>,
    /// Containers or images, by name or ID.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let want_containers = args.kind != Some(ObjectType::Image);
    let want_images = args.kind != Some(ObjectType::Container);
    let runtime = if want_containers {
        Some(ctx.runtime()?)
    } else {
        None
    };
    let backend = ctx.backend()?;
    let mut all_images = None;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        if let Some(rt) = &runtime {
            match rt.get(name) {
                Ok(c) => {
                    found.push(rt.inspect_json(&c));
                    continue;
                }
                Err(kiln_runtime::RuntimeError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if want_images && let Ok(image) = backend.image(name) {
            if all_images.is_none() {
                all_images = Some(backend.images()?);
            }
            let tags = all_images
                .iter()
                .flatten()
                .filter(|(_, i)| i.id() == image.id())
                .map(|(n, _)| familiar(n))
                .collect();
            let mut inspected = images::inspect_json(name, &image, tags);
            // An index of several platforms (a multi-platform build) lists them; the rest of
            // the object is this host's platform's image, as Docker shows it.
            let platforms = backend.platforms(name);
            if platforms.len() > 1
                && let Some(object) = inspected.as_object_mut()
            {
                let names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
                object.insert("Platforms".into(), names.into());
            }
            found.push(inspected);
            continue;
        }
        missing.push(name.clone());
    }
    let rendered = listing::print_inspect(args.format.as_deref(), &found)?;
    for name in &missing {
        eprintln!("Error: No such object: {name}");
    }
    Ok(if rendered && missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
