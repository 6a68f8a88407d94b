//! ADD of local archives: tar streams (plain, gzip, bzip2, xz, zstd, detected by magic bytes)
//! extracted into a directory of a snapshot, every entry kept inside the destination root
//! (`../` clamps, symlinks in the tree are resolved inside the root), `--chown` applied to
//! what is extracted. Sources that are not archives are copied as files.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use thiserror::Error;

use super::copy::{self, CopyError, CopyOptions, Ownership};
use kiln_image::rootfs::{clean_abs, resolve_in_root};

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("failed to extract {archive}: {what}: {source}")]
    Extract {
        archive: String,
        what: String,
        #[source]
        source: io::Error,
    },
}

impl From<ArchiveError> for crate::error::EngineError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Copy(c) => crate::error::EngineError::Copy(c),
            ArchiveError::Extract {
                archive,
                what,
                source,
            } => crate::error::EngineError::Io {
                what: format!("extract {archive}: {what}"),
                source,
            },
        }
    }
}

/// How a tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// Recognises a compressed stream by its first bytes, as BuildKit's archive detection does.
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

fn decompressor(file: File, compression: Compression) -> io::Result<Box<dyn Read>> {
    let file = BufReader::new(file);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// True when `block` is a valid tar header: the checksum field matches the header's bytes
/// (computed with the checksum field read as spaces), the test every tar reader applies.
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == expected
}

/// The compression of `path` when it is a tar archive, `None` when it is any other file.
pub fn detect(path: &Path) -> io::Result<Option<Compression>> {
    let mut head = [0u8; 8];
    let n = {
        let mut f = File::open(path)?;
        read_full(&mut f, &mut head)?
    };
    let compression = Compression::from_magic(&head[..n]);
    let mut reader = match decompressor(File::open(path)?, compression) {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    let mut block = [0u8; 512];
    // A stream that does not decompress is not an archive: it is copied as it is.
    match read_full(&mut reader, &mut block) {
        Ok(512) if is_tar_header(&block) => Ok(Some(compression)),
        _ => Ok(None),
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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

/// The PAX extended-header fields extraction honours.
#[derive(Default)]
struct PaxFields {
    mtime: Option<FileTime>,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn pax_fields<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<PaxFields> {
    let mut out = PaxFields::default();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext?;
        let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
            continue;
        };
        match key {
            "mtime" => out.mtime = parse_pax_time(value),
            "uid" => out.uid = value.parse().ok(),
            "gid" => out.gid = value.parse().ok(),
            _ => {}
        }
    }
    Ok(out)
}

/// A PAX time: decimal seconds with an optional fraction (`1613482459.6914396`).
fn parse_pax_time(value: &str) -> Option<FileTime> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<u32>().ok()?
    };
    Some(FileTime::from_unix_time(secs, nanos))
}

/// Whether a tar entry is a file system object (not a metadata record).
fn is_file_entry(kind: tar::EntryType) -> bool {
    use tar::EntryType as T;
    matches!(
        kind,
        T::Regular
            | T::Continuous
            | T::GNUSparse
            | T::Directory
            | T::Symlink
            | T::Link
            | T::Fifo
            | T::Char
            | T::Block
    )
}

/// How extracted entries are owned and timed.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// `Set` for `--chown`; `Keep` takes the ids recorded in the archive.
    pub ownership: Ownership,
    pub mtime_override: Option<i64>,
}

/// The archive entry path as a clean relative path: leading `/` dropped, `.` removed, `..`
/// applied and clamped at the top, so no entry names a place above the destination.
fn clean_entry_path(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    clean_abs(&format!("/{text}"))
        .trim_start_matches('/')
        .to_string()
}

/// Extracts the tar archive `archive` into the directory `dest_dir` (absolute, inside
/// `dest_root`, created if missing). Returns the number of entries written.
pub fn extract(
    archive: &Path,
    dest_root: &Path,
    dest_dir: &str,
    opts: &ExtractOptions,
) -> Result<u64, ArchiveError> {
    let name = archive.display().to_string();
    let fail = |what: String| {
        let name = name.clone();
        move |source: io::Error| ArchiveError::Extract {
            archive: name,
            what,
            source,
        }
    };
    let compression = detect(archive)
        .map_err(fail("read".into()))?
        .unwrap_or(Compression::None);
    let file = File::open(archive).map_err(fail("open".into()))?;
    let reader = decompressor(file, compression).map_err(fail("decompress".into()))?;
    let dest_dir = clean_abs(dest_dir);
    let base = resolve_in_root(dest_root, &dest_dir, true)
        .map_err(fail("resolve the destination".into()))?;
    make_dirs(dest_root, &base, opts.ownership).map_err(fail(format!("create {dest_dir}")))?;

    let mut tar = tar::Archive::new(reader);
    let mut count = 0;
    // Directory times are set last: writing their children would change them again.
    let mut dir_times: Vec<(PathBuf, FileTime)> = Vec::new();
    for entry in tar.entries().map_err(fail("read entries".into()))? {
        let mut entry = entry.map_err(fail("read an entry".into()))?;
        let rel = clean_entry_path(&entry.path_bytes());
        if rel.is_empty() {
            continue;
        }
        let full = format!("{dest_dir}/{rel}");
        let header = entry.header().clone();
        let kind = header.entry_type();
        // Metadata records (a PAX global header, GNU long names) carry no file: their name is
        // no path to create.
        if !is_file_entry(kind) {
            continue;
        }
        let what = format!("write {full}");
        // As BuildKit extracts inside a chroot of the destination directory, paths resolve
        // inside that directory: an entry below a symlink such as `dir -> ..` (or an absolute
        // one) stays in the destination. A missing parent is created; one that exists (an
        // earlier entry may have made it a symlink) is followed and must lead to a directory.
        // The entry itself is never followed.
        let parent_rel = rel.rsplit_once('/').map_or("", |(p, _)| p);
        let lexical = resolve_in_root(&base, parent_rel, false).map_err(fail(what.clone()))?;
        if lexical.symlink_metadata().is_err() {
            // Implied parents belong to root even with `--chown` (which is for the entries),
            // as in BuildKit's untar.
            let parent = resolve_in_root(&base, parent_rel, true).map_err(fail(what.clone()))?;
            let root = Ownership::Set { uid: 0, gid: 0 };
            make_dirs(&base, &parent, root).map_err(fail(what.clone()))?;
        }
        let target = resolve_in_root(&base, &rel, false).map_err(fail(what.clone()))?;
        if !target.parent().is_some_and(Path::is_dir) {
            return Err(ArchiveError::Extract {
                archive: name.clone(),
                what,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("/{parent_rel} is not a directory inside the destination"),
                ),
            });
        }
        let existing = target.symlink_metadata().ok();
        let replace = |is_dir_entry: bool| -> io::Result<()> {
            match &existing {
                Some(m) if m.is_dir() && is_dir_entry => Ok(()),
                Some(m) if m.is_dir() => fs::remove_dir_all(&target),
                Some(_) => fs::remove_file(&target),
                None => Ok(()),
            }
        };
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        // PAX records override the header's fields (GNU tar and Go write mtimes with a
        // fraction there and leave the header's zero or truncated).
        let pax = pax_fields(&mut entry).map_err(fail(format!("read {full}")))?;
        let mtime = match opts.mtime_override {
            Some(secs) => FileTime::from_unix_time(secs, 0),
            None => pax
                .mtime
                .unwrap_or_else(|| FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0)),
        };
        let (uid, gid) = match opts.ownership {
            Ownership::Set { uid, gid } => (uid, gid),
            Ownership::Keep => (
                pax.uid.unwrap_or_else(|| header.uid().unwrap_or(0) as u32),
                pax.gid.unwrap_or_else(|| header.gid().unwrap_or(0) as u32),
            ),
        };
        let result: io::Result<bool> = (|| {
            use tar::EntryType as T;
            match kind {
                T::Directory => {
                    replace(true)?;
                    if !target.is_dir() {
                        fs::create_dir(&target)?;
                    }
                    lchown(&target, Some(uid), Some(gid))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
                    dir_times.push((target.clone(), mtime));
                }
                T::Regular | T::Continuous | T::GNUSparse => {
                    replace(false)?;
                    let mut out = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)?;
                    io::copy(&mut entry, &mut out)?;
                    drop(out);
                    lchown(&target, Some(uid), Some(gid))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
                    filetime::set_file_times(&target, mtime, mtime)?;
                }
                T::Symlink => {
                    let link = entry.link_name_bytes().unwrap_or_default().into_owned();
                    replace(false)?;
                    symlink(std::ffi::OsStr::from_bytes(&link), &target)?;
                    lchown(&target, Some(uid), Some(gid))?;
                    filetime::set_symlink_file_times(&target, mtime, mtime)?;
                }
                T::Link => {
                    let link = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let source_rel = clean_entry_path(&link);
                    let source = resolve_in_root(&base, &source_rel, false)?;
                    replace(false)?;
                    fs::hard_link(&source, &target)?;
                }
                T::Fifo | T::Char | T::Block => {
                    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
                    replace(false)?;
                    let flag = match kind {
                        T::Fifo => SFlag::S_IFIFO,
                        T::Char => SFlag::S_IFCHR,
                        _ => SFlag::S_IFBLK,
                    };
                    let dev = makedev(
                        header.device_major().ok().flatten().unwrap_or(0) as u64,
                        header.device_minor().ok().flatten().unwrap_or(0) as u64,
                    );
                    mknod(&target, flag, Mode::from_bits_truncate(mode), dev)
                        .map_err(io::Error::from)?;
                    lchown(&target, Some(uid), Some(gid))?;
                    filetime::set_file_times(&target, mtime, mtime)?;
                }
                // pax and GNU long-name records are consumed by the tar reader; anything else
                // (global headers, volume labels) carries no file.
                _ => return Ok(false),
            }
            Ok(true)
        })();
        if result.map_err(fail(what))? {
            count += 1;
        }
    }
    for (dir, t) in dir_times.iter().rev() {
        let _ = filetime::set_file_times(dir, *t, *t);
    }
    Ok(count)
}

/// Creates the missing directories of `path` (already resolved inside `root`), owned as the
/// extraction's entries are, mode 0755.
fn make_dirs(root: &Path, path: &Path, ownership: Ownership) -> io::Result<()> {
    let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    let mut current = root.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match current.symlink_metadata() {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", current.display()),
                ));
            }
            Err(_) => {
                fs::create_dir(&current)?;
                fs::set_permissions(&current, fs::Permissions::from_mode(0o755))?;
                if let Ownership::Set { uid, gid } = ownership {
                    lchown(&current, Some(uid), Some(gid))?;
                }
            }
        }
    }
    Ok(())
}

/// ADD with extraction, per matched source as BuildKit does: a source that is a tar archive
/// is extracted into the destination directory; any other is copied as COPY would.
///
/// `archive_owner` is `Set` only for an explicit `--chown`: archive entries otherwise keep the
/// owners recorded in the archive, as in BuildKit (the context's 0:0 is for plain files).
pub fn add(
    src_root: &Path,
    dest_root: &Path,
    opts: &CopyOptions,
    archive_owner: Ownership,
) -> Result<(), ArchiveError> {
    let extract_opts = ExtractOptions {
        ownership: archive_owner,
        mtime_override: opts.mtime_override,
    };
    let mut copier = copy::Copier::new(dest_root, opts)?;
    for pattern in &opts.sources {
        let found = copy::resolve_source(src_root, pattern, opts)?;
        if found.is_empty() && !opts.allow_empty_wildcard {
            return Err(CopyError::NoMatch(pattern.clone()).into());
        }
        for m in &found {
            if m.abs.is_file() && matches!(detect(&m.abs), Ok(Some(_))) {
                extract(&m.abs, dest_root, &opts.dest, &extract_opts)?;
            } else {
                copier.copy_match(m)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o640);
        header.set_uid(7);
        header.set_gid(8);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        // Written raw: `set_path` refuses `..`, which these tests need.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, data).expect("append");
        builder.into_inner().expect("finish")
    }

    #[test]
    fn detects_tar_streams_and_not_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a.tar");
        fs::write(&plain, tar_with("f", b"x")).expect("write");
        assert_eq!(detect(&plain).expect("detect"), Some(Compression::None));

        let gz = dir.path().join("a.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &tar_with("f", b"x")).expect("compress");
        fs::write(&gz, enc.finish().expect("finish")).expect("write");
        assert_eq!(detect(&gz).expect("detect"), Some(Compression::Gzip));

        // Gzip of something that is not a tar is copied, not extracted.
        let not_tar = dir.path().join("notes.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, &[b'n'; 2000]).expect("compress");
        fs::write(&not_tar, enc.finish().expect("finish")).expect("write");
        assert_eq!(detect(&not_tar).expect("detect"), None);

        let text = dir.path().join("t.txt");
        fs::write(&text, "hello").expect("write");
        assert_eq!(detect(&text).expect("detect"), None);
    }

    #[test]
    fn entry_paths_never_climb_above_the_destination() {
        assert_eq!(clean_entry_path(b"../../etc/passwd"), "etc/passwd");
        assert_eq!(clean_entry_path(b"/abs/./x/../y"), "abs/y");
        assert_eq!(clean_entry_path(b"./"), "");
    }

    #[test]
    fn extraction_keeps_or_overrides_owners_and_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("a.tar");
        fs::write(&archive, tar_with("../sub/file", b"data")).expect("write");
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("mkdir");
        let opts = ExtractOptions {
            ownership: Ownership::Keep,
            mtime_override: None,
        };
        assert_eq!(
            extract(&archive, &root, "/dest", &opts).expect("extract"),
            1
        );
        let file = root.join("dest/sub/file");
        assert_eq!(fs::read(&file).expect("read"), b"data");
        let meta = fs::metadata(&file).expect("stat");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(meta.mtime(), 1_600_000_000);
        if nix::unistd::geteuid().is_root() {
            assert_eq!((meta.uid(), meta.gid()), (7, 8));
            let opts = ExtractOptions {
                ownership: Ownership::Set { uid: 100, gid: 200 },
                mtime_override: Some(5),
            };
            extract(&archive, &root, "/other", &opts).expect("extract");
            let meta = fs::metadata(root.join("other/sub/file")).expect("stat");
            assert_eq!((meta.uid(), meta.gid(), meta.mtime()), (100, 200, 5));
        }
    }
}
