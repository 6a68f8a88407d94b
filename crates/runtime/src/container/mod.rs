//! The run engine over one store root ([`Runtime`]): finding containers, and what every part
//! of a container's life shares (the store lease, the stop marker, the rootfs layers). One
//! module per job: `create` (records, rootfs dirs, volumes, the sandbox spec), `lifecycle`
//! (run attached, start under a monitor, stop, kill, wait, remove), `inspect` (inspect JSON,
//! logs), `stats` (resource samples), `copy` (`kiln cp`) and `signals`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_executor::sandbox::MigrationWarmer;
use kiln_executor::snapshot::SnapshotId;
use kiln_image::ImageStore;

use crate::error::RuntimeError;
use crate::store::{self, Container};

mod changes;
mod copy;
mod create;
mod inspect;
mod lifecycle;
mod manage;
mod pause;
mod settings;
mod signals;
mod spec;
mod stats;

pub use changes::{Change, CommitOptions};
pub use copy::CopyDirection;
pub use create::Created;
pub use manage::UpdateOptions;
pub(crate) use pause::is_frozen;
pub(crate) use signals::SignalForwarder;
pub use signals::parse_signal;
pub(crate) use spec::{capabilities_of, member_hosts, seccomp_of, user_of};
pub use stats::{NetIo, StatsSample, Usage};

/// How `start` runs the container.
#[derive(Debug, Clone)]
pub enum StartMode {
    /// Under a monitor process: this kiln binary re-executed as `kiln container-monitor ID`.
    Detached { kiln_exe: PathBuf },
}

/// The run engine over one store root.
#[derive(Debug, Clone)]
pub struct Runtime {
    images: Arc<ImageStore>,
    /// Started by `create`, taken over by the start that follows (see `warm_cgroups`).
    warmer: Arc<Mutex<Option<MigrationWarmer>>>,
}

/// The name of the marker file `stop` leaves so the monitor does not restart the container.
const STOP_MARKER: &str = "stop-requested";

fn lease_id(id: &str) -> String {
    format!("container-{id}")
}

impl Runtime {
    pub fn new(images: Arc<ImageStore>) -> Runtime {
        Runtime {
            images,
            warmer: Arc::default(),
        }
    }

    /// Keeps cgroup migrations cheap until the guard is dropped: the one `create` started if
    /// it is still there, else a new one. A container's first process joins its cgroups as
    /// it starts, and the first migration after a quiet spell waits an RCU grace period
    /// (`kiln_executor::sandbox::MigrationWarmer`); started early, that wait passes while the
    /// container is prepared. Held until the sandbox has started.
    pub(crate) fn warm_cgroups(&self) -> MigrationWarmer {
        let taken = self.warmer.lock().ok().and_then(|mut w| w.take());
        taken.unwrap_or_else(MigrationWarmer::start)
    }

    /// Starts warming cgroup migrations for a start expected soon (`create`); the start
    /// takes it over with [`Runtime::warm_cgroups`].
    pub(crate) fn warm_cgroups_ahead(&self) {
        if let Ok(mut w) = self.warmer.lock()
            && w.is_none()
        {
            *w = Some(MigrationWarmer::start());
        }
    }

    /// The store root the containers, networks and volumes live under.
    pub fn root(&self) -> &Path {
        self.images.root()
    }

    pub(crate) fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// All containers (only running ones unless `all`), oldest first.
    pub fn list(&self, all: bool) -> Result<Vec<Container>, RuntimeError> {
        Ok(store::list(self.root())?
            .into_iter()
            .filter(|c| all || c.state.is_running())
            .collect())
    }

    /// A container by ID, name or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Container, RuntimeError> {
        store::lookup(self.root(), name_or_id)
    }

    /// The rootfs layers top-most first, the container's upper dir included.
    fn layers(&self, top: Option<&SnapshotId>, dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
        let mut layers = vec![dir.join("upper")];
        if let Some(top) = top {
            for s in self.images.snapshots().chain(top)? {
                layers.push(self.images.snapshots().fs_dir(&s));
            }
        }
        Ok(layers)
    }
}

/// Reads a file of the rootfs without mounting it: from the top-most layer that has it.
/// Whiteouts are not consulted: a passwd deleted in an upper layer is rare enough.
pub(crate) fn read_from_layers(layers: &[PathBuf], path: &str) -> Option<String> {
    let rel = path.trim_start_matches('/');
    layers
        .iter()
        .find_map(|layer| fs::read_to_string(layer.join(rel)).ok())
}
