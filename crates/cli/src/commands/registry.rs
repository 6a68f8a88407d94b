//! `kiln pull`, `kiln push`, `kiln login` and `kiln logout`: images to and from registries,
//! credentials in Docker's `config.json`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_registry::{Client, Credential, Reference};

use crate::backend::Context;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `busybox`, `registry:5000/repo:tag`, `repo@sha256:...`.
    name: String,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Pull the image for this platform (`linux/arm64`) rather than the host's.
    #[arg(long)]
    platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The stored image to push (name or ID).
    name: String,
    /// Where to push it (default: NAME).
    destination: Option<String>,
    /// Print only the manifest digest.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`docker.io` if omitted).
    registry: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// The password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (`docker.io` if omitted).
    registry: Option<String>,
}

fn client() -> anyhow::Result<Client> {
    Ok(Client::from_env()?)
}

pub fn pull(args: PullArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let platform = args
        .platform
        .as_deref()
        .map(kiln_llb::Platform::parse)
        .transpose()?;
    let image = ctx
        .backend()?
        .pull_for(&args.name, platform.as_ref(), &|event| {
            if !quiet {
                eprintln!("{}", kiln_image::describe_pull(&event));
            }
        })?;
    if quiet {
        println!("sha256:{}", image.id().hex());
    } else {
        println!("Digest: {}", image.manifest_digest);
        println!(
            "Pulled: {}",
            image.name.as_deref().unwrap_or(args.name.as_str())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(args: PushArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let backend = ctx.backend()?;
    let pushed = backend.push(&args.name, args.destination.as_deref(), &|event| {
        if !quiet {
            eprintln!("{}", kiln_image::describe_push(&event));
        }
    })?;
    println!("{}", pushed.descriptor.digest);
    Ok(ExitCode::SUCCESS)
}

fn registry_host(arg: Option<&str>) -> anyhow::Result<String> {
    let Some(r) = arg else {
        return Ok(kiln_registry::reference::DOCKER_HUB.to_owned());
    };
    let r = r
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = r.split('/').next().unwrap_or(r);
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("invalid registry {r:?}");
    }
    // `index.docker.io` and friends are Docker Hub.
    let parsed = Reference::parse(&format!("{host}/x"))?;
    Ok(parsed.registry().to_owned())
}

pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_host(args.registry.as_deref())?;
    let stdin = std::io::stdin();
    let username = match args.username {
        Some(u) => u,
        None => {
            if args.password_stdin || !stdin.is_terminal() {
                bail!("--username is required when the password comes from stdin");
            }
            eprint!("Username: ");
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => bail!("give the password with --password-stdin or --password"),
    };
    if username.is_empty() || password.is_empty() {
        bail!("the username and password must not be empty");
    }
    let cred = Credential { username, password };
    let client = client()?;
    client.set_credential(&registry, cred.clone());
    client
        .check_login(&registry)
        .with_context(|| format!("login to {registry} failed"))?;
    client.docker_config().store(&registry, &cred)?;
    eprintln!(
        "credentials saved in {}",
        client.docker_config().path.display()
    );
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_host(args.registry.as_deref())?;
    let config = kiln_registry::DockerConfig::default_location();
    if config.remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
