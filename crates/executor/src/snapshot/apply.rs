//! Applying an (uncompressed) OCI layer tar onto a snapshot directory, safely.
//!
//! Every path is resolved component by component from a directory fd of the target with
//! `O_NOFOLLOW`, creating missing parents as real directories, so no entry can reach outside the
//! target: `..` components and absolute names are refused, a symlink where a parent directory
//! should be is refused (the "symlink, then write through it" trick), and hard links must point
//! at an existing non-directory inside the target. Files are created with `O_EXCL|O_NOFOLLOW`
//! after removing whatever was at their place.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use super::fsutil;

/// How whiteouts in the tar are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target is an (empty) overlay upper dir over the parent layers: `.wh.<name>` becomes
    /// a 0/0 character device and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr.
    Overlay,
    /// The target is a full copy of the parent tree: whiteouts delete, opaque markers empty
    /// the directory of everything this layer did not create.
    Delete,
}

/// Options for `apply_layer`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Accept character and block device entries. Off by default: a pulled image has no
    /// business creating device nodes in a snapshot unless the caller opts in.
    pub allow_devices: bool,
    /// Give entries the tar's numeric owners (needs root). Defaults to whether we are root.
    pub same_owner: bool,
    /// For `Overlay`: the parent layers' dirs, top-most first. A directory this layer needs but
    /// does not contain is created with the owner, mode and mtime it has in the parents, so the
    /// merged view keeps them.
    pub parent_layers: Vec<PathBuf>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            allow_devices: false,
            same_owner: rustix::process::geteuid().is_root(),
            parent_layers: Vec::new(),
        }
    }
}

/// What `apply_layer` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Bytes of file contents written.
    pub content_bytes: u64,
}

/// Errors of layer application.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing tar entry {path:?}: {reason}")]
    Refused { path: String, reason: String },
    #[error("failed to {what} {path:?} in {}: {source}", target.display())]
    Io {
        what: &'static str,
        path: String,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read layer tar: {0}")]
    Tar(#[source] io::Error),
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

type Result<T, E = ApplyError> = std::result::Result<T, E>;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies the layer tar read from `reader` onto `target_dir` (an existing directory).
pub fn apply_layer<R: Read>(
    reader: R,
    target_dir: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let root = rustix::fs::open(
        target_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Io {
        what: "open target",
        path: String::new(),
        target: target_dir.to_path_buf(),
        source: e.into(),
    })?;
    let mut ap = Applier {
        target: target_dir.to_path_buf(),
        opts,
        walker: Walker {
            root,
            stack: Vec::new(),
        },
        created: HashSet::new(),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        sparse_holes: 0,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(ApplyError::Tar)?;
    for entry in entries {
        let entry = entry.map_err(ApplyError::Tar)?;
        ap.entry(entry)?;
    }
    // Directory mtimes last: creating entries inside a directory changes its mtime.
    for (comps, mtime) in std::mem::take(&mut ap.dir_times).into_iter().rev() {
        let shown = display(&comps);
        let fd = ap.walker.dir(&comps, None)?;
        rustix::fs::futimens(fd, &times(mtime)).map_err(|e| ap.io("set mtime of", &shown, e))?;
    }
    Ok(ap.stats)
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn display(comps: &[OsString]) -> String {
    let parts: Vec<String> = comps
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Splits a tar name into components, refusing absolute names and `..`.
fn components(raw: &[u8]) -> Result<Vec<OsString>> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let refuse = |reason: &str| ApplyError::Refused {
        path: shown.clone(),
        reason: reason.to_string(),
    };
    if raw.starts_with(b"/") {
        return Err(refuse("absolute path"));
    }
    if raw.contains(&0) {
        return Err(refuse("NUL byte in name"));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(refuse("`..` path component")),
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// Resolves directories inside the target without following symlinks, caching the open
/// directories of the current path (tar entries come mostly in directory order).
struct Walker {
    root: OwnedFd,
    stack: Vec<(OsString, OwnedFd)>,
}

/// How to create a missing directory: (mode, uid, gid, mtime) from the parent layers, if known.
type DirMeta = (u32, u32, u32, i64);

/// Called for each missing directory to learn how to create it.
type MakeDir<'a> = &'a mut dyn FnMut(&[OsString]) -> Option<DirMeta>;

impl Walker {
    /// Opens the directory `comps` (the root when empty). With `create`, missing directories
    /// are made, each with the metadata the callback returns for its path.
    fn dir(
        &mut self,
        comps: &[OsString],
        mut create: Option<MakeDir<'_>>,
    ) -> Result<BorrowedFd<'_>> {
        let keep = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((name, _), c)| name == *c)
            .count();
        self.stack.truncate(keep);
        for i in keep..comps.len() {
            let parent = match self.stack.last() {
                Some((_, fd)) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let name = &comps[i];
            let fd = match fsutil::open_dir_at(parent, name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create.is_some() => {
                    let meta = create.as_mut().and_then(|f| f(&comps[..=i]));
                    make_dir(parent, name, meta).map_err(|e| ApplyError::Io {
                        what: "create directory",
                        path: display(&comps[..=i]),
                        target: PathBuf::new(),
                        source: e,
                    })?;
                    fsutil::open_dir_at(parent, name).map_err(|e| ApplyError::Io {
                        what: "open directory",
                        path: display(&comps[..=i]),
                        target: PathBuf::new(),
                        source: e,
                    })?
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    return Err(ApplyError::Refused {
                        path: display(comps),
                        reason: format!(
                            "{} is a symlink or not a directory; refusing to write through it",
                            display(&comps[..=i])
                        ),
                    });
                }
                Err(e) => {
                    return Err(ApplyError::Io {
                        what: "open directory",
                        path: display(&comps[..=i]),
                        target: PathBuf::new(),
                        source: e,
                    });
                }
            };
            self.stack.push((name.clone(), fd));
        }
        Ok(match self.stack.last() {
            Some((_, fd)) => fd.as_fd(),
            None => self.root.as_fd(),
        })
    }

    /// Drops cached fds at or below `comps`, whose directory was just removed or replaced.
    fn forget(&mut self, comps: &[OsString]) {
        if comps.is_empty() {
            return;
        }
        if self.stack.len() >= comps.len()
            && self.stack[..comps.len()]
                .iter()
                .zip(comps)
                .all(|((n, _), c)| n == c)
        {
            self.stack.truncate(comps.len() - 1);
        }
    }
}

fn make_dir(parent: BorrowedFd<'_>, name: &OsStr, meta: Option<DirMeta>) -> io::Result<()> {
    let mode = meta.map_or(0o755, |m| m.0 & 0o7777);
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
    if let Some((_, uid, gid, mtime)) = meta {
        rustix::fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        rustix::fs::utimensat(parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    }
    // mkdir applies the umask; set the mode explicitly (after chown, which may clear setgid).
    rustix::fs::chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    Ok(())
}

struct Applier<'a> {
    target: PathBuf,
    opts: &'a ApplyOptions,
    walker: Walker,
    /// Paths this layer created (for opaque directories in `Delete` mode).
    created: HashSet<Vec<OsString>>,
    dir_times: Vec<(Vec<OsString>, i64)>,
    stats: ApplyStats,
    /// Bytes of holes in the GNU sparse files applied so far.
    sparse_holes: u64,
}

/// Most bytes of holes the GNU sparse files of one layer may have. Real images rarely hold
/// sparse entries (Go's tar writer cannot make them); the bound keeps a tiny layer from
/// making the applier produce terabytes of zeros.
const MAX_SPARSE_HOLES: u64 = 1 << 30;

/// Copies a sparse entry's expanded contents, seeking over all-zero blocks so holes take no
/// disk space, then sets the length (a trailing hole has no write to extend the file).
fn copy_sparse(entry: &mut impl Read, file: &mut File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64))?;
        } else {
            file.write_all(&buf[..filled])?;
        }
        total += filled as u64;
    }
    file.set_len(total)?;
    Ok(total)
}

/// Entry metadata gathered from the header and PAX records.
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Applier<'_> {
    fn io(&self, what: &'static str, path: &str, e: impl Into<io::Error>) -> ApplyError {
        ApplyError::Io {
            what,
            path: path.to_string(),
            target: self.target.clone(),
            source: e.into(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = components(&raw_path)?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./"): its metadata belongs to the parent layers.
            return Ok(());
        };
        let attrs = self.attrs(&mut entry, &shown)?;
        self.stats.entries += 1;

        let name_bytes = name.as_bytes();
        if name_bytes == b".wh..wh..opq" {
            self.stats.whiteouts += 1;
            return self.opaque(parent, &shown);
        }
        if name_bytes.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the tree.
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(ApplyError::Refused {
                    path: shown,
                    reason: "whiteout of an invalid name".into(),
                });
            }
            self.stats.whiteouts += 1;
            return self.whiteout(parent, OsStr::from_bytes(hidden), &shown);
        }

        let mut comps_owned = comps.clone();
        match kind {
            EntryType::Directory => {
                let pfd = self.parent(parent)?;
                let pfd = pfd.as_fd();
                let existing = stat_at(pfd, name);
                let is_dir = existing
                    .as_ref()
                    .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
                if !is_dir {
                    if existing.is_some() {
                        fsutil::remove_all_at(pfd, name)
                            .map_err(|e| self.io("remove", &shown, e))?;
                    }
                    rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.io("create directory", &shown, e))?;
                }
                self.created.insert(comps.clone());
                let fd = dup(self.walker.dir(&comps, None)?)?;
                self.set_fd_attrs(fd.as_fd(), &attrs, &shown, false)?;
                self.dir_times.push((comps_owned, attrs.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                if kind == EntryType::GNUSparse {
                    // A few hundred bytes of sparse map can describe terabytes of holes: a
                    // layer gets a bounded total (checked before anything is created), and
                    // holes stay holes on disk.
                    let data = entry.header().entry_size().unwrap_or(0);
                    let holes = entry.size().saturating_sub(data);
                    self.sparse_holes = self.sparse_holes.saturating_add(holes);
                    if self.sparse_holes > MAX_SPARSE_HOLES {
                        return Err(ApplyError::Unsupported(format!(
                            "sparse files with more than {MAX_SPARSE_HOLES} bytes of holes in one layer (at {shown:?})"
                        )));
                    }
                }
                let pfd = self.replace(parent, name, &comps, &shown)?;
                let pfd = pfd.as_fd();
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io("create file", &shown, e))?;
                let mut file = File::from(fd);
                let n = if kind == EntryType::GNUSparse {
                    copy_sparse(&mut entry, &mut file)
                } else {
                    io::copy(&mut entry, &mut file)
                }
                .map_err(|e| self.io("write file", &shown, e))?;
                self.stats.content_bytes += n;
                self.set_fd_attrs(file.as_fd(), &attrs, &shown, true)?;
                self.created.insert(std::mem::take(&mut comps_owned));
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| ApplyError::Refused {
                    path: shown.clone(),
                    reason: "symlink without a target".into(),
                })?;
                let target = OsStr::from_bytes(&target).to_os_string();
                let pfd = self.replace(parent, name, &comps, &shown)?;
                let pfd = pfd.as_fd();
                rustix::fs::symlinkat(&target, pfd, name)
                    .map_err(|e| self.io("create symlink", &shown, e))?;
                self.set_at_attrs(pfd, name, &attrs, &shown, true)?;
                self.created.insert(comps_owned);
            }
            EntryType::Link => {
                let link = entry.link_name_bytes().ok_or_else(|| ApplyError::Refused {
                    path: shown.clone(),
                    reason: "hard link without a target".into(),
                })?;
                self.hard_link(parent, name, &comps, &link, &shown)?;
                self.created.insert(comps_owned);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = if kind == EntryType::Fifo {
                    0
                } else {
                    if !self.opts.allow_devices {
                        return Err(ApplyError::Refused {
                            path: shown,
                            reason: "device nodes are not allowed here".into(),
                        });
                    }
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    rustix::fs::makedev(major, minor)
                };
                let pfd = self.replace(parent, name, &comps, &shown)?;
                let pfd = pfd.as_fd();
                rustix::fs::mknodat(pfd, name, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.io("create node", &shown, e))?;
                self.set_at_attrs(pfd, name, &attrs, &shown, false)?;
                self.created.insert(comps_owned);
            }
            other => {
                return Err(ApplyError::Unsupported(format!(
                    "tar entry type {other:?} at {shown:?}"
                )));
            }
        }
        Ok(())
    }

    fn attrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Attrs> {
        let h = entry.header();
        let bad = |what: &str| ApplyError::Refused {
            path: shown.to_string(),
            reason: format!("unreadable {what} in header"),
        };
        let mut attrs = Attrs {
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: u32::try_from(h.uid().map_err(|_| bad("uid"))?).map_err(|_| bad("uid"))?,
            gid: u32::try_from(h.gid().map_err(|_| bad("gid"))?).map_err(|_| bad("gid"))?,
            mtime: i64::try_from(h.mtime().map_err(|_| bad("mtime"))?).unwrap_or(0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(ApplyError::Tar)? {
            for ext in pax {
                let ext = ext.map_err(ApplyError::Tar)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    b"uid" => attrs.uid = text.parse().map_err(|_| bad("PAX uid"))?,
                    b"gid" => attrs.gid = text.parse().map_err(|_| bad("PAX gid"))?,
                    b"mtime" => {
                        let secs = text.split('.').next().unwrap_or("");
                        attrs.mtime = secs.parse().map_err(|_| bad("PAX mtime"))?;
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            // overlayfs' own xattrs would let a layer forge whiteouts, opaque
                            // dirs or redirects; layers express those as .wh. entries only.
                            if name.starts_with(b"trusted.overlay.") || name.is_empty() {
                                tracing::debug!(path = shown, "ignoring overlay xattr in layer");
                                continue;
                            }
                            attrs.xattrs.push((name.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(attrs)
    }

    /// Opens the parent directory, creating missing ones.
    fn parent(&mut self, parent: &[OsString]) -> Result<OwnedFd> {
        let fd = self.parent_cached(parent)?;
        dup(fd)
    }

    fn parent_cached(&mut self, parent: &[OsString]) -> Result<BorrowedFd<'_>> {
        let layers = &self.opts.parent_layers;
        let created = &mut self.created;
        let mut make = |comps: &[OsString]| {
            created.insert(comps.to_vec());
            lower_dir_meta(layers, comps)
        };
        let make: MakeDir<'_> = &mut make;
        self.walker.dir(parent, Some(make))
    }

    /// Opens the parent and removes whatever is at `name`, for an entry that replaces it.
    fn replace(
        &mut self,
        parent: &[OsString],
        name: &OsStr,
        comps: &[OsString],
        shown: &str,
    ) -> Result<OwnedFd> {
        let pfd_owned = self.parent(parent)?;
        let pfd = pfd_owned.as_fd();
        if let Some(st) = stat_at(pfd, name) {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            fsutil::remove_all_at(pfd, name).map_err(|e| ApplyError::Io {
                what: "remove",
                path: shown.to_string(),
                target: PathBuf::new(),
                source: e,
            })?;
            if is_dir {
                self.walker.forget(comps);
            }
        }
        // Re-open after the possible `forget`; the parent stays cached.
        let fd = self.walker.dir(parent, None)?;
        dup(fd)
    }

    fn whiteout(&mut self, parent: &[OsString], hidden: &OsStr, shown: &str) -> Result<()> {
        let mut comps = parent.to_vec();
        comps.push(hidden.to_os_string());
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let pfd = self.replace(parent, hidden, &comps, shown)?;
                let pfd = pfd.as_fd();
                rustix::fs::mknodat(
                    pfd,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| self.io("create whiteout", shown, e))?;
            }
            WhiteoutMode::Delete => {
                // Nothing to delete when the parent does not exist either.
                let pfd = match self.walker.dir(parent, None) {
                    Ok(fd) => fd,
                    Err(ApplyError::Io { source, .. })
                        if source.raw_os_error() == Some(libc::ENOENT) =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                fsutil::remove_all_at(pfd, hidden).map_err(|e| self.io("remove", shown, e))?;
                self.walker.forget(&comps);
                self.created.retain(|c| !c.starts_with(&comps));
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[OsString], shown: &str) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let fd = self.parent(dir)?;
                rustix::fs::fsetxattr(fd, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(
                    |e| ApplyError::Io {
                        what: "mark opaque",
                        path: shown.to_string(),
                        target: PathBuf::new(),
                        source: e.into(),
                    },
                )?;
            }
            WhiteoutMode::Delete => {
                let fd = self.parent(dir)?;
                let names = fsutil::list_dir(fd.as_fd()).map_err(|e| self.io("list", shown, e))?;
                for name in names {
                    let mut child = dir.to_vec();
                    child.push(name.clone());
                    if !self.created.contains(&child) {
                        fsutil::remove_all_at(fd.as_fd(), &name)
                            .map_err(|e| self.io("remove", shown, e))?;
                        self.walker.forget(&child);
                    }
                }
            }
        }
        Ok(())
    }

    fn hard_link(
        &mut self,
        parent: &[OsString],
        name: &OsStr,
        comps: &[OsString],
        link: &[u8],
        shown: &str,
    ) -> Result<()> {
        let refuse = |reason: String| ApplyError::Refused {
            path: shown.to_string(),
            reason,
        };
        let shown_link = String::from_utf8_lossy(link).into_owned();
        let src = components(link)
            .map_err(|_| refuse(format!("hard link target {shown_link:?} leaves the layer")))?;
        let Some((src_name, src_parent)) = src.split_last() else {
            return Err(refuse("hard link to the root directory".into()));
        };
        if src == comps {
            return Err(refuse("hard link to itself".into()));
        }
        // A separate, uncached walk: the source must already exist, nothing is created.
        let mut sp = dup(self.walker.root.as_fd())?;
        for c in src_parent {
            sp = fsutil::open_dir_at(sp.as_fd(), c).map_err(|_| {
                refuse(format!(
                    "hard link target {shown_link:?} is not an existing file in the layer"
                ))
            })?;
        }
        match stat_at(sp.as_fd(), src_name) {
            Some(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {}
            Some(_) => {
                return Err(refuse(format!(
                    "hard link target {shown_link:?} is a directory"
                )));
            }
            None => {
                return Err(refuse(format!(
                    "hard link target {shown_link:?} does not exist (yet) in the layer"
                )));
            }
        }
        let pfd = self.replace(parent, name, comps, shown)?;
        let pfd = pfd.as_fd();
        rustix::fs::linkat(sp.as_fd(), src_name, pfd, name, AtFlags::empty())
            .map_err(|e| self.io("create hard link", shown, e))?;
        Ok(())
    }

    fn set_fd_attrs(&self, fd: BorrowedFd<'_>, a: &Attrs, shown: &str, mtime: bool) -> Result<()> {
        if self.opts.same_owner {
            rustix::fs::fchown(fd, Some(Uid::from_raw(a.uid)), Some(Gid::from_raw(a.gid)))
                .map_err(|e| self.io("set owner of", shown, e))?;
        }
        // After chown, which clears setuid/setgid bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(a.mode))
            .map_err(|e| self.io("set mode of", shown, e))?;
        for (name, value) in &a.xattrs {
            rustix::fs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty())
                .map_err(|e| self.io("set xattr on", shown, e))?;
        }
        if mtime {
            rustix::fs::futimens(fd, &times(a.mtime))
                .map_err(|e| self.io("set mtime of", shown, e))?;
        }
        Ok(())
    }

    /// For entries that cannot be opened (symlinks, devices, fifos): by name, never following.
    fn set_at_attrs(
        &self,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        a: &Attrs,
        shown: &str,
        symlink: bool,
    ) -> Result<()> {
        if self.opts.same_owner {
            rustix::fs::chownat(
                pfd,
                name,
                Some(Uid::from_raw(a.uid)),
                Some(Gid::from_raw(a.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.io("set owner of", shown, e))?;
        }
        if !symlink {
            // The name was just created as a node by us, so following it cannot escape.
            rustix::fs::chmodat(pfd, name, Mode::from_raw_mode(a.mode), AtFlags::empty())
                .map_err(|e| self.io("set mode of", shown, e))?;
        }
        if !a.xattrs.is_empty() {
            // No fd-based l*xattr call exists; go through the parent's fd in /proc, which
            // resolves to the parent directory itself, and do not follow the final name.
            let mut path = PathBuf::from(format!("/proc/self/fd/{}", pfd.as_raw_fd()));
            path.push(name);
            for (xname, value) in &a.xattrs {
                rustix::fs::lsetxattr(&path, OsStr::from_bytes(xname), value, XattrFlags::empty())
                    .map_err(|e| self.io("set xattr on", shown, e))?;
            }
        }
        rustix::fs::utimensat(pfd, name, &times(a.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.io("set mtime of", shown, e))?;
        Ok(())
    }
}

/// A close-on-exec duplicate, so a cached directory fd can be used while `self` is borrowed.
fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| ApplyError::Io {
        what: "duplicate directory fd for",
        path: String::new(),
        target: PathBuf::new(),
        source: e.into(),
    })
}

fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Option<rustix::fs::Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()
}

/// The metadata of directory `comps` in the top-most parent layer that has it, walking each
/// layer without following symlinks. A non-directory on the way hides everything below it.
fn lower_dir_meta(layers: &[PathBuf], comps: &[OsString]) -> Option<DirMeta> {
    for layer in layers {
        let mut path = layer.clone();
        let mut found = true;
        for (i, c) in comps.iter().enumerate() {
            path.push(c);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    if i + 1 == comps.len() {
                        return Some((m.mode(), m.uid(), m.gid(), m.mtime()));
                    }
                }
                // A whiteout, file or symlink here hides the lower layers' directory.
                Ok(_) => return None,
                Err(_) => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../b").is_err());
        assert!(components(b"..").is_err());
        let c = components(b"./a//b/./c/").unwrap();
        assert_eq!(
            c,
            vec![
                OsString::from("a"),
                OsString::from("b"),
                OsString::from("c")
            ]
        );
        assert!(components(b"./").unwrap().is_empty());
    }
}
