//! kiln's local store: a sha256 content store, cache-key → result records, image refs,
//! leases, GC/prune, disk usage and integrity checks, shared safely by several processes.
//!
//! Layout and design notes: `docs/dev/store.md`.

#![deny(unsafe_code)]

mod check;
mod content;
mod digest;
mod error;
mod gc;
mod meta;
mod process;
mod records;
mod store;

pub use check::{CheckReport, Problem};
pub use content::{BlobInfo, BlobWriter, ContentStore, VerifyingReader};
pub use digest::{CacheKey, Digest, DigestParseError};
pub use error::{Error, Result};
pub use gc::{DiskUsage, PruneOptions, PruneReport, SnapshotError, SnapshotRemover, UsageLine};
pub use meta::{ReadTxn, WriteTxn};
pub use records::{
    CacheRecord, ImageRef, LayerRef, Lease, LeaseOptions, ProcessId, SnapshotRecord, Timestamp,
};
pub use store::{Store, default_root, default_root_from};
