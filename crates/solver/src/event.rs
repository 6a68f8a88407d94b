//! Progress events a solve reports on its channel, and their per-build vertex numbering.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use crate::key::CacheKey;
use crate::op::Stream;

/// One thing that happened to a vertex during a solve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<V> {
    /// The vertex it happened to.
    pub vertex: V,
    /// The per-build vertex number (`#5` in progress output), starting at 1. Numbers are given in
    /// order of first appearance on this solve's channel, as BuildKit does: the first event of a
    /// vertex gets the next number and later events of that vertex reuse it, so numbers seen on
    /// the channel never decrease for new vertices.
    pub number: u64,
    /// Wall-clock time it happened (for display and rawjson).
    pub time: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A cache lookup hit; nothing will run. `key` is the key that hit, `content` whether it was
    /// the content key (the cheap key missed).
    Cached {
        /// The key that hit.
        key: CacheKey,
        /// Whether it was the content key.
        content: bool,
    },
    /// Execution began (the vertex holds a parallelism slot).
    Started,
    /// A chunk of the vertex's output.
    Log {
        /// Which stream.
        stream: Stream,
        /// The bytes, as the op reported them (not necessarily whole lines).
        data: Vec<u8>,
    },
    /// Execution succeeded and the result was saved under `key` (the vertex's output key).
    Completed {
        /// The output key dependents use.
        key: CacheKey,
        /// Time from `Started` to completion.
        duration: Duration,
    },
    /// Execution (or content-key computation) failed; the build is being cancelled.
    Failed {
        /// The error and its causes, rendered `a: b: c`.
        error: String,
        /// Time from `Started` (or the content-key step) to the failure.
        duration: Duration,
    },
    /// The vertex was running and stopped because it was cancelled.
    Cancelled {
        /// Time from `Started` to the op returning after cancellation.
        duration: Duration,
    },
}

/// One solve's view of progress: its channel and its vertex numbering.
pub(crate) struct Progress<V> {
    state: Mutex<ProgressState<V>>,
}

struct ProgressState<V> {
    tx: Option<UnboundedSender<Event<V>>>,
    next: u64,
    numbers: HashMap<V, u64>,
}

impl<V: crate::VertexId> Progress<V> {
    pub(crate) fn new(tx: Option<UnboundedSender<Event<V>>>) -> Self {
        Self {
            state: Mutex::new(ProgressState {
                tx,
                next: 0,
                numbers: HashMap::new(),
            }),
        }
    }

    /// Numbers and sends one event. Numbering and sending happen under one lock, so the channel
    /// order agrees with the numbering even when vertices report from several threads.
    pub(crate) fn deliver(&self, vertex: &V, time: SystemTime, kind: &EventKind) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = st.tx.clone() else { return };
        let number = match st.numbers.get(vertex) {
            Some(&n) => n,
            None => {
                st.next += 1;
                let n = st.next;
                st.numbers.insert(vertex.clone(), n);
                n
            }
        };
        // A receiver that went away just stops listening; the build goes on.
        let _ = tx.send(Event {
            vertex: vertex.clone(),
            number,
            time,
            kind: kind.clone(),
        });
    }
}
