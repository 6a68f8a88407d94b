//! The metadata database (`meta.redb`): typed transactions over redb, and the file-lock
//! protocol that lets several kiln processes share it.
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

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::digest::{CacheKey, Digest};
use crate::error::{Error, Result};
use crate::process;
use crate::records::{CacheRecord, ImageRef, Lease, LeaseOptions, SnapshotRecord, Timestamp};

/// How long an idle process keeps the database open.
pub(crate) const IDLE: Duration = Duration::from_millis(25);
/// How long a busy process keeps the database while another process waits for it.
pub(crate) const QUANTUM: Duration = Duration::from_millis(50);

/// How long to retry opening a database that a forked child still holds (see `open_db`).
const OPEN_RETRY: Duration = Duration::from_secs(30);

/// The schema this code writes; a store with a higher one is refused rather than misread.
const SCHEMA_VERSION: u64 = 1;

const INFO: TableDefinition<'static, &str, u64> = TableDefinition::new("store_info");
const RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("cache_records");
const REFS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("image_refs");
const SNAPSHOTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("snapshots");
const LEASES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("leases");

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
            init_schema(&db, &self.db_path)?;
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
        init_schema(&db, &temp)?;
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
    fn spawn_closer(self: &Arc<Self>) -> bool {
        let weak = Arc::downgrade(self);
        thread::Builder::new()
            .name("kiln-meta-closer".into())
            .spawn(move || {
                loop {
                    let Some(meta) = weak.upgrade() else { return };
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
                    let wait = if st.active > 0 {
                        IDLE
                    } else {
                        IDLE.saturating_sub(idle)
                    };
                    let (st, _) = meta
                        .cond
                        .wait_timeout(st, wait.max(Duration::from_millis(1)))
                        .unwrap_or_else(PoisonError::into_inner);
                    drop(st);
                }
            })
            .is_ok()
    }
}

fn init_schema(db: &Database, path: &Path) -> Result<()> {
    let found = {
        let tx = db
            .begin_read()
            .map_err(|e| Error::db("begin read transaction", e))?;
        match tx.open_table(INFO) {
            Ok(t) => t
                .get("schema_version")
                .map_err(|e| Error::db("read schema version", e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(Error::db("open store_info table", e)),
        }
    };
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(Error::UnsupportedSchema {
            path: path.to_owned(),
            found: u32::try_from(v).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION as u32,
        }),
        Some(_) => Ok(()),
        None => {
            let tx = db
                .begin_write()
                .map_err(|e| Error::db("begin write transaction", e))?;
            {
                let mut info = tx
                    .open_table(INFO)
                    .map_err(|e| Error::db("create store_info table", e))?;
                info.insert("schema_version", SCHEMA_VERSION)
                    .map_err(|e| Error::db("write schema version", e))?;
                for def in [REFS, SNAPSHOTS, LEASES] {
                    tx.open_table(def)
                        .map_err(|e| Error::db("create table", e))?;
                }
                tx.open_table(RECORDS)
                    .map_err(|e| Error::db("create cache_records table", e))?;
            }
            tx.commit()
                .map_err(|e| Error::db("commit schema creation", e))
        }
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

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail: no maps with non-string keys.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, name: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptEntry {
        table,
        name: name.to_owned(),
        source,
    })
}

fn decode_record(key: CacheKey, bytes: &[u8]) -> Result<CacheRecord> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptRecord { key, source })
}

fn key_from_bytes(bytes: &[u8]) -> Option<CacheKey> {
    <[u8; 32]>::try_from(bytes).ok().map(CacheKey)
}

/// A raw entry as stored, for `check`, which must see undecodable entries too.
pub(crate) struct RawEntry {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

fn raw_str_entries(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(|e| Error::db("iterate table", e))? {
        let (k, v) = item.map_err(|e| Error::db("iterate table", e))?;
        out.push(RawEntry {
            name: k.value().as_bytes().to_vec(),
            value: v.value().to_vec(),
        });
    }
    Ok(out)
}

fn raw_bytes_entries(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    for item in t.iter().map_err(|e| Error::db("iterate table", e))? {
        let (k, v) = item.map_err(|e| Error::db("iterate table", e))?;
        out.push(RawEntry {
            name: k.value().to_vec(),
            value: v.value().to_vec(),
        });
    }
    Ok(out)
}

fn decode_all<T: DeserializeOwned>(
    table: &'static str,
    raw: Vec<RawEntry>,
) -> Result<Vec<(String, T)>> {
    raw.into_iter()
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let v = decode(table, &name, &e.value)?;
            Ok((name, v))
        })
        .collect()
}

fn decode_records(raw: Vec<RawEntry>) -> Result<Vec<(CacheKey, CacheRecord)>> {
    raw.into_iter()
        .filter_map(|e| key_from_bytes(&e.name).map(|k| (k, e.value)))
        .map(|(k, v)| Ok((k, decode_record(k, &v)?)))
        .collect()
}

/// The read operations, identical on both transaction kinds; a macro because redb's read-only
/// and writable tables are different types behind a trait that is not object safe.
macro_rules! read_methods {
    () => {
        /// The record filed under `key`.
        pub fn record(&self, key: &CacheKey) -> Result<Option<CacheRecord>> {
            let t = self.table_bytes(RECORDS)?;
            let v = t
                .get(key.0.as_slice())
                .map_err(|e| Error::db("read cache record", e))?;
            v.map(|v| decode_record(*key, v.value())).transpose()
        }

        /// Every cache record; fails on an undecodable one (`check` finds and drops those).
        pub fn records(&self) -> Result<Vec<(CacheKey, CacheRecord)>> {
            decode_records(raw_bytes_entries(&self.table_bytes(RECORDS)?)?)
        }

        /// What image name `name` points at.
        pub fn image_ref(&self, name: &str) -> Result<Option<ImageRef>> {
            self.get_str(REFS, "image_refs", name)
        }

        /// Every image name and its target, sorted by name.
        pub fn image_refs(&self) -> Result<Vec<(String, ImageRef)>> {
            decode_all("image_refs", raw_str_entries(&self.table_str(REFS)?)?)
        }

        /// The record of snapshot `id`.
        pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
            self.get_str(SNAPSHOTS, "snapshots", id)
        }

        /// Every snapshot record, sorted by id.
        pub fn snapshots(&self) -> Result<Vec<(String, SnapshotRecord)>> {
            decode_all("snapshots", raw_str_entries(&self.table_str(SNAPSHOTS)?)?)
        }

        /// The lease `id`, expired or not.
        pub fn lease(&self, id: &str) -> Result<Option<Lease>> {
            self.get_str(LEASES, "leases", id)
        }

        /// Every lease, expired or not, sorted by id.
        pub fn leases(&self) -> Result<Vec<Lease>> {
            Ok(
                decode_all::<Lease>("leases", raw_str_entries(&self.table_str(LEASES)?)?)?
                    .into_iter()
                    .map(|(_, l)| l)
                    .collect(),
            )
        }

        pub(crate) fn raw(&self, table: RawTable) -> Result<Vec<RawEntry>> {
            match table {
                RawTable::Records => raw_bytes_entries(&self.table_bytes(RECORDS)?),
                RawTable::Refs => raw_str_entries(&self.table_str(REFS)?),
                RawTable::Snapshots => raw_str_entries(&self.table_str(SNAPSHOTS)?),
                RawTable::Leases => raw_str_entries(&self.table_str(LEASES)?),
            }
        }

        fn get_str<T: DeserializeOwned>(
            &self,
            def: TableDefinition<'static, &'static str, &'static [u8]>,
            table: &'static str,
            name: &str,
        ) -> Result<Option<T>> {
            let t = self.table_str(def)?;
            let v = t.get(name).map_err(|e| Error::db("read entry", e))?;
            v.map(|v| decode(table, name, v.value())).transpose()
        }
    };
}

/// The tables `check` reads raw.
#[derive(Clone, Copy)]
pub(crate) enum RawTable {
    Records,
    Refs,
    Snapshots,
    Leases,
}

/// A read transaction: a consistent view of the metadata.
pub struct ReadTxn {
    tx: redb::ReadTransaction,
}

impl ReadTxn {
    read_methods!();

    fn table_bytes(
        &self,
        def: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn table_str(
        &self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<redb::ReadOnlyTable<&'static str, &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }
}

/// A write transaction: all its changes are kept together or not at all.
pub struct WriteTxn {
    tx: redb::WriteTransaction,
}

impl WriteTxn {
    read_methods!();

    fn table_bytes(
        &self,
        def: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<redb::Table<'_, &'static [u8], &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn table_str(
        &self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<redb::Table<'_, &'static str, &'static [u8]>> {
        self.tx
            .open_table(def)
            .map_err(|e| Error::db("open table", e))
    }

    fn put_str<T: Serialize>(
        &mut self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &str,
        value: &T,
    ) -> Result<()> {
        let mut t = self.table_str(def)?;
        t.insert(name, encode(value).as_slice())
            .map_err(|e| Error::db("write entry", e))?;
        Ok(())
    }

    fn remove_str(
        &mut self,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        name: &str,
    ) -> Result<bool> {
        let mut t = self.table_str(def)?;
        let old = t.remove(name).map_err(|e| Error::db("remove entry", e))?;
        Ok(old.is_some())
    }

    /// Files `record` under `key`, replacing any record there.
    pub fn put_record(&mut self, key: &CacheKey, record: &CacheRecord) -> Result<()> {
        let mut t = self.table_bytes(RECORDS)?;
        t.insert(key.0.as_slice(), encode(record).as_slice())
            .map_err(|e| Error::db("write cache record", e))?;
        Ok(())
    }

    /// Removes the record under `key`; returns whether there was one.
    pub fn delete_record(&mut self, key: &CacheKey) -> Result<bool> {
        let mut t = self.table_bytes(RECORDS)?;
        let old = t
            .remove(key.0.as_slice())
            .map_err(|e| Error::db("remove cache record", e))?;
        Ok(old.is_some())
    }

    /// Deletes the raw entry `name` from `table` if its value is still `value`; returns
    /// whether it did.
    pub(crate) fn delete_raw_if(
        &mut self,
        table: RawTable,
        name: &[u8],
        value: &[u8],
    ) -> Result<bool> {
        let current = self
            .raw(table)?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.value);
        if current.as_deref() != Some(value) {
            return Ok(false);
        }
        self.delete_raw(table, name)?;
        Ok(true)
    }

    fn delete_raw(&mut self, table: RawTable, name: &[u8]) -> Result<()> {
        match table {
            RawTable::Records => {
                let mut t = self.table_bytes(RECORDS)?;
                t.remove(name)
                    .map_err(|e| Error::db("remove cache record", e))?;
            }
            RawTable::Refs | RawTable::Snapshots | RawTable::Leases => {
                let def = match table {
                    RawTable::Refs => REFS,
                    RawTable::Snapshots => SNAPSHOTS,
                    _ => LEASES,
                };
                let name = String::from_utf8_lossy(name);
                self.remove_str(def, &name)?;
            }
        }
        Ok(())
    }

    /// Sets `last_used` of the records under `keys` (and of their snapshots) to `when`;
    /// missing or undecodable records are skipped. Returns how many were updated.
    pub fn touch_records(&mut self, keys: &[CacheKey], when: Timestamp) -> Result<usize> {
        let mut n = 0;
        for key in keys {
            let Ok(Some(mut rec)) = self.record(key) else {
                continue;
            };
            rec.last_used = rec.last_used.max(when);
            if let Some(snap) = &rec.snapshot
                && let Ok(Some(mut s)) = self.snapshot(snap)
            {
                s.last_used = s.last_used.max(when);
                self.put_snapshot(snap, &s)?;
            }
            self.put_record(key, &rec)?;
            n += 1;
        }
        Ok(n)
    }

    /// Points image name `name` at `target`; returns what it pointed at before.
    pub fn set_image_ref(&mut self, name: &str, target: &ImageRef) -> Result<Option<ImageRef>> {
        validate_ref_name(name)?;
        let old = self.image_ref(name).ok().flatten();
        self.put_str(REFS, name, target)?;
        Ok(old)
    }

    /// Removes image name `name`; returns what it pointed at.
    pub fn delete_image_ref(&mut self, name: &str) -> Result<Option<ImageRef>> {
        let old = self.image_ref(name).ok().flatten();
        self.remove_str(REFS, name)?;
        Ok(old)
    }

    /// Records (or replaces) what the store knows of snapshot `id`.
    pub fn put_snapshot(&mut self, id: &str, record: &SnapshotRecord) -> Result<()> {
        self.put_str(SNAPSHOTS, id, record)
    }

    /// Forgets snapshot `id`; returns whether it was known.
    pub fn delete_snapshot(&mut self, id: &str) -> Result<bool> {
        self.remove_str(SNAPSHOTS, id)
    }

    /// Creates a lease.
    pub fn create_lease(&mut self, opts: &LeaseOptions) -> Result<Lease> {
        let created = Timestamp::now();
        let id = match &opts.id {
            Some(id) => {
                if self.lease(id)?.is_some() {
                    return Err(Error::LeaseExists(id.clone()));
                }
                id.clone()
            }
            None => unique_lease_id(created),
        };
        let lease = Lease {
            id: id.clone(),
            created,
            expires: opts.ttl.map(|ttl| created.saturating_add(ttl)),
            owner: if opts.bind_to_process {
                process::current()
            } else {
                None
            },
            blobs: Default::default(),
            snapshots: Default::default(),
        };
        self.put_str(LEASES, &id, &lease)?;
        Ok(lease)
    }

    fn update_lease(&mut self, id: &str, f: impl FnOnce(&mut Lease)) -> Result<()> {
        let mut lease = self
            .lease(id)?
            .ok_or_else(|| Error::LeaseNotFound(id.to_owned()))?;
        f(&mut lease);
        self.put_str(LEASES, id, &lease)
    }

    /// Adds `digest` to the blobs lease `id` protects.
    pub fn lease_blob(&mut self, id: &str, digest: Digest) -> Result<()> {
        self.update_lease(id, |l| {
            l.blobs.insert(digest);
        })
    }

    /// Adds snapshot `snapshot` to what lease `id` protects.
    pub fn lease_snapshot(&mut self, id: &str, snapshot: &str) -> Result<()> {
        self.update_lease(id, |l| {
            l.snapshots.insert(snapshot.to_owned());
        })
    }

    /// Writes `lease` as given, replacing the lease with its id (for tools that restore or
    /// adjust leases; builds use [`WriteTxn::create_lease`]).
    pub fn put_lease(&mut self, lease: &Lease) -> Result<()> {
        self.put_str(LEASES, &lease.id, lease)
    }

    /// Deletes lease `id`; returns whether it existed.
    pub fn delete_lease(&mut self, id: &str) -> Result<bool> {
        self.remove_str(LEASES, id)
    }
}

fn validate_ref_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Error::InvalidRefName(name.to_owned()));
    }
    Ok(())
}

fn unique_lease_id(now: Timestamp) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("build-{}-{}-{}", std::process::id(), now.0, n)
}

/// Whether `lease` no longer protects anything at time `now`.
pub(crate) fn lease_expired(lease: &Lease, now: Timestamp) -> bool {
    if lease.expires.is_some_and(|e| e <= now) {
        return true;
    }
    lease.owner.as_ref().is_some_and(|o| !process::is_alive(o))
}
