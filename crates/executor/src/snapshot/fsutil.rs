//! Filesystem helpers for snapshots: atomic small-file writes, full tree copies (copy driver),
//! disk usage, and symlink-safe recursive removal relative to a directory fd.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags};

/// Writes `data` to `path` crash-safely: a temp file in the same directory, fsync, rename, then
/// fsync of the directory so the rename itself is durable.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or(OsStr::new("file"));
    let mut tmp_name = OsStr::new(".tmp-").to_os_string();
    tmp_name.push(name);
    tmp_name.push(format!("-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes on disk and inode count of a tree; hard-linked inodes count once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes (`st_blocks * 512`), so sparse files count what they occupy.
    pub bytes: u64,
    /// Number of distinct inodes, the root directory included.
    pub inodes: u64,
}

pub(crate) fn usage(root: &Path) -> io::Result<Usage> {
    let mut seen = std::collections::HashSet::new();
    let mut usage = Usage::default();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        let meta = entry.metadata().map_err(io::Error::other)?;
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
    }
    Ok(usage)
}

/// Copies the tree at `src` into the existing empty directory `dst`, keeping types, modes,
/// owners, xattrs, mtimes, devices and hard links. Symlinks are copied, never followed.
/// Sockets are skipped: they cannot be recreated meaningfully and layers do not carry them.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let root_meta = fs::symlink_metadata(src)?;
    copy_dir_contents(src, dst, &mut links)?;
    set_metadata(dst, &root_meta, src)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_dir_contents(&from, &to, links)?;
        } else if ft.is_file() {
            let mut input = File::open(&from)?;
            let mut output = File::create(&to)?;
            // std uses copy_file_range here, which shares extents on filesystems that can.
            io::copy(&mut input, &mut output)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = FileType::from_raw_mode(meta.mode());
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                kind,
                Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev() as Dev,
            )?;
        } else {
            continue;
        }
        set_metadata(&to, &meta, &from)?;
    }
    Ok(())
}

/// Owner, mode, xattrs and mtime of `to` from `meta`/`from`. Order matters: chown clears the
/// setuid bits, so chmod comes after it; the mtime comes last because the others touch ctime
/// only but writing xattrs on some filesystems bumps the mtime.
fn set_metadata(to: &Path, meta: &fs::Metadata, from: &Path) -> io::Result<()> {
    let is_link = meta.file_type().is_symlink();
    rustix::fs::chownat(
        rustix::fs::CWD,
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !is_link {
        fs::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )?;
    }
    for name in xattr::list(from)? {
        if let Some(value) = xattr::get(from, &name)? {
            xattr::set(to, &name, &value)?;
        }
    }
    let mtime = filetime::FileTime::from_last_modification_time(meta);
    let atime = filetime::FileTime::from_last_access_time(meta);
    filetime::set_symlink_file_times(to, atime, mtime)
}

/// Removes `name` inside the directory `dir` and everything below it, never following a
/// symlink (a symlink is removed, not its target). A missing entry is not an error.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        let child = open_dir_at(dir, name)?;
        clear_dir(child.as_fd())?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes every entry of the directory `dir`, keeping `dir` itself.
pub(crate) fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in list_dir(dir)? {
        remove_all_at(dir, &name)?;
    }
    Ok(())
}

/// Names in a directory (without `.` and `..`), unsorted.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(name).to_os_string());
    }
    Ok(names)
}

/// Opens the directory `name` in `dir` without following a symlink in its place.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}
