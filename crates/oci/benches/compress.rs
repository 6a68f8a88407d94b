//! Layer compression throughput: a 64 MiB layer tar (real files from `/usr`) through gzip, zstd and no compression, each
//! in the one-pass pipeline that also computes the diff ID and the blob digest (gzip deflates 1 MiB
//! chunks on up to four threads), plus the same size of random bytes (stored, not deflated).

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_oci::compress::{Compression, compress_layer};

const SIZE: usize = 64 << 20;

/// A 64 MiB layer tar of real files: the binaries, libraries and text under `/usr`, in sorted
/// order (what image layers mostly hold, and what compressors should be measured on). Padded with
/// a synthetic file if `/usr` holds less.
fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut files = Vec::new();
    collect(Path::new("/usr"), &mut files);
    let mut total = 0usize;
    for path in files {
        if total >= SIZE {
            break;
        }
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if b.append_data(&mut h, path.strip_prefix("/").unwrap_or(&path), &data[..])
            .is_ok()
        {
            total += data.len() + 512;
        }
    }
    let mut out = b.into_inner().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while out.len() < SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(
            format!("line {} of padding {}\n", state % 1000, state >> 54).as_bytes(),
        );
    }
    out.truncate(SIZE);
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

fn bench(c: &mut Criterion) {
    let input = layer();
    let mut group = c.benchmark_group("compress_64MiB_layer");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    for compression in [
        Compression::None,
        Compression::Gzip { level: 6 },
        Compression::Gzip { level: 4 },
        Compression::Gzip { level: 1 },
        Compression::Zstd { level: 3 },
    ] {
        group.bench_function(compression.to_string(), |b| {
            b.iter(|| {
                compress_layer(black_box(&input[..]), compression, io::sink())
                    .unwrap()
                    .0
            })
        });
    }
    group.finish();

    // Incompressible layers (media, archives, random test data): gzip stores such chunks.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let mut group = c.benchmark_group("compress_64MiB_random");
    group.throughput(Throughput::Bytes(random.len() as u64));
    group.sample_size(10);
    group.bench_function("gzip,level=6", |b| {
        b.iter(|| {
            compress_layer(
                black_box(&random[..]),
                Compression::Gzip { level: 6 },
                io::sink(),
            )
            .unwrap()
            .0
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
