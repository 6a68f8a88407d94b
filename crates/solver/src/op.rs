//! The operation trait the caller implements, and the context an operation runs in.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::key::ContentKey;

/// One kind of vertex work: the solver derives keys from it and runs it when the cache misses.
///
/// The solver calls these in this order for a vertex, stopping at the first that settles it:
/// [`cache_key_base`](Self::cache_key_base) (cheap key, looked up unless
/// [`ignore_cache`](Self::ignore_cache)); if [`has_content_key`](Self::has_content_key),
/// [`content_key`](Self::content_key) with the input values (content key, looked up);
/// [`execute`](Self::execute) when its value is needed.
pub trait Operation: Send + Sync + 'static {
    /// The result of a vertex, e.g. a snapshot reference. Cloned for every consumer: keep it cheap.
    type Value: Clone + Send + Sync + 'static;
    /// Why the operation failed. Reaches the caller inside [`SolveError`](crate::SolveError)
    /// as the error source, so it can be downcast there.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Canonical bytes of everything that determines the result apart from the inputs (the op's
    /// digest, plus anything not in it that changes the result). No I/O. Never `Debug` output or
    /// `std::hash`: the bytes must be the same across processes and versions.
    fn cache_key_base(&self) -> Vec<u8>;

    /// Whether [`content_key`](Self::content_key) may return key material. When false the solver
    /// never forces the input values just to compute keys, which keeps cached builds lazy.
    fn has_content_key(&self) -> bool {
        false
    }

    /// Content-based key material, computed only when the cheap key missed (for example the hash
    /// of the context files a COPY selects). Receives the input values in input order.
    fn content_key(
        &self,
        inputs: &[Self::Value],
        ctx: &ExecCtx,
    ) -> impl Future<Output = Result<Option<ContentKey>, Self::Error>> + Send {
        let _ = (inputs, ctx);
        async { Ok(None) }
    }

    /// Produces the value from the input values (in input order). Must honour
    /// [`ExecCtx::cancelled`]: when it fires, stop, clean up and return (any error will do).
    /// The solver waits for this future to finish; it never drops it half way.
    fn execute(
        &self,
        inputs: &[Self::Value],
        ctx: &ExecCtx,
    ) -> impl Future<Output = Result<Self::Value, Self::Error>> + Send;

    /// Skip cache lookups for this vertex (it still saves its result, and vertices that depend on
    /// it still look theirs up). The caller sets it on each vertex it wants rerun.
    fn ignore_cache(&self) -> bool {
        false
    }
}

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

type LogSink = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// What an operation gets while it computes a content key or executes: cancellation and logging.
#[derive(Clone)]
pub struct ExecCtx {
    cancel: CancellationToken,
    log: LogSink,
}

impl fmt::Debug for ExecCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecCtx")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ExecCtx {
    pub(crate) fn new(cancel: CancellationToken, log: LogSink) -> Self {
        Self { cancel, log }
    }

    /// A context that nobody cancels and whose logs go nowhere, for running an op outside a solve
    /// (tests, tools).
    pub fn detached() -> Self {
        Self::new(CancellationToken::new(), Arc::new(|_, _| {}))
    }

    /// The token that fires when this vertex's work is no longer wanted (first failure of the
    /// build, external cancel, or every requester gone).
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the work has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the work is cancelled; `select!` on it around long waits.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Reports output of the vertex; it reaches every solve watching the vertex as an
    /// [`EventKind::Log`](crate::EventKind::Log) with a timestamp. Chunks need not be whole lines.
    pub fn log(&self, stream: Stream, data: &[u8]) {
        (self.log)(stream, data)
    }
}
