//! Blob transfer helpers for both ends of `Upload` and `Download`: the worker's verifier
//! (decompress, count, hash, refuse a wrong size or digest before the blob is kept) and the
//! client's chunking.

use std::io::{self, Write};

use kiln_llb::Digest;
use sha2::{Digest as _, Sha256};

use crate::v1::{BlobKind, Compression, UploadChunk, UploadHeader};

/// The chunk size clients send and workers use for `Download`: large enough that per-message
/// overhead is noise, well under gRPC's default 4 MiB message limit.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Why an upload was refused. Each names the blob.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload without a header: the first message must carry the digest and size")]
    NoHeader,
    #[error("upload sent a second header")]
    SecondHeader,
    #[error("upload of {digest:?}: invalid digest: {reason}")]
    BadDigest { digest: String, reason: String },
    #[error("upload of {digest}: unknown compression {value}")]
    UnknownCompression { digest: Digest, value: i32 },
    #[error("not supported yet: {0:?}-compressed uploads (send zstd or none)")]
    UnsupportedCompression(&'static str),
    #[error("upload of {digest}: more than the announced {size} bytes")]
    TooLong { digest: Digest, size: u64 },
    #[error("upload of {digest}: {actual} bytes instead of the announced {size}")]
    WrongSize {
        digest: Digest,
        size: u64,
        actual: u64,
    },
    #[error("upload of {expected}: the bytes hash to {actual}")]
    WrongDigest { expected: Digest, actual: Digest },
    #[error("upload of {digest}: {source}")]
    Io {
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

impl From<UploadError> for tonic::Status {
    fn from(e: UploadError) -> tonic::Status {
        match e {
            UploadError::Io { .. } => tonic::Status::internal(e.to_string()),
            UploadError::UnsupportedCompression(_) => tonic::Status::unimplemented(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// What an upload announced in its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub digest: Digest,
    pub size: u64,
    pub kind: BlobKind,
    pub compression: Compression,
}

impl Target {
    /// Reads and checks a header.
    pub fn from_header(header: &UploadHeader) -> Result<Target, UploadError> {
        let digest: Digest = header
            .digest
            .parse()
            .map_err(|e: kiln_llb::DigestParseError| UploadError::BadDigest {
                digest: header.digest.clone(),
                reason: e.to_string(),
            })?;
        let compression = Compression::try_from(header.compression).map_err(|_| {
            UploadError::UnknownCompression {
                digest,
                value: header.compression,
            }
        })?;
        Ok(Target {
            digest,
            size: header.size,
            kind: BlobKind::try_from(header.kind).unwrap_or(BlobKind::Unspecified),
            compression,
        })
    }
}

/// Writes an upload's bytes to `sink` while checking them: decompressed, never more than the
/// announced size, and hashing to the announced digest. The worker keeps the blob only after
/// [`Verifier::finish`] succeeded (it writes to a temporary file and renames it then).
pub struct Verifier<W: Write> {
    digest: Digest,
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Plain(Counted<W>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Counted<W>>>),
}

/// The sink side: counts and hashes the decompressed bytes before passing them on.
struct Counted<W> {
    sink: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            // Stops a decompression bomb at the announced size, not at the disk's.
            return Err(io::Error::new(io::ErrorKind::InvalidData, TooLong));
        }
        let n = self.sink.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more bytes than announced")
    }
}

impl std::error::Error for TooLong {}

impl<W: Write> Verifier<W> {
    pub fn new(target: &Target, sink: W) -> Result<Verifier<W>, UploadError> {
        let counted = Counted {
            sink,
            hasher: Sha256::new(),
            written: 0,
            limit: target.size,
        };
        let inner = match target.compression {
            Compression::Unspecified | Compression::None => Inner::Plain(counted),
            Compression::Zstd => Inner::Zstd(Box::new(
                zstd::stream::write::Decoder::new(counted).map_err(|source| UploadError::Io {
                    digest: target.digest,
                    source,
                })?,
            )),
            Compression::Gzip => return Err(UploadError::UnsupportedCompression("gzip")),
        };
        Ok(Verifier {
            digest: target.digest,
            inner,
        })
    }

    /// Takes the next chunk as it came off the wire.
    pub fn write(&mut self, data: &[u8]) -> Result<(), UploadError> {
        let result = match &mut self.inner {
            Inner::Plain(c) => c.write_all(data),
            Inner::Zstd(d) => d.write_all(data),
        };
        result.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: io::Error) -> UploadError {
        if e.get_ref().is_some_and(|inner| inner.is::<TooLong>()) {
            let size = match &self.inner {
                Inner::Plain(c) => c.limit,
                Inner::Zstd(d) => d.get_ref().limit,
            };
            return UploadError::TooLong {
                digest: self.digest,
                size,
            };
        }
        UploadError::Io {
            digest: self.digest,
            source: e,
        }
    }

    /// Checks the size and digest and hands back the sink.
    pub fn finish(mut self) -> Result<W, UploadError> {
        let flushed = match &mut self.inner {
            Inner::Plain(c) => c.flush(),
            Inner::Zstd(d) => d.flush(),
        };
        flushed.map_err(|e| self.io_error(e))?;
        let counted = match self.inner {
            Inner::Plain(c) => c,
            Inner::Zstd(d) => d.into_inner(),
        };
        if counted.written != counted.limit {
            return Err(UploadError::WrongSize {
                digest: self.digest,
                size: counted.limit,
                actual: counted.written,
            });
        }
        let actual = Digest::from_bytes(counted.hasher.finalize().into());
        if actual != self.digest {
            return Err(UploadError::WrongDigest {
                expected: self.digest,
                actual,
            });
        }
        Ok(counted.sink)
    }
}

/// The header of an upload: `digest` and `size` of the uncompressed bytes, and how the chunks
/// that follow are compressed. A client streaming a large file builds its messages from this
/// and chunks of at most [`CHUNK_BYTES`].
pub fn header(
    digest: &Digest,
    size: u64,
    kind: BlobKind,
    compression: Compression,
) -> UploadHeader {
    UploadHeader {
        digest: digest.to_string(),
        size,
        kind: kind as i32,
        compression: compression as i32,
    }
}

/// The messages of one uncompressed upload of `data` held in memory (tree nodes, small files).
pub fn chunks(data: &[u8], kind: BlobKind) -> Vec<UploadChunk> {
    let header = header(
        &Digest::of(data),
        data.len() as u64,
        kind,
        Compression::None,
    );
    let mut out: Vec<UploadChunk> = data
        .chunks(CHUNK_BYTES)
        .map(|c| UploadChunk {
            header: None,
            data: c.to_vec(),
        })
        .collect();
    match out.first_mut() {
        Some(first) => first.header = Some(header),
        None => out.push(UploadChunk {
            header: Some(header),
            data: Vec::new(),
        }),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(data: &[u8], compression: Compression) -> Target {
        Target {
            digest: Digest::of(data),
            size: data.len() as u64,
            kind: BlobKind::File,
            compression,
        }
    }

    #[test]
    fn plain_and_zstd_uploads_verify() {
        let data = b"hello kiln\n".repeat(1000);
        let mut v = Verifier::new(&target(&data, Compression::None), Vec::new()).unwrap();
        for c in data.chunks(7) {
            v.write(c).unwrap();
        }
        assert_eq!(v.finish().unwrap(), data);

        let packed = zstd::encode_all(&data[..], 3).unwrap();
        let mut v = Verifier::new(&target(&data, Compression::Zstd), Vec::new()).unwrap();
        for c in packed.chunks(5) {
            v.write(c).unwrap();
        }
        assert_eq!(v.finish().unwrap(), data);
    }

    #[test]
    fn wrong_bytes_are_refused_naming_both_digests() {
        let data = b"expected";
        let mut v = Verifier::new(&target(data, Compression::None), Vec::new()).unwrap();
        v.write(b"EXPECTED").unwrap();
        let err = v.finish().unwrap_err();
        assert!(matches!(err, UploadError::WrongDigest { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&Digest::of(b"EXPECTED").to_string())
        );
    }

    #[test]
    fn short_long_and_bomb_uploads_are_refused() {
        let data = b"0123456789";
        let mut v = Verifier::new(&target(data, Compression::None), Vec::new()).unwrap();
        v.write(b"01234").unwrap();
        assert!(matches!(
            v.finish(),
            Err(UploadError::WrongSize { actual: 5, .. })
        ));
        let mut v = Verifier::new(&target(data, Compression::None), Vec::new()).unwrap();
        assert!(matches!(
            v.write(b"0123456789!"),
            Err(UploadError::TooLong { size: 10, .. })
        ));
        // A small zstd frame that expands far beyond the announced size stops at it.
        let bomb = zstd::encode_all(&vec![0u8; 10 << 20][..], 19).unwrap();
        let mut v = Verifier::new(&target(data, Compression::Zstd), Vec::new()).unwrap();
        assert!(matches!(v.write(&bomb), Err(UploadError::TooLong { .. })));
    }

    #[test]
    fn chunks_put_the_header_first_and_cover_the_bytes() {
        let data = vec![7u8; CHUNK_BYTES * 2 + 3];
        let msgs = chunks(&data, BlobKind::File);
        assert_eq!(msgs.len(), 3);
        assert!(msgs[0].header.is_some() && msgs[1].header.is_none());
        let joined: Vec<u8> = msgs.iter().flat_map(|m| m.data.clone()).collect();
        assert_eq!(joined, data);
        assert_eq!(chunks(b"", BlobKind::File).len(), 1);
    }
}
