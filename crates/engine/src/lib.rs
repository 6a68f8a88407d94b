//! The build: lowers a Dockerfile with the frontend, runs the graph with the solver (LLB ops as
//! the solver's operations: image and context sources, RUN in the executor's sandbox, file ops in
//! Rust), and commits the result to the image store, with the build cache shared through
//! registries and directories.
//!
//! The API is small on purpose: [`build`] and [`lower_only`] with their request and result
//! types, and the progress events a build reports. Everything else is private, so the CLI and a
//! remote worker drive builds the same way.

#![deny(unsafe_code)]

mod build;
mod context;
mod error;
mod fileop;
mod mounts;
mod progress;
mod remote_cache;
mod value;
mod vertex;

pub use build::{BuildError, BuildRequest, BuildResult, Engine, StepLocation, build, lower_only};
pub use error::EngineError;
pub use mounts::{SecretBytes, SecretSource, Secrets};
pub use progress::{Progress, ProgressSender};
pub use remote_cache::export::Exported as CacheExported;
pub use remote_cache::{CacheExport, CacheImport, CacheMode, CacheSpecError};

/// The solver's progress vocabulary, re-exported so a front end renders builds without
/// depending on the solver.
pub use kiln_solver::{CacheKey, CancellationToken, Event as VertexEvent, EventKind, Stream};

/// What the benchmarks measure, and nothing else: not part of the API.
#[doc(hidden)]
pub mod bench {
    pub use crate::context::{copy_content_key, load_stat_cache};
    pub use crate::value::{LocalDir, Value};
}
