//! Why a solve failed.

use std::fmt::{self, Debug};
use std::sync::Arc;

use crate::graph::GraphError;
use crate::key::CacheKey;

/// A shared error cause; downcast it to the op's `Error` type to get at the details
/// (`err.downcast_ref::<MyError>()` on the `dyn Error`).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a solve did not produce its targets.
///
/// `Error::source` of `VertexFailed` is the op's error itself (not the `Arc` around it), so
/// chain walkers can downcast it to the op's error type.
#[derive(Debug)]
pub enum SolveError<V: Debug> {
    /// A vertex failed (the first failure wins); everything else of the build was cancelled.
    VertexFailed {
        /// The vertex whose op, key computation or cache access failed.
        vertex: V,
        /// Why: the op's error or a [`StepError`].
        source: Cause,
        /// Vertices that were running and were cancelled because of this failure.
        cancelled: Vec<V>,
    },
    /// The solve's cancellation token fired.
    Cancelled {
        /// Vertices that were running and were stopped.
        cancelled: Vec<V>,
    },
    /// The graph or targets were malformed.
    Graph(GraphError<V>),
}

impl<V: Debug> From<GraphError<V>> for SolveError<V> {
    fn from(e: GraphError<V>) -> Self {
        Self::Graph(e)
    }
}

impl<V: Debug> fmt::Display for SolveError<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VertexFailed {
                vertex, cancelled, ..
            } => write!(f, "vertex {vertex:?} failed{}", CancelledNote(cancelled)),
            Self::Cancelled { cancelled } => {
                write!(f, "build cancelled{}", CancelledNote(cancelled))
            }
            Self::Graph(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<V: Debug> std::error::Error for SolveError<V> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::VertexFailed { source, .. } => Some(&**source),
            Self::Cancelled { .. } => None,
            // Transparent: the graph error is this error.
            Self::Graph(e) => e.source(),
        }
    }
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
#[derive(Debug)]
pub enum StepError {
    /// The cache store could not load a record.
    CacheLoad {
        /// The key looked up.
        key: CacheKey,
        /// The store's error.
        source: Cause,
    },
    /// The cache store could not save a result.
    CacheSave {
        /// The first key saved under.
        key: CacheKey,
        /// The store's error.
        source: Cause,
    },
    /// The op returned an unusable content key.
    InvalidContentKey(crate::key::InvalidContentKey),
    /// The op panicked or the vertex task died.
    Panicked(String),
}

impl From<crate::key::InvalidContentKey> for StepError {
    fn from(e: crate::key::InvalidContentKey) -> Self {
        Self::InvalidContentKey(e)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CacheLoad { key, .. } => write!(f, "failed to load cache record {key}"),
            Self::CacheSave { key, .. } => write!(f, "failed to save result under cache key {key}"),
            Self::InvalidContentKey(e) => fmt::Display::fmt(e, f),
            Self::Panicked(msg) => {
                write!(
                    f,
                    "vertex task ended abnormally: {msg} (this is a bug in kiln)"
                )
            }
        }
    }
}

// Hand-written rather than derived so `source` is the store's error itself, not the `Arc`
// around it, and can be downcast by whoever walks the chain.
impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::CacheLoad { source, .. } | Self::CacheSave { source, .. } => Some(&**source),
            Self::InvalidContentKey(_) | Self::Panicked(_) => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn sources_are_the_shared_errors_themselves() {
        let err: SolveError<u32> = SolveError::VertexFailed {
            vertex: 3,
            source: Arc::new(StepError::CacheSave {
                key: CacheKey::from_bytes([0; 32]),
                source: Arc::new(Inner),
            }),
            cancelled: vec![1, 2],
        };
        assert_eq!(
            err.to_string(),
            "vertex 3 failed; cancelled 2 other running vertices"
        );
        let step = err.source().unwrap();
        assert!(step.downcast_ref::<StepError>().is_some());
        assert!(step.source().unwrap().downcast_ref::<Inner>().is_some());
        assert_eq!(
            chain(&err),
            format!(
                "vertex 3 failed; cancelled 2 other running vertices: failed to save result under cache key {}: inner",
                CacheKey::from_bytes([0; 32])
            )
        );
    }
}
