//! The content store: sha256-addressed blobs under `content/blobs/sha256/<hex>`, verified on
//! write, written to `content/ingest/` first and renamed into place.
//!
//! A blob file is only ever created by rename of a fully written, fsynced temp file whose
//! digest was checked, so a blob path either does not exist or holds the full content (unless
//! the disk itself corrupted it, which `verify` and `kiln system check` find). Two writers of
//! the same blob (threads or processes) both rename identical content onto the same name,
//! which is atomic, so either order is fine.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::MetaDb;

/// A blob's identity and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// The content store of one root. Cheap to clone.
#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: PathBuf,
    ingest: PathBuf,
    meta: Arc<MetaDb>,
}

impl ContentStore {
    pub(crate) fn new(content_dir: &Path, meta: Arc<MetaDb>) -> ContentStore {
        ContentStore {
            inner: Arc::new(Inner {
                blobs: content_dir.join("blobs").join("sha256"),
                ingest: content_dir.join("ingest"),
                meta,
            }),
        }
    }

    /// Where blob `digest` lives (whether or not it exists). Readers that want the data should
    /// prefer [`ContentStore::read`]; the path is for hard-linking and for tests.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.join(digest.hex())
    }

    /// Starts writing a blob. If `expected` is given, `commit` refuses content with another
    /// digest and stores nothing.
    pub fn writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let temp = self
            .inner
            .ingest
            .join(format!("{}-{n}-{nanos}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io("create ingest file", &temp, e))?;
        // The lock tells `check` this file belongs to a live writer; it dies with the process,
        // which is how leftovers of killed writers are told apart from work in progress.
        file.try_lock()
            .map_err(|e| Error::io("lock ingest file", &temp, io::Error::other(e)))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(BufWriter::with_capacity(128 * 1024, file)),
            temp,
            hasher: Sha256::new(),
            written: 0,
            expected,
            expected_size: None,
        })
    }

    /// Writes `bytes` as a blob and returns its digest and size.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobInfo> {
        let mut w = self.writer(None)?;
        w.write_all(bytes)
            .map_err(|e| Error::io("write ingest file", &w.temp, e))?;
        w.commit()
    }

    /// Opens blob `digest` for reading (unverified: see [`ContentStore::open_verified`]).
    pub fn read(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(*digest),
            _ => Error::io("open blob", path, e),
        })
    }

    /// Opens blob `digest` through a reader that fails at end of file (with an
    /// `InvalidData` error naming the digests) if the content does not match.
    pub fn open_verified(&self, digest: &Digest) -> Result<VerifyingReader> {
        Ok(VerifyingReader {
            file: self.read(digest)?,
            hasher: Sha256::new(),
            expected: *digest,
            finished: false,
        })
    }

    /// Reads all of blob `digest` into memory, verified. For small blobs (manifests, configs).
    pub fn read_to_vec(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read(digest)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read blob", self.path(digest), e))?;
        let actual = Digest::of(&buf);
        if actual != *digest {
            return Err(Error::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(buf)
    }

    /// Whether blob `digest` is present.
    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of blob `digest`.
    pub fn info(&self, digest: &Digest) -> Result<BlobInfo> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(BlobInfo {
                digest: *digest,
                size: m.len(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(*digest)),
            Err(e) => Err(Error::io("stat blob", path, e)),
        }
    }

    /// Re-hashes blob `digest` and fails with [`Error::CorruptBlob`] if it does not match.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let mut file = self.read(digest)?;
        let actual =
            hash_reader(&mut file).map_err(|e| Error::io("read blob", self.path(digest), e))?;
        if actual != *digest {
            return Err(Error::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(())
    }

    /// Removes blob `digest`; returns whether it existed.
    ///
    /// This does not check references: GC (`Store::prune`) decides what may go.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove blob", path, e)),
        }
    }

    /// Every blob present, sorted by digest. Files whose names are not digests are skipped.
    pub fn list(&self) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        for (digest, path) in self.list_paths()? {
            match fs::metadata(&path) {
                Ok(m) => out.push(BlobInfo {
                    digest,
                    size: m.len(),
                }),
                // Deleted by someone else since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("stat blob", path, e)),
            }
        }
        out.sort();
        Ok(out)
    }

    fn list_paths(&self) -> Result<Vec<(Digest, PathBuf)>> {
        let dir = &self.inner.blobs;
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list blobs in", dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list blobs in", dir, e))?;
            let name = entry.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push((d, entry.path()));
            }
        }
        Ok(out)
    }

    /// Files in the blobs directory whose names are not digests.
    pub(crate) fn stray_files(&self) -> Result<Vec<PathBuf>> {
        let dir = &self.inner.blobs;
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list blobs in", dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list blobs in", dir, e))?;
            let name = entry.file_name();
            if name
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
                .is_none()
            {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Ingest files whose writer is gone (killed mid-write): nobody holds their lock.
    pub(crate) fn ingest_leftovers(&self) -> Result<Vec<PathBuf>> {
        let dir = &self.inner.ingest;
        let entries = fs::read_dir(dir).map_err(|e| Error::io("list ingest files in", dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list ingest files in", dir, e))?;
            let path = entry.path();
            // Opening for reading is enough to take a flock, and does not disturb a writer.
            let Ok(f) = File::open(&path) else { continue };
            if f.try_lock().is_ok() {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Hashes everything `reader` yields.
pub(crate) fn hash_reader(reader: &mut dyn Read) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(Digest::from_bytes(hasher.finalize().into()))
}

/// fsyncs a directory so that a rename into it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// A blob being written. Dropping it without `commit` removes the temp file.
pub struct BlobWriter {
    store: ContentStore,
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
}

impl BlobWriter {
    /// Also require the blob to be exactly `size` bytes at commit.
    pub fn expect_size(mut self, size: u64) -> BlobWriter {
        self.expected_size = Some(size);
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies and stores the blob. On a digest or size mismatch nothing is stored.
    pub fn commit(self) -> Result<BlobInfo> {
        self.commit_inner(None)
    }

    /// Like [`BlobWriter::commit`], and adds the blob to lease `lease` in the same metadata
    /// transaction as the rename, so GC cannot remove it in between.
    pub fn commit_leased(self, lease: &str) -> Result<BlobInfo> {
        self.commit_inner(Some(lease))
    }

    fn commit_inner(mut self, lease: Option<&str>) -> Result<BlobInfo> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Bug("blob writer committed twice".into()))?;
        let file = file
            .into_inner()
            .map_err(|e| Error::io("write ingest file", &self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("fsync ingest file", &self.temp, e))?;
        let digest = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
        let info = BlobInfo {
            digest,
            size: self.written,
        };
        if let Some(expected) = self.expected
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        if let Some(expected) = self.expected_size
            && expected != self.written
        {
            return Err(Error::SizeMismatch {
                digest,
                expected,
                actual: self.written,
            });
        }
        let target = self.store.path(&digest);
        let blobs = self.store.inner.blobs.clone();
        let temp = self.temp.clone();
        let publish = || -> Result<()> {
            // Renaming over an existing blob is fine: same name means same content, and it
            // replaces a copy the disk may have damaged.
            fs::rename(&temp, &target)
                .map_err(|e| Error::io("rename ingest file to", &target, e))?;
            sync_dir(&blobs)
        };
        match lease {
            None => publish()?,
            Some(lease) => {
                let meta = Arc::clone(&self.store.inner.meta);
                let _gc = meta
                    .gc_lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                meta.write(|tx| {
                    // Fail before publishing if the lease is gone, so nothing unprotected appears.
                    if tx.lease(lease)?.is_none() {
                        return Err(Error::LeaseNotFound(lease.to_owned()));
                    }
                    publish()?;
                    tx.lease_blob(lease, digest)
                })?;
            }
        }
        // The temp name no longer exists; keep `drop` from trying to remove it.
        self.temp = PathBuf::new();
        drop(file);
        Ok(info)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf).map_err(|e| with_path(e, &self.temp))?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush().map_err(|e| with_path(e, &self.temp)),
            None => Ok(()),
        }
    }
}

/// `e` with the file it happened to, for callers that see only an `io::Error` (a full disk
/// must say which disk). The kind stays, so `StorageFull` is still recognisable.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("failed to write {}: {e}", path.display()))
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            // Best effort: a leftover is harmless and `check --repair` removes it.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// A reader over a blob that checks the digest when it reaches the end.
pub struct VerifyingReader {
    file: File,
    hasher: Sha256,
    expected: Digest,
    finished: bool,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !buf.is_empty() && !self.finished {
            self.finished = true;
            let actual = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is corrupt: its content hashes to {actual}",
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}
