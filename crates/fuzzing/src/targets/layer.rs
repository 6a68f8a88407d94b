//! Layer tars applied onto a directory (`kiln_executor::snapshot::apply_layer`), plain or
//! compressed, in both whiteout modes, over a tree that already holds symlinks pointing out of
//! it (as a lower layer of a hostile image would). Whatever the tar says, nothing outside the
//! target may change and no file inside may be a hard link to one outside.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_executor::snapshot::{ApplyOptions, WhiteoutMode, apply_layer};

use super::scratch;

/// Most decompressed bytes one input may produce (a zstd frame of RLE blocks expands ~40000x).
const MAX_EXPANDED: u64 = 16 << 20;

pub fn layer_apply(data: &[u8]) {
    for (mode, allow_devices) in [(WhiteoutMode::Overlay, false), (WhiteoutMode::Delete, true)] {
        let dir = scratch();
        let outside = dir.path().join("outside");
        let target = dir.path().join("target");
        prepare(&outside, &target);
        let before = snapshot(&outside);
        let opts = ApplyOptions {
            whiteouts: mode,
            allow_devices,
            ..ApplyOptions::default()
        };
        let mut reader = BufReader::new(data);
        let _ = match kiln_oci::compress::detect(&mut reader) {
            Ok(kind) => match kiln_oci::compress::decompress(reader, kind) {
                Ok(tar) => apply_layer(tar.take(MAX_EXPANDED), &target, &opts).map(drop),
                Err(_) => Ok(()),
            },
            Err(_) => Ok(()),
        };
        assert_eq!(
            snapshot(&outside),
            before,
            "applying the layer changed a directory outside the target ({mode:?})"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "target"],
            "an entry landed beside the target"
        );
        let outside_inodes: Vec<u64> = before.values().map(|(ino, _, _)| *ino).collect();
        let outside_dev = dev_of(&outside);
        walk(&target, &mut |path, meta| {
            assert!(
                !outside_inodes.contains(&meta.ino()) || meta.dev() != outside_dev,
                "{} is a hard link to a file outside the target",
                path.display()
            );
            // A layer may make directories nobody can enter; the scratch must still go.
            if meta.is_dir() {
                let _ = std::fs::set_permissions(
                    path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                );
            }
        });
    }
}

/// `outside/` holds a secret; `target/` holds symlinks to it, relative and absolute, and to
/// the secret itself.
fn prepare(outside: &Path, target: &Path) {
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::create_dir_all(target.join("etc")).unwrap();
    std::os::unix::fs::symlink("../outside", target.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside, target.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret", target.join("etc/passwd")).unwrap();
}

/// Every entry under `dir` (not following symlinks): path → (inode, size, mode).
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, u64, u32)> {
    let mut out = BTreeMap::new();
    walk(dir, &mut |path, meta| {
        out.insert(
            path.display().to_string(),
            (meta.ino(), meta.len(), meta.mode()),
        );
    });
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        f(&p, &meta);
        if meta.is_dir() {
            walk(&p, f);
        }
    }
}

fn dev_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.dev()).unwrap_or(0)
}
