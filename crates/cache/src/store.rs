//! The store at a root directory: opening it, and the operations that span content and
//! metadata (leases, prune, df, check).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::Durability;

use crate::check::{self, CheckReport};
use crate::content::ContentStore;
use crate::digest::{CacheKey, Digest};
use crate::error::{Error, Result};
use crate::gc::{
    self, DiskUsage, PruneOptions, PruneReport, SnapshotRemover, World, WriteTxnOrRead,
};
use crate::meta::{MetaDb, ReadTxn, WriteTxn, lease_expired};
use crate::records::{CacheRecord, ImageRef, Lease, LeaseOptions, SnapshotRecord, Timestamp};

/// The store's root when the user gives none: `$KILN_ROOT`, else `/var/lib/kiln` for root,
/// else `$XDG_DATA_HOME/kiln` (`~/.local/share/kiln` when that is unset).
/// The CLI's `--root` takes precedence over all of these.
pub fn default_root() -> PathBuf {
    default_root_from(
        std::env::var_os("KILN_ROOT").map(PathBuf::from),
        rustix::process::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`default_root`] with its inputs given, for testing the rule.
pub fn default_root_from(
    kiln_root: Option<PathBuf>,
    is_root: bool,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    // Empty variables count as unset, as the XDG spec says for XDG_DATA_HOME; relative
    // XDG_DATA_HOME values are invalid per the spec and ignored too.
    let non_empty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    if let Some(root) = non_empty(kiln_root) {
        return root;
    }
    if is_root {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(xdg) = non_empty(xdg_data_home).filter(|p| p.is_absolute()) {
        return xdg.join("kiln");
    }
    match non_empty(home) {
        Some(home) => home.join(".local/share/kiln"),
        // No home at all (some CI sandboxes): fall back to a per-user directory under /tmp.
        None => std::env::temp_dir().join(format!("kiln-{}", rustix::process::geteuid().as_raw())),
    }
}

/// The local store at one root directory. Cheap to clone; clones share the database handle.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    content: ContentStore,
    meta: Arc<MetaDb>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// Opening never fails because of a previous process's crash: redb repairs the database
    /// and temp files left behind are ignored (`check` with repair removes them).
    pub fn open(root: &Path) -> Result<Store> {
        let content_dir = root.join("content");
        let locks = root.join("locks");
        for dir in [
            content_dir.join("blobs").join("sha256"),
            content_dir.join("ingest"),
            locks.clone(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        }
        let meta = Arc::new(MetaDb::new(root.join("meta.redb"), &locks));
        let content = ContentStore::new(&content_dir, Arc::clone(&meta));
        let store = Store {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                content,
                meta,
            }),
        };
        // Open the database now so that a damaged or too-new store is reported here.
        store.read(|_| Ok(()))?;
        Ok(store)
    }

    /// Where the executor's snapshotter keeps snapshots (`<root>/snapshots`); the store does
    /// not look inside.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.inner.root.join("snapshots")
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    /// Runs `f` in a read transaction (a consistent snapshot of all metadata).
    ///
    /// Do not call other `Store` methods inside `f`: transactions are kept short because
    /// other processes wait for the database while one is open.
    pub fn read<R>(&self, f: impl FnOnce(&ReadTxn) -> Result<R>) -> Result<R> {
        self.inner.meta.read(f)
    }

    /// Runs `f` in a write transaction, committed durably if `f` returns `Ok`, discarded
    /// otherwise. Write transactions are serialized across all processes sharing the root.
    ///
    /// Do not call other `Store` methods inside `f` (a nested write would wait forever).
    pub fn write<R>(&self, f: impl FnOnce(&mut WriteTxn) -> Result<R>) -> Result<R> {
        self.inner.meta.write(f)
    }

    // ---- cache records ----

    /// The record filed under `key`, if any. Does not update `last_used`: call
    /// [`Store::touch_records`] with the keys a build used, once, at the end.
    pub fn get_record(&self, key: &CacheKey) -> Result<Option<CacheRecord>> {
        self.read(|tx| tx.record(key))
    }

    /// Files `record` under `key`.
    pub fn put_record(&self, key: &CacheKey, record: &CacheRecord) -> Result<()> {
        self.write(|tx| tx.put_record(key, record))
    }

    /// Removes the record under `key`; returns whether there was one.
    pub fn delete_record(&self, key: &CacheKey) -> Result<bool> {
        self.write(|tx| tx.delete_record(key))
    }

    /// Every cache record.
    pub fn records(&self) -> Result<Vec<(CacheKey, CacheRecord)>> {
        self.read(|tx| tx.records())
    }

    /// Marks the records under `keys` (and their snapshots) used now; returns how many
    /// existed. Committed without fsync: a crash may lose it, which only ages the records.
    pub fn touch_records(&self, keys: &[CacheKey]) -> Result<usize> {
        let now = Timestamp::now();
        self.inner
            .meta
            .write_with(Durability::None, |tx| tx.touch_records(keys, now))
    }

    // ---- image refs ----

    /// Points `name` at `target`; returns the previous target.
    pub fn set_image_ref(&self, name: &str, target: &ImageRef) -> Result<Option<ImageRef>> {
        // Pointing a name at the manifest it already names changes nothing: skip the durable
        // write (a metadata commit is an fsync), as every rebuild and re-pull would pay it.
        if let Some(old) = self.image_ref(name)?
            && old.target == target.target
        {
            return Ok(Some(old));
        }
        self.write(|tx| tx.set_image_ref(name, target))
    }

    /// What `name` points at.
    pub fn image_ref(&self, name: &str) -> Result<Option<ImageRef>> {
        self.read(|tx| tx.image_ref(name))
    }

    /// Removes `name`; returns what it pointed at. Its blobs go at the next prune.
    pub fn delete_image_ref(&self, name: &str) -> Result<Option<ImageRef>> {
        self.write(|tx| tx.delete_image_ref(name))
    }

    /// Every image name, sorted.
    pub fn image_refs(&self) -> Result<Vec<(String, ImageRef)>> {
        self.read(|tx| tx.image_refs())
    }

    // ---- snapshot records ----

    /// Records what GC needs to know of snapshot `id` (after the snapshotter created it).
    pub fn put_snapshot(&self, id: &str, record: &SnapshotRecord) -> Result<()> {
        self.write(|tx| tx.put_snapshot(id, record))
    }

    /// The record of snapshot `id`.
    pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        self.read(|tx| tx.snapshot(id))
    }

    /// Every snapshot record.
    pub fn snapshots(&self) -> Result<Vec<(String, SnapshotRecord)>> {
        self.read(|tx| tx.snapshots())
    }

    // ---- leases ----

    /// Creates a lease; by default it lasts until the calling process exits or it is deleted.
    pub fn create_lease(&self, opts: &LeaseOptions) -> Result<Lease> {
        self.write(|tx| tx.create_lease(opts))
    }

    /// Adds blob `digest` to lease `lease`. To protect a blob being written, prefer
    /// [`crate::BlobWriter::commit_leased`], which closes the window between commit and lease.
    pub fn lease_blob(&self, lease: &str, digest: Digest) -> Result<()> {
        self.write(|tx| tx.lease_blob(lease, digest))
    }

    /// Adds snapshot `snapshot` to lease `lease`. Lease a snapshot id before creating the
    /// snapshot (or before looking up the record that names it), so GC never sees it unleased.
    pub fn lease_snapshot(&self, lease: &str, snapshot: &str) -> Result<()> {
        self.write(|tx| tx.lease_snapshot(lease, snapshot))
    }

    /// Adds snapshots to lease `lease` without an fsync, for builds, which lease every
    /// snapshot they use: a durable commit per cache hit would cost milliseconds each.
    /// Another process sees the lease as soon as it can open the database, because the holder
    /// persists pending commits when it closes the database to hand it over; a crash loses
    /// the change together with the process that owns the lease.
    pub fn lease_snapshots_quick(&self, lease: &str, snapshots: &[&str]) -> Result<()> {
        self.inner.meta.write_with(Durability::None, |tx| {
            for s in snapshots {
                tx.lease_snapshot(lease, s)?;
            }
            Ok(())
        })
    }

    /// Deletes lease `lease`; returns whether it existed.
    pub fn delete_lease(&self, lease: &str) -> Result<bool> {
        self.write(|tx| tx.delete_lease(lease))
    }

    /// Every lease that has not expired.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let now = Timestamp::now();
        Ok(self
            .read(|tx| tx.leases())?
            .into_iter()
            .filter(|l| !lease_expired(l, now))
            .collect())
    }

    // ---- GC, usage, check ----

    /// Removes build-cache records as `opts` allows (least recently used first), then every
    /// snapshot and blob nothing keeps (see `gc` for the roots), and expired leases.
    ///
    /// Metadata changes happen in one write transaction; unreferenced blobs are unlinked after
    /// it commits, before the database is handed to anyone else; snapshots are removed
    /// through `remover` after that, so other builds wait only for the bookkeeping. A snapshot whose removal fails is reported in `errors` and, now
    /// unrecorded, is collected by a later prune.
    pub fn prune(&self, opts: &PruneOptions, remover: &dyn SnapshotRemover) -> Result<PruneReport> {
        let on_disk = remover.list().map_err(|e| Error::Snapshot {
            action: "list snapshots".into(),
            source: e,
        })?;
        // Parents as the snapshotter knows them, asked before the transaction so that the
        // database is not held while the snapshotter reads its metadata.
        let recorded: HashSet<String> = self.snapshots()?.into_iter().map(|(id, _)| id).collect();
        let mut disk_parents = HashMap::new();
        for id in on_disk.iter().filter(|id| !recorded.contains(*id)) {
            let parent = remover.parent(id).map_err(|e| Error::Snapshot {
                action: format!("read the parent of snapshot {id:?}"),
                source: e,
            })?;
            if let Some(parent) = parent {
                disk_parents.insert(id.clone(), parent);
            }
        }
        let now = Timestamp::now();
        let content = self.content().clone();
        let plan = self.inner.meta.write_then(
            |tx| gc::plan_prune(tx, &content, opts, &on_disk, &disk_parents, now),
            |plan| {
                for blob in &plan.blobs {
                    if content.delete(&blob.digest)? {
                        plan.report.reclaimed += blob.size;
                        plan.report.blobs_removed.push(*blob);
                    }
                }
                Ok(())
            },
        )?;
        let mut report = plan.report;
        for id in plan.snapshots {
            match remover.remove(&id) {
                Ok(()) => report.snapshots_removed.push(id),
                Err(e) => report.errors.push(format!(
                    "failed to remove snapshot {id:?}: {}",
                    crate::check::error_chain(&*e)
                )),
            }
        }
        Ok(report)
    }

    /// Disk usage by images, build cache, snapshots and blobs.
    pub fn df(&self) -> Result<DiskUsage> {
        let content = self.content().clone();
        let now = Timestamp::now();
        let world = self.read(|tx| World::load(&WriteTxnOrRead::Read(tx), &content, now))?;
        Ok(gc::disk_usage(&world))
    }

    /// Verifies every blob against its digest and every record's references (snapshots
    /// through `snapshots`), and reports what is wrong. With `repair`, drops what is broken:
    /// corrupt blobs, records and refs that reference missing or corrupt data, undecodable
    /// entries, and leftover ingest files. Without it, changes nothing.
    pub fn check(&self, repair: bool, snapshots: &dyn SnapshotRemover) -> Result<CheckReport> {
        check::check(
            self.content(),
            |f| self.read(|tx| f(tx)),
            |drops| {
                self.write(|tx| {
                    for (table, entry) in &drops {
                        tx.delete_raw_if(*table, &entry.name, &entry.value)?;
                    }
                    Ok(())
                })
            },
            snapshots,
            repair,
        )
    }
}
