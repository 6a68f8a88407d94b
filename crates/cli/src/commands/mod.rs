//! The `kiln` subcommands, one module per command group.

pub mod build;
pub mod debug;
pub mod images;
pub mod load;
pub mod save;
pub mod system;

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<build::BuildArgs>),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images (their names; data goes at the next prune).
    Rmi(images::RmiArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Show an image's details as JSON (docker-compatible fields).
    Inspect(images::InspectArgs),
    /// Show an image's history.
    History(images::HistoryArgs),
    /// Make an image from a root filesystem tar (like `docker import`).
    Import(images::ImportArgs),
    /// Write images to a docker or OCI archive.
    Save(save::SaveArgs),
    /// Load images from a docker or OCI archive, or an OCI layout directory.
    Load(load::LoadArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(system::BuilderCommand),
    /// Store-wide information and maintenance.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Tools for looking inside kiln (parser output and the like).
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// Runs one command and turns its outcome into the process exit code.
pub fn run(command: Command, root: &Path) -> ExitCode {
    let result = match command {
        Command::Debug(c) => return debug::run(c),
        Command::Build(args) => return build::run(*args, root),
        Command::Images(args) => images::images(args, root),
        Command::Rmi(args) => images::rmi(args, root),
        Command::Tag(args) => images::tag(args, root),
        Command::Inspect(args) => images::inspect(args, root),
        Command::History(args) => images::history(args, root),
        Command::Import(args) => images::import(args, root),
        Command::Save(args) => save::save(args, root),
        Command::Load(args) => load::load(args, root),
        Command::Builder(c) => system::builder(c, root),
        Command::System(c) => system::system(c, root),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the store, with an error that says which root it tried.
pub fn open_worker(root: &Path) -> anyhow::Result<std::sync::Arc<kiln_engine::Worker>> {
    use anyhow::Context as _;
    let worker = kiln_engine::Worker::open(root)
        .with_context(|| format!("failed to open the store at {}", root.display()))?;
    Ok(std::sync::Arc::new(worker))
}
