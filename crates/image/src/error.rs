//! The image store's error type: which image or step failed, with the cause kept as a source.

use thiserror::Error;

/// A boxed cause from a lower crate (`oci`'s several error types), kept for `source()`.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] kiln_cache::Error),
    #[error(transparent)]
    Snapshot(#[from] kiln_executor::snapshot::SnapshotError),
    #[error(transparent)]
    User(#[from] crate::rootfs::user::UserError),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "image {0:?} not found in the local store (`kiln pull`, `kiln load` or `kiln import` it)"
    )]
    NotFound(String),
    /// An image in the store whose manifests, config or layers are not what they should be.
    #[error("invalid image {name}: {source}")]
    InvalidImage {
        name: String,
        #[source]
        source: Box<kiln_oci::Error>,
    },
    /// The image has no manifest for the platform asked for.
    #[error("{name} has no image for platform {wanted} (it has: {available})")]
    NoPlatform {
        name: String,
        wanted: String,
        available: String,
    },
    /// A name the user gave that is not a Docker reference.
    #[error("{name:?} is not a valid repository/tag: {source}")]
    InvalidReference {
        name: String,
        #[source]
        source: kiln_llb::ReferenceError,
    },
    /// A registry operation failed.
    #[error("failed to {action} {name}: {source}")]
    Registry {
        action: &'static str,
        name: String,
        #[source]
        source: Box<kiln_registry::RegistryError>,
    },
    /// An image format operation (assemble, load, export, parse) failed.
    #[error("failed to {what}: {source}")]
    Format {
        what: String,
        #[source]
        source: Cause,
    },
    /// The operation would break something the user did not ask to remove.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("this is a bug in kiln: {0}")]
    Bug(String),
}

impl ImageError {
    /// A format error with what was being done.
    pub fn format(what: impl Into<String>, source: impl Into<Cause>) -> ImageError {
        ImageError::Format {
            what: what.into(),
            source: source.into(),
        }
    }
}
