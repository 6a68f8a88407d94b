//! The worker's side: writes a tree from the content store into a directory. Every entry is
//! created relative to its parent's open directory with `O_NOFOLLOW` and `O_EXCL`, and names
//! were checked when the node was decoded, so nothing can land outside the destination: not
//! through `..`, an absolute name, or a symlink (the tree's own or one already there).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use kiln_llb::Digest;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid};

use super::{Entry, EntryKind, MAX_DEPTH, Node, TreeError};

/// Where the worker reads blobs: its content store.
pub trait Source {
    /// Whether the store has the blob.
    fn contains(&self, digest: &Digest) -> io::Result<bool>;
    /// The whole blob (tree nodes are small), or `None` when the store lacks it.
    fn read(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>>;
    /// A reader over a file's content, or `None` when the store lacks it.
    fn open(&self, digest: &Digest) -> io::Result<Option<Box<dyn Read + '_>>>;
}

/// What [`materialize`] applies besides content and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaterializeOptions {
    /// Give entries their uid/gid (needs root or CAP_CHOWN).
    pub chown: bool,
    /// Give entries their modification times.
    pub times: bool,
}

impl Default for MaterializeOptions {
    fn default() -> Self {
        MaterializeOptions {
            chown: true,
            times: true,
        }
    }
}

/// Reads and checks a node from the store.
pub(super) fn load_node(source: &dyn Source, digest: &Digest) -> Result<Node, TreeError> {
    let bytes = source
        .read(digest)
        .map_err(|e| io_err("read tree node", digest.to_string(), e))?
        .ok_or(TreeError::MissingNode(*digest))?;
    Node::decode(digest, bytes)
}

fn io_err(what: &'static str, path: String, source: io::Error) -> TreeError {
    TreeError::Io { what, path, source }
}

/// Writes the tree under `root` into `dest`, which must not exist (its parent must) or be an
/// empty directory. The destination directory's own metadata is left alone.
pub fn materialize(
    root: &Digest,
    source: &dyn Source,
    dest: &Path,
    opts: &MaterializeOptions,
) -> Result<(), TreeError> {
    let shown = dest.display().to_string();
    match std::fs::create_dir(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create", shown, e)),
    }
    let dir = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            TreeError::DestNotEmpty(dest.to_path_buf())
        }
        e => io_err("open", shown.clone(), e.into()),
    })?;
    let mut listing = std::fs::read_dir(dest).map_err(|e| io_err("list", shown.clone(), e))?;
    if listing.next().is_some() {
        return Err(TreeError::DestNotEmpty(dest.to_path_buf()));
    }
    let node = load_node(source, root)?;
    write_dir(&dir, &node, source, &shown, opts, 0)
}

fn write_dir(
    dir: &OwnedFd,
    node: &Node,
    source: &dyn Source,
    path: &str,
    opts: &MaterializeOptions,
    depth: usize,
) -> Result<(), TreeError> {
    if depth > MAX_DEPTH {
        return Err(TreeError::TooDeep);
    }
    for entry in node.entries() {
        let child_path = format!("{path}/{}", entry.name);
        match &entry.kind {
            EntryKind::File { size, digest } => {
                write_file(dir, entry, *size, digest, source, &child_path, opts)?;
            }
            EntryKind::Symlink { target } => {
                rustix::fs::symlinkat(target.as_str(), dir, entry.name.as_str())
                    .map_err(|e| io_err("create symlink", child_path.clone(), e.into()))?;
                if opts.chown {
                    rustix::fs::chownat(
                        dir,
                        entry.name.as_str(),
                        Some(Uid::from_raw(entry.meta.uid)),
                        Some(Gid::from_raw(entry.meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("chown", child_path.clone(), e.into()))?;
                }
                if opts.times {
                    rustix::fs::utimensat(
                        dir,
                        entry.name.as_str(),
                        &times(entry),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("set times of", child_path.clone(), e.into()))?;
                }
            }
            EntryKind::Dir { digest } => {
                // Made private first: the final mode (maybe read-only) comes after the contents.
                rustix::fs::mkdirat(dir, entry.name.as_str(), Mode::from_raw_mode(0o700))
                    .map_err(|e| io_err("create directory", child_path.clone(), e.into()))?;
                let sub = rustix::fs::openat(
                    dir,
                    entry.name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("open directory", child_path.clone(), e.into()))?;
                let child = load_node(source, digest)?;
                write_dir(&sub, &child, source, &child_path, opts, depth + 1)?;
                finish(&sub, entry, &child_path, opts)?;
            }
        }
    }
    Ok(())
}

fn write_file(
    dir: &OwnedFd,
    entry: &Entry,
    size: u64,
    digest: &Digest,
    source: &dyn Source,
    path: &str,
    opts: &MaterializeOptions,
) -> Result<(), TreeError> {
    let fd = rustix::fs::openat(
        dir,
        entry.name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_err("create", path.to_string(), e.into()))?;
    let mut reader = source
        .open(digest)
        .map_err(|e| io_err("read content of", path.to_string(), e))?
        .ok_or_else(|| TreeError::MissingFile {
            digest: *digest,
            path: path.to_string(),
        })?;
    let mut file = File::from(fd);
    // One more byte than the tree says is enough to notice a store blob of the wrong size.
    let copied = io::copy(&mut (&mut reader).take(size + 1), &mut file)
        .map_err(|e| io_err("write", path.to_string(), e))?;
    if copied != size {
        return Err(TreeError::FileSize {
            digest: *digest,
            path: path.to_string(),
            size,
            actual: copied,
        });
    }
    finish(&file, entry, path, opts)
}

/// Owner, mode, then times: chown clears setuid/setgid, and writing into a directory after its
/// times were set would change its mtime again.
fn finish(
    fd: &impl AsFd,
    entry: &Entry,
    path: &str,
    opts: &MaterializeOptions,
) -> Result<(), TreeError> {
    if opts.chown {
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(entry.meta.uid)),
            Some(Gid::from_raw(entry.meta.gid)),
        )
        .map_err(|e| io_err("chown", path.to_string(), e.into()))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.meta.mode))
        .map_err(|e| io_err("chmod", path.to_string(), e.into()))?;
    if opts.times {
        rustix::fs::futimens(fd, &times(entry))
            .map_err(|e| io_err("set times of", path.to_string(), e.into()))?;
    }
    Ok(())
}

fn times(entry: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: entry.meta.mtime_secs,
        tv_nsec: entry.meta.mtime_nanos.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
