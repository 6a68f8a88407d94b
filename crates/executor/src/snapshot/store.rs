//! The snapshotter: snapshots as directories under a root, with JSON metadata, a file lock for
//! changes shared between processes, and crash recovery on open.
//!
//! Layout of a root:
//!
//! ```text
//! <root>/lock                  flock(2) held while metadata changes
//! <root>/driver                "overlay" or "copy", fixed when the root is first used
//! <root>/next-id               the next id to hand out; ids are never reused
//! <root>/snapshots/<id>/meta.json
//! <root>/snapshots/<id>/fs     overlay upper dir (overlay) or the full tree (copy)
//! <root>/snapshots/<id>/work   overlay work dir, active snapshots only
//! <root>/trash/                snapshots being removed (renamed here first, so removal is atomic)
//! ```
//!
//! A snapshot directory without `meta.json` is one whose creation was interrupted; active
//! snapshots record their owner process (pid, start time, boot id) so that ones left by a killed
//! process are recognised. Both are removed when a snapshotter is opened.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::apply::{self, ApplyOptions, ApplyStats, WhiteoutMode};
use super::diff::{self, DiffOptions, DiffSource, DiffStats};
use super::fsutil::{self, Usage};
use super::overlay;
use super::{Result, SnapshotError};

/// How snapshots are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Each snapshot is an overlayfs upper dir stacked on its parents' dirs.
    Overlay,
    /// Each snapshot is a full copy of its parent plus changes; diffs compare trees. For
    /// filesystems that cannot hold an overlay upper dir.
    Copy,
}

impl Driver {
    fn as_str(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Copy => "copy",
        }
    }

    fn parse(s: &str) -> Option<Driver> {
        match s.trim() {
            "overlay" => Some(Driver::Overlay),
            "copy" => Some(Driver::Copy),
            _ => None,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment variable that forces a driver (`copy` or `overlay`) for a new root.
pub const DRIVER_ENV: &str = "KILN_SNAPSHOTTER";

/// A snapshot's id: decimal digits, stable for the snapshot's lifetime and never reused in a
/// root. Parsing refuses anything else, so an id can be joined into a path safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    /// Parses an id as printed by `Display`.
    pub fn parse(s: &str) -> Result<SnapshotId> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SnapshotError::InvalidId(s.to_string()));
        }
        Ok(SnapshotId(s.to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = SnapshotError;
    fn try_from(s: String) -> Result<SnapshotId> {
        SnapshotId::parse(&s)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a snapshot can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, from `prepare`.
    Active,
    /// Immutable, from `commit`.
    Committed,
}

/// The process that owns an active snapshot, to tell live ones from ones left by a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the owner.
    start: u64,
    boot_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    id: SnapshotId,
    kind: Kind,
    key: String,
    parent: Option<SnapshotId>,
    /// Seconds since the epoch.
    created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<Owner>,
}

/// What `list` reports about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub kind: Kind,
    /// The key given to `prepare`.
    pub key: String,
    pub parent: Option<SnapshotId>,
    /// Seconds since the epoch.
    pub created: u64,
}

/// How to mount a snapshot. `mount` does it; the fields let a sandbox mount it itself (for
/// example inside its own mount namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// A writable overlay; `lowerdirs` top-most first.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
    },
    /// A read-only overlay of two or more dirs, top-most first.
    OverlayReadonly { lowerdirs: Vec<PathBuf> },
    /// A bind mount of one directory: a snapshot with no parents, or any copy-driver snapshot.
    Bind { source: PathBuf, readonly: bool },
}

impl Mounts {
    /// Mounts at `target` (an existing directory).
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        match self {
            Mounts::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => overlay::mount_overlay(target, lowerdirs, upperdir, workdir),
            Mounts::OverlayReadonly { lowerdirs } => {
                overlay::mount_overlay_readonly(target, lowerdirs)
            }
            Mounts::Bind { source, readonly } => {
                if *readonly {
                    overlay::mount_overlay_readonly(target, std::slice::from_ref(source))
                } else {
                    overlay::mount_overlay(target, &[], source, source)
                }
            }
        }
    }

    /// Whether writes through this mount are allowed.
    pub fn is_readonly(&self) -> bool {
        match self {
            Mounts::Overlay { .. } => false,
            Mounts::OverlayReadonly { .. } => true,
            Mounts::Bind { readonly, .. } => *readonly,
        }
    }
}

/// A writable snapshot from `prepare`. Consumed by `commit` or `discard`; dropping it leaves
/// it on disk (a later `open` of the root removes it once this process has exited).
#[derive(Debug)]
pub struct ActiveSnapshot {
    id: SnapshotId,
    mounts: Mounts,
    dir: PathBuf,
}

impl ActiveSnapshot {
    pub fn id(&self) -> &SnapshotId {
        &self.id
    }

    /// How to mount this snapshot read-write.
    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// The directory that receives changes: the overlay upper dir, or for the copy driver the
    /// full tree.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

/// What `open` found and cleaned up from earlier crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Active snapshots whose owning process is gone; they were removed.
    pub stale_active: Vec<SnapshotId>,
    /// Snapshot directories whose creation never finished (no metadata); they were removed.
    pub incomplete: Vec<String>,
    /// Leftovers of interrupted removals and commits (trash, work dirs, temp files).
    pub leftovers: usize,
}

/// A containerd-style snapshotter over a directory; see the module docs for the layout.
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    driver: Driver,
    recovery: Recovery,
    /// Metadata of committed snapshots, which never changes while they exist.
    committed: Mutex<HashMap<SnapshotId, Meta>>,
}

/// Held while metadata changes; other processes using the same root wait on it.
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Snapshotter {
    /// Opens (creating if needed) a snapshotter at `root`, choosing the driver: the one the
    /// root was created with; otherwise `KILN_SNAPSHOTTER` (`copy`/`overlay`) if set; otherwise
    /// overlay when a probe shows it works under `root`, else copy. Cleans up after crashes.
    pub fn open(root: &Path) -> Result<Snapshotter> {
        let forced = match std::env::var(DRIVER_ENV) {
            Ok(v) if !v.is_empty() => Some(Driver::parse(&v).ok_or_else(|| {
                SnapshotError::InvalidDriver(format!("{DRIVER_ENV}={v} (expected copy or overlay)"))
            })?),
            _ => None,
        };
        Self::open_inner(root, forced)
    }

    /// Opens with an explicit driver; fails if the root was created with another one.
    pub fn open_with_driver(root: &Path, driver: Driver) -> Result<Snapshotter> {
        Self::open_inner(root, Some(driver))
    }

    fn open_inner(root: &Path, requested: Option<Driver>) -> Result<Snapshotter> {
        for dir in [
            root.to_path_buf(),
            root.join("snapshots"),
            root.join("trash"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        }
        let mut this = Snapshotter {
            root: root.to_path_buf(),
            driver: Driver::Copy,
            recovery: Recovery::default(),
            committed: Mutex::new(HashMap::new()),
        };
        let _lock = this.lock()?;
        let driver_file = root.join("driver");
        let stored = match fs::read_to_string(&driver_file) {
            Ok(s) => Some(Driver::parse(&s).ok_or_else(|| SnapshotError::Corrupt {
                path: driver_file.clone(),
                reason: format!("unknown driver {:?}", s.trim()),
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &driver_file, e)),
        };
        this.driver = match (stored, requested) {
            (Some(s), Some(r)) if s != r => {
                return Err(SnapshotError::DriverMismatch {
                    root: root.to_path_buf(),
                    stored: s,
                    requested: r,
                });
            }
            (Some(s), _) => s,
            (None, requested) => {
                let driver = match requested {
                    Some(Driver::Overlay) if !overlay::overlay_supported(root) => {
                        return Err(SnapshotError::InvalidDriver(format!(
                            "overlay was requested but overlayfs does not work under {}",
                            root.display()
                        )));
                    }
                    Some(d) => d,
                    None if overlay::overlay_supported(root) => Driver::Overlay,
                    None => Driver::Copy,
                };
                fsutil::write_atomic(&driver_file, driver.as_str().as_bytes())
                    .map_err(|e| io_err("write", &driver_file, e))?;
                driver
            }
        };
        tracing::debug!(root = %root.display(), driver = %this.driver, "opened snapshotter");
        this.recover()?;
        Ok(this)
    }

    /// The storage driver in use.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What `open` cleaned up.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Creates a writable snapshot on top of `parent` (which must be committed).
    /// `key` is a free-form name recorded for `list` and diagnostics.
    pub fn prepare(&self, key: &str, parent: Option<&SnapshotId>) -> Result<ActiveSnapshot> {
        let (id, dir, chain) = {
            let _lock = self.lock()?;
            let chain = match parent {
                Some(p) => {
                    // From disk, not the cache: another process may have removed it.
                    let meta = self.read_meta_from_disk(p)?;
                    if meta.kind != Kind::Committed {
                        return Err(SnapshotError::NotCommitted(p.clone()));
                    }
                    self.chain(p)?
                }
                None => Vec::new(),
            };
            let id = self.next_id()?;
            let dir = self.dir(&id);
            fs::create_dir(&dir).map_err(|e| io_err("create directory", &dir, e))?;
            let fs_dir = dir.join("fs");
            fs::create_dir(&fs_dir).map_err(|e| io_err("create directory", &fs_dir, e))?;
            if self.driver == Driver::Overlay {
                let work = dir.join("work");
                fs::create_dir(&work).map_err(|e| io_err("create directory", &work, e))?;
            }
            let meta = Meta {
                id: id.clone(),
                kind: Kind::Active,
                key: key.to_string(),
                parent: parent.cloned(),
                created: now(),
                owner: Some(current_owner()),
            };
            self.write_meta(&meta)?;
            (id, dir, chain)
        };
        let fs_dir = dir.join("fs");
        let mounts = match self.driver {
            Driver::Overlay if chain.is_empty() => Mounts::Bind {
                source: fs_dir,
                readonly: false,
            },
            Driver::Overlay => Mounts::Overlay {
                lowerdirs: chain.iter().map(|c| self.fs_dir(c)).collect(),
                upperdir: fs_dir,
                workdir: dir.join("work"),
            },
            Driver::Copy => {
                if let Some(p) = parent {
                    // Outside the lock: the child's metadata is already written, so the parent
                    // cannot be removed meanwhile, and a crash here leaves a stale active
                    // snapshot that the next open removes.
                    let src = self.fs_dir(p);
                    if let Err(e) = fsutil::copy_tree(&src, &fs_dir) {
                        // Do not leave a half-copied snapshot behind for the rest of this
                        // process's life; the copy error is the one worth reporting.
                        if let Err(cleanup) = self.remove(&id) {
                            tracing::warn!(snapshot = %id, error = %cleanup, "failed to remove half-copied snapshot");
                        }
                        return Err(SnapshotError::Io {
                            what: format!("copy parent snapshot {p} from"),
                            path: src,
                            source: e,
                        });
                    }
                }
                Mounts::Bind {
                    source: fs_dir,
                    readonly: false,
                }
            }
        };
        Ok(ActiveSnapshot { id, mounts, dir })
    }

    /// Makes an active snapshot immutable and returns its id (the same id it had while
    /// active). The caller must have unmounted it.
    pub fn commit(&self, active: ActiveSnapshot) -> Result<SnapshotId> {
        let _lock = self.lock()?;
        let mut meta = self.read_meta(&active.id)?;
        if meta.kind != Kind::Active {
            return Err(SnapshotError::NotActive(active.id.clone()));
        }
        meta.kind = Kind::Committed;
        meta.owner = None;
        self.write_meta(&meta)?;
        // After the metadata says committed: a crash before this leaves a work dir that the
        // next open removes.
        let work = active.dir.join("work");
        if let Err(e) = fs::remove_dir_all(&work)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err("remove work dir", &work, e));
        }
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.id.clone(), meta);
        Ok(active.id)
    }

    /// Removes an active snapshot without committing it.
    pub fn discard(&self, active: ActiveSnapshot) -> Result<()> {
        self.remove(&active.id)
    }

    /// Mounts for a read-only view of a committed snapshot and its parents.
    pub fn view(&self, id: &SnapshotId) -> Result<Mounts> {
        let meta = self.read_meta(id)?;
        if meta.kind != Kind::Committed {
            return Err(SnapshotError::NotCommitted(id.clone()));
        }
        Ok(match self.driver {
            Driver::Copy => Mounts::Bind {
                source: self.fs_dir(id),
                readonly: true,
            },
            Driver::Overlay => {
                let lowerdirs: Vec<PathBuf> =
                    self.chain(id)?.iter().map(|c| self.fs_dir(c)).collect();
                if lowerdirs.len() == 1 {
                    Mounts::Bind {
                        source: lowerdirs[0].clone(),
                        readonly: true,
                    }
                } else {
                    Mounts::OverlayReadonly { lowerdirs }
                }
            }
        })
    }

    /// Mounts a committed snapshot read-only at `target` (an existing directory); undo with
    /// [`overlay::unmount`].
    pub fn mount(&self, id: &SnapshotId, target: &Path) -> Result<()> {
        self.view(id)?
            .mount(target)
            .map_err(|e| io_err(&format!("mount snapshot {id} at"), target, e))
    }

    /// Removes a snapshot (active or committed). Refuses while other snapshots have it as
    /// parent. The caller must have unmounted it.
    pub fn remove(&self, id: &SnapshotId) -> Result<()> {
        let _lock = self.lock()?;
        self.read_meta_from_disk(id)?;
        let children: Vec<SnapshotId> = self
            .list_metas()?
            .into_iter()
            .filter(|m| m.parent.as_ref() == Some(id))
            .map(|m| m.id)
            .collect();
        if !children.is_empty() {
            return Err(SnapshotError::HasChildren {
                id: id.clone(),
                children,
            });
        }
        // Renaming into the trash is the atomic step; deleting the files may be interrupted
        // and is finished by the next open.
        let dir = self.dir(id);
        let trash = self.root.join("trash").join(id.as_str());
        fs::rename(&dir, &trash).map_err(|e| io_err("move to trash", &dir, e))?;
        fsutil::sync_dir(&self.root.join("snapshots"))
            .map_err(|e| io_err("sync", &self.root.join("snapshots"), e))?;
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        fs::remove_dir_all(&trash).map_err(|e| io_err("remove", &trash, e))
    }

    /// The parent of a snapshot.
    pub fn parent(&self, id: &SnapshotId) -> Result<Option<SnapshotId>> {
        Ok(self.read_meta(id)?.parent)
    }

    /// `id` and its ancestors, `id` first (the order of overlay lower dirs).
    pub fn chain(&self, id: &SnapshotId) -> Result<Vec<SnapshotId>> {
        let mut chain = vec![id.clone()];
        let mut next = self.read_meta(id)?.parent;
        while let Some(p) = next {
            if chain.contains(&p) {
                return Err(SnapshotError::Corrupt {
                    path: self.dir(&p),
                    reason: format!("parent cycle through snapshot {p}"),
                });
            }
            next = self.read_meta(&p)?.parent;
            chain.push(p);
        }
        Ok(chain)
    }

    /// Disk usage of the snapshot's own directory: its changes for overlay, the whole tree for
    /// the copy driver.
    pub fn usage(&self, id: &SnapshotId) -> Result<Usage> {
        self.read_meta(id)?;
        let dir = self.fs_dir(id);
        fsutil::usage(&dir).map_err(|e| io_err("measure usage of", &dir, e))
    }

    /// All snapshots, ordered by id.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out: Vec<SnapshotInfo> = self
            .list_metas()?
            .into_iter()
            .map(|m| SnapshotInfo {
                id: m.id,
                kind: m.kind,
                key: m.key,
                parent: m.parent,
                created: m.created,
            })
            .collect();
        out.sort_by_key(|i| i.id.as_str().parse::<u64>().unwrap_or(u64::MAX));
        Ok(out)
    }

    /// The directory holding a snapshot's files (the upper dir, or the full tree for copy).
    pub fn fs_dir(&self, id: &SnapshotId) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Writes the OCI layer tar of a snapshot's changes against its parent.
    pub fn diff<W: Write>(
        &self,
        id: &SnapshotId,
        writer: W,
        opts: &DiffOptions,
    ) -> Result<DiffStats> {
        let meta = self.read_meta(id)?;
        let upper = self.fs_dir(id);
        let parent_dir = meta.parent.as_ref().map(|p| self.fs_dir(p));
        let source = match self.driver {
            Driver::Overlay => DiffSource::OverlayUpper { upper: &upper },
            Driver::Copy => DiffSource::Trees {
                lower: parent_dir.as_deref(),
                upper: &upper,
            },
        };
        Ok(diff::write_layer(source, writer, opts)?)
    }

    /// Applies an uncompressed OCI layer tar onto an active snapshot (normally freshly
    /// prepared and untouched), with whiteouts in the form the driver needs.
    pub fn apply<R: Read>(
        &self,
        active: &ActiveSnapshot,
        reader: R,
        opts: &ApplyOptions,
    ) -> Result<ApplyStats> {
        let mut opts = opts.clone();
        match self.driver {
            Driver::Overlay => {
                opts.whiteouts = WhiteoutMode::Overlay;
                if let Mounts::Overlay { lowerdirs, .. } = &active.mounts {
                    opts.parent_layers = lowerdirs.clone();
                }
            }
            Driver::Copy => opts.whiteouts = WhiteoutMode::Delete,
        }
        Ok(apply::apply_layer(reader, &active.upper_dir(), &opts)?)
    }

    fn dir(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(id.as_str())
    }

    fn lock(&self) -> Result<LockGuard> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open lock file", &path, e))?;
        file.lock().map_err(|e| io_err("lock", &path, e))?;
        Ok(LockGuard(file))
    }

    /// Hands out the next id; call with the lock held.
    fn next_id(&self) -> Result<SnapshotId> {
        let path = self.root.join("next-id");
        let next: u64 = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| SnapshotError::Corrupt {
                path: path.clone(),
                reason: format!("not a number: {:?}", s.trim()),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(e) => return Err(io_err("read", &path, e)),
        };
        fsutil::write_atomic(&path, (next + 1).to_string().as_bytes())
            .map_err(|e| io_err("write", &path, e))?;
        SnapshotId::parse(&next.to_string())
    }

    fn read_meta(&self, id: &SnapshotId) -> Result<Meta> {
        if let Some(m) = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(m.clone());
        }
        self.read_meta_from_disk(id)
    }

    fn read_meta_from_disk(&self, id: &SnapshotId) -> Result<Meta> {
        let path = self.dir(id).join("meta.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::NotFound(id.clone()));
            }
            Err(e) => return Err(io_err("read", &path, e)),
        };
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if &meta.id != id {
            return Err(SnapshotError::Corrupt {
                path,
                reason: format!("metadata names snapshot {}", meta.id),
            });
        }
        if meta.kind == Kind::Committed {
            self.committed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), meta.clone());
        }
        Ok(meta)
    }

    fn write_meta(&self, meta: &Meta) -> Result<()> {
        let path = self.dir(&meta.id).join("meta.json");
        let json = serde_json::to_vec_pretty(meta).map_err(|e| SnapshotError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode metadata: {e}"),
        })?;
        fsutil::write_atomic(&path, &json).map_err(|e| io_err("write", &path, e))
    }

    fn list_metas(&self) -> Result<Vec<Meta>> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err("read directory", &dir, e))? {
            let entry = entry.map_err(|e| io_err("read directory", &dir, e))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| SnapshotId::parse(s).ok())
            else {
                continue;
            };
            match self.read_meta(&id) {
                Ok(m) => out.push(m),
                // Being created by another process right now, or removed meanwhile.
                Err(SnapshotError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes what crashed processes left behind. Runs with the lock held.
    fn recover(&mut self) -> Result<()> {
        let mut recovery = Recovery::default();
        let trash = self.root.join("trash");
        for entry in fs::read_dir(&trash).map_err(|e| io_err("read directory", &trash, e))? {
            let path = entry
                .map_err(|e| io_err("read directory", &trash, e))?
                .path();
            fs::remove_dir_all(&path).map_err(|e| io_err("remove", &path, e))?;
            recovery.leftovers += 1;
        }
        let snapshots = self.root.join("snapshots");
        for entry in
            fs::read_dir(&snapshots).map_err(|e| io_err("read directory", &snapshots, e))?
        {
            let entry = entry.map_err(|e| io_err("read directory", &snapshots, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(id) = SnapshotId::parse(&name) else {
                // Not ours to judge (a stray file); leave it.
                continue;
            };
            // Temp files from an interrupted metadata write.
            if let Ok(rd) = fs::read_dir(&path) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(".tmp-") {
                        let _ = fs::remove_file(e.path());
                        recovery.leftovers += 1;
                    }
                }
            }
            let meta = match self.read_meta(&id) {
                Ok(m) => m,
                Err(SnapshotError::NotFound(_)) => {
                    tracing::warn!(snapshot = %name, "removing snapshot whose creation never finished");
                    self.trash_dir(&id)?;
                    recovery.incomplete.push(name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match meta.kind {
                Kind::Active if !meta.owner.as_ref().is_some_and(owner_alive) => {
                    tracing::warn!(snapshot = %id, key = %meta.key, "removing active snapshot left by a process that is gone");
                    self.trash_dir(&id)?;
                    recovery.stale_active.push(id);
                }
                Kind::Active => {}
                Kind::Committed => {
                    let work = path.join("work");
                    if work.exists() {
                        fs::remove_dir_all(&work).map_err(|e| io_err("remove", &work, e))?;
                        recovery.leftovers += 1;
                    }
                }
            }
        }
        self.recovery = recovery;
        Ok(())
    }

    fn trash_dir(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.dir(id);
        let trash = self.root.join("trash").join(id.as_str());
        fs::rename(&dir, &trash).map_err(|e| io_err("move to trash", &dir, e))?;
        fs::remove_dir_all(&trash).map_err(|e| io_err("remove", &trash, e))
    }
}

fn io_err(what: &str, path: &Path, source: io::Error) -> SnapshotError {
    SnapshotError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 (starttime) of `/proc/<pid>/stat`; the command name before it may contain spaces
/// and parentheses, so parsing starts after the last `)`.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")" come fields 3 (state) onwards; starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn current_owner() -> Owner {
    let pid = std::process::id();
    Owner {
        pid,
        start: process_start(pid).unwrap_or(0),
        boot_id: boot_id(),
    }
}

fn owner_alive(owner: &Owner) -> bool {
    owner.boot_id == boot_id() && process_start(owner.pid) == Some(owner.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_path_tricks() {
        for bad in ["", "../1", "1/2", "a", "-1", "1 ", "123456789012345678901"] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(SnapshotId::parse("42").unwrap().as_str(), "42");
    }

    #[test]
    fn own_process_is_alive_and_a_dead_pid_is_not() {
        let me = current_owner();
        assert!(owner_alive(&me));
        let wrong_start = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!owner_alive(&wrong_start));
        let other_boot = Owner {
            boot_id: "not-this-boot".into(),
            ..me
        };
        assert!(!owner_alive(&other_boot));
    }
}
