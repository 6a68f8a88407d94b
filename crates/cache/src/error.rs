//! The store's error type: every variant names what failed and keeps the cause.

use std::io;
use std::path::PathBuf;

use crate::digest::{CacheKey, Digest};

/// Errors from the local store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {0} not found in the content store")]
    BlobNotFound(Digest),
    #[error("blob digest mismatch: expected {expected}, got {actual}; nothing was stored")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "blob size mismatch for {digest}: expected {expected} bytes, got {actual}; nothing was stored"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    CorruptBlob { digest: Digest, actual: Digest },
    #[error("failed to open the metadata database {path}")]
    OpenDatabase {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("metadata database operation failed: {context}")]
    Database {
        context: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("cache record {key} in the metadata database cannot be decoded")]
    CorruptRecord {
        key: CacheKey,
        #[source]
        source: serde_json::Error,
    },
    #[error("{table} entry {name:?} in the metadata database cannot be decoded")]
    CorruptEntry {
        table: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("lease {0:?} not found")]
    LeaseNotFound(String),
    #[error("lease id {0:?} already exists")]
    LeaseExists(String),
    #[error(
        "invalid image reference name {0:?}: it must be non-empty and contain no control characters"
    )]
    InvalidRefName(String),
    #[error(
        "the store at {path} uses metadata schema version {found}, this kiln understands up to {supported}"
    )]
    UnsupportedSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("failed to {action}")]
    Snapshot {
        action: String,
        #[source]
        source: crate::gc::SnapshotError,
    },
    #[error("this is a bug in kiln: {0}")]
    Bug(String),
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn db(context: &'static str, source: impl Into<redb::Error>) -> Error {
        Error::Database {
            context,
            source: Box::new(source.into()),
        }
    }
}
