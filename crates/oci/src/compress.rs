//! Layer compression: one streaming pass that yields the diff ID, the blob digest and the blob.
//!
//! The uncompressed tar is hashed on its way into the compressor (the diff ID) and the compressed
//! bytes are hashed on their way out to the sink (the blob digest), so a layer of any size is
//! read once and memory stays at a few buffers.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::str::FromStr;

use rayon::prelude::*;

use self::pgzip::ParGzEncoder;

use crate::digest::{Digest, Hasher, HashingWriter};
use crate::media_type::LayerCompression;

/// gzip's default level, as Go's `compress/gzip` (and so Docker and BuildKit) use.
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
/// zstd's default level, as BuildKit uses.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// At most this many zstd worker threads per layer; layers also compress in parallel.
const ZSTD_MAX_WORKERS: usize = 4;
/// At most this many gzip worker threads per layer (beyond the first 1 MiB chunk).
const GZIP_MAX_WORKERS: usize = 4;

mod pgzip;

/// How to compress a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Compression {
        Compression::Gzip {
            level: GZIP_DEFAULT_LEVEL,
        }
    }
}

impl Compression {
    pub fn kind(self) -> LayerCompression {
        match self {
            Compression::None => LayerCompression::None,
            Compression::Gzip { .. } => LayerCompression::Gzip,
            Compression::Zstd { .. } => LayerCompression::Zstd,
        }
    }
}

/// Why a `--compression` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionParseError {
    #[error("unknown compression {0:?}: expected gzip, zstd or uncompressed")]
    Unknown(String),
    #[error("not supported yet: {0} compression")]
    NotSupported(String),
    #[error("invalid compression option {0:?}: expected level=N")]
    Option(String),
    #[error(
        "invalid compression level {level:?} for {algorithm}: expected an integer from {min} to {max}"
    )]
    Level {
        algorithm: &'static str,
        level: String,
        min: i32,
        max: i32,
    },
}

impl FromStr for Compression {
    type Err = CompressionParseError;

    /// Parses `--compression` values: `gzip`, `zstd`, `uncompressed` (or `none`), each optionally
    /// followed by `,level=N`, as BuildKit's `compression=`/`compression-level=` pair in one word.
    fn from_str(s: &str) -> Result<Compression, CompressionParseError> {
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or_default().trim();
        let mut level: Option<&str> = None;
        for opt in parts {
            match opt.trim().split_once('=') {
                Some(("level", v)) => level = Some(v.trim()),
                _ => return Err(CompressionParseError::Option(opt.to_owned())),
            }
        }
        match name {
            "gzip" => {
                let level = match level {
                    None => GZIP_DEFAULT_LEVEL,
                    Some(v) => parse_level("gzip", v, 0, 9)? as u32,
                };
                Ok(Compression::Gzip { level })
            }
            "zstd" => {
                let level = match level {
                    None => ZSTD_DEFAULT_LEVEL,
                    Some(v) => parse_level("zstd", v, 1, 22)?,
                };
                Ok(Compression::Zstd { level })
            }
            "uncompressed" | "none" => match level {
                None => Ok(Compression::None),
                Some(_) => Err(CompressionParseError::Option(format!("level for {name}"))),
            },
            "estargz" => Err(CompressionParseError::NotSupported(name.to_owned())),
            _ => Err(CompressionParseError::Unknown(name.to_owned())),
        }
    }
}

fn parse_level(
    algorithm: &'static str,
    v: &str,
    min: i32,
    max: i32,
) -> Result<i32, CompressionParseError> {
    match v.parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(CompressionParseError::Level {
            algorithm,
            level: v.to_owned(),
            min,
            max,
        }),
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("uncompressed"),
            Compression::Gzip { level } => write!(f, "gzip,level={level}"),
            Compression::Zstd { level } => write!(f, "zstd,level={level}"),
        }
    }
}

/// What compressing a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// sha256 of the uncompressed tar: goes into the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// sha256 of the blob as written to the sink: goes into the manifest.
    pub digest: Digest,
    /// Size of the blob as written.
    pub size: u64,
    pub compression: LayerCompression,
}

/// Why compressing a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("failed to read the layer tar")]
    Read(#[source] io::Error),
    #[error("failed to write the compressed layer")]
    Write(#[source] io::Error),
}

const BUF: usize = 256 * 1024;

/// Compresses the uncompressed layer tar from `input` into `sink` and returns its digests.
///
/// gzip output has no file name and a zero mtime and is deflated in fixed 1 MiB chunks on worker
/// threads (pigz's scheme), so equal input gives equal bytes whatever the thread count; zstd
/// output does not depend on the number of worker threads either.
pub fn compress_layer<R: Read, W: Write>(
    input: R,
    compression: Compression,
    sink: W,
) -> Result<(LayerDescriptor, W), CompressError> {
    let mut w = LayerWriter::new(compression, sink)?;
    let mut input = BufReader::with_capacity(BUF, input);
    loop {
        let buf = match input.fill_buf() {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CompressError::Read(e)),
        };
        w.write_all(buf).map_err(CompressError::Write)?;
        let n = buf.len();
        input.consume(n);
    }
    w.finish()
}

/// The same pipeline as [`compress_layer`] for producers that write: write the uncompressed tar
/// into it (for example from the snapshotter's layer diff), then [`LayerWriter::finish`].
pub struct LayerWriter<W: Write> {
    diff: Hasher,
    encoder: Encoder<W>,
    compression: LayerCompression,
    /// Input is handed to the zstd encoder in fixed `CHUNK`-sized pieces, so the blob depends on
    /// the tar alone and not on how the producer split its writes (the gzip encoder chunks its
    /// input itself).
    pending: Vec<u8>,
}

/// The piece size the zstd encoder sees.
const CHUNK: usize = 128 * 1024;

enum Encoder<W: Write> {
    None(HashingWriter<W>),
    Gzip(ParGzEncoder<HashingWriter<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<W>>),
}

impl<W: Write> LayerWriter<W> {
    pub fn new(compression: Compression, sink: W) -> Result<LayerWriter<W>, CompressError> {
        let out = HashingWriter::new(sink);
        let encoder = match compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip { level } => {
                let workers = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(GZIP_MAX_WORKERS);
                Encoder::Gzip(ParGzEncoder::new(out, level, workers))
            }
            Compression::Zstd { level } => {
                let mut enc =
                    zstd::stream::write::Encoder::new(out, level).map_err(CompressError::Write)?;
                // Frames carry the content checksum so `zstd -t` and other readers can verify them.
                enc.include_checksum(true).map_err(CompressError::Write)?;
                // zstd's multithreaded mode gives the same bytes for any worker count >= 1 (but not
                // the same as its single-threaded mode), so always use it: the output then stays
                // reproducible across machines with different core counts.
                let workers = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(ZSTD_MAX_WORKERS);
                enc.multithread(workers as u32)
                    .map_err(CompressError::Write)?;
                Encoder::Zstd(enc)
            }
        };
        Ok(LayerWriter {
            diff: Hasher::new(),
            encoder,
            compression: compression.kind(),
            pending: Vec::with_capacity(CHUNK),
        })
    }

    /// Flushes the compressor and returns the layer's digests and the sink.
    pub fn finish(mut self) -> Result<(LayerDescriptor, W), CompressError> {
        let rest = std::mem::take(&mut self.pending);
        self.encoder
            .write_all(&rest)
            .map_err(CompressError::Write)?;
        let out = match self.encoder {
            Encoder::None(out) => out,
            Encoder::Gzip(enc) => enc.finish().map_err(CompressError::Write)?,
            Encoder::Zstd(enc) => enc.finish().map_err(CompressError::Write)?,
        };
        let (digest, size, mut sink) = out.finish();
        sink.flush().map_err(CompressError::Write)?;
        let (diff_id, uncompressed_size) = self.diff.finish();
        let layer = LayerDescriptor {
            diff_id,
            uncompressed_size,
            digest,
            size,
            compression: self.compression,
        };
        Ok((layer, sink))
    }
}

impl<W: Write> Encoder<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(w) => w.write_all(buf),
            Encoder::Zstd(w) => w.write_all(buf),
        }
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.diff.update(buf);
        if !matches!(self.encoder, Encoder::Zstd(_)) {
            self.encoder.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut rest = buf;
        if !self.pending.is_empty() {
            let take = rest.len().min(CHUNK - self.pending.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == CHUNK {
                self.encoder.write_all(&self.pending)?;
                self.pending.clear();
            }
        }
        // Whole chunks go straight from the caller's buffer; the tail waits in `pending`.
        while rest.len() >= CHUNK {
            self.encoder.write_all(&rest[..CHUNK])?;
            rest = &rest[CHUNK..];
        }
        self.pending.extend_from_slice(rest);
        Ok(buf.len())
    }

    /// Does nothing: a compressor flush ends a deflate or zstd block early, which would make the
    /// blob's bytes depend on when the producer flushed (the snapshotter's buffered writer
    /// flushes at the end), not only on the tar. `finish` ends the stream.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compresses several layers at once on rayon's pool; results come back in input order, each
/// with its sink.
pub fn compress_layers<R, W>(
    layers: Vec<(R, W)>,
    compression: Compression,
) -> Vec<Result<(LayerDescriptor, W), CompressError>>
where
    R: Read + Send,
    W: Write + Send,
{
    layers
        .into_par_iter()
        .map(|(r, w)| compress_layer(r, compression, w))
        .collect()
}

/// Sniffs a stream's compression from its magic bytes (gzip, zstd, or else none).
pub fn detect<R: BufRead>(reader: &mut R) -> io::Result<LayerCompression> {
    let head = loop {
        match reader.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        LayerCompression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LayerCompression::Zstd
    } else {
        LayerCompression::None
    })
}

/// Wraps `reader` in the decompressor for `compression`.
pub fn decompress<'a, R: BufRead + 'a>(
    reader: R,
    compression: LayerCompression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        LayerCompression::None => Box::new(reader),
        // MultiGzDecoder: pigz and some tools write several gzip members; they form one stream.
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// Decompresses `input` into `out` and then reads `input` to its end, so a verifying reader
/// under it sees every byte (decompressors stop at the end of the compressed stream). Returns
/// the number of uncompressed bytes.
pub fn copy_decompressed<R: Read, W: Write>(
    input: R,
    compression: LayerCompression,
    mut out: W,
) -> io::Result<u64> {
    let input = BufReader::with_capacity(BUF, input);
    let (n, mut rest): (u64, Box<dyn Read>) = match compression {
        LayerCompression::None => {
            let mut input = input;
            (io::copy(&mut input, &mut out)?, Box::new(io::empty()))
        }
        LayerCompression::Gzip => {
            let mut dec = flate2::bufread::MultiGzDecoder::new(input);
            (io::copy(&mut dec, &mut out)?, Box::new(dec.into_inner()))
        }
        LayerCompression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(input)?;
            (io::copy(&mut dec, &mut out)?, Box::new(dec.finish()))
        }
    };
    io::copy(&mut rest, &mut io::sink())?;
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `compress_layer` relies on this: zstd's multithreaded output must not depend on the worker
    /// count, or images built on machines with different core counts would differ.
    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let encode = |workers: u32| {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            enc.include_checksum(true).unwrap();
            enc.multithread(workers).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let one = encode(1);
        assert_eq!(one, encode(3));
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn parse_compression_values() {
        assert_eq!("gzip".parse(), Ok(Compression::Gzip { level: 6 }));
        assert_eq!("zstd".parse(), Ok(Compression::Zstd { level: 3 }));
        assert_eq!("zstd,level=19".parse(), Ok(Compression::Zstd { level: 19 }));
        assert_eq!("gzip,level=9".parse(), Ok(Compression::Gzip { level: 9 }));
        assert_eq!("uncompressed".parse(), Ok(Compression::None));
        assert!(matches!(
            "zstd,level=99".parse::<Compression>(),
            Err(CompressionParseError::Level { .. })
        ));
        assert!(matches!(
            "gzip,level=x".parse::<Compression>(),
            Err(CompressionParseError::Level { .. })
        ));
        assert!(matches!(
            "gzip,speed=1".parse::<Compression>(),
            Err(CompressionParseError::Option(_))
        ));
        assert!(matches!(
            "lz4".parse::<Compression>(),
            Err(CompressionParseError::Unknown(_))
        ));
        assert_eq!(
            "estargz".parse::<Compression>().unwrap_err().to_string(),
            "not supported yet: estargz compression"
        );
        for c in [
            Compression::None,
            Compression::Gzip { level: 1 },
            Compression::Zstd { level: 7 },
        ] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
    }
}
