//! containerd-style overlay snapshots, layer diff and apply.
//!
//! This module never imports the sandbox code (`crate::sandbox`, `crate::sys`), so exporters and
//! image loaders can use it alone. See `docs/dev/snapshots.md` for the design.

pub mod apply;
pub mod diff;
mod fsutil;
pub mod overlay;
mod store;

use std::path::PathBuf;

pub use apply::{ApplyError, ApplyOptions, ApplyStats, WhiteoutMode, apply_layer};
pub use diff::{DiffError, DiffOptions, DiffSource, DiffStats, write_layer};
pub use fsutil::Usage;
pub use store::{
    ActiveSnapshot, DRIVER_ENV, Driver, Kind, Mounts, Recovery, SnapshotId, SnapshotInfo,
    Snapshotter,
};

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to {what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {0} does not exist")]
    NotFound(SnapshotId),
    #[error("snapshot {0} is active, not committed")]
    NotCommitted(SnapshotId),
    #[error("snapshot {0} is already committed")]
    NotActive(SnapshotId),
    #[error("snapshot {id} still has children: {}", children.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))]
    HasChildren {
        id: SnapshotId,
        children: Vec<SnapshotId>,
    },
    #[error("invalid snapshot id {0:?}: expected decimal digits")]
    InvalidId(String),
    #[error("invalid snapshot driver: {0}")]
    InvalidDriver(String),
    #[error("snapshot root {} uses the {stored} driver, not {requested}", root.display())]
    DriverMismatch {
        root: PathBuf,
        stored: Driver,
        requested: Driver,
    },
    #[error("snapshot metadata at {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Result of snapshot operations.
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;
