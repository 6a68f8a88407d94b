//! Behaviour of the store as its users see it: blobs, records, image refs, handles sharing a
//! root. Prune, df and check are in `gc.rs`.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use kiln_cache::{Digest, Error, ImageRef, LayerRef, Store, Timestamp};

fn ingest_files(root: &Path) -> usize {
    fs::read_dir(root.join("content/ingest")).unwrap().count()
}

#[test]
fn content_round_trip() {
    let (dir, store) = store();
    let content = store.content();
    let mut w = content.writer(None).unwrap();
    w.write_all(b"hello ").unwrap();
    w.write_all(b"world").unwrap();
    let info = w.commit().unwrap();
    assert_eq!(info.digest, Digest::of(b"hello world"));
    assert_eq!(info.size, 11);
    assert!(content.exists(&info.digest));
    assert_eq!(content.info(&info.digest).unwrap(), info);
    assert_eq!(content.read_to_vec(&info.digest).unwrap(), b"hello world");
    content.verify(&info.digest).unwrap();
    assert_eq!(content.list().unwrap(), vec![info]);
    assert_eq!(
        content.path(&info.digest),
        dir.path()
            .join("content/blobs/sha256")
            .join(info.digest.hex())
    );
    assert_eq!(ingest_files(dir.path()), 0, "temp file renamed away");
    assert!(content.delete(&info.digest).unwrap());
    assert!(!content.delete(&info.digest).unwrap());
    assert!(matches!(
        content.read(&info.digest),
        Err(Error::BlobNotFound(_))
    ));
}

#[test]
fn verification_failure_stores_nothing() {
    let (dir, store) = store();
    let content = store.content();
    let wrong = Digest::of(b"something else");
    let mut w = content.writer(Some(wrong)).unwrap();
    w.write_all(b"actual content").unwrap();
    let err = w.commit().unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { expected, actual } if expected == wrong && actual == Digest::of(b"actual content"))
    );
    assert!(content.list().unwrap().is_empty());
    assert_eq!(ingest_files(dir.path()), 0);

    let right = Digest::of(b"sized");
    let mut w = content.writer(Some(right)).unwrap().expect_size(99);
    w.write_all(b"sized").unwrap();
    assert!(matches!(w.commit(), Err(Error::SizeMismatch { .. })));
    assert!(!content.exists(&right));

    // A writer dropped before commit leaves nothing either.
    let mut w = content.writer(None).unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert_eq!(ingest_files(dir.path()), 0);
    assert!(content.list().unwrap().is_empty());
}

#[test]
fn verified_reader_detects_corruption() {
    let (_dir, store) = store();
    let content = store.content();
    let info = content.put(b"precious bytes").unwrap();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut content.open_verified(&info.digest).unwrap(), &mut data)
        .unwrap();
    assert_eq!(data, b"precious bytes");
    flip_byte(&content.path(&info.digest));
    let mut r = content.open_verified(&info.digest).unwrap();
    let err = std::io::Read::read_to_end(&mut r, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(
        content.verify(&info.digest),
        Err(Error::CorruptBlob { .. })
    ));
}

#[test]
fn concurrent_writers_of_one_blob_in_threads() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let expected = Digest::of(&data);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    let mut w = store.content().writer(Some(expected)).unwrap();
                    for chunk in data.chunks(7000) {
                        w.write_all(chunk).unwrap();
                    }
                    assert_eq!(w.commit().unwrap().digest, expected);
                }
            });
        }
    });
    assert_eq!(store.content().list().unwrap().len(), 1);
    store.content().verify(&expected).unwrap();
}

#[test]
fn records_crud_and_touch() {
    let (dir, store) = store();
    assert_eq!(store.get_record(&key(1)).unwrap(), None);
    let mut rec = record("s1", Timestamp(1000));
    rec.layers.push(LayerRef {
        digest: Digest::of(b"layer"),
        size: 5,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        diff_id: Digest::of(b"tar"),
    });
    store.put_record(&key(1), &rec).unwrap();
    store
        .put_record(&key(2), &record("s2", Timestamp(2000)))
        .unwrap();
    assert_eq!(store.get_record(&key(1)).unwrap(), Some(rec.clone()));
    assert_eq!(store.records().unwrap().len(), 2);

    assert_eq!(store.touch_records(&[key(1), key(9)]).unwrap(), 1);
    let touched = store.get_record(&key(1)).unwrap().unwrap();
    assert!(touched.last_used > Timestamp(1000));

    assert!(store.delete_record(&key(2)).unwrap());
    assert!(!store.delete_record(&key(2)).unwrap());

    // Everything survives closing and reopening, including the non-durable touch.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.records().unwrap().len(), 1);
    assert_eq!(
        store.get_record(&key(1)).unwrap().unwrap().last_used,
        touched.last_used
    );
}

#[test]
fn write_transaction_is_all_or_nothing() {
    let (_dir, store) = store();
    let res: Result<(), Error> = store.write(|tx| {
        tx.put_record(&key(1), &record("s1", Timestamp(1)))?;
        Err(Error::LeaseNotFound("x".into()))
    });
    assert!(res.is_err());
    assert_eq!(store.get_record(&key(1)).unwrap(), None);
}

#[test]
fn image_refs() {
    let (_dir, store) = store();
    let m = store.content().put(br#"{"schemaVersion":2}"#).unwrap();
    let r = ImageRef {
        target: m.digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: m.size,
        created: Timestamp::now(),
    };
    assert_eq!(store.set_image_ref("app:1", &r).unwrap(), None);
    assert_eq!(store.set_image_ref("app:1", &r).unwrap(), Some(r.clone()));
    store.set_image_ref("app:2", &r).unwrap();
    assert_eq!(store.image_ref("app:1").unwrap(), Some(r.clone()));
    let names: Vec<String> = store
        .image_refs()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["app:1", "app:2"]);
    assert_eq!(store.delete_image_ref("app:1").unwrap(), Some(r));
    assert_eq!(store.image_ref("app:1").unwrap(), None);
    assert!(matches!(
        store.set_image_ref("", &store.image_ref("app:2").unwrap().unwrap()),
        Err(Error::InvalidRefName(_))
    ));
}

#[test]
fn default_root_rule() {
    use kiln_cache::default_root_from as root;
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(root(p("/x"), true, None, None), PathBuf::from("/x"));
    assert_eq!(
        root(p(""), true, None, None),
        PathBuf::from("/var/lib/kiln")
    );
    assert_eq!(
        root(None, false, p("/data"), p("/home/u")),
        PathBuf::from("/data/kiln")
    );
    assert_eq!(
        root(None, false, p("relative"), p("/home/u")),
        PathBuf::from("/home/u/.local/share/kiln")
    );
    assert_eq!(
        root(None, false, None, p("/home/u")),
        PathBuf::from("/home/u/.local/share/kiln")
    );
}

#[test]
fn two_handles_in_one_process_share_the_root() {
    let (dir, a) = store();
    let b = Store::open(dir.path()).unwrap();
    std::thread::scope(|s| {
        for (n, st) in [(0u8, &a), (100u8, &b)] {
            s.spawn(move || {
                for i in 0..30u8 {
                    st.put_record(&key(n + i), &record("s", Timestamp(1)))
                        .unwrap();
                    assert!(st.get_record(&key(n + i)).unwrap().is_some());
                }
            });
        }
    });
    assert_eq!(a.records().unwrap().len(), 60);
    assert_eq!(b.records().unwrap().len(), 60);
}

#[test]
fn a_busy_handle_hands_the_database_over() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    // Two handles on one root contend like two processes (separate file locks). One writes
    // without pause; the other must still get its turns instead of waiting for it to stop.
    let (dir, busy) = store();
    let other = Store::open(dir.path()).unwrap();
    let done = AtomicBool::new(false);
    let writes = AtomicU32::new(0);
    const MAX_WRITES: u32 = 5000;
    std::thread::scope(|s| {
        s.spawn(|| {
            let rec = record("s", Timestamp(1));
            while !done.load(Ordering::SeqCst) && writes.load(Ordering::SeqCst) < MAX_WRITES {
                busy.put_record(&key(1), &rec).unwrap();
                writes.fetch_add(1, Ordering::SeqCst);
            }
        });
        s.spawn(|| {
            // Let the writer get going first.
            while writes.load(Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
            for i in 0..10u8 {
                other
                    .put_record(&key(100 + i), &record("s", Timestamp(1)))
                    .unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
    });
    assert!(
        writes.load(Ordering::SeqCst) < MAX_WRITES,
        "the second handle only got the database after the busy one stopped"
    );
    assert_eq!(busy.records().unwrap().len(), 11);
}

#[test]
fn dropping_the_last_handle_closes_the_database_at_once() {
    // A process ends right after its last transaction: unless the database is closed when
    // the last handle goes, the process exits with it open and the next one pays for redb's
    // repair. Nothing else in this process may still hold the file once the handle is gone.
    let (dir, store) = store();
    store
        .put_record(&key(1), &record("s1", Timestamp(1000)))
        .unwrap();
    drop(store);
    let path = dir.path().join("meta.redb");
    match redb::Database::create(&path) {
        Ok(db) => drop(db),
        Err(e) => panic!("meta.redb is still open after the last handle was dropped: {e}"),
    }
}
