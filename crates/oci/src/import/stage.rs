//! The input's files: a tar stream (plain, gzip or zstd) staged into a private temporary
//! directory with every file hashed on the way, or a directory the user named; archive paths
//! normalized and links resolved without ever leaving the input.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Mutex;

use super::{LoadError, LoadOptions};
use crate::compress;
use crate::digest::{self, Digest, HashingWriter};

/// How many links are followed to resolve one archive path.
const MAX_LINK_HOPS: usize = 16;

/// A file of the input: where it is on disk, its size, and its digest when already known.
#[derive(Debug, Clone)]
pub(super) struct FileRef {
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) digest: Option<Digest>,
}

#[derive(Debug)]
pub(super) enum Entry {
    File(FileRef),
    /// A symbolic or hard link, as a normalized archive path of its target.
    Link(String),
}

/// The input's files, either staged from a tar or in a directory the user named.
#[derive(Debug)]
pub(super) enum Files {
    Staged {
        _dir: tempfile::TempDir,
        entries: BTreeMap<String, Entry>,
    },
    Dir {
        root: PathBuf,
        /// Digests computed so far, so a blob shared by images is hashed once.
        digests: Mutex<BTreeMap<String, Digest>>,
    },
}

impl Files {
    pub(super) fn lookup(&self, path: &str) -> Result<Option<FileRef>, LoadError> {
        let path = normalize(path)?;
        match self {
            Files::Staged { entries, .. } => {
                let mut p = path.clone();
                for _ in 0..MAX_LINK_HOPS {
                    match entries.get(&p) {
                        None => return Ok(None),
                        Some(Entry::File(f)) => return Ok(Some(f.clone())),
                        Some(Entry::Link(target)) => p = target.clone(),
                    }
                }
                Err(LoadError::BadLink { path })
            }
            Files::Dir { root, digests } => {
                let full = root.join(&path);
                match fs::metadata(&full) {
                    Ok(m) if m.is_file() => {
                        // Symlinks inside the directory may point anywhere: only follow those
                        // that stay inside it, as the archive reader does.
                        let inside = match (fs::canonicalize(&full), fs::canonicalize(root)) {
                            (Ok(f), Ok(r)) => f.starts_with(r),
                            _ => false,
                        };
                        if !inside {
                            return Err(LoadError::UnsafePath { path });
                        }
                        let digest = lock(digests).get(&path).copied();
                        Ok(Some(FileRef {
                            path: full,
                            size: m.len(),
                            digest,
                        }))
                    }
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(LoadError::Read { path, source }),
                }
            }
        }
    }

    /// The digest of a file, hashing it if not yet known.
    pub(super) fn digest(&self, path: &str, f: &FileRef) -> Result<Digest, LoadError> {
        if let Some(d) = f.digest {
            return Ok(d);
        }
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let (d, _) =
            digest::digest_reader(File::open(&f.path).map_err(read_err)?).map_err(read_err)?;
        if let Files::Dir { digests, .. } = self {
            lock(digests).insert(normalize(path)?, d);
        }
        Ok(d)
    }

    pub(super) fn read_json(
        &self,
        path: &str,
        f: &FileRef,
        limit: u64,
    ) -> Result<Vec<u8>, LoadError> {
        if f.size > limit {
            return Err(LoadError::TooLarge {
                what: path.to_owned(),
                size: f.size,
                limit,
            });
        }
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::with_capacity(f.size as usize);
        File::open(&f.path)
            .map_err(read_err)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 != f.size {
            return Err(LoadError::SizeMismatch {
                what: path.to_owned(),
                expected: f.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Normalizes an archive path: strips `./` and duplicate slashes; rejects absolute paths, `..`
/// and empty names.
pub(super) fn normalize(path: &str) -> Result<String, LoadError> {
    let unsafe_path = || LoadError::UnsafePath {
        path: path.to_owned(),
    };
    if path.starts_with('/') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path());
    }
    Ok(parts.join("/"))
}

/// Stages a tar stream (plain, gzip or zstd) into a temporary directory.
pub(super) fn stage<R: Read>(reader: R, options: &LoadOptions) -> Result<Files, LoadError> {
    let dir = match &options.staging_dir {
        Some(d) => tempfile::Builder::new().prefix(".kiln-load-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("kiln-load-").tempdir(),
    }
    .map_err(LoadError::Staging)?;
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let compression = compress::detect(&mut reader).map_err(LoadError::Archive)?;
    let mut archive =
        tar::Archive::new(compress::decompress(reader, compression).map_err(LoadError::Archive)?);
    let mut entries = BTreeMap::new();
    let mut count = 0usize;
    for entry in archive.entries().map_err(LoadError::Archive)? {
        let mut entry = entry.map_err(archive_err)?;
        count += 1;
        if count > options.max_entries {
            return Err(LoadError::TooManyEntries {
                limit: options.max_entries,
            });
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // Directories carry nothing an image needs; only check that the name is safe.
            if raw != "./" && raw != "." {
                normalize(&raw)?;
            }
            continue;
        }
        let path = normalize(&raw)?;
        if entries.contains_key(&path) {
            return Err(LoadError::DuplicateEntry { path });
        }
        let staged = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let expected = entry.header().size().map_err(LoadError::Archive)?;
                let file_path = dir.path().join(count.to_string());
                let file = File::create(&file_path).map_err(LoadError::Staging)?;
                let mut w = HashingWriter::new(io::BufWriter::new(file));
                let got = io::copy(&mut entry, &mut w).map_err(archive_err)?;
                let (digest, _, buf) = w.finish();
                buf.into_inner()
                    .map_err(|e| LoadError::Staging(e.into_error()))?;
                if got != expected {
                    return Err(LoadError::Truncated {
                        path,
                        expected,
                        got,
                    });
                }
                Entry::File(FileRef {
                    path: file_path,
                    size: got,
                    digest: Some(digest),
                })
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| LoadError::BadLink { path: path.clone() })?;
                let target = String::from_utf8_lossy(&target).into_owned();
                // A symlink is relative to its directory; a hard link names an archive path.
                let joined = match (kind, path.rsplit_once('/')) {
                    (tar::EntryType::Symlink, Some((parent, _))) if !target.starts_with('/') => {
                        resolve_dots(&format!("{parent}/{target}"))
                    }
                    _ => Some(target.clone()),
                };
                let joined = joined.ok_or(LoadError::UnsafePath { path: target })?;
                Entry::Link(normalize(&joined)?)
            }
            other => {
                return Err(LoadError::UnsupportedEntry {
                    path,
                    kind: format!("{other:?}").to_lowercase(),
                });
            }
        };
        entries.insert(path, staged);
    }
    Ok(Files::Staged { _dir: dir, entries })
}

/// Tells a cut-off archive from other read errors: the tar reader reports a partial header
/// block as a generic error with this text, and compressed streams as an unexpected end.
fn archive_err(e: io::Error) -> LoadError {
    if e.kind() == io::ErrorKind::UnexpectedEof
        || e.to_string().contains("failed to read entire block")
    {
        LoadError::TruncatedArchive(e)
    } else {
        LoadError::Archive(e)
    }
}

/// Resolves `a/b/../c` to `a/c`, or `None` if `..` climbs above the root (symlinks in legacy
/// docker archives point at `../<id>/layer.tar`).
fn resolve_dots(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            p => out.push(p),
        }
    }
    Some(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_escapes() {
        assert_eq!(normalize("./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "", "./"] {
            assert!(
                matches!(normalize(bad), Err(LoadError::UnsafePath { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            resolve_dots("a/../b/layer.tar").as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(resolve_dots("a/../../b"), None);
    }
}
