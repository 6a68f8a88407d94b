//! The values kept in the metadata database: cache records, image refs, snapshot records and leases.
//!
//! They are stored as JSON so that a person can read them in a debugger and so that adding an
//! optional field later does not need a migration (`#[serde(default)]`).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::{CacheKey, Digest};

/// A point in time, stored as milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts, clamping times before the epoch to the epoch.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// This time moved `d` earlier, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// This time moved `d` later, saturating.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// A layer blob produced from a cached result: enough to put it in a manifest without
/// recompressing the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the (usually compressed) layer blob in the content store.
    pub digest: Digest,
    /// Size of that blob in bytes.
    pub size: u64,
    /// OCI media type of the blob, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    pub media_type: String,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

/// The result of one build step, filed under its cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The snapshot holding the step's filesystem result (an opaque id of the executor's
    /// snapshotter); `None` for a step whose result lives only in blobs.
    pub snapshot: Option<String>,
    /// Layer blobs exported from this result, if any; they keep their blobs from GC.
    #[serde(default)]
    pub layers: Vec<LayerRef>,
    /// Bytes this record accounts for when the snapshot has no [`SnapshotRecord`] with a size;
    /// otherwise the snapshot's recorded size wins (so shared snapshots count once).
    #[serde(default)]
    pub size: u64,
    /// When the record was written.
    pub created: Timestamp,
    /// When a build last used it; prune removes least recently used records first.
    pub last_used: Timestamp,
    /// A human description for `kiln system df -v` and prune reports (e.g. `RUN make`).
    #[serde(default)]
    pub description: String,
    /// The key dependents of this result are keyed by, when it differs from the key the record
    /// is filed under (a result found by its content key); set by the solver's store adapter.
    #[serde(default)]
    pub output_key: Option<CacheKey>,
}

impl CacheRecord {
    /// A record created and last used now.
    pub fn new(snapshot: Option<String>) -> CacheRecord {
        let now = Timestamp::now();
        CacheRecord {
            snapshot,
            layers: Vec::new(),
            size: 0,
            created: now,
            last_used: now,
            description: String::new(),
            output_key: None,
        }
    }
}

/// What an image name (`app:1`) points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Digest of the manifest or index blob.
    pub target: Digest,
    /// Media type of that blob.
    pub media_type: String,
    /// Size of that blob in bytes.
    pub size: u64,
    /// When the name was (last) set.
    pub created: Timestamp,
}

/// What the store knows of one snapshot, for GC and `df`. The snapshot itself (its directory
/// under `snapshots/`) belongs to the executor's snapshotter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The snapshot this one is layered on; it is kept alive as long as this one is.
    pub parent: Option<String>,
    /// Bytes used by this snapshot's own diff (not counting its parents).
    pub size: u64,
    pub created: Timestamp,
    pub last_used: Timestamp,
}

/// A lease: blobs and snapshots a running build uses, which GC must not remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub created: Timestamp,
    /// After this time the lease no longer protects anything.
    pub expires: Option<Timestamp>,
    /// The process that holds the lease; when it is gone, the lease has expired.
    pub owner: Option<ProcessId>,
    #[serde(default)]
    pub blobs: BTreeSet<Digest>,
    #[serde(default)]
    pub snapshots: BTreeSet<String>,
}

/// A process identity that survives pid reuse: the pid plus the process's start time in clock
/// ticks since boot (field 22 of `/proc/<pid>/stat`) and the boot id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_ticks: u64,
    #[serde(default)]
    pub boot_id: String,
}

/// How to make a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The id; `None` picks a unique one.
    pub id: Option<String>,
    /// The lease expires this long after creation.
    pub ttl: Option<Duration>,
    /// Whether the lease expires when the calling process exits (also when killed).
    pub bind_to_process: bool,
}

impl Default for LeaseOptions {
    /// Bound to the calling process, no TTL: what a build wants.
    fn default() -> LeaseOptions {
        LeaseOptions {
            id: None,
            ttl: None,
            bind_to_process: true,
        }
    }
}
