//! The build: lowers a Dockerfile with the frontend, runs the graph with the solver (LLB ops as
//! the solver's operations: image and context sources, RUN in the executor's sandbox, file ops in
//! Rust), and commits the result to the image store, with the build cache shared through
//! registries and directories.
//!
//! The API is small on purpose: [`build`] and [`lower_only`] with their request and result
//! types (and [`BuildExtras`], what a build gets besides its Dockerfile), the progress events a
//! build reports, and [`fetch_context`], which makes a context from stdin, a URL or a git
//! repository into a directory. Everything else is private, so the CLI and a remote worker
//! drive builds the same way.

#![deny(unsafe_code)]

mod build;
mod context;
mod contexts;
mod error;
mod explain;
mod extras;
mod fileop;
mod git;
mod mounts;
mod ops;
mod progress;
mod provenance;
mod remote_cache;
mod remote_context;
mod ssh;
mod value;

pub use build::{BuildError, BuildRequest, BuildResult, Engine, StepLocation, build, lower_only};
pub use error::EngineError;
pub use explain::{Reason as ExplainReason, StepExplanation};
pub use extras::{BuildExtras, ContextOrigin, ContextSpec, ProvenanceMode, RunSettings, Ulimit};
pub use mounts::{SecretBytes, SecretSource, Secrets};
pub use progress::{Progress, ProgressSender};
pub use remote_cache::export::Exported as CacheExported;
pub use remote_cache::{CacheExport, CacheImport, CacheMode, CacheSpecError};
pub use remote_context::{
    ContextInput, FetchedContext, bare_repository_url, fetch_context, is_remote_context,
};
pub use ssh::{AgentStream, SshAgents, SshForward, SshSpec};

/// The solver's progress vocabulary, re-exported so a front end renders builds without
/// depending on the solver.
pub use kiln_solver::{CacheKey, CancellationToken, Event as VertexEvent, EventKind, Stream};

/// What the benchmarks measure, and nothing else: not part of the API.
#[doc(hidden)]
pub mod bench {
    pub use crate::context::{copy_content_key, load_stat_cache};
    pub use crate::value::{LocalDir, Value};
}

/// The parsers the fuzz targets (`crates/fuzzing`, `fuzz/`) feed hostile input: not part of
/// the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::remote_cache::format::{CacheConfig, CacheDocError, parse_key};
}
