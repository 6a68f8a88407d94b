//! The store's view of snapshots for prune and check: the cycle-breaking `SnapshotRemover`
//! implemented over the executor's snapshotter.

use kiln_cache::{SnapshotError, SnapshotRemover};
use kiln_executor::snapshot::SnapshotId;

use crate::worker::Worker;

/// Adapts the snapshotter to `kiln_cache::SnapshotRemover`.
pub struct Snapshots<'a>(pub &'a Worker);

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

    fn list(&self) -> Result<Vec<String>, SnapshotError> {
        Ok(self
            .0
            .snapshots()
            .list()
            .map_err(|e| Box::new(e) as SnapshotError)?
            .into_iter()
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
