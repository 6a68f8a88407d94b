//! The `kiln` subcommands, one module per command group.

pub mod attach;
pub mod build;
mod builder_remote;
mod check;
pub mod compose;
pub mod container;
pub mod debug;
pub mod images;
pub mod inspect;
mod listing;
pub mod load;
pub mod manage;
pub mod network;
pub mod port;
pub mod registry;
pub mod run;
pub mod save;
pub mod serve;
pub mod system;
mod unsupported;
pub mod volume;

use std::process::ExitCode;

use clap::Subcommand;

use crate::backend::Context;

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
    /// Show details of containers or images as JSON (docker-compatible fields).
    Inspect(inspect::InspectArgs),
    /// Show an image's history.
    History(images::HistoryArgs),
    /// Make an image from a root filesystem tar (like `docker import`).
    Import(images::ImportArgs),
    /// Download an image from a registry.
    Pull(registry::PullArgs),
    /// Upload an image to a registry.
    Push(registry::PushArgs),
    /// Log in to a registry (saves the credentials in ~/.docker/config.json).
    Login(registry::LoginArgs),
    /// Log out from a registry.
    Logout(registry::LogoutArgs),
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
    /// Run a command in a new container.
    Run(Box<run::RunArgs>),
    /// Create a container without starting it.
    Create(Box<run::RunArgs>),
    /// Start stopped containers.
    Start(run::StartArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// List a container's published ports.
    Port(port::PortArgs),
    /// Show a container's output.
    Logs(container::LogsArgs),
    /// Stop containers (stop signal, then SIGKILL).
    Stop(container::StopArgs),
    /// Stop and start containers.
    Restart(container::StopArgs),
    /// Send a signal to containers.
    Kill(container::KillArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(container::WaitArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Attach this terminal to a running container's input and output.
    Attach(attach::AttachArgs),
    /// Copy files between a running container and the host.
    Cp(container::CpArgs),
    /// Show containers' resource use.
    Stats(container::StatsArgs),
    /// Freeze every process of containers.
    Pause(manage::NamesArgs),
    /// Thaw paused containers.
    Unpause(manage::NamesArgs),
    /// Rename a container.
    Rename(manage::RenameArgs),
    /// Change containers' limits and restart policy.
    Update(manage::UpdateArgs),
    /// Show a container's processes.
    Top(manage::TopArgs),
    /// Show what a container changed in its filesystem.
    Diff(manage::DiffArgs),
    /// Make an image from a container's changes.
    Commit(manage::CommitArgs),
    /// Write a container's filesystem as a tar archive.
    Export(manage::ExportArgs),
    /// Show what happens to containers, networks, volumes and images.
    Events(manage::EventsArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(manage::ContainerCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(manage::ImageCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Define and run multi-container applications (compose files).
    Compose(compose::ComposeArgs),
    /// Keeps a detached container (started by `run -d` and `start`).
    #[command(hide = true)]
    ContainerMonitor(run::MonitorArgs),
    /// The container side of `kiln cp`, chrooted into the container's root.
    #[command(hide = true)]
    ContainerCp(container::CpHelperArgs),
    /// Run a build worker that `kiln build --builder` sends builds to over gRPC.
    Serve(serve::ServeArgs),
    /// Certificates for `kiln serve` and its clients.
    #[command(subcommand)]
    Tls(serve::TlsCommand),
    /// Tools for looking inside kiln (parser output and the like).
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// Runs one command and turns its outcome into the process exit code.
pub fn run(command: Command, ctx: &Context) -> ExitCode {
    let result = match command {
        Command::Debug(c) => return debug::run(c),
        Command::Build(args) => return build::run(*args, ctx),
        Command::Images(args) => images::images(args, ctx),
        Command::Rmi(args) => images::rmi(args, ctx),
        Command::Tag(args) => images::tag(args, ctx),
        Command::Inspect(args) => inspect::inspect(args, ctx),
        Command::Run(args) => return run::run(*args, ctx),
        Command::Create(args) => return run::create(*args, ctx),
        Command::ContainerMonitor(args) => return run::monitor(args, ctx),
        Command::ContainerCp(args) => container::cp_helper(args),
        Command::Exec(args) => return container::exec(args, ctx),
        Command::Attach(args) => return attach::attach(args, ctx),
        Command::Start(args) => run::start(args, ctx),
        Command::Ps(args) => container::ps(args, ctx),
        Command::Port(args) => port::run(args, ctx),
        Command::Logs(args) => container::logs(args, ctx),
        Command::Stop(args) => container::stop(args, ctx),
        Command::Restart(args) => container::restart(args, ctx),
        Command::Kill(args) => container::kill(args, ctx),
        Command::Rm(args) => container::rm(args, ctx),
        Command::Wait(args) => container::wait(args, ctx),
        Command::Cp(args) => container::cp(args, ctx),
        Command::Stats(args) => container::stats(args, ctx),
        Command::Pause(args) => manage::pause(args, ctx),
        Command::Unpause(args) => manage::unpause(args, ctx),
        Command::Rename(args) => manage::rename(args, ctx),
        Command::Update(args) => manage::update(args, ctx),
        Command::Top(args) => manage::top(args, ctx),
        Command::Diff(args) => manage::diff(args, ctx),
        Command::Commit(args) => manage::commit(args, ctx),
        Command::Export(args) => manage::export(args, ctx),
        Command::Events(args) => manage::events(args, ctx),
        Command::Container(c) => manage::container(c, ctx),
        Command::Image(c) => manage::image(c, ctx),
        Command::Volume(c) => volume::run(c, ctx),
        Command::Network(c) => network::run(c, ctx),
        Command::Compose(args) => return compose::run(args, ctx),
        Command::History(args) => images::history(args, ctx),
        Command::Import(args) => images::import(args, ctx),
        Command::Pull(args) => registry::pull(args, ctx),
        Command::Push(args) => registry::push(args, ctx),
        Command::Login(args) => registry::login(args),
        Command::Logout(args) => registry::logout(args),
        Command::Save(args) => save::save(args, ctx),
        Command::Load(args) => load::load(args, ctx),
        Command::Builder(c) => system::builder(c, ctx),
        Command::System(c) => system::system(c, ctx),
        Command::Serve(args) => serve::serve(args, ctx),
        Command::Tls(c) => serve::tls(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::error::print(&crate::error::chain(&e), ctx.root());
            ExitCode::FAILURE
        }
    }
}
