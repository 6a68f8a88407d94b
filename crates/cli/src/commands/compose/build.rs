//! `compose build` and `up --build`: each service's `build:` as a `kiln build` command line, run
//! through the same path (`commands::build`, so the `Backend` seam, progress, `.dockerignore`
//! and diagnostics are `kiln build`'s own). One build per service, in name order.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Parser};
use kiln_compose::Project;

use super::spec::image_name;
use crate::backend::Context;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Do not use the cache when building.
    #[arg(long)]
    no_cache: bool,
    /// Always try to pull newer base images.
    #[arg(long)]
    pull: bool,
    /// Only these services (default: every service with a `build:`).
    services: Vec<String>,
}

/// `kiln build`'s arguments, parsed from the command line this module writes.
#[derive(Debug, Parser)]
#[command(name = "build", no_binary_name = true)]
struct KilnBuild {
    #[command(flatten)]
    args: super::super::build::BuildArgs,
}

pub fn build(args: BuildArgs, project: &Project, ctx: &Context) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = if args.services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        for s in &args.services {
            if !project.services.contains_key(s) {
                bail!("no such service: {s}");
            }
        }
        args.services.clone()
    };
    for name in names {
        if project.services[&name].build.is_some() {
            build_service(project, &name, ctx, args.no_cache, args.pull)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `kiln build` command line for one service (without the program name).
pub fn command_line(
    project: &Project,
    name: &str,
    no_cache: bool,
    pull: bool,
) -> anyhow::Result<Vec<String>> {
    let service = &project.services[name];
    let Some(b) = &service.build else {
        bail!("service {name} has no build section");
    };
    let unsupported = |key: &str| anyhow::anyhow!("not supported yet: services.{name}.build.{key}");
    if b.dockerfile_inline.is_some() {
        return Err(unsupported("dockerfile_inline"));
    }
    if !b.ssh.is_empty() {
        return Err(unsupported("ssh"));
    }
    if !b.secrets.is_empty() {
        return Err(unsupported("secrets"));
    }
    if !b.cache_to.is_empty() {
        return Err(unsupported("cache_to"));
    }
    if b.context.contains("://") || b.context.starts_with("git@") {
        return Err(unsupported("context (a URL)"));
    }
    let mut argv = vec!["-t".to_string(), image_name(project, name)];
    for t in &b.tags {
        argv.extend(["-t".into(), t.clone()]);
    }
    if let Some(f) = &b.dockerfile {
        // Relative to the context, as Compose reads it.
        let path = std::path::Path::new(&b.context).join(f);
        argv.extend(["-f".into(), path.display().to_string()]);
    }
    for (k, v) in &b.args {
        match v {
            Some(v) => argv.extend(["--build-arg".into(), format!("{k}={v}")]),
            // A bare name takes the value from the environment, as `--build-arg K` does.
            None => {
                if let Some(v) = project.environment.get(k) {
                    argv.extend(["--build-arg".into(), format!("{k}={v}")]);
                }
            }
        }
    }
    if let Some(t) = &b.target {
        argv.extend(["--target".into(), t.clone()]);
    }
    for (k, v) in &b.labels {
        argv.extend(["--label".into(), format!("{k}={v}")]);
    }
    for c in &b.cache_from {
        argv.extend(["--cache-from".into(), c.clone()]);
    }
    if let Some(n) = &b.network {
        argv.extend(["--network".into(), n.clone()]);
    }
    if no_cache || b.no_cache {
        argv.push("--no-cache".into());
    }
    if pull {
        argv.push("--pull".into());
    }
    argv.push(b.context.clone());
    Ok(argv)
}

/// Builds one service's image through `kiln build`.
pub fn build_service(
    project: &Project,
    name: &str,
    ctx: &Context,
    no_cache: bool,
    pull: bool,
) -> anyhow::Result<()> {
    let argv = command_line(project, name, no_cache, pull)?;
    let parsed = KilnBuild::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("this is a bug in kiln: bad build command line: {e}"))?;
    eprintln!("Building {name}");
    let code = super::super::build::run(parsed.args, ctx);
    if code != ExitCode::SUCCESS {
        bail!("failed to build service {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_section_becomes_kiln_build_flags() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("backend")).unwrap();
        std::fs::write(
            d.join("compose.yaml"),
            "services:\n  api:\n    build:\n      context: ./backend\n      dockerfile: Dockerfile.dev\n      args: {A: '1'}\n      target: prod\n",
        )
        .unwrap();
        let opts = kiln_compose::LoadOptions {
            working_dir: d.to_path_buf(),
            project_name: Some("app".into()),
            ..Default::default()
        };
        let p = Project::load(&opts).unwrap().project;
        let argv = command_line(&p, "api", true, false).unwrap();
        let ctx = d.join("backend").display().to_string();
        let df = d.join("backend/Dockerfile.dev").display().to_string();
        assert_eq!(
            argv,
            [
                "-t",
                "app-api",
                "-f",
                &df,
                "--build-arg",
                "A=1",
                "--target",
                "prod",
                "--no-cache",
                &ctx
            ]
        );
        assert!(KilnBuild::try_parse_from(&argv).is_ok());
    }
}
