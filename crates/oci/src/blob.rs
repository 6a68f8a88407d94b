//! Where blobs come from and go to: two small traits and two plain implementations.
//!
//! The traits break the dependency on the store: the engine adapts the cache crate's content
//! store to them, tests use the in-memory map, and the OCI layout writer uses the directory one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::digest::{Digest, VerifyingReader};

/// Why a blob could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("failed to read blob {digest}")]
    Read {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("failed to store blob {digest}")]
    Write {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error(
        "blob {digest} is {size} bytes, more than the {limit} bytes allowed for this kind of blob"
    )]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
}

/// Reads blobs by digest.
pub trait BlobSource {
    /// Opens a blob. The reader yields the stored bytes; callers that need certainty wrap it in
    /// a [`VerifyingReader`] (the exporters do).
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, BlobError>;

    /// The size of a blob, or `None` when it is absent.
    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// `len` bytes of a blob from `offset`, as a reader another thread may own (an upload's
    /// body). The default reads the range into memory; file-backed sources seek instead.
    fn open_range(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send + '_>, BlobError> {
        let read = |source| BlobError::Read {
            digest: *digest,
            source,
        };
        let mut reader = self.open(digest)?;
        io::copy(&mut (&mut reader).take(offset), &mut io::sink()).map_err(read)?;
        let mut bytes = Vec::new();
        reader.take(len).read_to_end(&mut bytes).map_err(read)?;
        Ok(Box::new(Cursor::new(bytes)))
    }

    /// Reads a whole (small) blob into memory, refusing more than `limit` bytes and verifying
    /// its digest.
    fn read_verified(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, BlobError> {
        let size = self.size(digest)?.ok_or(BlobError::NotFound(*digest))?;
        if size > limit {
            return Err(BlobError::TooLarge {
                digest: *digest,
                size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        VerifyingReader::new(self.open(digest)?, *digest, size)
            .read_to_end(&mut out)
            .map_err(|source| BlobError::Read {
                digest: *digest,
                source,
            })?;
        Ok(out)
    }
}

/// `len` bytes of an open blob file from `offset`.
pub fn file_range(
    mut file: File,
    digest: &Digest,
    offset: u64,
    len: u64,
) -> Result<Box<dyn Read + Send + 'static>, BlobError> {
    use std::io::Seek as _;
    file.seek(io::SeekFrom::Start(offset))
        .map_err(|source| BlobError::Read {
            digest: *digest,
            source,
        })?;
    Ok(Box::new(io::BufReader::with_capacity(
        1 << 20,
        file.take(len),
    )))
}

/// Stores blobs by digest.
pub trait BlobSink {
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// Stores the `size` bytes of `reader` as blob `digest`. Implementations verify the digest
    /// and size before the blob becomes visible, and write atomically (temp file, fsync, rename).
    /// Storing a blob that is already present is not an error.
    fn put(&self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), BlobError>;
}

/// Blobs in a map in memory: for tests and small tools.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobs {
    blobs: Arc<Mutex<BTreeMap<Digest, Arc<[u8]>>>>,
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// Stores `bytes` and returns their digest.
    pub fn insert(&self, bytes: impl Into<Arc<[u8]>>) -> Digest {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        self.lock().insert(digest, bytes);
        digest
    }

    /// A copy of one blob.
    pub fn get(&self, digest: &Digest) -> Option<Arc<[u8]>> {
        self.lock().get(digest).cloned()
    }

    /// The digests stored, in order.
    pub fn digests(&self) -> Vec<Digest> {
        self.lock().keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Digest, Arc<[u8]>>> {
        // A panic while holding this lock cannot leave the map half-updated (inserts are single
        // calls), so a poisoned lock is still consistent.
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, BlobError> {
        let bytes = self.get(digest).ok_or(BlobError::NotFound(*digest))?;
        Ok(Box::new(Cursor::new(bytes)))
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        Ok(self.lock().get(digest).map(|b| b.len() as u64))
    }
}

impl BlobSink for MemoryBlobs {
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.lock().contains_key(digest))
    }

    fn put(&self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), BlobError> {
        let mut bytes = Vec::new();
        VerifyingReader::new(reader, *digest, size)
            .read_to_end(&mut bytes)
            .map_err(|source| BlobError::Write {
                digest: *digest,
                source,
            })?;
        self.lock().insert(*digest, bytes.into());
        Ok(())
    }
}

/// Blobs as files `<root>/sha256/<hex>`: the `blobs` directory of an OCI layout.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    /// Blobs under `root` (the directory that holds `sha256/`). Nothing is created until a put.
    pub fn new(root: impl Into<PathBuf>) -> DirBlobs {
        DirBlobs { root: root.into() }
    }

    /// Where blob `digest` lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }
}

impl BlobSource for DirBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, BlobError> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound(*digest)),
            Err(source) => Err(BlobError::Read {
                digest: *digest,
                source,
            }),
        }
    }

    fn open_range(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send + '_>, BlobError> {
        let file = File::open(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::NotFound(*digest),
            _ => BlobError::Read {
                digest: *digest,
                source: e,
            },
        })?;
        file_range(file, digest, offset, len)
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.path(digest)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Read {
                digest: *digest,
                source,
            }),
        }
    }
}

impl BlobSink for DirBlobs {
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.size(digest)?.is_some())
    }

    fn put(&self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), BlobError> {
        if self.contains(digest)? {
            return Ok(());
        }
        let err = |source| BlobError::Write {
            digest: *digest,
            source,
        };
        let dir = self.root.join("sha256");
        fs::create_dir_all(&dir).map_err(err)?;
        // The temp file lives next to its final name so the rename is atomic, and a crash leaves
        // only a `.tmp` file, never a blob with a wrong digest under a real name.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(err)?;
        io::copy(
            &mut VerifyingReader::new(reader, *digest, size),
            tmp.as_file_mut(),
        )
        .map_err(err)?;
        tmp.as_file_mut().flush().map_err(err)?;
        // tempfile creates 0600; blobs of a layout are read by other users' tools too.
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(self.path(digest)).map_err(|e| err(e.error))?;
        Ok(())
    }
}
