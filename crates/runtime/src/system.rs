//! `kiln system df` and `kiln system prune` across the run engine's records and the store:
//! images, containers, local volumes and build cache, with Docker's notions of "active"
//! (in use by a container) and "reclaimable" (what a prune could free).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use kiln_cache::{PruneOptions, UsageLine};
use kiln_image::Snapshots;

use crate::container::Runtime;
use crate::error::RuntimeError;
use crate::store::{Container, MountConfig};
use crate::volume;

/// One image (by ID) and the names it has.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub names: Vec<String>,
    /// `sha256:…`, the config digest.
    pub id: String,
    pub created: String,
    /// Its layers' bytes.
    pub size: u64,
    /// Bytes of layers no other image has.
    pub unique_size: u64,
    /// Containers (any state) created from it.
    pub containers: usize,
}

#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: String,
    /// Bytes in its writable layer (the overlay upper dir).
    pub size: u64,
    pub running: bool,
    pub status: String,
    pub created: String,
    /// Volumes it mounts.
    pub volumes: usize,
}

#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub name: String,
    /// Containers (any state) that mount it.
    pub links: usize,
    pub size: u64,
    pub anonymous: bool,
}

/// Everything `system df` shows.
#[derive(Debug, Clone, Default)]
pub struct SystemUsage {
    pub images: Vec<ImageUsage>,
    /// Bytes of the distinct blobs the image names reach (layers shared by images once).
    pub images_bytes: u64,
    /// Bytes of layers only images no container uses have.
    pub images_reclaimable: u64,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
    pub build_cache: UsageLine,
}

/// One row of the `system df` summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRow {
    pub kind: &'static str,
    pub total: u64,
    pub active: u64,
    pub size: u64,
    pub reclaimable: u64,
}

impl SystemUsage {
    /// Docker's four rows: Images, Containers, Local Volumes, Build Cache.
    pub fn summary(&self) -> [SummaryRow; 4] {
        let running = self.containers.iter().filter(|c| c.running);
        [
            SummaryRow {
                kind: "Images",
                total: self.images.len() as u64,
                active: self.images.iter().filter(|i| i.containers > 0).count() as u64,
                size: self.images_bytes,
                reclaimable: self.images_reclaimable,
            },
            SummaryRow {
                kind: "Containers",
                total: self.containers.len() as u64,
                active: running.count() as u64,
                size: self.containers.iter().map(|c| c.size).sum(),
                reclaimable: self
                    .containers
                    .iter()
                    .filter(|c| !c.running)
                    .map(|c| c.size)
                    .sum(),
            },
            SummaryRow {
                kind: "Local Volumes",
                total: self.volumes.len() as u64,
                active: self.volumes.iter().filter(|v| v.links > 0).count() as u64,
                size: self.volumes.iter().map(|v| v.size).sum(),
                reclaimable: self
                    .volumes
                    .iter()
                    .filter(|v| v.links == 0)
                    .map(|v| v.size)
                    .sum(),
            },
            SummaryRow {
                kind: "Build Cache",
                total: self.build_cache.count,
                active: 0,
                size: self.build_cache.bytes,
                reclaimable: self.build_cache.reclaimable,
            },
        ]
    }
}

/// What `system prune` removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPruneOptions {
    /// Every image no container uses (else only dangling ones, which kiln's store never keeps:
    /// an image without a name is gone), and all build cache (else only cache no image uses).
    pub all: bool,
    /// Anonymous volumes no container uses.
    pub volumes: bool,
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default)]
pub struct SystemPruneReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// Image names untagged (their blobs go with the build cache prune).
    pub images: Vec<String>,
    pub volumes: Vec<String>,
    pub build_cache_records: usize,
    /// Container layers and volume data removed, plus what the store prune freed.
    pub reclaimed: u64,
    /// What could not be removed (the prune goes on).
    pub errors: Vec<String>,
}

/// Apparent size of everything under `path` (not following symlinks; 0 when missing).
pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            total += dir_size(&e.path());
        }
    }
    total
}

/// Docker's human-readable sizes (decimal units, up to 4 significant digits): `0B`, `212B`,
/// `16.43MB`.
pub fn human_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// Docker's binary sizes, as `docker stats` shows memory: `1.465MiB`, `64MiB`.
pub fn human_size_binary(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

fn scaled(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let number = format!("{value:.4}");
    // Four significant digits, trailing zeros dropped.
    let digits_before = number.find('.').unwrap_or(number.len());
    let keep = 4usize.saturating_sub(digits_before);
    let number = format!("{value:.keep$}");
    let number = if number.contains('.') {
        number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        number
    };
    format!("{number}{}", units[unit])
}

fn mounted_volumes(c: &Container) -> impl Iterator<Item = &str> {
    c.config.mounts.iter().filter_map(|m| match m {
        MountConfig::Volume { name, .. } => Some(name.as_str()),
        _ => None,
    })
}

impl Runtime {
    /// Disk usage of images, containers, volumes and build cache.
    pub fn disk_usage(&self) -> Result<SystemUsage, RuntimeError> {
        let containers = self.list(true)?;
        let mut by_id: BTreeMap<String, (Vec<String>, kiln_image::Image)> = BTreeMap::new();
        for (name, image) in self.images().images()? {
            by_id
                .entry(image.id().to_string())
                .or_insert_with(|| (Vec::new(), image))
                .0
                .push(name);
        }
        // How many images have each layer, and which layers images in use have.
        let mut layer_count: BTreeMap<String, usize> = BTreeMap::new();
        let mut used_layers: HashSet<String> = HashSet::new();
        let mut layer_size: BTreeMap<String, u64> = BTreeMap::new();
        for (id, (_, image)) in &by_id {
            let used = containers.iter().any(|c| &c.config.image_id == id);
            for l in &image.manifest.layers {
                let d = l.digest.to_string();
                *layer_count.entry(d.clone()).or_default() += 1;
                layer_size.insert(d.clone(), l.size);
                if used {
                    used_layers.insert(d);
                }
            }
        }
        let mut images = Vec::new();
        let mut reclaimable_layers = BTreeSet::new();
        for (id, (names, image)) in by_id {
            let users = containers
                .iter()
                .filter(|c| c.config.image_id == id)
                .count();
            let layers: BTreeSet<String> = image
                .manifest
                .layers
                .iter()
                .map(|l| l.digest.to_string())
                .collect();
            if users == 0 {
                reclaimable_layers
                    .extend(layers.iter().filter(|d| !used_layers.contains(*d)).cloned());
            }
            images.push(ImageUsage {
                names,
                id,
                created: image.config.created.clone().unwrap_or_default(),
                size: image.size(),
                unique_size: layers
                    .iter()
                    .filter(|d| layer_count.get(*d) == Some(&1))
                    .map(|d| layer_size.get(d).copied().unwrap_or(0))
                    .sum(),
                containers: users,
            });
        }
        let store_usage = self.images().store().df()?;
        let containers_usage = containers
            .iter()
            .map(|c| ContainerUsage {
                id: c.config.id.clone(),
                name: c.config.name.clone(),
                image: c.config.image.clone(),
                command: c.config.argv().join(" "),
                size: dir_size(&c.dir.join("upper")),
                running: c.state.is_running(),
                status: c.state.status.to_string(),
                created: c.config.created.clone(),
                volumes: mounted_volumes(c).count(),
            })
            .collect();
        let volumes = volume::list(self.root())?
            .into_iter()
            .map(|v| VolumeUsage {
                links: containers
                    .iter()
                    .filter(|c| mounted_volumes(c).any(|n| n == v.name))
                    .count(),
                size: dir_size(&v.mountpoint),
                anonymous: v.anonymous,
                name: v.name,
            })
            .collect();
        Ok(SystemUsage {
            images,
            images_bytes: store_usage.images.bytes,
            images_reclaimable: reclaimable_layers
                .iter()
                .map(|d| layer_size.get(d).copied().unwrap_or(0))
                .sum(),
            containers: containers_usage,
            volumes,
            build_cache: store_usage.build_cache,
        })
    }

    /// `system prune`: stopped containers, unused networks (not the predefined `bridge`),
    /// with `all` every image no container uses, with `volumes` unused anonymous volumes, then
    /// build cache (all of it with `all`) and whatever blobs and snapshots that frees.
    pub fn system_prune(
        &self,
        opts: &SystemPruneOptions,
    ) -> Result<SystemPruneReport, RuntimeError> {
        let mut report = SystemPruneReport::default();
        for c in self.list(true)? {
            if c.state.is_running() {
                continue;
            }
            let size = dir_size(&c.dir.join("upper"));
            match self.remove(&c, false, false) {
                Ok(()) => {
                    report.reclaimed += size;
                    report.containers.push(c.config.id.clone());
                }
                Err(e) => report.errors.push(format!("container {}: {e}", c.name())),
            }
        }
        let containers = self.list(true)?;
        for n in crate::network::list(self.root())? {
            if n.name == "bridge"
                || containers
                    .iter()
                    .any(|c| c.config.network_name.as_deref() == Some(n.name.as_str()))
            {
                continue;
            }
            match crate::network::remove(self.root(), &n.name) {
                Ok(()) => report.networks.push(n.name),
                Err(e) => report.errors.push(format!("network {}: {e}", n.name)),
            }
        }
        if opts.all {
            for (name, image) in self.images().images()? {
                let id = image.id().to_string();
                if containers.iter().any(|c| c.config.image_id == id) {
                    continue;
                }
                match self.images().untag(&name) {
                    Ok(()) => report.images.push(name),
                    Err(e) => report.errors.push(format!("image {name}: {e}")),
                }
            }
        }
        if opts.volumes {
            for v in volume::list(self.root())? {
                if !v.anonymous
                    || containers
                        .iter()
                        .any(|c| mounted_volumes(c).any(|n| n == v.name))
                {
                    continue;
                }
                let size = dir_size(&v.mountpoint);
                match volume::remove(self.root(), &v.name, false) {
                    Ok(()) => {
                        report.reclaimed += size;
                        report.volumes.push(v.name);
                    }
                    Err(e) => report.errors.push(format!("volume {}: {e}", v.name)),
                }
            }
        }
        let images = self.images();
        let pruned = images.store().prune(
            &PruneOptions {
                all: opts.all,
                keep_storage: None,
                until: None,
            },
            &Snapshots(images),
        )?;
        report.build_cache_records = pruned.records_removed.len();
        report.reclaimed += pruned.reclaimed;
        report.errors.extend(pruned.errors);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(212), "212B");
        assert_eq!(human_size(16_430_000), "16.43MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(4_096), "4.096kB");
        assert_eq!(human_size_binary(64 << 20), "64MiB");
        assert_eq!(human_size_binary(1_536_000), "1.465MiB");
        assert_eq!(human_size_binary(512), "512B");
    }

    #[test]
    fn dir_size_counts_files_below_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/f"), vec![0u8; 100]).unwrap();
        fs::write(d.path().join("g"), vec![0u8; 20]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("l")).unwrap();
        let link_len = fs::symlink_metadata(d.path().join("l")).unwrap().len();
        assert_eq!(dir_size(d.path()), 120 + link_len);
        assert_eq!(dir_size(&d.path().join("missing")), 0);
    }
}
