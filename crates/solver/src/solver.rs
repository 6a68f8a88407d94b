//! The public entry point: a `Solver` that solves graphs, sharing work between concurrent solves.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::try_join_all;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::VertexId;
use crate::error::{Interrupt, SolveError};
use crate::event::{Event, Progress};
use crate::graph::Graph;
use crate::job::{JobRef, Phase, Shared};
use crate::key::CacheKey;
use crate::op::Operation;
use crate::store::CacheStore;

/// Settings of a [`Solver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolverConfig {
    /// How many vertices may execute at once, across all solves of the solver (0 counts as 1).
    /// Key computation and cache lookups are not bounded by it.
    pub max_parallelism: usize,
}

impl Default for SolverConfig {
    /// Four execution slots per core, at least eight. Build steps wait on the network, the
    /// disk and `sleep` as often as they compute: one slot per core left independent stages
    /// queued behind each other on small machines (BuildKit sets no limit at all), while the
    /// kernel shares the cores fairly among the steps that do compute.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_parallelism: (cores * 4).max(8),
        }
    }
}

/// Per-solve settings.
#[derive(Debug, Clone)]
pub struct SolveOptions<V> {
    /// Where progress events go; `None` reports nothing.
    pub events: Option<UnboundedSender<Event<V>>>,
    /// Cancels the solve (Ctrl-C). `solve` then returns [`SolveError::Cancelled`] once every
    /// execution it stopped has returned.
    pub cancel: CancellationToken,
}

impl<V> Default for SolveOptions<V> {
    fn default() -> Self {
        Self {
            events: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// A solved target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved<T> {
    /// The target's output key (what its dependents would be keyed by).
    pub key: CacheKey,
    /// The target's value.
    pub value: T,
}

/// Schedules graphs of `O` over a cache store `S`. Cloning is cheap; clones share the in-flight
/// vertices, the parallelism bound and the store, so concurrent solves run shared vertices once.
pub struct Solver<V: VertexId, O: Operation, S: CacheStore<O::Value>> {
    shared: Arc<Shared<V, O, S>>,
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Clone for Solver<V, O, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> std::fmt::Debug for Solver<V, O, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver").finish_non_exhaustive()
    }
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Solver<V, O, S> {
    /// A solver with the default config (one execution slot per core).
    pub fn new(store: S) -> Self {
        Self::with_config(store, SolverConfig::default())
    }

    /// A solver with an explicit config.
    pub fn with_config(store: S, config: SolverConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(store, config.max_parallelism)),
        }
    }

    /// The cache store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Produces the values of `targets` (in the same order), from cache where possible.
    ///
    /// Must run inside a tokio runtime. Vertices of `graph` that another solve of this solver is
    /// already working on (same id) are joined, not rerun. On the first failure, or when
    /// `options.cancel` fires, the rest of this solve's work is cancelled (vertices other live
    /// solves still want keep running) and `solve` returns only after those executions returned.
    /// Dropping the returned future instead also cancels the work, but cannot wait for it.
    pub async fn solve(
        &self,
        graph: &Graph<V, O>,
        targets: &[V],
        options: SolveOptions<V>,
    ) -> Result<Vec<Solved<O::Value>>, SolveError<V>> {
        let order = graph.closure(targets)?;
        let progress = Arc::new(Progress::new(options.events));

        // Refs for the whole closure, inputs first so each new job gets its inputs' refs.
        let mut refs: Vec<Option<JobRef<V, O, S>>> = (0..graph.nodes.len()).map(|_| None).collect();
        for &i in &order {
            let node = &graph.nodes[i];
            let inputs = node
                .inputs
                .iter()
                .filter_map(|&j| refs[j].clone())
                .collect();
            let r = self.shared.acquire(&node.id, &node.op, inputs);
            r.job.watch(&progress);
            refs[i] = Some(r);
        }

        let outcome = {
            let wanted = targets.iter().filter_map(|t| {
                let i = graph.index_of(t)?;
                refs[i].as_ref()
            });
            tokio::select! {
                biased;
                _ = options.cancel.cancelled() => Err(Interrupt::Cancelled),
                r = try_join_all(wanted.map(JobRef::value)) => r,
            }
        };

        let cancelled = teardown(graph, &order, &mut refs, &progress).await;
        match outcome {
            Ok(values) => Ok(values
                .into_iter()
                .map(|(key, value)| Solved { key, value })
                .collect()),
            Err(Interrupt::Cancelled) => Err(SolveError::Cancelled { cancelled }),
            Err(Interrupt::Failed(f)) => Err(SolveError::VertexFailed {
                vertex: f.vertex.clone(),
                source: f.cause.clone(),
                cancelled,
            }),
        }
    }
}

/// Lets go of a solve's refs, sinks first, and waits for every job that this cancelled to return.
/// Returns the vertices that were running when cancelled, in graph order.
///
/// Sinks first matters: a job holds refs to its inputs until it finishes, so by the time we reach
/// a vertex, every cancelled job of ours that depended on it has finished and let go of it, and
/// the vertex's token says whether anyone (another solve) still wants it.
async fn teardown<V: VertexId, O: Operation, S: CacheStore<O::Value>>(
    graph: &Graph<V, O>,
    order: &[usize],
    refs: &mut [Option<JobRef<V, O, S>>],
    progress: &Arc<Progress<V>>,
) -> Vec<V> {
    let mut cancelled = Vec::new();
    for &i in order.iter().rev() {
        let Some(r) = refs[i].take() else { continue };
        let job = r.job.clone();
        drop(r);
        if job.cancel.is_cancelled() {
            let end = job.finished().await;
            if job.ran.load(Ordering::SeqCst) && matches!(end, Phase::Ended(Interrupt::Cancelled)) {
                cancelled.push(graph.nodes[i].id.clone());
            }
        }
        job.unwatch(progress);
    }
    cancelled.reverse();
    cancelled
}
