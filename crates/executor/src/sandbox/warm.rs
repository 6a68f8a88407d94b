//! Keeps the kernel's cgroup migration lock warm while a container is being prepared, so the
//! container's first process does not wait an RCU grace period when it joins its cgroups.
//!
//! Moving a process between cgroups (a write to `cgroup.procs`, in any hierarchy) takes one
//! global lock, `cgroup_threadgroup_rwsem`. Its writer side goes through `rcu_sync`: the first
//! writer after a quiet spell waits a full RCU grace period (10 to 30 ms measured here, more
//! under load) to switch every reader to the slow path; writers that come while the switch
//! holds, or within about one grace period after the last writer left, do not wait. A
//! container joins ten cgroups on a hybrid host at the start of its sandbox child, so that
//! wait sat on the critical path of every `kiln run`. A [`MigrationWarmer`] pays it on a
//! thread of its own: the thread writes its own thread ID into the migration file of the
//! cgroup it is already in, which moves nothing but takes the lock (by number: a thread that
//! moves itself as "0" is let through without it), and does so again every few milliseconds
//! until the warmer is dropped, so the lock stays warm however long the preparation takes.
//! The kernel waits with `cgroup_mutex` held, so other cgroup operations (the container's
//! `mkdir`s) wait for the rest of the first grace period too: the warmer pays off when it
//! starts well before them, as soon as a container is going to run.

use std::fs;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::cgroup;

/// How often the thread takes the lock again: well inside one grace period, the time the
/// kernel keeps the lock warm after the last writer left.
const PERIOD: Duration = Duration::from_millis(4);

/// A warmer forgotten by its owner still stops after this long.
const LIMIT: Duration = Duration::from_secs(5);

/// Keeps cgroup migrations cheap until it is dropped (see the module's documentation).
/// Dropping it never blocks: the thread sees the channel close and ends on its own.
#[derive(Debug)]
pub struct MigrationWarmer {
    _stop: mpsc::Sender<()>,
}

impl MigrationWarmer {
    /// Starts the warming thread. Where no cgroup file system can be written (not root, no
    /// cgroups), the thread finds nothing to write and ends: there is no wait to hide either.
    pub fn start() -> MigrationWarmer {
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("cgroup-warm".into())
            .spawn(move || {
                let Some(file) = own_migration_file() else {
                    return;
                };
                let tid = nix::unistd::gettid().to_string();
                let start = Instant::now();
                while start.elapsed() < LIMIT {
                    if fs::write(&file, &tid).is_err() {
                        return;
                    }
                    // Only the sender's drop ends the wait early: nothing is ever sent.
                    if let Err(mpsc::RecvTimeoutError::Disconnected) = stopped.recv_timeout(PERIOD)
                    {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no cgroup warming thread");
        }
        MigrationWarmer { _stop: stop }
    }
}

/// The file that moves the calling thread within its own cgroup: `tasks` of the first v1
/// hierarchy it is in, or `cgroup.threads` of its v2 cgroup on a pure v2 host.
fn own_migration_file() -> Option<PathBuf> {
    let own = fs::read_to_string("/proc/thread-self/cgroup").ok()?;
    let mounts = cgroup::mounts().ok()?;
    let mut v2_path = None;
    for line in own.lines() {
        // "ID:CONTROLLERS:/PATH"; v2's line has no controllers.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            v2_path = Some(rel.to_owned());
            continue;
        }
        let wanted: Vec<&str> = controllers.split(',').collect();
        if let Some(h) = mounts
            .v1
            .iter()
            .find(|h| wanted.iter().all(|w| h.controllers.iter().any(|c| c == w)))
        {
            return Some(h.point.join(rel).join("tasks"));
        }
    }
    Some(mounts.v2?.join(v2_path?).join("cgroup.threads"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warmer's write must be a no-op move: the file is this thread's own cgroup, and
    /// writing the thread's ID into it leaves the thread where it was.
    #[test]
    fn writing_the_migration_file_moves_nothing() {
        let Some(file) = own_migration_file() else {
            println!("skipped: no cgroup file system");
            return;
        };
        let name = file.file_name().unwrap();
        assert!(name == "tasks" || name == "cgroup.threads", "{file:?}");
        let before = fs::read_to_string("/proc/thread-self/cgroup").unwrap();
        if let Err(e) = fs::write(&file, nix::unistd::gettid().to_string()) {
            println!("skipped: cannot write {}: {e}", file.display());
            return;
        }
        assert_eq!(
            fs::read_to_string("/proc/thread-self/cgroup").unwrap(),
            before
        );
        let dir = file.parent().unwrap().to_string_lossy().into_owned();
        assert!(
            before.lines().any(|l| {
                let path = l.splitn(3, ':').nth(2).unwrap_or("");
                dir.ends_with(path.trim_end_matches('/'))
            }),
            "{dir} is not one of {before}"
        );
    }

    #[test]
    fn a_dropped_warmer_does_not_block_and_its_thread_ends() {
        let started = Instant::now();
        drop(MigrationWarmer::start());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
