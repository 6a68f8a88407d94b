//! Benchmark: writing the layer tar of a tree of a few thousand files (overlay upper dir and
//! copy-driver tree comparison), and applying it back.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_executor::snapshot::{
    ApplyOptions, DiffOptions, DiffSource, WhiteoutMode, apply_layer, write_layer,
};

/// 40 directories of 100 files each, 0 to 16 KiB, like a source tree or a package install.
fn make_tree(root: &Path) -> u64 {
    let mut bytes = 0;
    for d in 0..40 {
        let dir = root.join(format!("dir{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = (d * 100 + f) * 37 % 16384;
            fs::write(
                dir.join(format!("file{f:03}.txt")),
                vec![b'a' + (f % 26) as u8; len],
            )
            .unwrap();
            bytes += len as u64;
        }
    }
    bytes
}

fn bench_diff(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    let bytes = make_tree(&upper);
    // A "parent" equal to the tree except one directory, for the copy driver's comparison.
    let lower = tmp.path().join("lower");
    make_tree(&lower);
    fs::remove_dir_all(lower.join("dir07")).unwrap();

    let mut group = c.benchmark_group("layer_diff_4000_files");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("overlay_upper", |b| {
        b.iter(|| {
            let src = DiffSource::OverlayUpper { upper: &upper };
            black_box(write_layer(src, std::io::sink(), &DiffOptions::default()).unwrap())
        })
    });
    group.bench_function("copy_tree_compare", |b| {
        b.iter(|| {
            let src = DiffSource::Trees {
                lower: Some(&lower),
                upper: &upper,
            };
            black_box(write_layer(src, std::io::sink(), &DiffOptions::default()).unwrap())
        })
    });
    let mut tar = Vec::new();
    write_layer(
        DiffSource::OverlayUpper { upper: &upper },
        &mut tar,
        &DiffOptions::default(),
    )
    .unwrap();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    };
    group.bench_function("apply", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(tmp.path()).unwrap(),
            |dir| black_box(apply_layer(&tar[..], dir.path(), &opts).unwrap()),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
