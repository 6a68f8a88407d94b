//! What a solved vertex is: an empty filesystem, a committed snapshot, or the local build
//! context (read in place, never copied into a snapshot), and the solver's cache store over the
//! local store's records.

use std::path::PathBuf;
use std::sync::Arc;

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
}

impl LocalDir {
    /// Whether a context-relative path is excluded by `.dockerignore`.
    pub fn is_ignored(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|m| m.is_excluded(rel))
    }
}

/// The solver's cache records, kept in the store's ACID metadata database. Saving a result
/// also registers its snapshot (parent and size) so prune and `system df` account for it.
#[derive(Clone)]
pub struct RecordStore {
    store: Arc<Store>,
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
                // A record whose snapshot was removed behind its back is a miss, not an error.
                Ok(id) if self.snapshots_dir.join(id.as_str()).join("fs").exists() => {
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
        let keys: Vec<_> = keys.iter().map(store_key).collect();
        tokio::task::spawn_blocking(move || {
            store.write(|txn| {
                for key in &keys {
                    txn.put_record(key, &stored)?;
                }
                if let Some((id, snap)) = &snapshot_record {
                    txn.put_snapshot(id, snap)?;
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
