//! Helpers shared by the store's integration tests: a directory snapshotter, records, images.

#![allow(dead_code)] // each test binary uses a part

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_cache::{
    CacheKey, CacheRecord, Digest, ImageRef, SnapshotError, SnapshotRecord, SnapshotRemover, Store,
    Timestamp,
};

/// Snapshots as directories under `<root>/snapshots`, like the executor's snapshotter.
pub struct DirSnapshots {
    pub dir: PathBuf,
    pub removed: Mutex<Vec<String>>,
}

impl DirSnapshots {
    pub fn new(store: &Store) -> DirSnapshots {
        let dir = store.snapshots_dir();
        fs::create_dir_all(&dir).unwrap();
        DirSnapshots {
            dir,
            removed: Mutex::new(Vec::new()),
        }
    }

    pub fn create(&self, id: &str) {
        fs::create_dir_all(self.dir.join(id)).unwrap();
    }
}

impl SnapshotRemover for DirSnapshots {
    fn exists(&self, id: &str) -> Result<bool, SnapshotError> {
        Ok(self.dir.join(id).is_dir())
    }
    fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        self.removed.lock().unwrap().push(id.to_owned());
        match fs::remove_dir_all(self.dir.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
    fn list(&self) -> Result<Vec<String>, SnapshotError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn parent(&self, id: &str) -> Result<Option<String>, SnapshotError> {
        match fs::read_to_string(self.dir.join(id).join(".parent")) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

pub fn key(n: u8) -> CacheKey {
    CacheKey([n; 32])
}

pub fn snap(parent: Option<&str>, size: u64, last_used: u64) -> SnapshotRecord {
    SnapshotRecord {
        parent: parent.map(str::to_owned),
        size,
        created: Timestamp(last_used),
        last_used: Timestamp(last_used),
    }
}

pub fn record(snapshot: &str, last_used: Timestamp) -> CacheRecord {
    CacheRecord {
        snapshot: Some(snapshot.to_owned()),
        layers: Vec::new(),
        size: 0,
        created: last_used,
        last_used,
        description: format!("RUN make {snapshot}"),
        output_key: None,
    }
}

/// An image: a layer, a config, a manifest and an index over it, all in the store.
pub fn put_image(store: &Store, name: &str, layer: &[u8]) -> (ImageRef, Vec<Digest>) {
    let c = store.content();
    let layer = c.put(layer).unwrap();
    let config = c
        .put(format!(r#"{{"rootfs":"{}"}}"#, layer.digest).as_bytes())
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":{}}},"layers":[{{"digest":"{}","size":{}}}]}}"#,
        config.digest, config.size, layer.digest, layer.size
    );
    let manifest = c.put(manifest.as_bytes()).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":{}}}]}}"#,
        manifest.digest, manifest.size
    );
    let index = c.put(index.as_bytes()).unwrap();
    let r = ImageRef {
        target: index.digest,
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        size: index.size,
        created: Timestamp::now(),
    };
    store.set_image_ref(name, &r).unwrap();
    (
        r,
        vec![layer.digest, config.digest, manifest.digest, index.digest],
    )
}

pub fn snapshot_ids(store: &Store) -> Vec<String> {
    store
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

pub fn record_keys(store: &Store) -> Vec<CacheKey> {
    store
        .records()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

pub fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    bytes[0] ^= 0xff;
    // Blobs may be read-only; replace the file rather than write into it.
    fs::remove_file(path).unwrap();
    fs::write(path, bytes).unwrap();
}
