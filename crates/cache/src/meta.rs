//! The metadata database (`meta.redb`): the handle that runs transactions, and the file-lock
//! protocol that lets several kiln processes share it. The tables and the typed transactions
//! over them are in `meta/tables.rs`.
//!
//! redb lets one process at a time open a database file. Opening and closing it costs several
//! fsyncs (redb marks the header "recovery required" while open), about 6-12 ms on our VMs, so
//! opening it per operation would make every cache lookup that slow. Instead a process keeps
//! the database open while it is busy and hands it over when someone else needs it:
//!
//! - `locks/meta.lock`: an exclusive `flock` held for as long as a process has the database open.
//! - `locks/meta.want`: a process that is about to wait for `meta.lock` holds a shared `flock` on
//!   it. The holder probes it with a non-blocking exclusive lock; failure means someone waits.
//! - The holder closes the database when it is idle for [`IDLE`], or, when someone waits, as
//!   soon as its in-flight transactions end once it has had the database for [`QUANTUM`].
//!
//! `flock` locks die with their process, so a killed holder never blocks the others; redb then
//! repairs the file on the next open.

mod tables;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, Durability};

use crate::error::{Error, Result};
pub(crate) use tables::{RawEntry, RawTable, lease_expired};
pub use tables::{ReadTxn, WriteTxn};

/// How long an idle process keeps the database open.
pub(crate) const IDLE: Duration = Duration::from_millis(25);
/// How long a busy process keeps the database while another process waits for it.
pub(crate) const QUANTUM: Duration = Duration::from_millis(50);

/// How long to retry opening a database that a forked child still holds (see `open_db`).
const OPEN_RETRY: Duration = Duration::from_secs(30);

/// The shared handle on `meta.redb`.
pub(crate) struct MetaDb {
    db_path: PathBuf,
    lock_path: PathBuf,
    want_path: PathBuf,
    state: Mutex<State>,
    cond: Condvar,
    /// Serializes, within this process, GC's blob deletion with `commit_leased`; across
    /// processes the database lock does that.
    pub(crate) gc_lock: Mutex<()>,
}

struct State {
    // Field order matters: the database must close before the lock that guards it is released.
    db: Option<Arc<Database>>,
    lock: Option<File>,
    /// A handle on `meta.want` kept open for cheap probing.
    want_probe: Option<File>,
    /// Transactions in flight in this process.
    active: usize,
    /// Set when another process waits: no new transaction starts until the database is handed over.
    draining: bool,
    held_since: Instant,
    last_release: Instant,
    closer_running: bool,
    schema_checked: bool,
}

impl MetaDb {
    pub(crate) fn new(db_path: PathBuf, locks_dir: &Path) -> MetaDb {
        let now = Instant::now();
        MetaDb {
            db_path,
            lock_path: locks_dir.join("meta.lock"),
            want_path: locks_dir.join("meta.want"),
            state: Mutex::new(State {
                db: None,
                lock: None,
                want_probe: None,
                active: 0,
                draining: false,
                held_since: now,
                last_release: now,
                closer_running: false,
                schema_checked: false,
            }),
            cond: Condvar::new(),
            gc_lock: Mutex::new(()),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the mutex leaves the state consistent (all updates are single
        // assignments), so poisoning is not a reason to fail every later operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a read transaction.
    pub(crate) fn read<R>(self: &Arc<Self>, f: impl FnOnce(&ReadTxn) -> Result<R>) -> Result<R> {
        let guard = self.acquire()?;
        let tx = guard
            .db()
            .begin_read()
            .map_err(|e| Error::db("begin read transaction", e))?;
        // The transaction must end before the guard, which may close the database.
        let txn = ReadTxn { tx };
        let out = f(&txn);
        drop(txn);
        drop(guard);
        out
    }

    /// Runs `f` in a write transaction and commits it durably if `f` succeeds; if `f` fails,
    /// nothing it wrote is kept.
    pub(crate) fn write<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut WriteTxn) -> Result<R>,
    ) -> Result<R> {
        self.write_with(Durability::Immediate, f)
    }

    /// Like [`MetaDb::write`], then runs `after` on the result while the database is still
    /// held (so no other process can start a transaction) and while this process's
    /// [`MetaDb::gc_lock`] is held (so no `commit_leased` here interleaves). `after` runs only
    /// if the commit succeeded.
    pub(crate) fn write_then<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut WriteTxn) -> Result<R>,
        after: impl FnOnce(&mut R) -> Result<()>,
    ) -> Result<R> {
        let _gc = self.gc_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = self.acquire()?;
        let tx = guard
            .db()
            .begin_write()
            .map_err(|e| Error::db("begin write transaction", e))?;
        let mut w = WriteTxn { tx };
        let mut out = match f(&mut w) {
            Ok(out) => out,
            Err(e) => {
                drop(w);
                drop(guard);
                return Err(e);
            }
        };
        w.tx.commit()
            .map_err(|e| Error::db("commit write transaction", e))?;
        let res = after(&mut out);
        drop(guard);
        res.map(|()| out)
    }

    /// Like [`MetaDb::write`] with a chosen durability; `Durability::None` is for bookkeeping
    /// such as last-used times, which may be lost in a crash without harm.
    pub(crate) fn write_with<R>(
        self: &Arc<Self>,
        durability: Durability,
        f: impl FnOnce(&mut WriteTxn) -> Result<R>,
    ) -> Result<R> {
        let guard = self.acquire()?;
        let mut tx = guard
            .db()
            .begin_write()
            .map_err(|e| Error::db("begin write transaction", e))?;
        tx.set_durability(durability);
        let mut w = WriteTxn { tx };
        let out = match f(&mut w) {
            Ok(out) => out,
            Err(e) => {
                // Dropping an uncommitted transaction aborts it; do so before the guard goes.
                drop(w);
                drop(guard);
                return Err(e);
            }
        };
        let committed = w.tx.commit();
        drop(guard);
        committed.map_err(|e| Error::db("commit write transaction", e))?;
        Ok(out)
    }

    fn acquire(self: &Arc<Self>) -> Result<DbGuard> {
        // A transaction started inside another one on the same thread must not wait for the
        // hand-over: the outer one could never finish.
        let nested = DEPTH.with(|d| d.get()) > 0;
        let mut st = self.lock_state();
        loop {
            if st.db.is_some() {
                if nested {
                    break;
                }
                if !st.draining
                    && st.held_since.elapsed() >= QUANTUM
                    && self.waiters_present(&mut st)
                {
                    st.draining = true;
                }
                if !st.draining {
                    break;
                }
                if st.active == 0 {
                    self.close(&mut st);
                    continue;
                }
                st = self.cond.wait(st).unwrap_or_else(PoisonError::into_inner);
            } else {
                self.open(&mut st)?;
            }
        }
        st.active += 1;
        DEPTH.with(|d| d.set(d.get() + 1));
        let db = st.db.clone();
        Ok(DbGuard {
            meta: Arc::clone(self),
            db,
        })
    }

    fn release(self: &Arc<Self>, db: Arc<Database>) {
        let mut st = self.lock_state();
        drop(db);
        st.active -= 1;
        st.last_release = Instant::now();
        // Hand over only after a quantum, so that two busy processes do not pay an open and
        // a close (several fsyncs) for every transaction.
        if st.active == 0
            && (st.draining
                || !st.closer_running
                || (st.held_since.elapsed() >= QUANTUM && self.waiters_present(&mut st)))
        {
            self.close(&mut st);
        }
    }

    fn open(self: &Arc<Self>, st: &mut State) -> Result<()> {
        let open_rw = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| Error::io("open lock file", path, e))
        };
        // Announce the wait before blocking, so the holder knows to hand over.
        let want = open_rw(&self.want_path)?;
        want.lock_shared()
            .map_err(|e| Error::io("lock", &self.want_path, e))?;
        let lock = open_rw(&self.lock_path)?;
        let waited = Instant::now();
        lock.lock()
            .map_err(|e| Error::io("lock", &self.lock_path, e))?;
        tracing::trace!(
            db = %self.db_path.display(),
            waited_us = waited.elapsed().as_micros() as u64,
            "metadata database lock taken"
        );
        drop(want);

        let db = self.open_db()?;
        if !st.schema_checked {
            tables::init_schema(&db, &self.db_path)?;
            st.schema_checked = true;
        }
        if st.want_probe.is_none() {
            st.want_probe = Some(open_rw(&self.want_path)?);
        }
        st.db = Some(Arc::new(db));
        st.lock = Some(lock);
        st.held_since = Instant::now();
        st.last_release = st.held_since;
        if !st.closer_running {
            st.closer_running = self.spawn_closer();
        }
        Ok(())
    }

    /// Opens redb, with `meta.lock` held.
    ///
    /// redb `flock`s the file itself, and a child forked by any process that had the database
    /// open (a sandbox being set up, a `Command` between fork and exec) holds a copy of that
    /// lock until it execs or exits, possibly after the parent released `meta.lock`. Such a
    /// holder is transient, so "already open" is retried with backoff for a while.
    fn open_db(&self) -> Result<Database> {
        if !self.db_path.exists() {
            self.create_db()?;
        }
        let deadline = Instant::now() + OPEN_RETRY;
        let mut pause = Duration::from_millis(1);
        loop {
            // `create` repairs the file if the previous holder was killed with it open.
            match Database::builder().create(&self.db_path) {
                Ok(db) => return Ok(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    tracing::debug!(
                        db = %self.db_path.display(),
                        "metadata database still held by a forked child; retrying"
                    );
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(Error::OpenDatabase {
                        path: self.db_path.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    /// Creates an empty database with its tables next to its final path and renames it into
    /// place, with `meta.lock` held: redb's own initialization is not atomic, and a process
    /// killed during it would leave a file no later open accepts.
    fn create_db(&self) -> Result<()> {
        let temp = self.db_path.with_extension("redb.init");
        let _ = std::fs::remove_file(&temp);
        let db = Database::builder()
            .create(&temp)
            .map_err(|source| Error::OpenDatabase {
                path: temp.clone(),
                source: Box::new(source),
            })?;
        tables::init_schema(&db, &temp)?;
        drop(db);
        File::open(&temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync", &temp, e))?;
        std::fs::rename(&temp, &self.db_path)
            .map_err(|e| Error::io("rename new database to", &self.db_path, e))?;
        if let Some(dir) = self.db_path.parent() {
            crate::content::sync_dir(dir)?;
        }
        Ok(())
    }

    fn close(&self, st: &mut State) {
        st.db = None;
        st.lock = None;
        st.draining = false;
        self.cond.notify_all();
    }

    /// Whether another process (or another store handle in this one) waits for the database.
    fn waiters_present(&self, st: &mut State) -> bool {
        let Some(probe) = &st.want_probe else {
            return false;
        };
        match probe.try_lock() {
            Ok(()) => {
                let _ = probe.unlock();
                false
            }
            Err(std::fs::TryLockError::WouldBlock) => true,
            // Cannot tell: hand over, which is always safe, only slower.
            Err(std::fs::TryLockError::Error(_)) => true,
        }
    }

    /// Starts the thread that closes the database after [`IDLE`]; returns whether it runs.
    ///
    /// The thread holds the handle only while it looks at the state, never while it sleeps:
    /// a strong reference kept across the wait would outlive the last store handle, so a
    /// process that ends soon after its last transaction would exit with the database open,
    /// and the next process to open it would pay for redb's repair (several fsyncs).
    fn spawn_closer(self: &Arc<Self>) -> bool {
        let weak = Arc::downgrade(self);
        thread::Builder::new()
            .name("kiln-meta-closer".into())
            .spawn(move || {
                loop {
                    let Some(meta) = weak.upgrade() else { return };
                    let wait = {
                        let mut st = meta.lock_state();
                        if st.db.is_none() {
                            st.closer_running = false;
                            return;
                        }
                        let idle = st.last_release.elapsed();
                        let hand_over =
                            st.held_since.elapsed() >= QUANTUM && meta.waiters_present(&mut st);
                        if st.active == 0 && (idle >= IDLE || hand_over) {
                            meta.close(&mut st);
                            st.closer_running = false;
                            return;
                        }
                        if st.active > 0 {
                            IDLE
                        } else {
                            IDLE.saturating_sub(idle)
                        }
                    };
                    drop(meta);
                    thread::sleep(wait.max(Duration::from_millis(1)));
                }
            })
            .is_ok()
    }
}

thread_local! {
    /// Transactions this thread has in flight, across all store handles.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Keeps the database open (and its lock held) while a transaction runs.
struct DbGuard {
    meta: Arc<MetaDb>,
    db: Option<Arc<Database>>,
}

impl DbGuard {
    fn db(&self) -> &Database {
        // Set in `acquire` and only taken in `drop`.
        self.db.as_deref().expect("database guard holds a database")
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
            self.meta.release(db);
        }
    }
}
