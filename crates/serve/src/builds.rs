//! The builds a worker knows: each with its numbered event log (bounded, so `Attach` replays
//! what is kept and follows the rest), its cancellation, and who is watching. A build nobody
//! watches any more (its client was killed or lost its network) is cancelled after a grace
//! period unless someone attaches.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_engine::CancellationToken;
use kiln_proto::v1::{BuildDown, build_down};
use tokio::sync::Notify;
use tonic::Status;

/// Messages a build's log keeps for `Attach`; older ones are dropped (a follower that falls
/// that far behind skips ahead).
const MAX_EVENTS: usize = 20_000;

/// How long a finished build stays attachable.
const KEEP_FINISHED: Duration = Duration::from_secs(600);

#[derive(Default)]
struct LogState {
    events: VecDeque<BuildDown>,
    next_seq: u64,
    done: bool,
}

/// One build.
pub(crate) struct Build {
    pub(crate) id: String,
    pub(crate) cancel: CancellationToken,
    log: Mutex<LogState>,
    notify: Notify,
    watchers: AtomicUsize,
    grace: Duration,
}

impl Build {
    /// Appends a message and wakes the followers; returns its sequence number.
    pub(crate) fn push(&self, msg: build_down::Msg) -> u64 {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.next_seq += 1;
        let seq = log.next_seq;
        log.events.push_back(BuildDown {
            seq,
            msg: Some(msg),
        });
        while log.events.len() > MAX_EVENTS {
            log.events.pop_front();
        }
        drop(log);
        self.notify.notify_waiters();
        seq
    }

    /// No more messages will come.
    pub(crate) fn finish(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        self.notify.notify_waiters();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).done
    }

    /// The messages after `after`, then the ones to come, until the build ends. `requests`
    /// says whether the stream owner's requests (need_*, ssh_*) are included.
    pub(crate) fn follow(
        self: &Arc<Self>,
        after: u64,
        requests: bool,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<BuildDown, Status>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let build = self.clone();
        build.watchers.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut next = after + 1;
            loop {
                let notified = build.notify.notified();
                let (batch, done) = {
                    let log = build.log.lock().unwrap_or_else(|p| p.into_inner());
                    let batch: Vec<BuildDown> = log
                        .events
                        .iter()
                        .filter(|m| m.seq >= next)
                        .filter(|m| requests || !is_request(m))
                        .cloned()
                        .collect();
                    next = log.next_seq + 1;
                    (batch, log.done)
                };
                for message in batch {
                    if tx.send(Ok(message)).await.is_err() {
                        build.unwatch();
                        return;
                    }
                }
                if done {
                    break;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tx.closed() => {
                        build.unwatch();
                        return;
                    }
                }
            }
            build.unwatch();
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// A follower went away: with nobody left and the build still running, start the grace
    /// period.
    fn unwatch(self: &Arc<Self>) {
        if self.watchers.fetch_sub(1, Ordering::SeqCst) != 1 || self.is_done() {
            return;
        }
        let build = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(build.grace).await;
            if build.watchers.load(Ordering::SeqCst) == 0 && !build.is_done() {
                tracing::info!(
                    "build {}: no client for {:?}, cancelling it",
                    build.id,
                    build.grace
                );
                build.cancel.cancel();
            }
        });
    }
}

fn is_request(m: &BuildDown) -> bool {
    use build_down::Msg;
    matches!(
        m.msg,
        Some(Msg::NeedBlobs(_) | Msg::NeedSecret(_) | Msg::NeedCredential(_) | Msg::SshOpen(_))
            | Some(Msg::SshData(_))
    )
}

/// Every build the worker knows, by id.
#[derive(Default)]
pub(crate) struct Builds {
    map: Mutex<HashMap<String, Arc<Build>>>,
}

impl Builds {
    pub(crate) fn create(&self, grace: Duration) -> Arc<Build> {
        let id = new_id();
        let build = Arc::new(Build {
            id: id.clone(),
            cancel: CancellationToken::new(),
            log: Mutex::new(LogState::default()),
            notify: Notify::new(),
            watchers: AtomicUsize::new(0),
            grace,
        });
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, build.clone());
        build
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Build>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets a finished build after a while (it stays attachable until then).
    pub(crate) fn retire(self: &Arc<Self>, id: String) {
        let builds = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_FINISHED).await;
            builds
                .map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Builds still running.
    pub(crate) fn running(&self) -> Vec<Arc<Build>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| !b.is_done())
            .cloned()
            .collect()
    }
}

/// A build id: 16 hex digits from the clock, the pid and a counter, hashed.
fn new_id() -> String {
    use sha2::Digest as _;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut h = sha2::Sha256::new();
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&h.finalize()[..8])
}
