//! Reading images in: OCI layouts and archives, docker archives (old and new `docker save`
//! layouts), compressed or not, verified completely before anything reaches the store.
//!
//! An archive is first staged into a private temporary directory (hashing every file on the way),
//! then every manifest, config and layer the images reference is checked against its digest, size
//! and the config's diff IDs. Only an [`Import`] that passed all checks can be committed to a
//! [`BlobSink`], so a corrupt or malicious archive leaves the store untouched.
//!
//! This module holds the API and the checks both formats share; `stage` reads the input's
//! files, `layout` verifies an OCI layout and `docker` a `docker save` archive.

mod docker;
mod layout;
mod stage;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::blob::{BlobError, BlobSink, BlobSource};
use crate::compress;
use crate::digest::{Digest, HashingWriter};
use crate::error::Error;
use crate::manifest::{Descriptor, ParseError};
use crate::media_type::LayerCompression;
use stage::{FileRef, Files};

/// Limits and switches for loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Largest JSON document (index, manifest, config, `manifest.json`) read into memory.
    pub max_json_size: u64,
    /// Most entries an archive may have.
    pub max_entries: usize,
    /// Decompress OCI layers to check them against the config's diff IDs (docker-archive layers
    /// are always checked: their diff ID is their only digest).
    pub verify_diff_ids: bool,
    /// Where archives are staged; the system temp dir when `None`. Put it on the store's file
    /// system to keep staging off a small `/tmp`.
    pub staging_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            max_json_size: crate::export::MAX_JSON_SIZE,
            max_entries: 100_000,
            verify_diff_ids: true,
            staging_dir: None,
        }
    }
}

/// Which format an input turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout (also what docker 25+ `docker save` writes, beside `manifest.json`).
    OciLayout,
    /// A `docker save` archive read through its `manifest.json`.
    DockerArchive,
}

/// An image found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The names the input gave it: `io.containerd.image.name` (or else the
    /// `org.opencontainers.image.ref.name`) of an OCI layout, or the `RepoTags` of a docker
    /// archive (short forms such as `app:1`; normalizing them is the caller's job).
    pub names: Vec<String>,
    /// The raw `org.opencontainers.image.ref.name` annotation, when present.
    pub ref_name: Option<String>,
    /// Its manifest or index, as now stored (for docker archives: a manifest kiln wrote, with
    /// OCI media types).
    pub descriptor: Descriptor,
}

/// Why an input was rejected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read the archive")]
    Archive(#[source] io::Error),
    #[error("the archive is truncated")]
    TruncatedArchive(#[source] io::Error),
    #[error("failed to read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to stage the archive in a temporary directory")]
    Staging(#[source] io::Error),
    #[error("archive entry {path} is truncated: {got} of {expected} bytes")]
    Truncated {
        path: String,
        expected: u64,
        got: u64,
    },
    #[error("unsafe path {path:?} in archive: absolute, empty or escaping with ..")]
    UnsafePath { path: String },
    #[error("archive entry {path} is a {kind}, which image archives do not contain")]
    UnsupportedEntry { path: String, kind: String },
    #[error("archive has two entries named {path}")]
    DuplicateEntry { path: String },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("link {path} does not resolve to a file in the archive")]
    BadLink { path: String },
    #[error("not an image archive: found neither oci-layout and index.json nor manifest.json")]
    NotAnImage,
    #[error("unsupported oci-layout version {0:?}")]
    LayoutVersion(String),
    #[error("{what} is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("invalid json in {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{referenced_by} references blob {digest}, which is missing")]
    MissingBlob {
        digest: Digest,
        referenced_by: String,
    },
    #[error("image {image} has no config: {path} is missing")]
    MissingConfig { image: String, path: String },
    #[error("image {image} lists layer {path}, which is missing")]
    MissingLayer { image: String, path: String },
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} has no images")]
    Empty { what: String },
    #[error("failed to store the verified images")]
    Commit(#[source] BlobError),
    /// What is wrong with an image inside the input (its manifests, configs, layers).
    #[error(transparent)]
    Image(#[from] Error),
}

impl From<ParseError> for LoadError {
    fn from(e: ParseError) -> LoadError {
        LoadError::Image(Error::Parse(e))
    }
}

/// A verified input, ready to commit to a store or to read from as a [`BlobSource`].
#[derive(Debug)]
pub struct Import {
    format: Format,
    files: Files,
    images: Vec<LoadedImage>,
    /// Every blob the images reach, with its archive path and size.
    blobs: BTreeMap<Digest, (String, u64)>,
    /// Manifests kiln wrote for docker-archive images.
    generated: BTreeMap<Digest, Vec<u8>>,
}

impl Import {
    /// Stages and verifies an archive: an OCI archive or a docker archive, as a plain, gzip or
    /// zstd tar.
    pub fn from_archive<R: Read>(reader: R, options: &LoadOptions) -> Result<Import, LoadError> {
        let files = stage::stage(reader, options)?;
        Import::verify(files, options)
    }

    /// Verifies a directory: an OCI layout, or an unpacked docker archive.
    pub fn from_dir(dir: &Path, options: &LoadOptions) -> Result<Import, LoadError> {
        let files = Files::Dir {
            root: dir.to_owned(),
            digests: Mutex::new(BTreeMap::new()),
        };
        Import::verify(files, options)
    }

    fn verify(files: Files, options: &LoadOptions) -> Result<Import, LoadError> {
        let mut import = Import {
            format: Format::OciLayout,
            files,
            images: Vec::new(),
            blobs: BTreeMap::new(),
            generated: BTreeMap::new(),
        };
        let has_layout = import.files.lookup("oci-layout")?.is_some()
            && import.files.lookup("index.json")?.is_some();
        let docker = import.files.lookup("manifest.json")?;
        if has_layout {
            import.verify_oci(options)?;
            if let Some(f) = docker {
                import.name_from_docker_manifest(&f, options)?;
            }
        } else if let Some(f) = docker {
            import.format = Format::DockerArchive;
            import.verify_docker(&f, options)?;
        } else {
            return Err(LoadError::NotAnImage);
        }
        if import.images.is_empty() {
            return Err(LoadError::Empty {
                what: "the archive".to_owned(),
            });
        }
        Ok(import)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The images found, in input order.
    pub fn images(&self) -> &[LoadedImage] {
        &self.images
    }

    /// Every blob the images need: digest and size, in digest order.
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut all: Vec<(Digest, u64)> = self.blobs.iter().map(|(d, (_, s))| (*d, *s)).collect();
        all.extend(self.generated.iter().map(|(d, b)| (*d, b.len() as u64)));
        all.sort();
        all
    }

    /// Writes every blob the images need into `sink` (skipping those it has) and returns the
    /// images. The sink verifies each blob again as it writes.
    pub fn commit(&self, sink: &dyn BlobSink) -> Result<Vec<LoadedImage>, LoadError> {
        for (digest, size) in self.blobs() {
            if sink.contains(&digest).map_err(LoadError::Commit)? {
                continue;
            }
            let mut r = self.open(&digest).map_err(LoadError::Commit)?;
            sink.put(&digest, size, &mut r).map_err(LoadError::Commit)?;
        }
        Ok(self.images.clone())
    }

    /// A JSON file of the input that must be there, read within the size limit.
    fn json(&self, path: &str, options: &LoadOptions) -> Result<(FileRef, Vec<u8>), LoadError> {
        let f = self.files.lookup(path)?.ok_or_else(|| LoadError::Read {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "missing"),
        })?;
        let bytes = self.files.read_json(path, &f, options.max_json_size)?;
        Ok((f, bytes))
    }

    /// A layer's diff ID (the digest of its decompressed content) and uncompressed size.
    fn diff_id(
        &self,
        path: &str,
        compression: LayerCompression,
    ) -> Result<(Digest, u64), LoadError> {
        let f = self.files.lookup(path)?.ok_or_else(|| LoadError::Read {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "missing"),
        })?;
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let file = File::open(&f.path).map_err(read_err)?;
        let mut w = HashingWriter::new(io::sink());
        compress::copy_decompressed(file, compression, &mut w).map_err(read_err)?;
        let (d, n, _) = w.finish();
        Ok((d, n))
    }
}

impl BlobSource for Import {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, BlobError> {
        if let Some(bytes) = self.generated.get(digest) {
            return Ok(Box::new(&bytes[..]));
        }
        let (path, _) = self.blobs.get(digest).ok_or(BlobError::NotFound(*digest))?;
        let read = |source| BlobError::Read {
            digest: *digest,
            source,
        };
        let f = self
            .files
            .lookup(path)
            .map_err(|e| read(io::Error::other(e)))?;
        let f = f.ok_or(BlobError::NotFound(*digest))?;
        Ok(Box::new(File::open(&f.path).map_err(read)?))
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        if let Some(bytes) = self.generated.get(digest) {
            return Ok(Some(bytes.len() as u64));
        }
        Ok(self.blobs.get(digest).map(|(_, s)| *s))
    }
}

/// Loads an archive (OCI or docker, plain or compressed) into `sink` after verifying all of it.
pub fn load_archive<R: Read>(
    reader: R,
    sink: &dyn BlobSink,
    options: &LoadOptions,
) -> Result<Vec<LoadedImage>, LoadError> {
    Import::from_archive(reader, options)?.commit(sink)
}

/// Loads an OCI layout directory (or an unpacked docker archive) into `sink` after verifying
/// all of it.
pub fn load_dir(
    dir: &Path,
    sink: &dyn BlobSink,
    options: &LoadOptions,
) -> Result<Vec<LoadedImage>, LoadError> {
    Import::from_dir(dir, options)?.commit(sink)
}
