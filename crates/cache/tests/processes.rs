//! Several processes on one root: concurrent writers, and writers killed with SIGKILL at
//! random moments, after which the store must open and check clean.
//!
//! The child processes are this test binary itself, re-run with `child_entry` selected and
//! the role in an environment variable; in a normal run `child_entry` does nothing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_cache::{
    CacheKey, CacheRecord, Digest, ImageRef, LayerRef, LeaseOptions, PruneOptions, SnapshotError,
    SnapshotRecord, SnapshotRemover, Store, Timestamp,
};

const ROLE: &str = "KILN_CACHE_TEST_ROLE";
const ROOT: &str = "KILN_CACHE_TEST_ROOT";
const TAG: &str = "KILN_CACHE_TEST_TAG";

struct DirSnapshots(PathBuf);

impl DirSnapshots {
    fn of(store: &Store) -> DirSnapshots {
        let dir = store.snapshots_dir();
        fs::create_dir_all(&dir).unwrap();
        DirSnapshots(dir)
    }
}

impl SnapshotRemover for DirSnapshots {
    fn exists(&self, id: &str) -> Result<bool, SnapshotError> {
        Ok(self.0.join(id).is_dir())
    }
    fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        match fs::remove_dir_all(self.0.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
    fn list(&self) -> Result<Vec<String>, SnapshotError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.0)? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
}

/// A small xorshift generator: the tests need varied timing, not good randomness.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn big_blob() -> Vec<u8> {
    (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn key_for(tag: &str, i: u64) -> CacheKey {
    CacheKey::from(Digest::of(format!("{tag}/{i}").as_bytes()))
}

fn spawn(role: &str, root: &Path, tag: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ROOT, root)
        .env(TAG, tag)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let root = PathBuf::from(std::env::var(ROOT).unwrap());
    let tag = std::env::var(TAG).unwrap();
    let store = Store::open(&root).unwrap();
    match role.as_str() {
        "writer" => writer(&store, &tag),
        "churn" => churn(&store, &tag),
        other => panic!("unknown role {other}"),
    }
}

/// Writes the same big blob repeatedly and its own records, reading back as it goes.
fn writer(store: &Store, tag: &str) {
    let data = big_blob();
    let expected = Digest::of(&data);
    for i in 0..40u64 {
        if i % 4 == 0 {
            let mut w = store.content().writer(Some(expected)).unwrap();
            for chunk in data.chunks(64 * 1024) {
                w.write_all(chunk).unwrap();
            }
            assert_eq!(w.commit().unwrap().digest, expected);
        }
        let mut rec = CacheRecord::new(Some(format!("{tag}-{i}")));
        rec.description = format!("{tag} step {i}");
        store.put_record(&key_for(tag, i), &rec).unwrap();
        assert_eq!(store.get_record(&key_for(tag, i)).unwrap(), Some(rec));
    }
}

/// What a build does, forever, in an order that keeps the store consistent at every point:
/// snapshot on disk, then its record; blobs, then the records and refs that name them.
fn churn(store: &Store, tag: &str) {
    let snaps = DirSnapshots::of(store);
    let mut rng = Rng::seeded();
    let lease = store.create_lease(&LeaseOptions::default()).unwrap();
    let mut parent: Option<String> = None;
    for i in 0u64.. {
        let id = format!("{tag}-{}-{i}", std::process::id());
        store.lease_snapshot(&lease.id, &id).unwrap();
        let dir = snaps.0.join(&id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("file"), i.to_le_bytes()).unwrap();
        let size = 1000 + rng.below(1000);
        store
            .put_snapshot(
                &id,
                &SnapshotRecord {
                    parent: parent.clone(),
                    size,
                    created: Timestamp::now(),
                    last_used: Timestamp::now(),
                },
            )
            .unwrap();
        let payload: Vec<u8> = (0..(16 * 1024 + rng.below(64 * 1024)))
            .map(|_| rng.next() as u8)
            .collect();
        let mut w = store.content().writer(None).unwrap();
        w.write_all(&payload).unwrap();
        let blob = w.commit_leased(&lease.id).unwrap();
        let mut rec = CacheRecord::new(Some(id.clone()));
        rec.layers.push(LayerRef {
            digest: blob.digest,
            size: blob.size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            diff_id: blob.digest,
        });
        store.put_record(&key_for(tag, i), &rec).unwrap();
        if i == 0 {
            let m = store.content().put(b"{}").unwrap();
            store
                .set_image_ref(
                    &format!("progress-{tag}"),
                    &ImageRef {
                        target: m.digest,
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        size: m.size,
                        created: Timestamp::now(),
                    },
                )
                .unwrap();
        }
        if i % 5 == 4 {
            let manifest = format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{0}"}},"layers":[{{"digest":"{0}"}}]}}"#,
                blob.digest
            );
            let m = store.content().put(manifest.as_bytes()).unwrap();
            store
                .set_image_ref(
                    &format!("{tag}:{}", i % 3),
                    &ImageRef {
                        target: m.digest,
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        size: m.size,
                        created: Timestamp::now(),
                    },
                )
                .unwrap();
        }
        if i % 7 == 6 {
            store
                .touch_records(&[key_for(tag, i), key_for(tag, i - 1)])
                .unwrap();
            store
                .prune(
                    &PruneOptions {
                        all: rng.below(2) == 0,
                        keep_storage: Some(20_000),
                        until: None,
                    },
                    &snaps,
                )
                .unwrap();
        }
        parent = if rng.below(3) == 0 { None } else { Some(id) };
    }
}

#[test]
fn two_processes_write_the_same_blob_and_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = spawn("writer", dir.path(), "a");
    let mut b = spawn("writer", dir.path(), "b");
    assert!(a.wait().unwrap().success(), "writer a failed");
    assert!(b.wait().unwrap().success(), "writer b failed");

    let store = Store::open(dir.path()).unwrap();
    let data = big_blob();
    assert_eq!(store.content().list().unwrap().len(), 1);
    assert_eq!(
        store.content().read_to_vec(&Digest::of(&data)).unwrap(),
        data
    );
    assert_eq!(store.records().unwrap().len(), 80);
    for tag in ["a", "b"] {
        for i in 0..40 {
            assert!(store.get_record(&key_for(tag, i)).unwrap().is_some());
        }
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_usable_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded();
    let start = Instant::now();
    for round in 0..20 {
        let mut child = spawn("churn", dir.path(), &format!("r{round}"));
        std::thread::sleep(Duration::from_millis(50 + rng.below(150)));
        // `Child::kill` sends SIGKILL.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the child exited by itself ({status}) instead of being killed"
        );
        // The next user opens the store and writes without error.
        let store = Store::open(dir.path()).unwrap();
        store
            .put_record(&key_for("parent", round), &CacheRecord::new(None))
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let snaps = DirSnapshots::of(&store);
    let report = store.check(false, &snaps).unwrap();
    assert!(
        report.is_clean(),
        "problems after SIGKILLs: {:#?}",
        report.problems
    );
    // Each child names an image once its first step is stored (prune never removes those).
    assert!(
        store
            .image_refs()
            .unwrap()
            .iter()
            .any(|(name, _)| name.starts_with("progress-")),
        "no child made progress before being killed"
    );
    // Leases of the killed builds have expired: a prune may now collect their leftovers,
    // and the store is still clean afterwards.
    assert!(store.leases().unwrap().is_empty());
    store
        .prune(
            &PruneOptions {
                all: true,
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    let report = store.check(true, &snaps).unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    assert!(
        store
            .check(false, &snaps)
            .unwrap()
            .leftover_ingest
            .is_empty()
    );
    eprintln!("20 SIGKILL rounds in {:?}", start.elapsed());
}
