//! Helpers shared by the snapshot tests (included with `#[path]`; alone it holds no tests).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !util::is_root() {
            eprintln!("skipping: this test needs root (overlay mounts, mknod, chown)");
            return;
        }
    };
}

/// A mount that is undone when dropped, so a failing assertion does not leave it behind.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = kiln_executor::snapshot::overlay::unmount(&self.0);
    }
}

fn content_hash(path: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut f = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        buf[..n].hash(&mut h);
    }
    h.finish()
}

/// One line per entry under `root`: path, type, mode, owner, size, content hash, link target,
/// device, mtime seconds, xattrs (without overlayfs' own) and hard-link group.
pub fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    let mut walker: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(dir) = walker.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walker.push(p.clone());
            }
            all.push((p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, m) in all {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let content = if ft.is_file() { content_hash(&p) } else { 0 };
        let link = if ft.is_symlink() {
            fs::read_link(&p).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).unwrap() {
            if name.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            let v = xattr::get(&p, &name).unwrap().unwrap_or_default();
            xattrs.insert(name.to_string_lossy().into_owned(), v);
        }
        let group = if !ft.is_dir() && m.nlink() > 1 {
            first_of_inode
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            String::new()
        };
        out.push(format!(
            "{rel} {kind} {:o} {}:{} size={} content={content:x} link={link:?} rdev={} mtime={} xattrs={xattrs:?} group={group}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            if ft.is_dir() { 0 } else { m.len() },
            m.rdev(),
            m.mtime(),
        ));
    }
    out
}

/// Compares two listings line by line with a readable failure.
pub fn assert_same_listing(a: &[String], b: &[String]) {
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!("trees differ\nonly in first:\n{only_a:#?}\nonly in second:\n{only_b:#?}");
    }
}
