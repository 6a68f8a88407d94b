//! Vertex jobs: one task per vertex in flight, shared by every solve that asks for the vertex.
//!
//! A job is created by the first solve that needs a vertex and lives in the solver's job map
//! while anyone holds a [`JobRef`] to it (solves hold one per vertex of their graph, jobs hold one
//! per input). When the last ref goes away the job's token is cancelled and it leaves the map.
//!
//! Jobs are identified structurally (`JobIdent`): vertex id, cheap key material, ignore-cache
//! flag and the identities of the input jobs. Two solves share a job only if they would compute
//! the same thing from the same inputs; a vertex id reused with other inputs (the same COPY over
//! another build's context) gets its own job.
//! A job that fails leaves the map at once, so a later request starts afresh (failures are never
//! cached, neither in the store nor here). See `docs/dev/solver.md` for the state machine.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use futures::FutureExt as _;
use futures::future::try_join_all;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::VertexId;
use crate::error::{Cause, Interrupt, StepError, chain};
use crate::event::{EventKind, Progress};
use crate::key::CacheKey;
use crate::op::{ExecCtx, Operation};
use crate::store::{CacheRecord, CacheStore};

/// How many log chunks of a vertex a solve that joins late is replayed.
const REPLAYED_LOGS: usize = 256;

/// State the solver's clones share: the store, the parallelism slots and the jobs in flight.
pub(crate) struct Shared<V, O: Operation, S> {
    pub(crate) store: S,
    slots: Semaphore,
    jobs: Mutex<Maps<V, O::Value>>,
    /// Source of `Job::serial`.
    serials: AtomicU64,
}

/// The jobs in flight, under one lock so a job's liveness and its entries change together.
struct Maps<V, T> {
    /// By what they compute.
    by_ident: HashMap<JobIdent<V>, Arc<Job<V, T>>>,
    /// The job executing for each output key right now: another job that arrives at the same key
    /// (a structurally different vertex with the same result) waits for it instead of executing.
    running: HashMap<CacheKey, Arc<Job<V, T>>>,
}

/// What makes two requests for a vertex the same work.
#[derive(Clone, PartialEq, Eq, Hash)]
struct JobIdent<V> {
    vertex: V,
    base: Arc<[u8]>,
    ignore_cache: bool,
    /// `Job::serial` of each input job, in input order.
    inputs: Vec<u64>,
}

/// Where a job is. `Keyed` is published as soon as the output key is known, before any
/// execution, so dependents can look themselves up without waiting for this vertex's value.
#[derive(Clone)]
pub(crate) enum Phase<V, T> {
    Pending,
    Keyed(CacheKey),
    Done(CacheKey, T),
    Ended(Interrupt<V>),
}

impl<V, T> Phase<V, T> {
    fn is_final(&self) -> bool {
        matches!(self, Phase::Done(..) | Phase::Ended(_))
    }
}

pub(crate) struct Job<V, T> {
    pub(crate) vertex: V,
    ident: JobIdent<V>,
    /// Unique for the solver's lifetime (unlike an address), so it can identify inputs.
    serial: u64,
    /// Live `JobRef`s. Only changed to or from zero under the job-map lock.
    holders: AtomicUsize,
    pub(crate) cancel: CancellationToken,
    phase: watch::Sender<Phase<V, T>>,
    /// Set by the first request for the value; until then the job stops after its key.
    demand: watch::Sender<bool>,
    watchers: Mutex<Watchers<V>>,
    /// Whether execution started (it held a slot), so a cancellation is worth reporting.
    pub(crate) ran: AtomicBool,
}

struct Watchers<V> {
    /// Every event so far, replayed to solves that join later; of the log chunks only the last
    /// `REPLAYED_LOGS`, so a step's whole output does not pile up in memory (live watchers get
    /// all of it).
    history: VecDeque<(SystemTime, EventKind)>,
    logs: usize,
    list: Vec<Arc<Progress<V>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held, so a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<V: VertexId, T: Clone> Job<V, T> {
    fn new(ident: JobIdent<V>, serial: u64) -> Self {
        Self {
            vertex: ident.vertex.clone(),
            ident,
            serial,
            holders: AtomicUsize::new(1),
            cancel: CancellationToken::new(),
            phase: watch::channel(Phase::Pending).0,
            demand: watch::channel(false).0,
            watchers: Mutex::new(Watchers {
                history: VecDeque::new(),
                logs: 0,
                list: Vec::new(),
            }),
            ran: AtomicBool::new(false),
        }
    }

    fn emit(&self, kind: EventKind) {
        let time = SystemTime::now();
        let mut w = lock(&self.watchers);
        for p in &w.list {
            p.deliver(&self.vertex, time, &kind);
        }
        if matches!(kind, EventKind::Log { .. }) {
            w.logs += 1;
            if w.logs > REPLAYED_LOGS
                && let Some(i) = w
                    .history
                    .iter()
                    .position(|(_, k)| matches!(k, EventKind::Log { .. }))
            {
                w.history.remove(i);
                w.logs -= 1;
            }
        }
        w.history.push_back((time, kind));
    }

    /// Starts reporting this job's events to a solve, beginning with what already happened.
    pub(crate) fn watch(&self, progress: &Arc<Progress<V>>) {
        let mut w = lock(&self.watchers);
        for (time, kind) in &w.history {
            progress.deliver(&self.vertex, *time, kind);
        }
        w.list.push(progress.clone());
    }

    pub(crate) fn unwatch(&self, progress: &Arc<Progress<V>>) {
        lock(&self.watchers)
            .list
            .retain(|p| !Arc::ptr_eq(p, progress));
    }

    async fn wait(&self, until: impl Fn(&Phase<V, T>) -> bool) -> Phase<V, T> {
        let mut rx = self.phase.subscribe();
        match rx.wait_for(|p| until(p)).await {
            Ok(p) => p.clone(),
            // The sender lives in this job, which the caller holds, so it cannot be gone.
            Err(_) => Phase::Ended(Interrupt::Cancelled),
        }
    }

    /// Waits until the job's task has finished and dropped its input refs.
    pub(crate) async fn finished(&self) -> Phase<V, T> {
        self.wait(Phase::is_final).await
    }
}

/// A counted reference to a job: while one exists, the job is wanted.
pub(crate) struct JobRef<V: VertexId, O: Operation, S: CacheStore<O::Value>> {
    shared: Arc<Shared<V, O, S>>,
    pub(crate) job: Arc<Job<V, O::Value>>,
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Clone for JobRef<V, O, S> {
    fn clone(&self) -> Self {
        // We hold one already, so the count cannot reach zero concurrently: no lock needed.
        self.job.holders.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: self.shared.clone(),
            job: self.job.clone(),
        }
    }
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Drop for JobRef<V, O, S> {
    fn drop(&mut self) {
        let mut jobs = lock(&self.shared.jobs);
        if self.job.holders.fetch_sub(1, Ordering::SeqCst) == 1 {
            if jobs
                .by_ident
                .get(&self.job.ident)
                .is_some_and(|j| Arc::ptr_eq(j, &self.job))
            {
                jobs.by_ident.remove(&self.job.ident);
            }
            drop(jobs);
            // The last requester went away: stop the work (a finished job ignores this).
            self.job.cancel.cancel();
        }
    }
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> JobRef<V, O, S> {
    /// The vertex's output key, without forcing its execution.
    async fn key(&self) -> Result<CacheKey, Interrupt<V>> {
        match self.job.wait(|p| !matches!(p, Phase::Pending)).await {
            Phase::Keyed(k) | Phase::Done(k, _) => Ok(k),
            Phase::Ended(i) => Err(i),
            Phase::Pending => Err(Interrupt::Cancelled),
        }
    }

    /// The vertex's output key and value, executing it if the cache cannot supply them.
    pub(crate) async fn value(&self) -> Result<(CacheKey, O::Value), Interrupt<V>> {
        self.job.demand.send_replace(true);
        match self.job.finished().await {
            Phase::Done(k, v) => Ok((k, v)),
            Phase::Ended(i) => Err(i),
            Phase::Pending | Phase::Keyed(_) => Err(Interrupt::Cancelled),
        }
    }
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Shared<V, O, S> {
    pub(crate) fn new(store: S, max_parallelism: usize) -> Self {
        Self {
            store,
            slots: Semaphore::new(max_parallelism.max(1)),
            jobs: Mutex::new(Maps {
                by_ident: HashMap::new(),
                running: HashMap::new(),
            }),
            serials: AtomicU64::new(0),
        }
    }

    /// A ref to the job for `vertex`: the one in flight, or a new one started with these inputs.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        vertex: &V,
        op: &Arc<O>,
        inputs: Vec<JobRef<V, O, S>>,
    ) -> JobRef<V, O, S> {
        // Computed once here and handed to the job: it is key material, and may cost a lookup.
        let base: Arc<[u8]> = op.cache_key_base().into();
        let ident = JobIdent {
            vertex: vertex.clone(),
            base: base.clone(),
            ignore_cache: op.ignore_cache(),
            inputs: inputs.iter().map(|r| r.job.serial).collect(),
        };
        let mut unused_inputs = None;
        let job = {
            let mut jobs = lock(&self.jobs);
            match jobs.by_ident.get(&ident) {
                Some(job) => {
                    job.holders.fetch_add(1, Ordering::SeqCst);
                    unused_inputs = Some(inputs);
                    job.clone()
                }
                None => {
                    let serial = self.serials.fetch_add(1, Ordering::Relaxed);
                    let job = Arc::new(Job::new(ident.clone(), serial));
                    jobs.by_ident.insert(ident, job.clone());
                    let span = tracing::debug_span!("vertex", vertex = ?vertex);
                    spawn(
                        run(self.clone(), job.clone(), op.clone(), base, inputs),
                        span,
                    );
                    job
                }
            }
        };
        // Dropping refs takes the job-map lock, so only after releasing it.
        drop(unused_inputs);
        JobRef {
            shared: self.clone(),
            job,
        }
    }

    /// Takes a failed job out of the map so the next request retries instead of joining it.
    fn forget(&self, job: &Arc<Job<V, O::Value>>) {
        let mut jobs = lock(&self.jobs);
        if jobs
            .by_ident
            .get(&job.ident)
            .is_some_and(|j| Arc::ptr_eq(j, job))
        {
            jobs.by_ident.remove(&job.ident);
        }
    }

    /// Claims the execution of `key` for `job`, or returns a ref to the live job that already
    /// claimed it.
    fn claim(
        self: &Arc<Self>,
        job: &Arc<Job<V, O::Value>>,
        key: CacheKey,
    ) -> Result<Claim<'_, V, O, S>, JobRef<V, O, S>> {
        let mut jobs = lock(&self.jobs);
        if let Some(other) = jobs.running.get(&key)
            && !Arc::ptr_eq(other, job)
            && other.holders.load(Ordering::SeqCst) > 0
            && !other.cancel.is_cancelled()
        {
            // Counted under the lock, where it cannot concurrently drop to zero.
            other.holders.fetch_add(1, Ordering::SeqCst);
            return Err(JobRef {
                shared: self.clone(),
                job: other.clone(),
            });
        }
        jobs.running.insert(key, job.clone());
        Ok(Claim {
            shared: self,
            job: job.clone(),
            key,
        })
    }
}

/// A job's claim on executing an output key; released when the job stops, however it stops.
struct Claim<'a, V: VertexId, O: Operation, S: CacheStore<O::Value>> {
    shared: &'a Shared<V, O, S>,
    job: Arc<Job<V, O::Value>>,
    key: CacheKey,
}

impl<V: VertexId, O: Operation, S: CacheStore<O::Value>> Drop for Claim<'_, V, O, S> {
    fn drop(&mut self) {
        let mut jobs = lock(&self.shared.jobs);
        if jobs
            .running
            .get(&self.key)
            .is_some_and(|j| Arc::ptr_eq(j, &self.job))
        {
            jobs.running.remove(&self.key);
        }
    }
}

/// The one way this crate spawns: carrying the caller's tracing span.
fn spawn(fut: impl Future<Output = ()> + Send + 'static, span: tracing::Span) {
    tokio::spawn(fut.instrument(span));
}

async fn run<V: VertexId, O: Operation, S: CacheStore<O::Value>>(
    shared: Arc<Shared<V, O, S>>,
    job: Arc<Job<V, O::Value>>,
    op: Arc<O>,
    base: Arc<[u8]>,
    inputs: Vec<JobRef<V, O, S>>,
) {
    let outcome = AssertUnwindSafe(body(&shared, &job, &op, &base, inputs))
        .catch_unwind()
        .await;
    let end = match outcome {
        Ok(Ok((key, value))) => Phase::Done(key, value),
        Ok(Err(interrupt)) => Phase::Ended(interrupt),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            let cause: Cause = Arc::new(StepError::Panicked(msg));
            job.emit(EventKind::Failed {
                error: chain(&*cause),
                duration: Default::default(),
            });
            Phase::Ended(Interrupt::failed(job.vertex.clone(), cause))
        }
    };
    if matches!(end, Phase::Ended(Interrupt::Failed(_))) {
        shared.forget(&job);
    }
    // Published last: by now the input refs are dropped, so "final" means "fully finished".
    job.phase.send_replace(end);
}

/// Fails unless `fut` finishes before the job is cancelled; used only around waits, never
/// around op calls (those see the token themselves and are awaited to the end).
async fn unless_cancelled<T, V>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, Interrupt<V>>>,
) -> Result<T, Interrupt<V>> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Interrupt::Cancelled),
        r = fut => r,
    }
}

async fn input_values<V: VertexId, O: Operation, S: CacheStore<O::Value>>(
    inputs: &[JobRef<V, O, S>],
) -> Result<Vec<O::Value>, Interrupt<V>> {
    let pairs = try_join_all(inputs.iter().map(JobRef::value)).await?;
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}

/// The vertex state machine: keys, lookups, and execution when the value is wanted.
async fn body<V: VertexId, O: Operation, S: CacheStore<O::Value>>(
    shared: &Arc<Shared<V, O, S>>,
    job: &Arc<Job<V, O::Value>>,
    op: &O,
    base: &[u8],
    inputs: Vec<JobRef<V, O, S>>,
) -> Result<(CacheKey, O::Value), Interrupt<V>> {
    let cancel = &job.cancel;
    let vertex = &job.vertex;
    let fail = |cause: Cause, since: Instant| {
        job.emit(EventKind::Failed {
            error: chain(&*cause),
            duration: since.elapsed(),
        });
        Interrupt::failed(vertex.clone(), cause)
    };
    let log_job = job.clone();
    let ctx = ExecCtx::new(
        cancel.clone(),
        Arc::new(move |stream, data: &[u8]| {
            log_job.emit(EventKind::Log {
                stream,
                data: data.to_vec(),
            })
        }),
    );

    // Key-computing: only the inputs' keys, not their values.
    let input_keys = unless_cancelled(cancel, try_join_all(inputs.iter().map(JobRef::key))).await?;
    let cheap = CacheKey::for_vertex(base, &input_keys);
    let use_cache = !job.ident.ignore_cache;

    // Cache-check on the cheap key.
    let t0 = Instant::now();
    if use_cache && let Some(record) = load(shared, &cheap).await.map_err(|c| fail(c, t0))? {
        job.emit(EventKind::Cached {
            key: cheap,
            content: false,
        });
        return Ok((record.output_key, record.value));
    }

    let mut keys = vec![cheap];
    let mut output_key = cheap;
    let mut values = None;
    if op.has_content_key() {
        // The content key reads the inputs, so they must exist now (cached or executed).
        let vals = unless_cancelled(cancel, input_values(&inputs)).await?;
        let t0 = Instant::now();
        let content = op.content_key(&vals, &ctx).await;
        if cancel.is_cancelled() {
            return Err(Interrupt::Cancelled);
        }
        let content = content.map_err(|e| fail(Arc::new(e), t0))?;
        if let Some(content) = content {
            let key = CacheKey::for_content(base, &content, &input_keys)
                .map_err(|e| fail(Arc::new(StepError::from(e)), t0))?;
            if use_cache && let Some(record) = load(shared, &key).await.map_err(|c| fail(c, t0))? {
                job.emit(EventKind::Cached { key, content: true });
                return Ok((record.output_key, record.value));
            }
            keys.push(key);
            output_key = key;
        }
        values = Some(vals);
    }
    job.phase.send_replace(Phase::Keyed(output_key));

    // Waiting: until someone wants the value, then for the inputs and a slot.
    let mut demand = job.demand.subscribe();
    unless_cancelled(cancel, async {
        // The sender lives in the job we hold, so this only fails if that changes.
        demand
            .wait_for(|d| *d)
            .await
            .map(|_| ())
            .map_err(|_| Interrupt::Cancelled)
    })
    .await?;
    // Dedup by output key: if another job is producing this very result, take its value.
    let _claim = loop {
        match shared.claim(job, output_key) {
            Ok(claim) => break claim,
            Err(other) => {
                let joined = unless_cancelled(cancel, async { Ok(other.value().await) }).await?;
                if let Ok((_, value)) = joined {
                    job.emit(EventKind::Cached {
                        key: output_key,
                        content: output_key != cheap,
                    });
                    return Ok((output_key, value));
                }
                // It failed or was cancelled: claim again, most likely to execute ourselves.
            }
        }
    };
    let values = match values {
        Some(v) => v,
        None => unless_cancelled(cancel, input_values(&inputs)).await?,
    };
    // The values are ours now; let input jobs nobody else wants wind down.
    drop(inputs);
    let permit = unless_cancelled(cancel, async {
        shared
            .slots
            .acquire()
            .await
            .map_err(|_| Interrupt::Cancelled)
    })
    .await?;

    // Running.
    job.ran.store(true, Ordering::SeqCst);
    job.emit(EventKind::Started);
    let t0 = Instant::now();
    let result = op.execute(&values, &ctx).await;
    drop(permit);
    let value = match result {
        Ok(value) => value,
        Err(_) if cancel.is_cancelled() => {
            job.emit(EventKind::Cancelled {
                duration: t0.elapsed(),
            });
            return Err(Interrupt::Cancelled);
        }
        Err(e) => return Err(fail(Arc::new(e), t0)),
    };
    let record = CacheRecord { output_key, value };
    shared.store.save(&keys, &record).await.map_err(|e| {
        fail(
            Arc::new(StepError::CacheSave {
                key: keys[0],
                source: Arc::new(e),
            }),
            t0,
        )
    })?;
    job.emit(EventKind::Completed {
        key: output_key,
        duration: t0.elapsed(),
    });
    Ok((output_key, record.value))
}

async fn load<V: VertexId, O: Operation, S: CacheStore<O::Value>>(
    shared: &Shared<V, O, S>,
    key: &CacheKey,
) -> Result<Option<CacheRecord<O::Value>>, Cause> {
    shared.store.load(key).await.map_err(|e| {
        Arc::new(StepError::CacheLoad {
            key: *key,
            source: Arc::new(e),
        }) as Cause
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Stream;

    #[test]
    fn a_late_watcher_is_replayed_the_last_log_chunks_only() {
        let ident = JobIdent {
            vertex: 7u32,
            base: Arc::from(&b""[..]),
            ignore_cache: false,
            inputs: vec![],
        };
        let job: Job<u32, i64> = Job::new(ident, 0);
        job.emit(EventKind::Started);
        for i in 0..REPLAYED_LOGS + 10 {
            job.emit(EventKind::Log {
                stream: Stream::Stdout,
                data: i.to_string().into_bytes(),
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        job.watch(&Arc::new(Progress::new(Some(tx))));
        let mut kinds = Vec::new();
        while let Ok(e) = rx.try_recv() {
            kinds.push(e.kind);
        }
        assert_eq!(kinds.len(), REPLAYED_LOGS + 1);
        assert_eq!(kinds[0], EventKind::Started);
        assert_eq!(
            kinds[1],
            EventKind::Log {
                stream: Stream::Stdout,
                data: b"10".to_vec()
            }
        );
    }
}
