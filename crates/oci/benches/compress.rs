//! Layer compression throughput: a 64 MiB layer tar through gzip, zstd and no compression, each
//! in the one-pass pipeline that also computes the diff ID and the blob digest.

use std::hint::black_box;
use std::io;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_oci::compress::{Compression, compress_layer};

/// A 64 MiB tar of files that compress like real binaries and text do (about 3:1), not like
/// zeros or noise.
fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let words: Vec<&[u8]> = [
        &b"lib"[..],
        b"usr",
        b"share",
        b"\x00\x00\x00\x00",
        b"ELF",
        b"main",
        b"return",
        b"0x7f",
        b"error",
        b"{",
    ]
    .to_vec();
    for i in 0..64 {
        let mut data = Vec::with_capacity(1 << 20);
        while data.len() < (1 << 20) - 512 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(4) {
                data.extend_from_slice(&state.to_le_bytes());
            } else {
                data.extend_from_slice(words[(state >> 32) as usize % words.len()]);
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("usr/lib/file{i}"), &data[..])
            .unwrap();
    }
    let mut out = b.into_inner().unwrap();
    out.resize(64 << 20, 0);
    out
}

fn bench(c: &mut Criterion) {
    let input = layer();
    let mut group = c.benchmark_group("compress_64MiB_layer");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    for compression in [
        Compression::None,
        Compression::Gzip { level: 6 },
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
