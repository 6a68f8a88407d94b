//! The blob traits for the cache crate's content store, so exporters read from and imports
//! commit into kiln's local store directly.

use std::io::{self, Read, Write};

use kiln_cache::{ContentStore, Error as CacheError, Store};

use crate::blob::{BlobError, BlobSink, BlobSource};
use crate::digest::Digest;

fn io_err(e: CacheError) -> io::Error {
    io::Error::other(e)
}

impl BlobSource for ContentStore {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, BlobError> {
        match self.read(digest) {
            Ok(f) => Ok(Box::new(f)),
            Err(CacheError::BlobNotFound(_)) => Err(BlobError::NotFound(*digest)),
            Err(e) => Err(BlobError::Read {
                digest: *digest,
                source: io_err(e),
            }),
        }
    }

    fn open_range(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send + '_>, BlobError> {
        match self.read(digest) {
            Ok(f) => crate::blob::file_range(f, digest, offset, len),
            Err(CacheError::BlobNotFound(_)) => Err(BlobError::NotFound(*digest)),
            Err(e) => Err(BlobError::Read {
                digest: *digest,
                source: io_err(e),
            }),
        }
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.info(digest) {
            Ok(info) => Ok(Some(info.size)),
            Err(CacheError::BlobNotFound(_)) => Ok(None),
            Err(e) => Err(BlobError::Read {
                digest: *digest,
                source: io_err(e),
            }),
        }
    }
}

/// Writes through the store's verifying writer: a wrong digest or size stores nothing.
fn put(
    store: &ContentStore,
    digest: &Digest,
    size: u64,
    reader: &mut dyn Read,
    lease: Option<&str>,
) -> Result<(), BlobError> {
    let err = |e: CacheError| BlobError::Write {
        digest: *digest,
        source: io_err(e),
    };
    let mut w = store.writer(Some(*digest)).map_err(err)?.expect_size(size);
    io::copy(reader, &mut w).map_err(|source| BlobError::Write {
        digest: *digest,
        source,
    })?;
    w.flush().map_err(|source| BlobError::Write {
        digest: *digest,
        source,
    })?;
    match lease {
        Some(lease) => w.commit_leased(lease).map_err(err)?,
        None => w.commit().map_err(err)?,
    };
    Ok(())
}

impl BlobSink for ContentStore {
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.exists(digest))
    }

    fn put(&self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), BlobError> {
        put(self, digest, size, reader, None)
    }
}

/// A store sink that adds every blob of an import to a lease, so garbage collection cannot
/// remove an imported image's blobs before the caller records a ref to it.
#[derive(Clone, Copy)]
pub struct LeasedStore<'a> {
    pub store: &'a Store,
    pub lease: &'a str,
}

impl BlobSink for LeasedStore<'_> {
    fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        // Lease first, then look: a blob seen present after it is leased stays present.
        self.store
            .lease_blob(self.lease, *digest)
            .map_err(|e| BlobError::Write {
                digest: *digest,
                source: io_err(e),
            })?;
        Ok(self.store.content().exists(digest))
    }

    fn put(&self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<(), BlobError> {
        put(self.store.content(), digest, size, reader, Some(self.lease))
    }
}
