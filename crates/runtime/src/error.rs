//! The runtime's error type: which container step failed, and why. Errors of the image store
//! (and the store and snapshots below it) arrive as [`RuntimeError::Image`].

use kiln_image::ImageError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sandbox(#[from] kiln_executor::sandbox::SandboxError),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Bad user input (a flag value, a mount spec, an env file line).
    #[error("{0}")]
    Invalid(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error(
        "the container name \"/{name}\" is already in use by container \"{id}\": remove (or rename) that container to reuse the name"
    )]
    NameInUse { name: String, id: String },
    #[error("container {0} is running: stop it first or use --force")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("volume {name} is in use by container {container}")]
    VolumeInUse { name: String, container: String },
    #[error("no command specified: the image has no ENTRYPOINT or CMD and none was given")]
    NoCommand,
    #[error("not supported yet: {0}")]
    NotSupported(String),
    #[error("container monitor failed: {0}")]
    Monitor(String),
    #[error("this is a bug in kiln: {0}")]
    Bug(String),
}

impl From<kiln_cache::Error> for RuntimeError {
    fn from(e: kiln_cache::Error) -> Self {
        RuntimeError::Image(ImageError::Store(e))
    }
}

impl From<kiln_executor::snapshot::SnapshotError> for RuntimeError {
    fn from(e: kiln_executor::snapshot::SnapshotError) -> Self {
        RuntimeError::Image(ImageError::Snapshot(e))
    }
}

impl From<kiln_image::rootfs::UserError> for RuntimeError {
    fn from(e: kiln_image::rootfs::UserError) -> Self {
        RuntimeError::Image(ImageError::User(e))
    }
}

impl RuntimeError {
    /// Docker's exit code for a command that could not be started: 127 when it was not found,
    /// 126 when it could not be executed; `None` for every other failure.
    pub fn exec_exit_code(&self) -> Option<u8> {
        match self {
            RuntimeError::Sandbox(kiln_executor::sandbox::SandboxError::Exec {
                source, ..
            }) if source.kind() == std::io::ErrorKind::NotFound => Some(127),
            RuntimeError::Sandbox(kiln_executor::sandbox::SandboxError::Exec { .. }) => Some(126),
            _ => None,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}
