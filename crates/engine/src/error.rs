//! The engine's error type: what failed, in which step, and why.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    #[error(transparent)]
    Snapshot(#[from] kiln_executor::snapshot::SnapshotError),
    #[error(transparent)]
    Sandbox(#[from] kiln_executor::sandbox::SandboxError),
    #[error(transparent)]
    Copy(#[from] crate::fileop::copy::CopyError),
    #[error(transparent)]
    Owner(#[from] crate::fileop::owner::OwnerError),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "image {0:?} not found in the local store (`kiln pull`, `kiln load` or `kiln import` it)"
    )]
    ImageNotFound(String),
    #[error("invalid image {name}: {reason}")]
    InvalidImage { name: String, reason: String },
    #[error("process {command:?} did not complete successfully: exit code: {code}")]
    ProcessFailed { command: String, code: i32 },
    #[error("process {command:?} was killed by the memory limit (OOM)")]
    OutOfMemory { command: String },
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// Something the build was not given the right to do (an entitlement).
    #[error("{0}")]
    NotAllowed(String),
    #[error("build cancelled")]
    Cancelled,
    #[error("{0}")]
    Oci(String),
    #[error("this is a bug in kiln: {0}")]
    Bug(String),
}
