//! The engine's error type: what failed, in which step, and why. Errors of the image store (and
//! the store and snapshots below it) arrive as [`EngineError::Image`], so each cause has one
//! variant in the workspace.

use kiln_image::ImageError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sandbox(#[from] kiln_executor::sandbox::SandboxError),
    #[error(transparent)]
    Copy(#[from] crate::fileop::copy::CopyError),
    #[error(transparent)]
    Http(#[from] crate::fileop::http::HttpError),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process {command:?} did not complete successfully: exit code: {code}")]
    ProcessFailed { command: String, code: i32 },
    #[error("process {command:?} was killed by the memory limit (OOM)")]
    OutOfMemory { command: String },
    /// A cache document or blob that is not what it claims to be.
    #[error("cache {label}: {source}")]
    InvalidCache {
        label: String,
        #[source]
        source: kiln_image::Cause,
    },
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A git remote or checkout failed; the text names the remote, the ref and git's reason.
    #[error("git: {0}")]
    Git(String),
    /// An `--ssh` agent that cannot be used, or a step's ssh mount without one.
    #[error("ssh: {0}")]
    Ssh(String),
    /// A RUN step for another architecture that this host cannot emulate; the text says what
    /// to install.
    #[error("{0}")]
    Emulation(String),
    /// Something the build was not given the right to do (an entitlement).
    #[error("{0}")]
    NotAllowed(String),
    #[error("build cancelled")]
    Cancelled,
    #[error("this is a bug in kiln: {0}")]
    Bug(String),
    /// A task of the build's own ended without an answer (it panicked).
    #[error("this is a bug in kiln: the {what} task failed")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The solver refused the graph the build made of the definition.
    #[error("this is a bug in kiln: invalid build graph")]
    Graph(#[source] kiln_solver::GraphError<kiln_llb::Digest>),
}

impl EngineError {
    /// For `map_err` on a task's join handle: the task named `what` failed.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> EngineError {
        move |source| EngineError::Task { what, source }
    }
}

impl From<kiln_cache::Error> for EngineError {
    fn from(e: kiln_cache::Error) -> Self {
        EngineError::Image(ImageError::Store(e))
    }
}

impl From<kiln_executor::snapshot::SnapshotError> for EngineError {
    fn from(e: kiln_executor::snapshot::SnapshotError) -> Self {
        EngineError::Image(ImageError::Snapshot(e))
    }
}

impl From<kiln_image::rootfs::UserError> for EngineError {
    fn from(e: kiln_image::rootfs::UserError) -> Self {
        EngineError::Image(ImageError::User(e))
    }
}

/// An error and its causes on one line, each cause once: for warnings, step failures, and the
/// frontend, which takes resolver errors as text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A registry failure, naming what was being done and to which reference.
pub(crate) fn registry_error(
    action: &'static str,
    name: &str,
    source: kiln_registry::RegistryError,
) -> EngineError {
    EngineError::Image(ImageError::Registry {
        action,
        name: name.to_owned(),
        source: Box::new(source),
    })
}

/// A format-level failure (an `oci` error), with what was being done.
pub(crate) fn format_error(
    what: impl Into<String>,
    source: impl Into<kiln_image::Cause>,
) -> EngineError {
    EngineError::Image(ImageError::format(what, source))
}
