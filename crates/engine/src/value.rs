//! What a solved vertex is: an empty filesystem, a committed snapshot, or the local build
//! context (read in place, never copied into a snapshot), and the solver's cache store over the
//! local store's records.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_cache::{CacheRecord as StoreRecord, Store};
use kiln_executor::snapshot::SnapshotId;
use kiln_frontend::dockerignore::PatternMatcher;
use kiln_solver::{CacheKey, CacheRecord, CacheStore};

use crate::progress::Reporter;
use crate::remote_cache::RemoteCache;
use crate::remote_cache::export::{UsedRecord, UsedRecords};

/// The value of a solved vertex.
#[derive(Debug, Clone)]
pub enum Value {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// A committed snapshot.
    Snapshot(SnapshotId),
    /// A local directory with its ignore rules: the build context.
    Local(Arc<LocalDir>),
}

/// A build context directory and its `.dockerignore`.
#[derive(Debug)]
pub struct LocalDir {
    pub path: PathBuf,
    pub ignore: Option<PatternMatcher>,
    /// Excluded directories already checked for re-included paths below them.
    kept_parents: Mutex<HashMap<String, bool>>,
}

impl LocalDir {
    pub fn new(path: PathBuf, ignore: Option<PatternMatcher>) -> LocalDir {
        LocalDir {
            path,
            ignore,
            kept_parents: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a context-relative path is not part of the context as BuildKit transfers it:
    /// excluded by `.dockerignore`, unless it is a directory with a path below it that an
    /// exception (`!pattern`) brings back, which then comes along as that path's parent.
    pub fn is_ignored(&self, rel: &str) -> bool {
        let Some(matcher) = &self.ignore else {
            return false;
        };
        let rel = rel.trim_matches('/');
        if rel.is_empty() || !matcher.is_excluded(rel) {
            return false;
        }
        if !matcher.has_exceptions() {
            return true;
        }
        let is_dir = std::fs::symlink_metadata(self.path.join(rel)).is_ok_and(|m| m.is_dir());
        !(is_dir && self.keeps_something_below(matcher, rel))
    }

    fn keeps_something_below(&self, matcher: &PatternMatcher, dir: &str) -> bool {
        if matcher.can_skip_dir(dir) {
            return false;
        }
        if let Some(known) = self.kept_parents.lock().expect("kept parents").get(dir) {
            return *known;
        }
        let mut names: Vec<String> = std::fs::read_dir(self.path.join(dir))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let kept = names.iter().any(|name| {
            let child = format!("{dir}/{name}");
            if !matcher.is_excluded(&child) {
                return true;
            }
            std::fs::symlink_metadata(self.path.join(&child)).is_ok_and(|m| m.is_dir())
                && self.keeps_something_below(matcher, &child)
        });
        self.kept_parents
            .lock()
            .expect("kept parents")
            .insert(dir.to_string(), kept);
        kept
    }
}

/// The build's lease: every snapshot the build finds in the cache or saves is added to it
/// before it is used, so a `kiln builder prune` or `system prune` in another process cannot
/// remove it while the build still needs it (as a parent, a mount or a layer to commit).
/// Made at the first snapshot, deleted when the last clone of the record store goes; owned by
/// this process, so a crash frees it.
struct BuildLease {
    store: Arc<Store>,
    id: std::sync::Mutex<Option<String>>,
}

impl BuildLease {
    fn id(&self) -> Result<String, kiln_cache::Error> {
        let mut id = self.id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = id.as_ref() {
            return Ok(id.clone());
        }
        let lease = self
            .store
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        *id = Some(lease.id.clone());
        Ok(lease.id)
    }
}

impl Drop for BuildLease {
    fn drop(&mut self) {
        if let Some(id) = self.id.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            // Best effort: a lease left behind expires with this process anyway.
            let _ = self.store.delete_lease(&id);
        }
    }
}

/// The solver's cache records, kept in the store's ACID metadata database. Saving a result
/// also registers its snapshot (parent and size) so prune and `system df` account for it.
#[derive(Clone)]
pub struct RecordStore {
    store: Arc<Store>,
    lease: Arc<BuildLease>,
    images: Arc<kiln_image::ImageStore>,
    snapshots_dir: PathBuf,
    /// Imported caches (`--cache-from`), asked after a local miss.
    remotes: Arc<Vec<RemoteCache>>,
    /// Every record this build found or saved, for `--cache-to`.
    used: UsedRecords,
    /// Where a failed import is reported.
    reporter: Reporter,
    /// Whether `used` is kept: a store shared by many builds (`Engine`) serves no `--cache-to`
    /// and must not grow with every build.
    track_used: bool,
}

impl RecordStore {
    pub fn new(images: Arc<kiln_image::ImageStore>) -> RecordStore {
        let store = images.store_arc();
        let snapshots_dir = store.snapshots_dir();
        RecordStore {
            lease: Arc::new(BuildLease {
                store: store.clone(),
                id: std::sync::Mutex::new(None),
            }),
            store,
            images,
            snapshots_dir,
            remotes: Arc::new(Vec::new()),
            used: UsedRecords::default(),
            reporter: Reporter::default(),
            track_used: true,
        }
    }

    /// Stops keeping the records used (for a store shared by many builds).
    pub fn without_usage(mut self) -> RecordStore {
        self.track_used = false;
        self
    }

    /// Also answers lookups from imported caches, reporting failed imports to `reporter`.
    pub fn with_remotes(
        mut self,
        remotes: Arc<Vec<RemoteCache>>,
        reporter: Reporter,
    ) -> RecordStore {
        self.remotes = remotes;
        self.reporter = reporter;
        self
    }

    /// The records the build has used so far (shared: clones see the same list).
    pub fn used(&self) -> UsedRecords {
        self.used.clone()
    }

    fn note_used(&self, keys: &[CacheKey], record: &CacheRecord<Value>) {
        if !self.track_used {
            return;
        }
        let snapshot = match &record.value {
            Value::Scratch => None,
            Value::Snapshot(id) => Some(id.clone()),
            Value::Local(_) => return,
        };
        // A step with a content key also has a cheap key derived from the build context's
        // per-build key: it can never hit in another build, so it is not worth exporting.
        let keys: Vec<[u8; 32]> = if keys.len() > 1 {
            keys.iter()
                .filter(|k| **k == record.output_key)
                .map(|k| *k.as_bytes())
                .collect()
        } else {
            keys.iter().map(|k| *k.as_bytes()).collect()
        };
        if keys.is_empty() {
            return;
        }
        self.used.push(UsedRecord {
            keys,
            output_key: *record.output_key.as_bytes(),
            snapshot,
        });
    }

    /// A local miss: the first imported cache with the key supplies the result, fetched and
    /// unpacked here, then recorded locally so the next build finds it without the import.
    async fn load_remote(
        &self,
        key: &CacheKey,
    ) -> Result<Option<CacheRecord<Value>>, kiln_cache::Error> {
        let Some((index, hit)) = self
            .remotes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.lookup(key.as_bytes()).map(|h| (i, h)))
        else {
            return Ok(None);
        };
        let remotes = self.remotes.clone();
        let images = self.images.clone();
        let reporter = self.reporter.clone();
        let materialized = tokio::task::spawn_blocking(move || {
            remotes[index]
                .materialize(&images, &hit, &reporter)
                .map(|top| (top, hit.output_key))
        })
        .await
        .map_err(|e| kiln_cache::Error::Io {
            action: "import a cache record",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?;
        let (top, output_key) = match materialized {
            Ok(found) => found,
            Err(e) => {
                // An unreachable or broken cache costs a rebuild of the step, never the build.
                tracing::warn!(error = %e, "cache import failed; running the step");
                let e = crate::error::error_chain(&e);
                self.reporter.warn(format!("{e}; running the step instead"));
                return Ok(None);
            }
        };
        let record = CacheRecord {
            output_key: CacheKey::from_bytes(output_key),
            value: match top {
                Some(id) => Value::Snapshot(id),
                None => Value::Scratch,
            },
        };
        self.save(std::slice::from_ref(key), &record).await?;
        Ok(Some(record))
    }
}

impl RecordStore {
    fn exists(&self, id: &SnapshotId) -> bool {
        self.snapshots_dir.join(id.as_str()).join("fs").exists()
    }

    /// Adds `id` to the build's lease; always `true`, for use in a guard.
    async fn lease_snapshot(&self, id: &SnapshotId) -> Result<bool, kiln_cache::Error> {
        let lease = self.lease.clone();
        let id = id.as_str().to_string();
        tokio::task::spawn_blocking(move || {
            let lease_id = lease.id()?;
            lease.store.lease_snapshots_quick(&lease_id, &[&id])
        })
        .await
        .map_err(|e| kiln_cache::Error::Io {
            action: "lease a snapshot",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })??;
        Ok(true)
    }
}

fn store_key(key: &CacheKey) -> kiln_cache::CacheKey {
    kiln_cache::CacheKey(*key.as_bytes())
}

impl CacheStore<Value> for RecordStore {
    type Error = kiln_cache::Error;

    async fn load(&self, key: &CacheKey) -> Result<Option<CacheRecord<Value>>, Self::Error> {
        let store = self.store.clone();
        let k = store_key(key);
        let record = tokio::task::spawn_blocking(move || store.get_record(&k))
            .await
            .map_err(|e| kiln_cache::Error::Io {
                action: "load a cache record",
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })??;
        let Some(record) = record else {
            return self.load_remote(key).await;
        };
        let value = match &record.snapshot {
            None => Value::Scratch,
            Some(id) => match SnapshotId::parse(id) {
                // Lease first, then look: a snapshot seen present after it is leased stays.
                // A record whose snapshot was removed behind its back is a miss, not an error.
                Ok(id) if self.lease_snapshot(&id).await? && self.exists(&id) => {
                    Value::Snapshot(id)
                }
                _ => return self.load_remote(key).await,
            },
        };
        let output_key = record
            .output_key
            .map(|k| CacheKey::from_bytes(k.0))
            .unwrap_or(*key);
        let record = CacheRecord { output_key, value };
        self.note_used(std::slice::from_ref(key), &record);
        Ok(Some(record))
    }

    async fn save(
        &self,
        keys: &[CacheKey],
        record: &CacheRecord<Value>,
    ) -> Result<(), Self::Error> {
        let snapshot = match &record.value {
            Value::Scratch => None,
            Value::Snapshot(id) => Some(id.as_str().to_string()),
            // The context is read in place; there is nothing to keep.
            Value::Local(_) => return Ok(()),
        };
        self.note_used(keys, record);
        let snapshot_record = match &record.value {
            Value::Snapshot(id) => {
                let parent = self.images.snapshots().parent(id).ok().flatten();
                let size = self
                    .images
                    .snapshots()
                    .usage(id)
                    .map(|u| u.bytes)
                    .unwrap_or(0);
                let now = kiln_cache::Timestamp::now();
                Some((
                    id.as_str().to_string(),
                    kiln_cache::SnapshotRecord {
                        parent: parent.map(|p| p.as_str().to_string()),
                        size,
                        created: now,
                        last_used: now,
                    },
                ))
            }
            _ => None,
        };
        let mut stored = StoreRecord::new(snapshot);
        stored.output_key = Some(store_key(&record.output_key));
        if let Some((_, snap)) = &snapshot_record {
            stored.size = snap.size;
        }
        let store = self.store.clone();
        let lease = self.lease.clone();
        let keys: Vec<_> = keys.iter().map(store_key).collect();
        tokio::task::spawn_blocking(move || {
            let lease_id = match &snapshot_record {
                Some(_) => Some(lease.id()?),
                None => None,
            };
            store.write(|txn| {
                for key in &keys {
                    txn.put_record(key, &stored)?;
                }
                if let Some((id, snap)) = &snapshot_record {
                    txn.put_snapshot(id, snap)?;
                    // The build keeps using what it saved (the next step's parent, the
                    // image's layers): a prune of the records must not take it meanwhile.
                    if let Some(lease_id) = &lease_id {
                        txn.lease_snapshot(lease_id, id)?;
                    }
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| kiln_cache::Error::Io {
            action: "save a cache record",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exception_keeps_the_excluded_directories_above_it() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "dir/drop",
            "dir/keep/file",
            "dir/keep/other",
            "all/x",
            "top",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let ignore = PatternMatcher::parse("dir\n!dir/keep/file\nall\n").unwrap();
        let local = LocalDir::new(dir.path().to_path_buf(), Some(ignore));
        assert!(!local.is_ignored("top"));
        assert!(!local.is_ignored("dir"), "a parent of a kept path stays");
        assert!(!local.is_ignored("dir/keep"));
        assert!(!local.is_ignored("dir/keep/file"));
        assert!(local.is_ignored("dir/drop"));
        assert!(local.is_ignored("dir/keep/other"));
        assert!(local.is_ignored("all"), "nothing below it is kept");
        assert!(local.is_ignored("all/x"));
    }
}
