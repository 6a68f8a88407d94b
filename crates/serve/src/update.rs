//! Brings a materialized context directory from one tree to another in place: only entries
//! that differ are removed, written or given new metadata. A one-file edit of a large context
//! thus rewrites one file, and the engine's stat cache for the directory (keyed by path, inode,
//! size and times) stays warm for everything else.
//!
//! The directory is the worker's own (no build holds it while it changes) and every name was
//! checked when its node was decoded, so plain path calls cannot leave it: an entry whose kind
//! changes is removed (without following it) before the new one is made.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use kiln_llb::Digest;
use kiln_proto::tree::{self, Entry, EntryKind, MaterializeOptions, Metadata, Node, Source};
use rustix::fs::{AtFlags, CWD, Gid, Timespec, Timestamps, Uid};

use crate::blobs::StoreSource;

fn io_err(what: &'static str, path: &Path, source: io::Error) -> tree::TreeError {
    tree::TreeError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

fn load(source: &dyn Source, digest: &Digest) -> Result<Node, tree::TreeError> {
    let bytes = source
        .read(digest)
        .map_err(|e| tree::TreeError::Io {
            what: "read tree node",
            path: digest.to_string(),
            source: e,
        })?
        .ok_or(tree::TreeError::MissingNode(*digest))?;
    Node::decode(digest, bytes)
}

/// Updates `dir`, which holds tree `old`, to hold tree `new`.
pub(crate) fn update(
    images: &kiln_image::ImageStore,
    dir: &Path,
    old: &Digest,
    new: &Digest,
) -> Result<(), tree::TreeError> {
    update_dir(&StoreSource(images), dir, old, new, 0)
}

fn update_dir(
    source: &StoreSource<'_>,
    dir: &Path,
    old: &Digest,
    new: &Digest,
    depth: usize,
) -> Result<(), tree::TreeError> {
    if old == new {
        return Ok(());
    }
    if depth > tree::MAX_DEPTH {
        return Err(tree::TreeError::TooDeep);
    }
    let (old, new) = (load(source, old)?, load(source, new)?);
    let before: HashMap<&str, &Entry> =
        old.entries().iter().map(|e| (e.name.as_str(), e)).collect();
    let after: HashMap<&str, &Entry> = new.entries().iter().map(|e| (e.name.as_str(), e)).collect();
    for e in old.entries() {
        let keep = after
            .get(e.name.as_str())
            .is_some_and(|n| same_kind(&e.kind, &n.kind));
        if !keep {
            remove(&dir.join(&e.name), &e.kind)?;
        }
    }
    for e in new.entries() {
        let path = dir.join(&e.name);
        match before.get(e.name.as_str()) {
            Some(o) if *o == e => {}
            Some(o) if same_kind(&o.kind, &e.kind) => match (&o.kind, &e.kind) {
                (EntryKind::Dir { digest: od }, EntryKind::Dir { digest: nd }) => {
                    update_dir(source, &path, od, nd, depth + 1)?;
                    set_meta(&path, &e.meta, false)?;
                }
                (EntryKind::File { digest: od, .. }, EntryKind::File { digest: nd, .. })
                    if od == nd =>
                {
                    set_meta(&path, &e.meta, false)?;
                }
                _ => {
                    remove(&path, &o.kind)?;
                    create(source, &path, e)?;
                }
            },
            _ => create(source, &path, e)?,
        }
    }
    Ok(())
}

/// Whether an entry can be updated in place rather than replaced.
fn same_kind(a: &EntryKind, b: &EntryKind) -> bool {
    matches!(
        (a, b),
        (EntryKind::File { .. }, EntryKind::File { .. })
            | (EntryKind::Dir { .. }, EntryKind::Dir { .. })
            | (EntryKind::Symlink { .. }, EntryKind::Symlink { .. })
    )
}

fn remove(path: &Path, kind: &EntryKind) -> Result<(), tree::TreeError> {
    let r = match kind {
        EntryKind::Dir { .. } => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path, e)),
        _ => Ok(()),
    }
}

fn create(source: &StoreSource<'_>, path: &Path, e: &Entry) -> Result<(), tree::TreeError> {
    match &e.kind {
        EntryKind::Dir { digest } => {
            tree::materialize(digest, source, path, &MaterializeOptions::default())?;
            set_meta(path, &e.meta, false)
        }
        EntryKind::File { size, digest } => {
            let mut from = source
                .open(digest)
                .map_err(|err| io_err("open blob", path, err))?
                .ok_or(tree::TreeError::MissingNode(*digest))?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|err| io_err("create", path, err))?;
            let written = io::copy(&mut from, &mut to).map_err(|err| io_err("write", path, err))?;
            if written != *size {
                return Err(io_err(
                    "write",
                    path,
                    io::Error::other(format!(
                        "the store's {digest} has {written} bytes, not {size}"
                    )),
                ));
            }
            drop(to);
            set_meta(path, &e.meta, false)
        }
        EntryKind::Symlink { target } => {
            std::os::unix::fs::symlink(target, path).map_err(|err| io_err("symlink", path, err))?;
            set_meta(path, &e.meta, true)
        }
    }
}

/// Owner, mode (not for links) and times, without following a link.
fn set_meta(path: &Path, meta: &Metadata, link: bool) -> Result<(), tree::TreeError> {
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        nofollow,
    )
    .map_err(|e| io_err("chown", path, e.into()))?;
    if !link {
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_err("chmod", path, e.into()))?;
    }
    let t = Timespec {
        tv_sec: meta.mtime_secs,
        tv_nsec: meta.mtime_nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        nofollow,
    )
    .map_err(|e| io_err("set the times of", path, e.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    use kiln_proto::tree::{Input, InputKind, Tree};

    use super::*;

    fn meta(mode: u32, mtime: i64) -> Metadata {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            mtime_secs: mtime,
            mtime_nanos: 5,
        }
    }

    /// Stores the tree's nodes and the given contents; returns the root.
    fn store(
        images: &kiln_image::ImageStore,
        files: &[(&str, &str, u32)],
        dirs: &[(&str, u32)],
        links: &[(&str, &str)],
    ) -> Digest {
        let mut inputs = Vec::new();
        for (path, content, mode) in files {
            let blob = images.blobs().put(content.as_bytes()).unwrap();
            inputs.push(Input {
                path: path.to_string(),
                meta: meta(*mode, 1000),
                kind: InputKind::File {
                    size: content.len() as u64,
                    digest: blob.digest,
                },
            });
        }
        for (path, mode) in dirs {
            inputs.push(Input {
                path: path.to_string(),
                meta: meta(*mode, 2000),
                kind: InputKind::Dir,
            });
        }
        for (path, target) in links {
            inputs.push(Input {
                path: path.to_string(),
                meta: meta(0o777, 3000),
                kind: InputKind::Symlink {
                    target: target.to_string(),
                },
            });
        }
        let tree = Tree::build(inputs).unwrap();
        for node in tree.nodes() {
            images.blobs().put(node.bytes()).unwrap();
        }
        tree.root()
    }

    /// Everything a build could see of a directory, by relative path.
    fn listing(dir: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                let m = std::fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                let what = if m.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else if m.file_type().is_symlink() {
                    format!("link {}", std::fs::read_link(&path).unwrap().display())
                } else {
                    format!("file {}", std::fs::read_to_string(&path).unwrap())
                };
                let mode = if m.file_type().is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                };
                out.insert(
                    rel,
                    format!("{what} {mode:o} {}:{} {}", m.uid(), m.gid(), m.mtime()),
                );
            }
        }
        out
    }

    #[test]
    fn an_update_gives_what_a_fresh_materialize_gives() {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: needs root (owners)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let images = kiln_image::ImageStore::open(&tmp.path().join("root")).unwrap();
        let a = store(
            &images,
            &[
                ("keep", "same", 0o644),
                ("edit", "old", 0o644),
                ("gone", "x", 0o644),
                ("d/inner", "i", 0o600),
                ("kind", "file", 0o644),
            ],
            &[("d", 0o755), ("ro", 0o555)],
            &[("link", "keep")],
        );
        let b = store(
            &images,
            &[
                ("keep", "same", 0o600),
                ("edit", "new", 0o644),
                ("d/inner", "i2", 0o600),
                ("ro/added", "a", 0o644),
                ("kind/now-a-dir", "y", 0o644),
            ],
            &[("d", 0o700), ("ro", 0o555), ("fresh", 0o750)],
            &[("link", "edit")],
        );
        let updated = tmp.path().join("updated");
        let fresh = tmp.path().join("fresh");
        let source = StoreSource(&images);
        tree::materialize(&a, &source, &updated, &MaterializeOptions::default()).unwrap();
        update(&images, &updated, &a, &b).unwrap();
        tree::materialize(&b, &source, &fresh, &MaterializeOptions::default()).unwrap();
        assert_eq!(listing(&updated), listing(&fresh));
    }
}
