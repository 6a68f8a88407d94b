//! The store's view of snapshots for prune and check: the cycle-breaking `SnapshotRemover`
//! implemented over the executor's snapshotter.

use kiln_cache::{SnapshotError, SnapshotRemover};
use kiln_executor::snapshot::{Kind, SnapshotId};

/// How long an unrecorded snapshot is safe from collection.
const GRACE_SECS: u64 = 60;

use crate::store::ImageStore;

/// Adapts the snapshotter to `kiln_cache::SnapshotRemover`.
pub struct Snapshots<'a>(pub &'a ImageStore);

fn parse(id: &str) -> Result<SnapshotId, SnapshotError> {
    SnapshotId::parse(id).map_err(|e| Box::new(e) as SnapshotError)
}

impl SnapshotRemover for Snapshots<'_> {
    fn exists(&self, id: &str) -> Result<bool, SnapshotError> {
        Ok(SnapshotId::parse(id).is_ok_and(|id| self.0.snapshots().fs_dir(&id).exists()))
    }

    fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        let id = parse(id)?;
        if !self.0.snapshots().fs_dir(&id).exists() {
            return Ok(());
        }
        self.0
            .snapshots()
            .remove(&id)
            .map_err(|e| Box::new(e) as SnapshotError)
    }

    /// Committed snapshots only: an active one belongs to a step in flight. Snapshots committed
    /// in the last minute are left out too: a build in another process may not have recorded
    /// its result yet, and collecting it would break that build.
    fn list(&self) -> Result<Vec<String>, SnapshotError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(self
            .0
            .snapshots()
            .list()
            .map_err(|e| Box::new(e) as SnapshotError)?
            .into_iter()
            .filter(|info| info.kind == Kind::Committed && info.created + GRACE_SECS <= now)
            .map(|info| info.id.as_str().to_string())
            .collect())
    }

    fn parent(&self, id: &str) -> Result<Option<String>, SnapshotError> {
        let id = parse(id)?;
        Ok(self
            .0
            .snapshots()
            .parent(&id)
            .map_err(|e| Box::new(e) as SnapshotError)?
            .map(|p| p.as_str().to_string()))
    }
}

impl ImageStore {
    /// `kiln builder prune`: build cache no image needs (all of it with `all`), with the
    /// snapshots and blobs only it reached.
    pub fn prune_cache(
        &self,
        options: &kiln_cache::PruneOptions,
    ) -> Result<kiln_cache::PruneReport, crate::ImageError> {
        Ok(self.store().prune(options, &Snapshots(self))?)
    }

    /// What the store holds: images, build cache, blobs.
    pub fn disk_usage(&self) -> Result<kiln_cache::DiskUsage, crate::ImageError> {
        Ok(self.store().df()?)
    }

    /// `kiln system check`: every blob against its digest, every record against what it names;
    /// `repair` drops what is broken.
    pub fn check(&self, repair: bool) -> Result<kiln_cache::CheckReport, crate::ImageError> {
        Ok(self.store().check(repair, &Snapshots(self))?)
    }
}
