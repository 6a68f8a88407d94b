//! Costs of the store's primitives: metadata transactions with the database held open, the
//! first transaction after the database was closed (open + txn), the hand-over between two
//! store handles contending for it, and blob writes.
//!
//! Run with `cargo bench -p kiln-cache --bench store`. Plain timing loops rather than a
//! statistics harness: the numbers feed `docs/dev/store.md`, and fsync dominates them.

use std::io::Write;
use std::time::{Duration, Instant};

use kiln_cache::{CacheKey, CacheRecord, Store};

fn per_op(label: &str, n: u32, mut f: impl FnMut(u32)) {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let each = start.elapsed() / n;
    println!("{label:<52} {each:>12.2?} per op ({n} ops)");
}

fn key(i: u32) -> CacheKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_le_bytes());
    CacheKey(k)
}

fn main() {
    // `cargo bench` passes `--bench`; no other arguments are understood.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    let rec = CacheRecord::new(Some("snapshot-id".into()));

    per_op("put_record (durable write txn, db open)", 200, |i| {
        store.put_record(&key(i), &rec).unwrap();
    });
    per_op("get_record (read txn, db open)", 5000, |i| {
        store.get_record(&key(i % 200)).unwrap();
    });
    per_op("touch_records, 20 keys (non-durable write txn)", 200, |i| {
        let keys: Vec<CacheKey> = (0..20).map(|j| key((i + j) % 200)).collect();
        store.touch_records(&keys).unwrap();
    });
    // After IDLE the database is closed; the next call opens it again (the sleep is not timed).
    let mut total = Duration::ZERO;
    for i in 0..30 {
        std::thread::sleep(Duration::from_millis(60));
        let t = Instant::now();
        store.get_record(&key(i)).unwrap();
        total += t.elapsed();
    }
    println!(
        "{:<52} {:>12.2?} per op (30 ops)",
        "get_record after idle close (open + read txn)",
        total / 30
    );

    // Two handles on one root behave like two processes: separate locks, hand-over.
    let other = Store::open(dir.path()).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for st in [&store, &other] {
            s.spawn(move || {
                for i in 0..200 {
                    st.get_record(&key(i)).unwrap();
                }
            });
        }
    });
    println!(
        "{:<52} {:>12.2?} per op (400 ops)",
        "get_record, two contending handles",
        start.elapsed() / 400
    );

    let data = vec![7u8; 4 << 20];
    per_op("blob write 4 MiB (hash + fsync + rename)", 10, |i| {
        let mut w = store.content().writer(None).unwrap();
        w.write_all(&data).unwrap();
        w.write_all(&i.to_le_bytes()).unwrap();
        w.commit().unwrap();
    });
    per_op("blob write 1 KiB", 100, |i| {
        store.content().put(&i.to_le_bytes().repeat(256)).unwrap();
    });
}
