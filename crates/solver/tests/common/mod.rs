//! Toy arithmetic ops for solver tests: a vertex adds its inputs and a constant, after a delay.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_solver::{
    CacheKey, ContentKey, Event, EventKind, ExecCtx, Graph, MemoryStore, Operation, Solver,
    SolverConfig, Stream,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// What the toy ops did, shared by every op of a test.
#[derive(Debug, Default)]
pub struct Stats {
    executions: Mutex<HashMap<u32, usize>>,
    /// Executions in progress right now.
    pub live: AtomicUsize,
    /// The most executions ever in progress at once.
    pub max_live: AtomicUsize,
}

impl Stats {
    pub fn executions(&self, id: u32) -> usize {
        self.executions
            .lock()
            .unwrap()
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.executions.lock().unwrap().values().sum()
    }

    pub fn snapshot(&self) -> HashMap<u32, usize> {
        self.executions.lock().unwrap().clone()
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

struct LiveGuard<'a>(&'a Stats);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToyError {
    #[error("toy op {0} failed on purpose")]
    Failed(u32),
    #[error("toy op {0} was cancelled")]
    Cancelled(u32),
}

/// `sum(inputs) + constant`, after `delay`.
#[derive(Debug, Clone)]
pub struct Toy {
    pub id: u32,
    pub constant: i64,
    pub delay: Duration,
    pub fail: bool,
    pub panic: bool,
    /// Goes into the cheap key only, like a per-session id of a local source.
    pub salt: u64,
    /// Offer a content key made of input 0's value, covering input 0.
    pub content_of_first_input: bool,
    pub ignore_cache: bool,
    pub log: Option<&'static str>,
    pub stats: Arc<Stats>,
}

impl Toy {
    pub fn new(id: u32, constant: i64, stats: &Arc<Stats>) -> Self {
        Self {
            id,
            constant,
            delay: Duration::ZERO,
            fail: false,
            panic: false,
            salt: 0,
            content_of_first_input: false,
            ignore_cache: false,
            log: None,
            stats: stats.clone(),
        }
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }

    pub fn failing(mut self) -> Self {
        self.fail = true;
        self
    }
}

impl Operation for Toy {
    type Value = i64;
    type Error = ToyError;

    fn cache_key_base(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.constant.to_be_bytes());
        b.extend_from_slice(&self.salt.to_be_bytes());
        b
    }

    fn has_content_key(&self) -> bool {
        self.content_of_first_input
    }

    async fn content_key(
        &self,
        inputs: &[i64],
        _ctx: &ExecCtx,
    ) -> Result<Option<ContentKey>, ToyError> {
        Ok(inputs.first().map(|v| ContentKey {
            material: v.to_be_bytes().to_vec(),
            covered_inputs: vec![0],
        }))
    }

    async fn execute(&self, inputs: &[i64], ctx: &ExecCtx) -> Result<i64, ToyError> {
        let now = self.stats.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.max_live.fetch_max(now, Ordering::SeqCst);
        let _guard = LiveGuard(&self.stats);
        *self
            .stats
            .executions
            .lock()
            .unwrap()
            .entry(self.id)
            .or_default() += 1;
        if let Some(line) = self.log {
            ctx.log(Stream::Stdout, line.as_bytes());
        }
        if self.panic {
            panic!("toy op {} panicked", self.id);
        }
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = ctx.cancelled() => return Err(ToyError::Cancelled(self.id)),
        }
        if self.fail {
            return Err(ToyError::Failed(self.id));
        }
        Ok(inputs.iter().sum::<i64>() + self.constant)
    }

    fn ignore_cache(&self) -> bool {
        self.ignore_cache
    }
}

pub type ToySolver = Solver<u32, Toy, Arc<MemoryStore<i64>>>;

pub fn new_solver(parallelism: usize) -> (ToySolver, Arc<MemoryStore<i64>>) {
    let store = Arc::new(MemoryStore::new());
    let solver = Solver::with_config(
        store.clone(),
        SolverConfig {
            max_parallelism: parallelism,
        },
    );
    (solver, store)
}

/// Evaluates a toy graph in order, without the solver: (value, output key) per vertex.
pub fn sequential(graph: &Graph<u32, Toy>) -> HashMap<u32, (i64, CacheKey)> {
    let mut out: HashMap<u32, (i64, CacheKey)> = HashMap::new();
    for id in graph.ids() {
        let op = graph.op(id).unwrap();
        let inputs = graph.inputs(id).unwrap();
        let values: Vec<i64> = inputs.iter().map(|i| out[*i].0).collect();
        let keys: Vec<CacheKey> = inputs.iter().map(|i| out[*i].1).collect();
        let cheap = CacheKey::for_vertex(&op.cache_key_base(), &keys);
        let key = match values.first() {
            Some(v) if op.content_of_first_input => CacheKey::for_content(
                &op.cache_key_base(),
                &ContentKey {
                    material: v.to_be_bytes().to_vec(),
                    covered_inputs: vec![0],
                },
                &keys,
            )
            .unwrap(),
            _ => cheap,
        };
        out.insert(*id, (values.iter().sum::<i64>() + op.constant, key));
    }
    out
}

/// The cheap key of a vertex, computed without the solver.
pub fn cheap_key(graph: &Graph<u32, Toy>, id: u32) -> CacheKey {
    let seq = sequential(graph);
    let keys: Vec<CacheKey> = graph
        .inputs(&id)
        .unwrap()
        .iter()
        .map(|i| seq[*i].1)
        .collect();
    CacheKey::for_vertex(&graph.op(&id).unwrap().cache_key_base(), &keys)
}

pub fn drain(rx: &mut UnboundedReceiver<Event<u32>>) -> Vec<Event<u32>> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// Position of the first event of `kind` for `vertex`, if any.
pub fn position(events: &[Event<u32>], vertex: u32, kind: fn(&EventKind) -> bool) -> Option<usize> {
    events
        .iter()
        .position(|e| e.vertex == vertex && kind(&e.kind))
}

pub fn is_started(k: &EventKind) -> bool {
    matches!(k, EventKind::Started)
}

pub fn is_completed(k: &EventKind) -> bool {
    matches!(k, EventKind::Completed { .. })
}

pub fn is_cached(k: &EventKind) -> bool {
    matches!(k, EventKind::Cached { .. })
}

pub fn is_cancelled(k: &EventKind) -> bool {
    matches!(k, EventKind::Cancelled { .. })
}

/// A guard against hangs (never a timing assertion): fails the test after a generous bound.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("solve hung (no result after 30s)")
}
