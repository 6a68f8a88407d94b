//! `compose up` and `compose down`: the planner's actions run through the run engine, one at a
//! time in plan order (dependencies first on the way up, dependants first on the way down).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_compose::plan::{self, Action, UpOptions};
use kiln_compose::{Condition, Project};
use kiln_runtime::{Runtime, StartMode, Status};

use super::{build, containers, observed, spec};
use crate::backend::Context;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: start the containers and leave them running.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Build images before starting containers.
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it is missing.
    #[arg(long)]
    no_build: bool,
    /// Scale SERVICE to NUM instances (overrides `scale` in the file).
    #[arg(long, value_name = "SERVICE=NUM")]
    scale: Vec<String>,
    /// Recreate containers even if their configuration has not changed.
    #[arg(long)]
    force_recreate: bool,
    /// Don't recreate containers that exist, even if their configuration changed.
    #[arg(long)]
    no_recreate: bool,
    /// Don't start linked services.
    #[arg(long)]
    no_deps: bool,
    /// Remove containers for services not defined in the file.
    #[arg(long)]
    remove_orphans: bool,
    /// Shutdown timeout in seconds when containers are recreated or removed.
    #[arg(short = 't', long)]
    timeout: Option<u64>,
    /// Wait for services to be running (healthy, when they have a healthcheck).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long)]
    wait_timeout: Option<u64>,
    /// Flags of `docker compose up` kiln does not implement yet.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    pull: Option<String>,
    #[arg(long, hide = true)]
    abort_on_container_exit: bool,
    #[arg(long, hide = true)]
    exit_code_from: Option<String>,
    /// Services to start (with their dependencies).
    services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes of the file and anonymous volumes of the containers.
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Remove containers for services not defined in the file.
    #[arg(long)]
    remove_orphans: bool,
    /// Shutdown timeout in seconds.
    #[arg(short = 't', long)]
    timeout: Option<u64>,
    /// `--rmi local|all`: not supported yet.
    #[arg(long, hide = true)]
    rmi: Option<String>,
}

fn parse_scale(entries: &[String]) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut map = BTreeMap::new();
    for e in entries {
        let (s, n) = e
            .split_once('=')
            .with_context(|| format!("invalid --scale {e:?}: want SERVICE=NUM"))?;
        let n: u32 = n
            .parse()
            .with_context(|| format!("invalid --scale {e:?}: {n:?} is not a number"))?;
        map.insert(s.to_string(), n);
    }
    Ok(map)
}

/// What the project asks of the run engine that it cannot do, refused before anything is made.
fn check_resources(project: &Project) -> anyhow::Result<()> {
    for (key, n) in &project.networks {
        if n.external {
            continue;
        }
        let refuse = |what: &str| anyhow::anyhow!("not supported yet: networks.{key}.{what}");
        if n.driver.as_deref().is_some_and(|d| d != "bridge") {
            return Err(refuse("driver"));
        }
        if n.internal {
            return Err(refuse("internal"));
        }
        if n.ipam.is_some() {
            return Err(refuse("ipam"));
        }
        if n.enable_ipv6 {
            return Err(refuse("enable_ipv6"));
        }
        if !n.driver_opts.is_empty() {
            return Err(refuse("driver_opts"));
        }
    }
    for (key, v) in &project.volumes {
        if !v.external
            && (!v.driver_opts.is_empty() || v.driver.as_deref().is_some_and(|d| d != "local"))
        {
            bail!("not supported yet: volumes.{key}.driver_opts");
        }
    }
    Ok(())
}

pub fn up(args: UpArgs, project: &mut Project, ctx: &Context) -> anyhow::Result<ExitCode> {
    if args.pull.is_some() {
        bail!("not supported yet: compose up --pull");
    }
    if args.abort_on_container_exit || args.exit_code_from.is_some() {
        bail!("not supported yet: compose up --abort-on-container-exit / --exit-code-from");
    }
    if !args.detach && args.wait {
        bail!("--wait implies --detach: use up -d --wait");
    }
    if args.build && args.no_build {
        bail!("--build and --no-build are incompatible");
    }
    if args.force_recreate && args.no_recreate {
        bail!("--force-recreate and --no-recreate are incompatible");
    }
    // `up NAME` starts a service even when its profile is not active.
    let asked: Vec<&str> = args.services.iter().map(String::as_str).collect();
    let unknown = project.enable_services(&asked);
    if let Some(u) = unknown.first() {
        bail!("no such service: {u}");
    }
    let scale = parse_scale(&args.scale)?;
    for s in scale.keys() {
        if !project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    check_resources(project)?;
    let mut opts = UpOptions {
        scale,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        remove_orphans: args.remove_orphans,
        services: args.services.clone(),
        no_deps: args.no_deps,
        images: BTreeMap::new(),
    };
    let rt = ctx.runtime()?;
    let backend = ctx.backend()?;
    let seen: Vec<_> = containers(&rt, project)?.iter().map(observed).collect();
    // The services `up` acts on: every container's options first, so a key kiln cannot honour
    // fails before anything is made.
    let services: Vec<String> = plan::plan_up(project, &seen, &opts)
        .iter()
        .filter_map(|a| match a {
            Action::Create { service, .. }
            | Action::Recreate { service, .. }
            | Action::Keep { service, .. }
            | Action::Start { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for s in &services {
        spec::run_options(project, s, 1, "check").map_err(anyhow::Error::msg)?;
    }
    // Images: built when asked or missing (and the service can be built); their IDs then
    // decide, with the config hashes, what is recreated.
    for s in &services {
        let service = &project.services[s];
        let image = spec::image_name(project, s);
        let missing = backend.image(&image).is_err();
        if service.build.is_some() && !args.no_build && (args.build || missing) {
            build::build_service(project, s, ctx, false, false)?;
        } else if missing && service.build.is_none() {
            // As `kiln run`'s default `--pull missing`: fetch what the store lacks.
            eprintln!(" {s} Pulling {image}");
            backend
                .pull_for(&image, None, &|event| {
                    eprintln!("{}", kiln_image::describe_pull(&event));
                })
                .map_err(|e| anyhow::anyhow!("service {s}: {}", crate::error::chain(&e)))?;
        } else if missing {
            bail!("image {image} for service {s} is missing and --no-build was given");
        }
        if let Ok(img) = backend.image(&image) {
            opts.images.insert(s.clone(), img.id().to_string());
        }
    }
    let actions = plan::plan_up(project, &seen, &opts);
    let exe = super::super::run::kiln_exe()?;
    let stop_timeout = args.timeout.map(Duration::from_secs);
    let ex = Executor {
        rt: &rt,
        project,
        exe,
        stop_timeout,
    };
    // Attached output starts here: a container `up` starts again shows only its new lines.
    let started = {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        kiln_llb::image::format_rfc3339(d.as_secs() as i64, d.subsec_nanos())
    };
    ex.run_in_levels(&actions, false, |a| ex.apply(a))?;
    if args.wait {
        let limit = args.wait_timeout.map(Duration::from_secs);
        for s in project.start_order() {
            if !opts.services.is_empty() && !services.contains(&s) {
                continue;
            }
            let has_check = project.services[&s]
                .healthcheck
                .as_ref()
                .is_some_and(|h| !h.disable);
            let cond = if has_check {
                Condition::ServiceHealthy
            } else {
                Condition::ServiceStarted
            };
            ex.wait(&s, cond, true, limit)?;
        }
    }
    if !args.detach {
        return super::attached::attached(&ex, &opts.services, started);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(args: DownArgs, project: &Project, ctx: &Context) -> anyhow::Result<ExitCode> {
    if args.rmi.is_some() {
        bail!("not supported yet: compose down --rmi");
    }
    let rt = ctx.runtime()?;
    let seen: Vec<_> = containers(&rt, project)?.iter().map(observed).collect();
    let actions = plan::plan_down(project, &seen, args.volumes, args.remove_orphans);
    let ex = Executor {
        rt: &rt,
        project,
        exe: super::super::run::kiln_exe()?,
        stop_timeout: args.timeout.map(Duration::from_secs),
    };
    let root = ctx.root();
    // Containers first, dependants before their dependencies (independent ones at once).
    ex.run_in_levels(&actions, true, |a| match a {
        Action::Remove { name, .. } => ex.remove(name, args.volumes),
        other => ex.apply(other),
    })?;
    for action in actions.iter().filter(|a| a.owner().is_none()) {
        match action {
            Action::RemoveNetwork { name } => {
                if kiln_runtime::network::inspect_json(root, name).is_ok() {
                    eprintln!(" Network {name}  Removing");
                    // As Compose: a network an orphan still uses stays, with a warning.
                    match kiln_runtime::network::remove(root, name) {
                        Ok(()) => eprintln!(" Network {name}  Removed"),
                        Err(e) => eprintln!("warning: network {name} kept: {e}"),
                    }
                }
            }
            Action::RemoveVolume { name } => {
                if kiln_runtime::volume::inspect(root, name).is_ok() {
                    kiln_runtime::volume::remove(root, name, false)?;
                    eprintln!(" Volume {name}  Removed");
                }
            }
            other => ex.apply(other)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs plan actions against one root.
pub(super) struct Executor<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) project: &'a Project,
    exe: std::path::PathBuf,
    pub(super) stop_timeout: Option<Duration>,
}

impl Executor<'_> {
    /// Runs `actions`: those of no service (networks, volumes) first, in order; then each
    /// dependency level's services at the same time, one thread per service running its own
    /// actions in order (levels ascending for up, descending with `reverse` for down; services
    /// the project does not have, orphans, last). The first failure is returned.
    fn run_in_levels(
        &self,
        actions: &[Action],
        reverse: bool,
        run: impl Fn(&Action) -> anyhow::Result<()> + Sync,
    ) -> anyhow::Result<()> {
        if !reverse {
            for a in actions.iter().filter(|a| a.owner().is_none()) {
                run(a)?;
            }
        }
        let levels = plan::levels(self.project);
        let top = levels.values().max().copied().unwrap_or(0);
        let rank = |service: &str| match levels.get(service) {
            Some(l) if reverse => top - l,
            Some(l) => *l,
            None => top + 1,
        };
        // service → its actions in plan order, by rank.
        let mut ranked: BTreeMap<usize, BTreeMap<&str, Vec<&Action>>> = BTreeMap::new();
        for a in actions {
            if let Some(owner) = a.owner() {
                ranked
                    .entry(rank(owner))
                    .or_default()
                    .entry(owner)
                    .or_default()
                    .push(a);
            }
        }
        for services in ranked.values() {
            let failures: Vec<anyhow::Error> = std::thread::scope(|scope| {
                let handles: Vec<_> = services
                    .values()
                    .map(|list| {
                        let run = &run;
                        scope.spawn(move || list.iter().try_for_each(|a| run(a)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| match h.join() {
                        Ok(r) => r.err(),
                        Err(_) => Some(anyhow::anyhow!(
                            "this is a bug in kiln: a compose worker thread panicked"
                        )),
                    })
                    .collect()
            });
            if let Some(e) = failures.into_iter().next() {
                return Err(e);
            }
        }
        Ok(())
    }

    fn apply(&self, action: &Action) -> anyhow::Result<()> {
        let root = self.rt.root();
        match action {
            Action::EnsureNetwork { name, .. } => {
                if kiln_runtime::network::inspect_json(root, name).is_err() {
                    let created = kiln_runtime::network::create(root, name)?;
                    for w in &created.warnings {
                        eprintln!("warning: {w}");
                    }
                    eprintln!(" Network {name}  Created");
                }
            }
            Action::EnsureVolume { name, .. } => {
                if kiln_runtime::volume::inspect(root, name).is_err() {
                    kiln_runtime::volume::create(root, name, false)?;
                    eprintln!(" Volume {name}  Created");
                }
            }
            Action::Wait {
                service,
                condition,
                required,
                ..
            } => {
                if let Err(e) = self.wait(service, *condition, *required, None) {
                    if *required {
                        return Err(e);
                    }
                    eprintln!("warning: {e:#}");
                }
            }
            Action::Create {
                service,
                number,
                name,
            } => self.create(service, *number, name)?,
            Action::Recreate {
                service,
                number,
                name,
            } => {
                eprintln!(" Container {name}  Recreate");
                self.remove(name, false)?;
                self.create(service, *number, name)?;
            }
            Action::Start { name, .. } => {
                let c = self.rt.get(name)?;
                self.rt.start(
                    &c,
                    &StartMode::Detached {
                        kiln_exe: self.exe.clone(),
                    },
                )?;
                eprintln!(" Container {name}  Started");
            }
            Action::Keep { name, .. } => eprintln!(" Container {name}  Running"),
            Action::Remove { name, .. } => self.remove(name, false)?,
            Action::Orphan { name, service } => eprintln!(
                "warning: found orphan container {name} (service {service}) for this project; \
                 run with --remove-orphans to remove it"
            ),
            Action::RemoveNetwork { .. } | Action::RemoveVolume { .. } => {
                bail!("this is a bug in kiln: up planned a removal of a network or volume")
            }
        }
        Ok(())
    }

    fn create(&self, service: &str, number: u32, name: &str) -> anyhow::Result<()> {
        let opts =
            spec::run_options(self.project, service, number, name).map_err(anyhow::Error::msg)?;
        let created = self
            .rt
            .create(&opts)
            .with_context(|| format!("failed to create container {name}"))?;
        for w in &created.warnings {
            eprintln!("warning: {w}");
        }
        let c = created.container;
        eprintln!(" Container {name}  Created");
        let s = &self.project.services[service];
        if s.network_mode.is_none() {
            for (_, net) in spec::networks(self.project, s).iter().skip(1) {
                self.rt
                    .network_connect(&c, net)
                    .with_context(|| format!("failed to connect {name} to network {net}"))?;
            }
        }
        let c = self.rt.get(c.id())?;
        self.rt
            .start(
                &c,
                &StartMode::Detached {
                    kiln_exe: self.exe.clone(),
                },
            )
            .with_context(|| format!("failed to start container {name}"))?;
        eprintln!(" Container {name}  Started");
        Ok(())
    }

    /// Stops (with the service's grace period or `-t`) and removes a container.
    fn remove(&self, name: &str, volumes: bool) -> anyhow::Result<()> {
        let Ok(c) = self.rt.get(name) else {
            return Ok(());
        };
        let service = c
            .config
            .labels
            .get(plan::labels::SERVICE)
            .and_then(|s| self.project.services.get(s));
        let grace = self.stop_timeout.or_else(|| {
            service
                .and_then(|s| s.stop_grace_period)
                .map(|d| Duration::from_nanos(d.0))
        });
        if matches!(c.state.status, Status::Running | Status::Restarting) {
            eprintln!(" Container {name}  Stopping");
            self.rt
                .stop(&c, Some(grace.unwrap_or(Duration::from_secs(10))))?;
            eprintln!(" Container {name}  Stopped");
        }
        let c = self.rt.get(name)?;
        self.rt.remove(&c, true, volumes)?;
        eprintln!(" Container {name}  Removed");
        Ok(())
    }

    /// Waits until every container of `service` meets `condition`.
    fn wait(
        &self,
        service: &str,
        condition: Condition,
        required: bool,
        limit: Option<Duration>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit.unwrap_or(Duration::from_secs(600));
        let _ = required;
        loop {
            let mine: Vec<_> = containers(self.rt, self.project)?
                .into_iter()
                .filter(|c| {
                    c.config
                        .labels
                        .get(plan::labels::SERVICE)
                        .map(String::as_str)
                        == Some(service)
                })
                .filter(|c| {
                    c.config
                        .labels
                        .get(plan::labels::ONEOFF)
                        .map(String::as_str)
                        != Some("True")
                })
                .collect();
            let mut ready = !mine.is_empty();
            for c in &mine {
                let name = c.name();
                match condition {
                    Condition::ServiceStarted => {
                        ready &= matches!(c.state.status, Status::Running);
                    }
                    Condition::ServiceHealthy => {
                        let has_check =
                            c.config.healthcheck.as_ref().is_some_and(|h| {
                                h.test.first().map(String::as_str) != Some("NONE")
                            });
                        if !has_check {
                            bail!(
                                "dependency failed to start: container {name} has no healthcheck configured"
                            );
                        }
                        match kiln_runtime::health::read(c).map(|h| h.status) {
                            Some(s) if s == "healthy" => {}
                            Some(s) if s == "unhealthy" => {
                                bail!("dependency failed to start: container {name} is unhealthy")
                            }
                            _ => ready = false,
                        }
                        if matches!(c.state.status, Status::Exited | Status::Dead) {
                            bail!(
                                "dependency failed to start: container {name} exited ({})",
                                c.state.exit_code.unwrap_or(-1)
                            );
                        }
                    }
                    Condition::ServiceCompletedSuccessfully => match c.state.status {
                        Status::Exited | Status::Dead => {
                            let code = c.state.exit_code.unwrap_or(-1);
                            if code != 0 {
                                bail!(
                                    "service {service:?} didn't complete successfully: exit {code}"
                                );
                            }
                        }
                        _ => ready = false,
                    },
                }
            }
            if ready {
                if condition != Condition::ServiceStarted {
                    eprintln!(
                        " Service {service}  {}",
                        match condition {
                            Condition::ServiceHealthy => "Healthy",
                            _ => "Exited",
                        }
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for service {service} to be {condition:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
