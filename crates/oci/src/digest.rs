//! Streaming sha256: writers and readers that hash and count what passes through them.
//!
//! Every blob kiln writes or reads goes through one of these, so a digest is computed in the same
//! pass that moves the bytes and never needs a second read of a large layer.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

pub use kiln_llb::Digest;

/// A running sha256 plus a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_bytes(self.sha.finalize().into()), self.len)
    }
}

/// Forwards writes to `inner` and hashes exactly the bytes `inner` accepted.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// The digest and size of everything written, and the inner writer back.
    pub fn finish(self) -> (Digest, u64, W) {
        let (digest, size) = self.hasher.finish();
        (digest, size, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash only what the inner writer took: a short write must not be hashed twice.
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts the bytes read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn finish(self) -> (Digest, u64) {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that fails instead of returning end-of-file when the bytes it passed on do not match
/// the expected digest and size, and fails as soon as more than `size` bytes arrive.
///
/// Consumers that copy a blob into a tar or a store see the mismatch as an I/O error at the end of
/// the copy, so a corrupt source can never be mistaken for a complete blob.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    size: u64,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            hasher: Hasher::new(),
            expected,
            size,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            let (digest, len) = std::mem::take(&mut self.hasher).finish();
            if len != self.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is {len} bytes, expected {}",
                        self.expected, self.size
                    ),
                ));
            }
            if digest != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {} has digest {digest}", self.expected),
                ));
            }
            // Keep a finished hasher that reports the right answer again if read once more.
            self.hasher = Hasher::new();
            self.size = 0;
            self.expected = Digest::of(b"");
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        if self.hasher.len() > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} is longer than {} bytes", self.expected, self.size),
            ));
        }
        Ok(n)
    }
}

/// The sha256 digest and size of everything `reader` yields.
pub fn digest_reader(reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut r = HashingReader::new(reader);
    io::copy(&mut r, &mut io::sink())?;
    Ok(r.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree_with_one_shot_digest() {
        let data = vec![7u8; 100_000];
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (d, n, out) = w.finish();
        assert_eq!(d, Digest::of(&data));
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        assert_eq!(
            digest_reader(&data[..]).unwrap(),
            (Digest::of(&data), 100_000)
        );
    }

    #[test]
    fn verifying_reader_rejects_wrong_digest_short_and_long_input() {
        let data = b"hello".to_vec();
        let d = Digest::of(&data);
        let mut ok = Vec::new();
        VerifyingReader::new(&data[..], d, 5)
            .read_to_end(&mut ok)
            .unwrap();
        assert_eq!(ok, data);

        let err = VerifyingReader::new(&b"hellO"[..], d, 5)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("has digest"), "{err}");
        let err = VerifyingReader::new(&b"hell"[..], d, 5)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("is 4 bytes, expected 5"), "{err}");
        let err = VerifyingReader::new(&b"hello!"[..], d, 5)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("longer than 5"), "{err}");
    }
}
