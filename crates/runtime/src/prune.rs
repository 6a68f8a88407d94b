//! `container prune`, `network prune` and `image prune` (and `system prune` built from them):
//! what no running container needs, removed, with Docker's `--filter until=` and `label=`.

use kiln_cache::PruneOptions;
use kiln_image::Snapshots;

use crate::container::Runtime;
use crate::error::RuntimeError;
use crate::store::Container;
use crate::system::dir_size;

/// Which objects a prune may remove (`--filter`): created before `until` (RFC 3339), with
/// (`label=K[=V]`) or without (`label!=K[=V]`) a label.
#[derive(Debug, Clone, Default)]
pub struct PruneFilter {
    pub until: Option<String>,
    pub labels: Vec<(String, Option<String>, bool)>,
}

impl PruneFilter {
    /// Parses `--filter` values; `until` takes an RFC 3339 time, a Unix time, or a duration
    /// before now (`10m`, `24h`).
    pub fn parse(filters: &[String]) -> Result<PruneFilter, RuntimeError> {
        let mut f = PruneFilter::default();
        for raw in filters {
            let (k, v) = raw.split_once('=').ok_or_else(|| {
                RuntimeError::Invalid(format!("bad format of filter (expected name=value): {raw}"))
            })?;
            match k {
                "until" => f.until = Some(crate::events::parse_time(v)?),
                "label" | "label!" => {
                    let (key, value) = match v.split_once('=') {
                        Some((a, b)) => (a.to_string(), Some(b.to_string())),
                        None => (v.to_string(), None),
                    };
                    f.labels.push((key, value, k == "label"));
                }
                other => {
                    return Err(RuntimeError::Invalid(format!("invalid filter '{other}'")));
                }
            }
        }
        Ok(f)
    }

    fn admits(&self, created: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        if self.until.as_deref().is_some_and(|u| created >= u) {
            return false;
        }
        self.labels.iter().all(|(k, v, want)| {
            let has = match v {
                Some(v) => labels.get(k) == Some(v),
                None => labels.contains_key(k),
            };
            has == *want
        })
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub reclaimed: u64,
    pub errors: Vec<String>,
}

impl Runtime {
    /// Removes every container that is not running (and `filter` admits).
    pub fn prune_containers(&self, filter: &PruneFilter) -> Result<Pruned, RuntimeError> {
        let mut out = Pruned::default();
        for c in self.list(true)? {
            if c.state.is_running() || !filter.admits(&c.config.created, &c.config.labels) {
                continue;
            }
            let size = dir_size(&c.dir.join("upper"));
            match self.remove(&c, false, false) {
                Ok(()) => {
                    out.reclaimed += size;
                    out.removed.push(c.config.id.clone());
                }
                Err(e) => out.errors.push(format!("container {}: {e}", c.name())),
            }
        }
        Ok(out)
    }

    /// Removes every network no container names (never the predefined `bridge`).
    pub fn prune_networks(&self, filter: &PruneFilter) -> Result<Pruned, RuntimeError> {
        let mut out = Pruned::default();
        let containers = self.list(true)?;
        let empty = Default::default();
        for n in crate::network::list(self.root())? {
            if n.name == crate::network::DEFAULT_BRIDGE
                || containers.iter().any(|c| uses_network(c, &n.name))
                || !filter.admits(&n.created, &empty)
            {
                continue;
            }
            match crate::network::remove(self.root(), &n.name) {
                Ok(()) => out.removed.push(n.name),
                Err(e) => out.errors.push(format!("network {}: {e}", n.name)),
            }
        }
        Ok(out)
    }

    /// `image prune`: kiln keeps no unnamed ("dangling") images, so only with `all` does
    /// anything go: every image name whose image no container uses; then the store drops the
    /// blobs and snapshots nothing holds any more.
    pub fn prune_images(&self, all: bool, filter: &PruneFilter) -> Result<Pruned, RuntimeError> {
        let mut out = Pruned::default();
        if all {
            let containers = self.list(true)?;
            for (name, image) in self.images().images()? {
                let id = image.id().to_string();
                let created = image.config.created.clone().unwrap_or_default();
                if containers.iter().any(|c| c.config.image_id == id)
                    || !filter.admits(&created, &image.config.config.labels)
                {
                    continue;
                }
                match self.images().untag(&name) {
                    Ok(()) => out.removed.push(name),
                    Err(e) => out.errors.push(format!("image {name}: {e}")),
                }
            }
        }
        let images = self.images();
        let pruned = images.store().prune(
            &PruneOptions {
                all: false,
                keep_storage: None,
                until: None,
            },
            &Snapshots(images),
        )?;
        out.reclaimed += pruned.reclaimed;
        out.errors.extend(pruned.errors);
        Ok(out)
    }
}

/// Whether `c` is on network `name`.
pub(crate) fn uses_network(c: &Container, name: &str) -> bool {
    c.config.network_name.as_deref() == Some(name)
        || c.config.extra_networks.iter().any(|n| n.name == name)
}
