//! GNU sparse entries in layer tars: a few hundred bytes can describe terabytes of holes. A
//! sparse file applies with its holes kept as holes, and a layer whose holes add up past the
//! limit is refused at once instead of writing zeros for minutes.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use kiln_executor::snapshot::{ApplyOptions, WhiteoutMode, apply_layer};

/// A GNU sparse entry `name`: a hole of `hole` bytes, then `data` (at most 512 bytes).
fn sparse(name: &str, hole: u64, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.sparse[0].set_offset(hole);
        gnu.sparse[0].set_length(data.len() as u64);
        gnu.set_real_size(hole + data.len() as u64);
    }
    h.set_path(name).unwrap();
    h.set_cksum();
    let mut block = data.to_vec();
    block.resize(512, 0);
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&block);
    out
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..ApplyOptions::default()
    }
}

#[test]
fn a_sparse_file_keeps_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let hole = 64 << 20;
    let tar = finish(sparse("db", hole, b"tail"));
    apply_layer(&tar[..], dir.path(), &opts()).unwrap();
    let path = dir.path().join("db");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), hole + 4);
    // 64 MiB of zeros would take 131072 blocks of 512 bytes; a hole takes none.
    assert!(meta.blocks() < 1024, "{} blocks allocated", meta.blocks());
    let content = std::fs::read(&path).unwrap();
    assert!(content[..hole as usize].iter().all(|&b| b == 0));
    assert_eq!(&content[hole as usize..], b"tail");
}

#[test]
fn a_layer_of_huge_sparse_holes_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of holes are fine; a terabyte more is not.
    let mut tar = sparse("a", 64 << 20, b"x");
    tar.extend(sparse("c", 1 << 40, b"z"));
    let start = Instant::now();
    let err = apply_layer(&finish(tar)[..], dir.path(), &opts()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not supported yet: sparse files with more than"),
        "{err}"
    );
    assert!(err.to_string().contains("\"c\""), "{err}");
    assert!(dir.path().join("a").exists() && !dir.path().join("c").exists());
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}
