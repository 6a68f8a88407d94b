//! The convergence planner: the project's desired state against the containers that exist →
//! the ordered actions `up` and `down` take. Pure: containers come in as [`Observed`] rows (what
//! their `com.docker.compose.*` labels and state say), actions go out as data, and the CLI's
//! executor runs them through the run engine.
//!
//! `up`'s rules, as Docker Compose v2's convergence: per service in start order, containers
//! `1..=replicas` are wanted; one whose config hash and image match is kept (started if it
//! stopped), one whose hash or image differs is recreated (unless `--no-recreate`; always with
//! `--force-recreate`), missing numbers are created, numbers above the scale are removed
//! highest first. Before a service's containers, each `depends_on` condition beyond "started"
//! is waited for. Containers of services the project no longer has are orphans: reported, or
//! removed with `--remove-orphans`.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Condition, Project};

/// The label keys compose containers carry (Docker Compose's own, so tools that read them work).
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const VERSION: &str = "com.docker.compose.version";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
}

/// A container of the project as it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    pub service: String,
    pub number: u32,
    pub config_hash: String,
    pub running: bool,
    /// Made by `compose run`: never part of a service's replicas.
    pub oneoff: bool,
    /// The ID of the image it runs.
    pub image_id: String,
}

/// `up`'s options that change the plan.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// `--scale SERVICE=N`, over the file's `scale`/`deploy.replicas`.
    pub scale: BTreeMap<String, u32>,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    /// Only these services (and, unless `no_deps`, what they depend on); empty = all.
    pub services: Vec<String>,
    pub no_deps: bool,
    /// Each service's image ID as the store has it now: a container of another image (after
    /// `up --build` or a re-tag) is recreated, since the config hash leaves `build` out.
    pub images: BTreeMap<String, String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the network (its engine-side name) unless it exists.
    EnsureNetwork { key: String, name: String },
    /// Make the volume (its engine-side name) unless it exists.
    EnsureVolume { key: String, name: String },
    /// Wait until `service`'s containers meet `condition`, before `dependant` starts.
    Wait {
        service: String,
        condition: Condition,
        required: bool,
        dependant: String,
    },
    /// Create and start a container.
    Create {
        service: String,
        number: u32,
        name: String,
    },
    /// Stop and remove `name`, then create and start its replacement under the same name.
    Recreate {
        service: String,
        number: u32,
        name: String,
    },
    /// Start an unchanged container that stopped.
    Start { service: String, name: String },
    /// An unchanged running container: nothing to do (shown as "Running").
    Keep { service: String, name: String },
    /// Stop and remove (scaled down, or `down`).
    Remove { service: String, name: String },
    /// A container whose service the project no longer has, left alone.
    Orphan { service: String, name: String },
    /// Remove a network (`down`).
    RemoveNetwork { name: String },
    /// Remove a named volume (`down -v`).
    RemoveVolume { name: String },
}

impl Action {
    /// The service whose containers the action is part of (for a wait: the one that waits);
    /// `None` for networks and volumes.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Action::Wait { dependant, .. } => Some(dependant),
            Action::Create { service, .. }
            | Action::Recreate { service, .. }
            | Action::Start { service, .. }
            | Action::Keep { service, .. }
            | Action::Remove { service, .. }
            | Action::Orphan { service, .. } => Some(service),
            Action::EnsureNetwork { .. }
            | Action::EnsureVolume { .. }
            | Action::RemoveNetwork { .. }
            | Action::RemoveVolume { .. } => None,
        }
    }
}

/// How deep each service sits in the dependency graph: 0 without dependencies, else one more
/// than its deepest dependency. Services of one level never depend on each other, so the
/// executor may act on them at the same time (up: levels ascending; down: descending).
pub fn levels(project: &Project) -> BTreeMap<String, usize> {
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    for name in project.start_order() {
        let l = project
            .dependencies(&name)
            .iter()
            .filter_map(|d| level.get(d))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level.insert(name, l);
    }
    level
}

/// The name of container `number` of `service`: `container_name`, else `PROJECT-SERVICE-N`.
pub fn container_name(project: &Project, service: &str, number: u32) -> String {
    match project
        .services
        .get(service)
        .and_then(|s| s.container_name.clone())
    {
        Some(n) => n,
        None => format!("{}-{service}-{number}", project.name),
    }
}

/// The actions of `up`.
pub fn plan_up(project: &Project, observed: &[Observed], opts: &UpOptions) -> Vec<Action> {
    let wanted: BTreeSet<String> = if opts.services.is_empty() {
        project.services.keys().cloned().collect()
    } else if opts.no_deps {
        opts.services.iter().cloned().collect()
    } else {
        project
            .with_dependencies(&opts.services.iter().map(String::as_str).collect::<Vec<_>>())
            .into_iter()
            .collect()
    };
    let mut actions = Vec::new();
    let mut networks = BTreeSet::new();
    let mut volumes = BTreeSet::new();
    for name in project.start_order().iter().filter(|s| wanted.contains(*s)) {
        let s = &project.services[name];
        if s.network_mode.is_none() {
            networks.extend(s.networks.keys().cloned());
        }
        volumes.extend(
            s.volumes
                .iter()
                .filter(|v| v.kind == crate::model::VolumeKind::Volume)
                .filter_map(|v| v.source.clone()),
        );
    }
    for key in networks {
        if let Some(n) = project.networks.get(&key)
            && !n.external
        {
            actions.push(Action::EnsureNetwork {
                key: key.clone(),
                name: n.name.clone(),
            });
        }
    }
    for key in volumes {
        if let Some(v) = project.volumes.get(&key)
            && !v.external
        {
            actions.push(Action::EnsureVolume {
                key: key.clone(),
                name: v.name.clone(),
            });
        }
    }

    for name in project.start_order().iter().filter(|s| wanted.contains(*s)) {
        let service = &project.services[name];
        for (dep, d) in &service.depends_on {
            if d.condition != Condition::ServiceStarted
                && (wanted.contains(dep) || project.services.contains_key(dep))
            {
                actions.push(Action::Wait {
                    service: dep.clone(),
                    condition: d.condition,
                    required: d.required,
                    dependant: name.clone(),
                });
            }
        }
        let replicas = opts
            .scale
            .get(name)
            .copied()
            .unwrap_or_else(|| service.replicas());
        let hash = service.config_hash();
        let mine: BTreeMap<u32, &Observed> = observed
            .iter()
            .filter(|o| !o.oneoff && &o.service == name)
            .map(|o| (o.number, o))
            .collect();
        for number in 1..=replicas {
            let service_name = name.clone();
            match mine.get(&number) {
                None => actions.push(Action::Create {
                    service: service_name,
                    number,
                    name: container_name(project, name, number),
                }),
                Some(o) => {
                    let image_changed = opts
                        .images
                        .get(name)
                        .is_some_and(|id| !o.image_id.is_empty() && *id != o.image_id);
                    let changed = o.config_hash != hash || image_changed;
                    if opts.force_recreate || (changed && !opts.no_recreate) {
                        actions.push(Action::Recreate {
                            service: service_name,
                            number,
                            name: o.name.clone(),
                        });
                    } else if o.running {
                        actions.push(Action::Keep {
                            service: service_name,
                            name: o.name.clone(),
                        });
                    } else {
                        actions.push(Action::Start {
                            service: service_name,
                            name: o.name.clone(),
                        });
                    }
                }
            }
        }
        // Scaled down: the highest numbers go first.
        for (_, o) in mine.range(replicas + 1..).rev() {
            actions.push(Action::Remove {
                service: name.clone(),
                name: o.name.clone(),
            });
        }
    }

    for o in observed.iter().filter(|o| !o.oneoff) {
        if !project.services.contains_key(&o.service) {
            let (service, name) = (o.service.clone(), o.name.clone());
            actions.push(if opts.remove_orphans {
                Action::Remove { service, name }
            } else {
                Action::Orphan { service, name }
            });
        }
    }
    actions
}

/// The actions of `down`: containers in reverse start order (orphans last, when asked),
/// then the project's networks, then with `volumes` its named volumes.
pub fn plan_down(
    project: &Project,
    observed: &[Observed],
    volumes: bool,
    remove_orphans: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    // Services whose profile is not active still had containers made by an earlier `up`.
    let order = project
        .stop_order()
        .into_iter()
        .chain(project.disabled.keys().cloned());
    for name in order {
        let mut mine: Vec<&Observed> = observed.iter().filter(|o| o.service == name).collect();
        mine.sort_by_key(|o| std::cmp::Reverse(o.number));
        for o in mine {
            actions.push(Action::Remove {
                service: name.clone(),
                name: o.name.clone(),
            });
        }
    }
    let known = |s: &str| project.services.contains_key(s) || project.disabled.contains_key(s);
    for o in observed.iter().filter(|o| !known(&o.service)) {
        let (service, name) = (o.service.clone(), o.name.clone());
        actions.push(if remove_orphans {
            Action::Remove { service, name }
        } else {
            Action::Orphan { service, name }
        });
    }
    for n in project.networks.values().filter(|n| !n.external) {
        actions.push(Action::RemoveNetwork {
            name: n.name.clone(),
        });
    }
    if volumes {
        for v in project.volumes.values().filter(|v| !v.external) {
            actions.push(Action::RemoveVolume {
                name: v.name.clone(),
            });
        }
    }
    actions
}

#[cfg(test)]
#[path = "plan/tests.rs"]
mod tests;
