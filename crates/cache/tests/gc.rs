//! Prune, disk usage and check as users see them: what images, leases and records keep, the
//! order records go in, and what check reports and repairs.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::time::Duration;

use common::*;
use kiln_cache::{
    CacheKey, Digest, LayerRef, LeaseOptions, Problem, PruneOptions, SnapshotRemover, Timestamp,
};

#[test]
fn prune_all_keeps_images_and_leases() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    let (_, image_blobs) = put_image(&store, "app:1", b"image layer");
    let stray = store.content().put(b"nobody references me").unwrap();

    // A leased blob and a leased snapshot (with a parent).
    let lease = store.create_lease(&LeaseOptions::default()).unwrap();
    let leased = store.content().writer(None).unwrap();
    let mut leased = leased;
    leased.write_all(b"in use by a build").unwrap();
    let leased = leased.commit_leased(&lease.id).unwrap();
    for id in ["base", "leased", "old", "child"] {
        snaps.create(id);
    }
    store.put_snapshot("base", &snap(None, 100, 1)).unwrap();
    store
        .put_snapshot("leased", &snap(Some("base"), 10, 1))
        .unwrap();
    store.put_snapshot("old", &snap(None, 50, 1)).unwrap();
    store
        .put_snapshot("child", &snap(Some("old"), 5, 1))
        .unwrap();
    store.lease_snapshot(&lease.id, "leased").unwrap();
    store
        .put_record(&key(1), &record("child", Timestamp(1)))
        .unwrap();
    snaps.create("orphan");

    let report = store
        .prune(
            &PruneOptions {
                all: true,
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert_eq!(report.records_removed.len(), 1);
    // Children before parents; the unrecorded orphan too.
    let removed = snaps.removed.lock().unwrap().clone();
    assert_eq!(removed, ["child", "old", "orphan"]);
    assert_eq!(report.snapshots_removed, removed);
    let blobs: Vec<Digest> = report.blobs_removed.iter().map(|b| b.digest).collect();
    assert_eq!(blobs, [stray.digest]);
    assert_eq!(report.reclaimed, 55 + stray.size);

    for d in image_blobs.iter().chain([&leased.digest]) {
        assert!(store.content().exists(d), "{d} must survive");
    }
    assert!(snaps.exists("base").unwrap() && snaps.exists("leased").unwrap());
    assert!(store.snapshot("base").unwrap().is_some());

    // Once the lease is gone, its blob and snapshots go too; the image stays.
    assert!(store.delete_lease(&lease.id).unwrap());
    let report = store.prune(&PruneOptions::default(), &snaps).unwrap();
    assert_eq!(report.snapshots_removed, ["leased", "base"]);
    assert_eq!(
        report
            .blobs_removed
            .iter()
            .map(|b| b.digest)
            .collect::<Vec<_>>(),
        [leased.digest]
    );
    for d in &image_blobs {
        assert!(store.content().exists(d));
    }
    // Deleting the image frees its blobs.
    store.delete_image_ref("app:1").unwrap();
    let report = store.prune(&PruneOptions::default(), &snaps).unwrap();
    assert_eq!(report.blobs_removed.len(), 4);
    assert!(store.content().list().unwrap().is_empty());
}

#[test]
fn expired_leases_protect_nothing() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    let ttl = store
        .create_lease(&LeaseOptions {
            id: Some("short".into()),
            ttl: Some(Duration::from_millis(1)),
            bind_to_process: false,
        })
        .unwrap();
    let blob = store.content().put(b"ttl leased").unwrap();
    store.lease_blob(&ttl.id, blob.digest).unwrap();

    // A lease whose owner process has exited (as after SIGKILL).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let mut dead = store.create_lease(&LeaseOptions::default()).unwrap();
    let owner = dead.owner.as_mut().expect("bound to this process");
    owner.pid = dead_pid;
    let blob2 = store.content().put(b"pid leased").unwrap();
    dead.blobs.insert(blob2.digest);
    store.write(|tx| tx.put_lease(&dead)).unwrap();

    let live = store.create_lease(&LeaseOptions::default()).unwrap();
    let kept = store.content().put(b"live leased").unwrap();
    store.lease_blob(&live.id, kept.digest).unwrap();
    std::thread::sleep(Duration::from_millis(5));

    let ids: BTreeSet<String> = store.leases().unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(ids, BTreeSet::from([live.id.clone()]));
    let report = store.prune(&PruneOptions::default(), &snaps).unwrap();
    let mut expired = report.leases_expired.clone();
    expired.sort();
    let mut want = vec!["short".to_owned(), dead.id.clone()];
    want.sort();
    assert_eq!(expired, want);
    let mut removed: Vec<Digest> = report.blobs_removed.iter().map(|b| b.digest).collect();
    removed.sort();
    let mut want = vec![blob.digest, blob2.digest];
    want.sort();
    assert_eq!(removed, want);
    assert!(store.content().exists(&kept.digest));
    assert!(store.read(|tx| tx.lease(&live.id)).unwrap().is_some());
    assert!(store.read(|tx| tx.lease("short")).unwrap().is_none());
}

#[test]
fn prune_keep_storage_removes_least_recently_used_first() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    for (n, id) in [(3u8, "s3"), (1, "s1"), (2, "s2")] {
        snaps.create(id);
        store.put_snapshot(id, &snap(None, 100, 0)).unwrap();
        store
            .put_record(&key(n), &record(id, Timestamp(u64::from(n) * 1000)))
            .unwrap();
    }
    assert_eq!(store.df().unwrap().build_cache.bytes, 300);
    let report = store
        .prune(
            &PruneOptions {
                keep_storage: Some(150),
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    let removed: Vec<CacheKey> = report.records_removed.iter().map(|(k, _)| *k).collect();
    assert_eq!(removed, [key(1), key(2)]);
    assert_eq!(record_keys(&store), [key(3)]);
    assert_eq!(snapshot_ids(&store), ["s3"]);
    assert_eq!(report.reclaimed, 200);
    assert_eq!(store.df().unwrap().build_cache.bytes, 100);

    // Already under the limit: nothing more goes.
    let report = store
        .prune(
            &PruneOptions {
                keep_storage: Some(100),
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert!(report.records_removed.is_empty());
}

#[test]
fn prune_keep_storage_counts_shared_parents_once() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    // base (1000 bytes) <- a (10), base <- b (10); records on a and b.
    for (id, parent, size) in [
        ("base", None, 1000),
        ("a", Some("base"), 10),
        ("b", Some("base"), 10),
    ] {
        snaps.create(id);
        store.put_snapshot(id, &snap(parent, size, 0)).unwrap();
    }
    store
        .put_record(&key(1), &record("a", Timestamp(1)))
        .unwrap();
    store
        .put_record(&key(2), &record("b", Timestamp(2)))
        .unwrap();
    assert_eq!(store.df().unwrap().build_cache.bytes, 1020);
    let report = store
        .prune(
            &PruneOptions {
                keep_storage: Some(1015),
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert_eq!(report.records_removed.len(), 1);
    assert_eq!(snapshot_ids(&store), ["b", "base"]);
    assert_eq!(store.df().unwrap().build_cache.bytes, 1010);
}

#[test]
fn prune_until_spares_recently_used_records() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    let now = Timestamp::now();
    let old = now.saturating_sub(Duration::from_secs(7200));
    for (n, id, t) in [(1u8, "old", old), (2, "new", now)] {
        snaps.create(id);
        store.put_snapshot(id, &snap(None, 10, t.0)).unwrap();
        store.put_record(&key(n), &record(id, t)).unwrap();
    }
    let report = store
        .prune(
            &PruneOptions {
                until: Some(Duration::from_secs(3600)),
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert_eq!(report.records_removed.len(), 1);
    assert_eq!(report.records_removed[0].0, key(1));
    assert_eq!(record_keys(&store), [key(2)]);
    assert!(!snaps.exists("old").unwrap());
    assert!(snaps.exists("new").unwrap());
}

#[test]
fn prune_without_all_keeps_records_whose_layers_an_image_uses() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    let (_, image_blobs) = put_image(&store, "app:1", b"layer of app");
    let layer = image_blobs[0];
    snaps.create("used");
    snaps.create("dangling");
    let mut used = record("used", Timestamp(1));
    used.layers.push(LayerRef {
        digest: layer,
        size: 12,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        diff_id: layer,
    });
    store.put_record(&key(1), &used).unwrap();
    store
        .put_record(&key(2), &record("dangling", Timestamp(1)))
        .unwrap();

    let report = store.prune(&PruneOptions::default(), &snaps).unwrap();
    assert_eq!(report.records_removed.len(), 1);
    assert_eq!(record_keys(&store), [key(1)]);
    let report = store
        .prune(
            &PruneOptions {
                all: true,
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert_eq!(report.records_removed.len(), 1);
    assert!(store.records().unwrap().is_empty());
    assert!(
        store.content().exists(&layer),
        "the image still holds its layer"
    );
}

#[test]
fn df_reports_images_cache_and_blobs() {
    let (_dir, store) = store();
    let (_, image_blobs) = put_image(&store, "app:1", b"0123456789");
    let image_bytes: u64 = image_blobs
        .iter()
        .map(|d| store.content().info(d).unwrap().size)
        .sum();
    let stray = store.content().put(b"stray").unwrap();
    store.put_snapshot("s", &snap(None, 40, 0)).unwrap();
    store.put_snapshot("unused", &snap(None, 2, 0)).unwrap();
    store
        .put_record(&key(1), &record("s", Timestamp(1)))
        .unwrap();
    let du = store.df().unwrap();
    assert_eq!((du.images.count, du.images.bytes), (1, image_bytes));
    assert_eq!(
        (
            du.build_cache.count,
            du.build_cache.bytes,
            du.build_cache.reclaimable
        ),
        (1, 40, 40)
    );
    assert_eq!((du.snapshots.count, du.snapshots.bytes), (2, 42));
    assert_eq!(du.blobs.count, 5);
    assert_eq!(du.blobs.bytes, image_bytes + stray.size);
    assert_eq!(du.blobs.reclaimable, stray.size);
}

#[test]
fn check_reports_without_changing_and_repair_drops_what_is_broken() {
    let (dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    let (_, image_blobs) = put_image(&store, "app:1", b"image layer bytes");
    let good = store.content().put(b"good layer").unwrap();
    let bad = store.content().put(b"layer to corrupt").unwrap();
    let layer = |d: Digest| LayerRef {
        digest: d,
        size: 1,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        diff_id: d,
    };
    snaps.create("s1");
    snaps.create("s3");
    store.put_snapshot("s1", &snap(None, 1, 0)).unwrap();
    store.put_snapshot("gone", &snap(None, 1, 0)).unwrap();
    let mut r1 = record("s1", Timestamp(1));
    r1.layers.push(layer(bad.digest));
    store.put_record(&key(1), &r1).unwrap();
    store
        .put_record(&key(2), &record("missing-snap", Timestamp(1)))
        .unwrap();
    let mut r3 = record("s3", Timestamp(1));
    r3.layers.push(layer(good.digest));
    store.put_record(&key(3), &r3).unwrap();

    // Damage: flip a byte of one blob, delete the image's layer, leave a dead writer's
    // temp file, and keep a live writer open.
    flip_byte(&store.content().path(&bad.digest));
    fs::remove_file(store.content().path(&image_blobs[0])).unwrap();
    let leftover = dir.path().join("content/ingest/999999-0-0.tmp");
    fs::write(&leftover, b"partial").unwrap();
    let mut live = store.content().writer(None).unwrap();
    live.write_all(b"in progress").unwrap();

    let report = store.check(false, &snaps).unwrap();
    let expected = vec![
        Problem::CorruptBlob {
            digest: bad.digest,
            actual: Digest::of(&fs::read(store.content().path(&bad.digest)).unwrap()),
        },
        Problem::RecordBrokenBlob {
            key: key(1),
            digest: bad.digest,
        },
        Problem::RecordMissingSnapshot {
            key: key(2),
            snapshot: "missing-snap".into(),
        },
        Problem::SnapshotMissing { id: "gone".into() },
        Problem::ImageBrokenBlob {
            name: "app:1".into(),
            digest: image_blobs[0],
        },
    ];
    assert_eq!(report.problems, expected);
    assert_eq!(report.leftover_ingest, std::slice::from_ref(&leftover));
    assert!(!report.is_clean());
    // Nothing changed.
    assert!(store.content().path(&bad.digest).exists());
    assert!(leftover.exists());
    assert_eq!(store.records().unwrap().len(), 3);
    assert_eq!(store.check(false, &snaps).unwrap().problems, expected);

    let report = store.check(true, &snaps).unwrap();
    assert_eq!(report.problems, expected);
    assert!(report.repaired);
    assert!(!store.content().exists(&bad.digest));
    assert!(!leftover.exists());
    assert_eq!(record_keys(&store), [key(3)]);
    assert_eq!(snapshot_ids(&store), ["s1"]);
    assert!(store.image_ref("app:1").unwrap().is_none());

    let report = store.check(false, &snaps).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.leftover_ingest.is_empty());
    // The live writer was not disturbed.
    let info = live.commit().unwrap();
    assert_eq!(info.digest, Digest::of(b"in progress"));
}

#[test]
fn prune_keeps_unrecorded_parents_the_snapshotter_knows() {
    let (_dir, store) = store();
    let snaps = DirSnapshots::new(&store);
    // The engine recorded neither snapshot, only a cache record naming the child.
    snaps.create("lower");
    snaps.create("upper");
    fs::write(snaps.dir.join("upper/.parent"), "lower").unwrap();
    snaps.create("unrelated");
    store
        .put_record(&key(1), &record("upper", Timestamp(1)))
        .unwrap();
    let report = store.prune(&PruneOptions::default(), &snaps).unwrap();
    assert_eq!(report.records_removed.len(), 1, "dangling record pruned");
    // Now nothing names them: all three go, the child before its parent.
    assert_eq!(
        report.snapshots_removed,
        ["upper", "lower", "unrelated"].map(String::from)
    );

    snaps.create("lower");
    snaps.create("upper");
    fs::write(snaps.dir.join("upper/.parent"), "lower").unwrap();
    store
        .put_record(&key(1), &record("upper", Timestamp::now()))
        .unwrap();
    let report = store
        .prune(
            &PruneOptions {
                until: Some(Duration::from_secs(3600)),
                ..Default::default()
            },
            &snaps,
        )
        .unwrap();
    assert!(report.records_removed.is_empty());
    assert!(
        report.snapshots_removed.is_empty(),
        "{:?}",
        report.snapshots_removed
    );
    assert!(snaps.exists("lower").unwrap() && snaps.exists("upper").unwrap());
}
