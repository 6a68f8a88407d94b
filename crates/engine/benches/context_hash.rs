//! Benchmarks: content keys of `COPY . /src` over a 5,000-file build context, with an empty
//! stat cache (cold build), a full one (no-op rebuild) and after a one-file edit.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_engine::bench::{LocalDir, Value};
use kiln_engine::bench::{copy_content_key, load_stat_cache};
use kiln_llb::{CopyAction, Digest, FileAction, FileOp, Input};

const FILES: usize = 5_000;

/// Writes a deterministic tree of small files (64 B .. 16 KiB) in 50 directories; returns
/// its size in bytes.
fn make_context(root: &Path) -> u64 {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut total = 0;
    for i in 0..FILES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 64 + (seed % (16 << 10)) as usize;
        let dir = root.join(format!("pkg{:02}", i % 50));
        std::fs::create_dir_all(&dir).expect("create a context directory");
        let line = format!("fn item_{i}() -> u64 {{ {seed} }}\n");
        let body: Vec<u8> = line.bytes().cycle().take(size).collect();
        std::fs::write(dir.join(format!("file{i:05}.rs")), &body).expect("write a context file");
        total += size as u64;
    }
    total
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let ctx = tmp.path().join("context");
    let bytes = make_context(&ctx);

    let local = Digest::of(b"bench local context");
    let file = FileOp {
        base: Input::new(Digest::of(b"bench base image")),
        actions: vec![FileAction::Copy(CopyAction::new(
            Input::new(local),
            "/",
            "/src/",
        ))],
    };
    let index = [local];
    let inputs = [Value::Local(Arc::new(LocalDir::new(ctx.clone(), None)))];
    let key = || {
        copy_content_key(&file, &index, &inputs)
            .expect("hash the context")
            .expect("the copy reads the context")
    };

    let mut group = c.benchmark_group("context_hash_5000_files");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("cold_stat_cache", |b| {
        b.iter(|| {
            // an empty in-memory cache for this context, as on the first build
            load_stat_cache(&ctx, None);
            key()
        })
    });
    load_stat_cache(&ctx, None);
    let first = key();
    group.bench_function("warm_stat_cache", |b| b.iter(key));
    assert_eq!(
        key().material,
        first.material,
        "an unchanged context keeps its key"
    );

    let edited = ctx.join("pkg07/file00007.rs");
    let mut n = 0u64;
    group.bench_function("one_file_edited", |b| {
        b.iter(|| {
            n += 1;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&edited)
                .expect("open the edited file");
            writeln!(f, "// edit {n}").expect("edit the file");
            key()
        })
    });
    group.finish();
    assert_ne!(key().material, first.material, "an edit changes the key");
}

criterion_group!(benches, bench);
criterion_main!(benches);
