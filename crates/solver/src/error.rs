//! Why a solve failed.

use std::fmt::{self, Debug};
use std::sync::Arc;

use crate::graph::GraphError;
use crate::key::CacheKey;

/// A shared error cause; downcast it to the op's `Error` type to get at the details
/// (`err.downcast_ref::<MyError>()` on the `dyn Error`).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a solve did not produce its targets.
#[derive(Debug, thiserror::Error)]
pub enum SolveError<V: Debug> {
    /// A vertex failed (the first failure wins); everything else of the build was cancelled.
    #[error("vertex {vertex:?} failed{}", CancelledNote(cancelled))]
    VertexFailed {
        /// The vertex whose op, key computation or cache access failed.
        vertex: V,
        /// Why.
        #[source]
        source: Cause,
        /// Vertices that were running and were cancelled because of this failure.
        cancelled: Vec<V>,
    },
    /// The solve's cancellation token fired.
    #[error("build cancelled{}", CancelledNote(cancelled))]
    Cancelled {
        /// Vertices that were running and were stopped.
        cancelled: Vec<V>,
    },
    /// The graph or targets were malformed.
    #[error(transparent)]
    Graph(#[from] GraphError<V>),
}

struct CancelledNote<'a, V>(&'a [V]);

impl<V: Debug> fmt::Display for CancelledNote<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => Ok(()),
            [one] => write!(f, "; cancelled {one:?}, which was running"),
            many => write!(f, "; cancelled {} other running vertices", many.len()),
        }
    }
}

impl<V: Debug> SolveError<V> {
    /// The failed vertex, if a vertex failed.
    pub fn vertex(&self) -> Option<&V> {
        match self {
            Self::VertexFailed { vertex, .. } => Some(vertex),
            _ => None,
        }
    }

    /// Vertices that were running and got cancelled.
    pub fn cancelled(&self) -> &[V] {
        match self {
            Self::VertexFailed { cancelled, .. } | Self::Cancelled { cancelled } => cancelled,
            Self::Graph(_) => &[],
        }
    }
}

/// Failures inside the solver's own steps, reported as the cause of `VertexFailed`.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The cache store could not load a record.
    #[error("failed to load cache record {key}")]
    CacheLoad {
        /// The key looked up.
        key: CacheKey,
        /// The store's error.
        #[source]
        source: Cause,
    },
    /// The cache store could not save a result.
    #[error("failed to save result under cache key {key}")]
    CacheSave {
        /// The first key saved under.
        key: CacheKey,
        /// The store's error.
        #[source]
        source: Cause,
    },
    /// The op returned an unusable content key.
    #[error(transparent)]
    InvalidContentKey(#[from] crate::key::InvalidContentKey),
    /// The op panicked or the vertex task died.
    #[error("vertex task ended abnormally: {0} (this is a bug in kiln)")]
    Panicked(String),
}

/// The first failure of a vertex, shared by everything that depended on it.
#[derive(Debug)]
pub(crate) struct Failure<V> {
    pub(crate) vertex: V,
    pub(crate) cause: Cause,
}

/// How a vertex's work ended without a value.
#[derive(Debug, Clone)]
pub(crate) enum Interrupt<V> {
    Failed(Arc<Failure<V>>),
    Cancelled,
}

impl<V> Interrupt<V> {
    pub(crate) fn failed(vertex: V, cause: Cause) -> Self {
        Self::Failed(Arc::new(Failure { vertex, cause }))
    }
}

/// Renders an error and its source chain as `a: b: c` for progress output.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Transparent wrappers repeat their source's message; print it once.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
