//! The solver: a generic DAG scheduler with bottom-up cache keys, dedup, cancellation and progress.
//!
//! It knows no containers. A caller describes work as a [`Graph`] of vertices whose ops implement
//! [`Operation`], stores results through a [`CacheStore`], and calls [`Solver::solve`]:
//!
//! - each vertex gets a cheap [`CacheKey`] from its op's key material and its inputs' keys; on a
//!   miss an op may offer content key material ([`ContentKey`]), computed from its input values;
//!   only when both miss does it execute, and its result is saved under both keys;
//! - vertices run as soon as their inputs are ready, at most `max_parallelism` at a time, and a
//!   vertex id in flight is shared by every solve that asks for it;
//! - the first failure, or the solve's cancellation token, cancels the rest, and `solve` waits for
//!   cancelled executions to return;
//! - [`Event`]s report each vertex's progress on the solve's channel.
//!
//! `docs/dev/solver.md` describes the vertex state machine, dedup and cancellation.
//!
//! ```
//! use std::convert::Infallible;
//! use kiln_solver::{ExecCtx, Graph, MemoryStore, Operation, SolveOptions, Solver};
//!
//! /// Adds its inputs and a constant.
//! struct Add(i64);
//!
//! impl Operation for Add {
//!     type Value = i64;
//!     type Error = Infallible;
//!
//!     fn cache_key_base(&self) -> Vec<u8> {
//!         self.0.to_be_bytes().to_vec()
//!     }
//!
//!     async fn execute(&self, inputs: &[i64], _ctx: &ExecCtx) -> Result<i64, Infallible> {
//!         Ok(inputs.iter().sum::<i64>() + self.0)
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mut graph = Graph::new();
//! graph.add("a", Add(1), &[]).unwrap();
//! graph.add("b", Add(2), &[]).unwrap();
//! graph.add("sum", Add(10), &["a", "b"]).unwrap();
//!
//! let solver = Solver::new(MemoryStore::new());
//! let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
//! let options = SolveOptions { events: Some(tx), ..Default::default() };
//! let solved = solver.solve(&graph, &["sum"], options).await.unwrap();
//! assert_eq!(solved[0].value, 13);
//! while let Ok(event) = events.try_recv() {
//!     println!("#{} {:?} {:?}", event.number, event.vertex, event.kind);
//! }
//! # });
//! ```

#![deny(unsafe_code)]

mod error;
mod event;
mod graph;
mod job;
mod key;
mod op;
mod solver;
mod store;

pub use error::{Cause, SolveError, StepError};
pub use event::{Event, EventKind};
pub use graph::{Graph, GraphError, VertexId};
pub use key::{CacheKey, ContentKey, InvalidContentKey, ParseCacheKeyError};
pub use op::{ExecCtx, Operation, Stream};
pub use solver::{SolveOptions, Solved, Solver, SolverConfig};
pub use store::{CacheRecord, CacheStore, MemoryStore};

/// Re-exported so callers name the same token type the solver uses.
pub use tokio_util::sync::CancellationToken;
