//! Writing an OCI layer tar from a snapshot's changes: from an overlay upper dir, or (copy
//! driver) by comparing a tree with its parent's tree.
//!
//! The output is deterministic: entries in depth-first order with the names of each directory
//! sorted bytewise (so parents always come before children), numeric owners only, no atime or
//! ctime, whole-second mtimes clamped to `SOURCE_DATE_EPOCH` when given, xattrs and long names
//! as PAX records in a fixed order. File contents are streamed, never held in memory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// Where the changes come from.
#[derive(Debug, Clone, Copy)]
pub enum DiffSource<'a> {
    /// An overlayfs upper dir: char devices 0/0 are whiteouts, `trusted.overlay.opaque=y` marks
    /// opaque directories.
    OverlayUpper { upper: &'a Path },
    /// A full tree compared with the full tree of its parent (`None`: no parent, everything is
    /// new). Used by the copy driver.
    Trees {
        lower: Option<&'a Path>,
        upper: &'a Path,
    },
}

/// Options for `write_layer`.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every mtime to at most this many seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<u64>,
}

/// What `write_layer` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries, PAX headers not counted.
    pub entries: u64,
    /// Whiteout entries (`.wh.<name>` and `.wh..wh..opq`).
    pub whiteouts: u64,
    /// Bytes of file contents.
    pub content_bytes: u64,
    /// Bytes of the whole tar stream.
    pub tar_bytes: u64,
}

/// Errors of layer diffs.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("failed to {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write layer tar: {0}")]
    Write(#[source] io::Error),
    #[error("file {} changed while the layer was written", path.display())]
    Changed { path: PathBuf },
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

type Result<T, E = DiffError> = std::result::Result<T, E>;

const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_XATTR: &[u8] = b"trusted.overlay.whiteout";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Writes the layer tar for `source` to `writer`.
pub fn write_layer<W: Write>(
    source: DiffSource<'_>,
    writer: W,
    opts: &DiffOptions,
) -> Result<DiffStats> {
    let mut tw = TarWriter {
        out: Counting {
            inner: BufWriter::with_capacity(256 * 1024, writer),
            count: 0,
        },
        links: HashMap::new(),
        stats: DiffStats::default(),
        epoch: opts.source_date_epoch,
        pending_dirs: Vec::new(),
    };
    match source {
        DiffSource::OverlayUpper { upper } => overlay_dir(&mut tw, upper, b"")?,
        DiffSource::Trees { lower, upper } => match lower {
            Some(lower) => compare_dir(&mut tw, lower, upper, b"")?,
            None => new_tree(&mut tw, upper, b"")?,
        },
    }
    tw.finish()
}

/// One directory entry as found on disk.
struct Found {
    name: OsString,
    path: PathBuf,
    meta: fs::Metadata,
}

fn read_sorted(dir: &Path) -> Result<Vec<Found>> {
    let rd = fs::read_dir(dir).map_err(|e| io_err("read directory", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("read directory", dir, e))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err("stat", &path, e))?;
        out.push(Found {
            name: entry.file_name(),
            path,
            meta,
        });
    }
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + name.len() + 1);
    if !prefix.is_empty() {
        p.extend_from_slice(prefix);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn whiteout_name(name: &[u8]) -> Vec<u8> {
    let mut n = WHITEOUT_PREFIX.to_vec();
    n.extend_from_slice(name);
    n
}

// ---- overlay upper dirs ----

fn is_overlay_whiteout(f: &Found) -> Result<bool> {
    let ft = f.meta.file_type();
    if ft.is_char_device() && f.meta.rdev() == 0 {
        return Ok(true);
    }
    // Kernels since 6.7 may also mark whiteouts with an xattr on an empty regular file.
    if ft.is_file() && f.meta.len() == 0 {
        let names = xattr::list(&f.path).map_err(|e| io_err("list xattrs of", &f.path, e))?;
        return Ok(names.into_iter().any(|n| n.as_bytes() == WHITEOUT_XATTR));
    }
    Ok(false)
}

fn overlay_dir(tw: &mut TarWriter<impl Write>, dir: &Path, rel: &[u8]) -> Result<()> {
    // Whiteouts are emitted under their `.wh.` name, so sort by the emitted name.
    let mut children: Vec<(Vec<u8>, bool, Found)> = Vec::new();
    for f in read_sorted(dir)? {
        let whiteout = is_overlay_whiteout(&f)?;
        let emitted = if whiteout {
            whiteout_name(f.name.as_bytes())
        } else {
            f.name.as_bytes().to_vec()
        };
        children.push((emitted, whiteout, f));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (emitted, whiteout, f) in children {
        let path = join(rel, &emitted);
        if whiteout {
            tw.whiteout(&path)?;
            continue;
        }
        tw.entry(&path, &f.path, &f.meta)?;
        if f.meta.is_dir() {
            let opaque = xattr::get(&f.path, OPAQUE_XATTR)
                .map_err(|e| io_err("read xattrs of", &f.path, e))?;
            if opaque.as_deref() == Some(b"y") {
                // Right after the directory, before its own entries, so that readers which
                // apply it as "clear the directory now" keep this layer's entries.
                tw.whiteout(&join(&path, OPAQUE_MARKER))?;
            }
            overlay_dir(tw, &f.path, &path)?;
        }
    }
    Ok(())
}

// ---- tree comparison (copy driver) ----

/// Emits `dir`'s entries (not `dir` itself) as all new.
fn new_tree(tw: &mut TarWriter<impl Write>, dir: &Path, rel: &[u8]) -> Result<()> {
    for f in read_sorted(dir)? {
        let path = join(rel, f.name.as_bytes());
        tw.entry(&path, &f.path, &f.meta)?;
        if f.meta.is_dir() {
            new_tree(tw, &f.path, &path)?;
        }
    }
    Ok(())
}

enum Side {
    Lower(Found),
    Upper(Found),
    Both(Found, Found),
}

fn compare_dir(
    tw: &mut TarWriter<impl Write>,
    lower: &Path,
    upper: &Path,
    rel: &[u8],
) -> Result<()> {
    let mut sides: Vec<(Vec<u8>, Side)> = Vec::new();
    let mut lowers = read_sorted(lower)?.into_iter().peekable();
    let mut uppers = read_sorted(upper)?.into_iter().peekable();
    loop {
        let side = match (lowers.peek(), uppers.peek()) {
            (None, None) => break,
            (Some(_), None) => Side::Lower(lowers.next().expect("peeked")),
            (None, Some(_)) => Side::Upper(uppers.next().expect("peeked")),
            (Some(l), Some(u)) => match l.name.as_bytes().cmp(u.name.as_bytes()) {
                std::cmp::Ordering::Less => Side::Lower(lowers.next().expect("peeked")),
                std::cmp::Ordering::Greater => Side::Upper(uppers.next().expect("peeked")),
                std::cmp::Ordering::Equal => Side::Both(
                    lowers.next().expect("peeked"),
                    uppers.next().expect("peeked"),
                ),
            },
        };
        let emitted = match &side {
            Side::Lower(l) => whiteout_name(l.name.as_bytes()),
            Side::Upper(f) | Side::Both(_, f) => f.name.as_bytes().to_vec(),
        };
        sides.push((emitted, side));
    }
    sides.sort_by(|a, b| a.0.cmp(&b.0));
    for (emitted, side) in sides {
        let path = join(rel, &emitted);
        match side {
            Side::Lower(_) => tw.whiteout(&path)?,
            Side::Upper(u) => {
                tw.entry(&path, &u.path, &u.meta)?;
                if u.meta.is_dir() {
                    new_tree(tw, &u.path, &path)?;
                }
            }
            Side::Both(l, u) => {
                let lt = l.meta.file_type();
                let ut = u.meta.file_type();
                if lt.is_dir() && ut.is_dir() {
                    if same_metadata(&l, &u)? {
                        // Emitted only if something below changes, to keep parents in the tar.
                        tw.pending_dirs
                            .push((path.clone(), u.path.clone(), u.meta.clone()));
                        compare_dir(tw, &l.path, &u.path, &path)?;
                        if tw.pending_dirs.last().is_some_and(|p| p.0 == path) {
                            tw.pending_dirs.pop();
                        }
                    } else {
                        tw.entry(&path, &u.path, &u.meta)?;
                        compare_dir(tw, &l.path, &u.path, &path)?;
                    }
                } else if ut.is_dir() {
                    tw.entry(&path, &u.path, &u.meta)?;
                    new_tree(tw, &u.path, &path)?;
                } else if lt != ut || !same_metadata(&l, &u)? || !same_content(&l, &u)? {
                    tw.entry(&path, &u.path, &u.meta)?;
                }
            }
        }
    }
    Ok(())
}

fn same_metadata(l: &Found, u: &Found) -> Result<bool> {
    let (a, b) = (&l.meta, &u.meta);
    if a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.rdev() != b.rdev()
        || (!a.is_dir() && (a.mtime() != b.mtime() || a.mtime_nsec() != b.mtime_nsec()))
        || (a.is_file() && a.len() != b.len())
    {
        return Ok(false);
    }
    if a.file_type().is_symlink() {
        let lt = fs::read_link(&l.path).map_err(|e| io_err("read link", &l.path, e))?;
        let ut = fs::read_link(&u.path).map_err(|e| io_err("read link", &u.path, e))?;
        if lt != ut {
            return Ok(false);
        }
    }
    Ok(read_xattrs(&l.path)? == read_xattrs(&u.path)?)
}

/// Equal metadata, and equal mtimes down to the nanosecond, normally means equal content: any
/// write sets a fresh nanosecond mtime. Only when the mtime has no sub-second part (set
/// explicitly, or a filesystem with coarse times) are the contents compared.
fn same_content(l: &Found, u: &Found) -> Result<bool> {
    if !u.meta.is_file() || u.meta.mtime_nsec() != 0 || u.meta.len() == 0 {
        return Ok(true);
    }
    let mut a = File::open(&l.path).map_err(|e| io_err("open", &l.path, e))?;
    let mut b = File::open(&u.path).map_err(|e| io_err("open", &u.path, e))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut ba).map_err(|e| io_err("read", &l.path, e))?;
        let m = read_full(&mut b, &mut bb).map_err(|e| io_err("read", &u.path, e))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Xattrs other than overlayfs' own, sorted by name. Refuses upper dirs whose meaning depends
/// on the lower dirs (redirected directories, metacopy files).
fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in xattr::list(path).map_err(|e| io_err("list xattrs of", path, e))? {
        let n = name.as_bytes();
        if n.starts_with(OVERLAY_XATTR_PREFIX) {
            let rest = &n[OVERLAY_XATTR_PREFIX.len()..];
            if rest == b"redirect" || rest == b"metacopy" {
                return Err(DiffError::Unsupported(format!(
                    "overlay {} at {} (mount with redirect_dir=off,metacopy=off)",
                    String::from_utf8_lossy(rest),
                    path.display()
                )));
            }
            continue;
        }
        if let Some(value) =
            xattr::get(path, &name).map_err(|e| io_err("read xattrs of", path, e))?
        {
            out.push((n.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

// ---- tar writing ----

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct TarWriter<W: Write> {
    out: Counting<BufWriter<W>>,
    /// First tar path of each multiply-linked inode written so far.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
    epoch: Option<u64>,
    /// Unchanged directories (copy driver) written only once something below them is.
    pending_dirs: Vec<(Vec<u8>, PathBuf, fs::Metadata)>,
}

/// Largest value an 11-digit octal field holds.
const OCTAL_11_MAX: u64 = 0o77777777777;
/// Largest value a 7-digit octal field holds.
const OCTAL_7_MAX: u64 = 0o7777777;

struct Spec<'a> {
    path: &'a [u8],
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<&'a [u8]>,
    dev: Option<(u32, u32)>,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<W: Write> TarWriter<W> {
    fn flush_pending(&mut self) -> Result<()> {
        for (path, disk, meta) in std::mem::take(&mut self.pending_dirs) {
            self.entry_now(&path, &disk, &meta)?;
        }
        Ok(())
    }

    fn whiteout(&mut self, path: &[u8]) -> Result<()> {
        self.flush_pending()?;
        self.stats.whiteouts += 1;
        self.header(&Spec {
            path,
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        })
    }

    fn entry(&mut self, path: &[u8], disk: &Path, meta: &fs::Metadata) -> Result<()> {
        self.flush_pending()?;
        self.entry_now(path, disk, meta)
    }

    fn entry_now(&mut self, path: &[u8], disk: &Path, meta: &fs::Metadata) -> Result<()> {
        let ft = meta.file_type();
        let xattrs = read_xattrs(disk)?;
        let mut spec = Spec {
            path,
            kind: EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime(),
            size: 0,
            link: None,
            dev: None,
            xattrs: &xattrs,
        };
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                spec.kind = EntryType::Link;
                spec.link = Some(&first);
                return self.header(&spec);
            }
            self.links.insert(key, path.to_vec());
        }
        let target;
        let mut dir_path;
        if ft.is_dir() {
            spec.kind = EntryType::Directory;
            dir_path = path.to_vec();
            dir_path.push(b'/');
            spec.path = &dir_path;
            self.header(&spec)
        } else if ft.is_file() {
            spec.size = meta.len();
            let file = File::open(disk).map_err(|e| io_err("open", disk, e))?;
            self.header(&spec)?;
            self.copy_contents(file, spec.size, disk)
        } else if ft.is_symlink() {
            target = fs::read_link(disk).map_err(|e| io_err("read link", disk, e))?;
            spec.kind = EntryType::Symlink;
            spec.link = Some(target.as_os_str().as_bytes());
            self.header(&spec)
        } else if ft.is_char_device() || ft.is_block_device() {
            spec.kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let rdev = meta.rdev();
            spec.dev = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
            self.header(&spec)
        } else if ft.is_fifo() {
            spec.kind = EntryType::Fifo;
            self.header(&spec)
        } else {
            // Sockets: no tar representation, and a socket in a snapshot is runtime debris.
            tracing::debug!(path = %disk.display(), "skipping socket in layer diff");
            Ok(())
        }
    }

    fn copy_contents(&mut self, file: File, size: u64, disk: &Path) -> Result<()> {
        let mut limited = file.take(size);
        // Copied by hand so a failed write (a full disk under the output) is not reported as
        // a failed read of the file.
        let mut buf = vec![0u8; 64 << 10];
        let mut copied = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", disk, e)),
            };
            self.out.write_all(&buf[..n]).map_err(DiffError::Write)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(DiffError::Changed {
                path: disk.to_path_buf(),
            });
        }
        let mut rest = limited.into_inner();
        let mut probe = [0u8; 1];
        if rest.read(&mut probe).map_err(|e| io_err("read", disk, e))? != 0 {
            return Err(DiffError::Changed {
                path: disk.to_path_buf(),
            });
        }
        self.stats.content_bytes += size;
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; 512][..512 - rem])
                .map_err(DiffError::Write)?;
        }
        Ok(())
    }

    fn header(&mut self, spec: &Spec<'_>) -> Result<()> {
        let mut pax: Vec<(&[u8], Vec<u8>)> = Vec::new();
        let mut h = Header::new_ustar();
        {
            let ustar = h.as_ustar_mut().expect("ustar header");
            match split_ustar_path(spec.path) {
                Some((prefix, name)) => {
                    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
                    ustar.name[..name.len()].copy_from_slice(name);
                }
                None => {
                    pax.push((b"path", spec.path.to_vec()));
                    let n = spec.path.len().min(100);
                    ustar.name[..n].copy_from_slice(&spec.path[..n]);
                }
            }
            if let Some(link) = spec.link {
                if link.len() > 100 {
                    pax.push((b"linkpath", link.to_vec()));
                }
                let n = link.len().min(100);
                ustar.linkname[..n].copy_from_slice(&link[..n]);
            }
        }
        h.set_entry_type(spec.kind);
        h.set_mode(spec.mode);
        for (key, value, set) in [
            (&b"uid"[..], spec.uid, OCTAL_7_MAX),
            (&b"gid"[..], spec.gid, OCTAL_7_MAX),
        ] {
            if value > set {
                pax.push((key, value.to_string().into_bytes()));
            }
        }
        h.set_uid(spec.uid.min(OCTAL_7_MAX));
        h.set_gid(spec.gid.min(OCTAL_7_MAX));
        let mut mtime = u64::try_from(spec.mtime).unwrap_or(0);
        if let Some(epoch) = self.epoch {
            mtime = mtime.min(epoch);
        }
        if mtime > OCTAL_11_MAX {
            pax.push((b"mtime", mtime.to_string().into_bytes()));
        }
        h.set_mtime(mtime.min(OCTAL_11_MAX));
        if spec.size > OCTAL_11_MAX {
            pax.push((b"size", spec.size.to_string().into_bytes()));
        }
        h.set_size(spec.size.min(OCTAL_11_MAX));
        if let Some((major, minor)) = spec.dev {
            h.set_device_major(major).map_err(DiffError::Write)?;
            h.set_device_minor(minor).map_err(DiffError::Write)?;
        }
        h.set_cksum();

        let mut records = Vec::new();
        for (key, value) in &pax {
            pax_record(&mut records, key, value);
        }
        for (name, value) in spec.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax_record(&mut records, &key, value);
        }
        if !records.is_empty() {
            self.pax_header(spec.path, &records)?;
        }
        self.out.write_all(h.as_bytes()).map_err(DiffError::Write)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn pax_header(&mut self, path: &[u8], records: &[u8]) -> Result<()> {
        // Conventional name: <dir>/PaxHeaders.0/<file>, cut to the 100-byte name field.
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let (dir, file) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        let mut name = dir.to_vec();
        name.extend_from_slice(b"PaxHeaders.0/");
        name.extend_from_slice(file);
        name.truncate(100);
        let mut h = Header::new_ustar();
        h.as_ustar_mut().expect("ustar header").name[..name.len()].copy_from_slice(&name);
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(records.len() as u64);
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(DiffError::Write)?;
        self.out.write_all(records).map_err(DiffError::Write)?;
        self.pad(records.len() as u64)
    }

    fn finish(mut self) -> Result<DiffStats> {
        self.out.write_all(&[0u8; 1024]).map_err(DiffError::Write)?;
        self.out.flush().map_err(DiffError::Write)?;
        self.stats.tar_bytes = self.out.count;
        Ok(self.stats)
    }
}

/// Splits a path into ustar `prefix` (≤155 bytes) and `name` (≤100 bytes) at a `/`, or `None`
/// when it needs a PAX `path` record.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    if path.len() > 256 {
        return None;
    }
    // The name part excludes a trailing slash's split point: "a/b/" splits before "b/".
    let search_end = path.len().saturating_sub(1).min(155);
    (0..=search_end)
        .rev()
        .find(|&i| path[i] == b'/' && path.len() - i - 1 <= 100 && i > 0 && i + 1 < path.len())
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record
/// including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn io_err(what: &'static str, path: &Path, source: io::Error) -> DiffError {
    DiffError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'a'; 95]);
        let s = String::from_utf8(out).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), s.len());
        let mut out = Vec::new();
        pax_record(&mut out, b"k", b"v");
        assert_eq!(out, b"6 k=v\n");
    }

    #[test]
    fn ustar_split_uses_prefix_or_gives_up() {
        let short = b"a/b";
        assert_eq!(split_ustar_path(short), Some((&b""[..], &short[..])));
        let long = [vec![b'd'; 120], b"/".to_vec(), vec![b'f'; 50]].concat();
        let (p, n) = split_ustar_path(&long).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        assert_eq!(split_ustar_path(&[b'x'; 150]), None);
        assert_eq!(split_ustar_path(&[b'x'; 300]), None);
    }
}
