//! Reading images in: OCI layouts and archives, docker archives (old and new `docker save`
//! layouts), compressed or not, verified completely before anything reaches the store.
//!
//! An archive is first staged into a private temporary directory (hashing every file on the way),
//! then every manifest, config and layer the images reference is checked against its digest, size
//! and the config's diff IDs. Only an [`Import`] that passed all checks can be committed to a
//! [`BlobSink`], so a corrupt or malicious archive leaves the store untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Deserialize;

use crate::blob::{BlobError, BlobSink, BlobSource};
use crate::compress;
use crate::digest::{self, Digest, HashingWriter};
use crate::export::DockerManifestEntry;
use crate::manifest::{self, ConfigRootfs, Descriptor, Manifest, Parsed};
use crate::media_type::{self, Kind, LayerCompression};

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
    #[error(transparent)]
    Parse(#[from] manifest::ParseError),
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
    #[error("layer {layer} decompresses to {actual}, but image config {config} says {expected}")]
    DiffIdMismatch {
        layer: String,
        config: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("image config {config} lists {diff_ids} diff ids but the image has {layers} layers")]
    LayerCount {
        config: Digest,
        diff_ids: usize,
        layers: usize,
    },
    #[error("image indexes nest too deeply at {0}")]
    TooDeep(Digest),
    #[error("{what} has no images")]
    Empty { what: String },
    #[error("failed to store the verified images")]
    Commit(#[source] BlobError),
}

/// How deep indexes may nest.
const MAX_DEPTH: usize = crate::export::MAX_INDEX_DEPTH;
/// How many links are followed to resolve one archive path.
const MAX_LINK_HOPS: usize = 16;

/// A file of the input: where it is on disk, its size, and its digest when already known.
#[derive(Debug, Clone)]
struct FileRef {
    path: PathBuf,
    size: u64,
    digest: Option<Digest>,
}

#[derive(Debug)]
enum Entry {
    File(FileRef),
    /// A symbolic or hard link, as a normalized archive path of its target.
    Link(String),
}

/// The input's files, either staged from a tar or in a directory the user named.
#[derive(Debug)]
enum Files {
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
    fn lookup(&self, path: &str) -> Result<Option<FileRef>, LoadError> {
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
    fn digest(&self, path: &str, f: &FileRef) -> Result<Digest, LoadError> {
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

    fn read_json(&self, path: &str, f: &FileRef, limit: u64) -> Result<Vec<u8>, LoadError> {
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
fn normalize(path: &str) -> Result<String, LoadError> {
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
fn stage<R: Read>(reader: R, options: &LoadOptions) -> Result<Files, LoadError> {
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
        let files = stage(reader, options)?;
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

    fn json(&self, path: &str, options: &LoadOptions) -> Result<(FileRef, Vec<u8>), LoadError> {
        let f = self.files.lookup(path)?.ok_or_else(|| LoadError::Read {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "missing"),
        })?;
        let bytes = self.files.read_json(path, &f, options.max_json_size)?;
        Ok((f, bytes))
    }

    fn verify_oci(&mut self, options: &LoadOptions) -> Result<(), LoadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Layout {
            image_layout_version: String,
        }
        let (_, bytes) = self.json("oci-layout", options)?;
        let layout: Layout = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
            what: "oci-layout".to_owned(),
            source,
        })?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(LoadError::LayoutVersion(layout.image_layout_version));
        }
        let (_, bytes) = self.json("index.json", options)?;
        let index = match manifest::parse(&bytes, "", "index.json")? {
            Parsed::Index(i) => i,
            Parsed::Manifest(_) => {
                return Err(LoadError::Parse(manifest::ParseError::NotAManifest {
                    what: "index.json".to_owned(),
                    media_type: "an image manifest where an index belongs".to_owned(),
                }));
            }
        };
        let mut layers = Vec::new();
        for desc in &index.manifests {
            self.verify_descriptor(desc, "index.json", 0, options, &mut layers)?;
            let ref_name = desc.annotations.get(manifest::ANNOTATION_REF_NAME).cloned();
            let names = desc
                .annotations
                .get(manifest::ANNOTATION_CONTAINERD_NAME)
                .or(ref_name.as_ref())
                .map(|n| vec![n.clone()])
                .unwrap_or_default();
            let mut descriptor = desc.clone();
            descriptor
                .annotations
                .remove(manifest::ANNOTATION_CONTAINERD_NAME);
            descriptor.annotations.remove(manifest::ANNOTATION_REF_NAME);
            self.images.push(LoadedImage {
                names,
                ref_name,
                descriptor,
            });
        }
        if options.verify_diff_ids {
            self.verify_diff_ids(layers)?;
        }
        Ok(())
    }

    /// Checks the blob `desc` points at and, for manifests and indexes, everything below it.
    /// Layers whose diff IDs still need checking are pushed onto `layers`.
    fn verify_descriptor(
        &mut self,
        desc: &Descriptor,
        referenced_by: &str,
        depth: usize,
        options: &LoadOptions,
        layers: &mut Vec<(String, Digest, LayerCompression, Digest, Digest)>,
    ) -> Result<(), LoadError> {
        if depth > MAX_DEPTH {
            return Err(LoadError::TooDeep(desc.digest));
        }
        let kind = media_type::kind(&desc.media_type);
        let already = self.blobs.contains_key(&desc.digest);
        let path = format!("blobs/sha256/{}", desc.digest.hex());
        let f = self
            .files
            .lookup(&path)?
            .ok_or_else(|| LoadError::MissingBlob {
                digest: desc.digest,
                referenced_by: referenced_by.to_owned(),
            })?;
        if f.size != desc.size {
            return Err(LoadError::SizeMismatch {
                what: format!("blob {}", desc.digest),
                expected: desc.size,
                actual: f.size,
            });
        }
        if !already {
            let actual = self.files.digest(&path, &f)?;
            if actual != desc.digest {
                return Err(LoadError::DigestMismatch {
                    what: path,
                    expected: desc.digest,
                    actual,
                });
            }
            self.blobs.insert(desc.digest, (path.clone(), f.size));
        }
        if !matches!(kind, Kind::Manifest | Kind::Index) || already {
            return Ok(());
        }
        let bytes = self.files.read_json(&path, &f, options.max_json_size)?;
        let what = format!("manifest {}", desc.digest);
        match manifest::parse(&bytes, &desc.media_type, &what)? {
            Parsed::Index(i) => {
                for d in &i.manifests {
                    self.verify_descriptor(d, &what, depth + 1, options, layers)?;
                }
            }
            Parsed::Manifest(m) => {
                self.verify_descriptor(&m.config, &what, depth + 1, options, layers)?;
                for l in &m.layers {
                    self.verify_descriptor(l, &what, depth + 1, options, layers)?;
                }
                // Artifacts (non-image configs) have no diff IDs to check.
                if media_type::kind(&m.config.media_type) == Kind::Config {
                    let config_path = format!("blobs/sha256/{}", m.config.digest.hex());
                    let (_, cfg) = self.json(&config_path, options)?;
                    let rootfs: ConfigRootfs =
                        serde_json::from_slice(&cfg).map_err(|source| LoadError::Json {
                            what: format!("image config {}", m.config.digest),
                            source,
                        })?;
                    let diff_ids = rootfs.rootfs.diff_ids;
                    if diff_ids.len() != m.layers.len() {
                        return Err(LoadError::LayerCount {
                            config: m.config.digest,
                            diff_ids: diff_ids.len(),
                            layers: m.layers.len(),
                        });
                    }
                    for (l, diff_id) in m.layers.iter().zip(diff_ids) {
                        let compression = match media_type::kind(&l.media_type) {
                            Kind::Layer(c) => c,
                            _ => continue,
                        };
                        let lp = format!("blobs/sha256/{}", l.digest.hex());
                        layers.push((lp, l.digest, compression, diff_id, m.config.digest));
                    }
                }
            }
        }
        Ok(())
    }

    /// Decompresses layers (in parallel) and compares them with their configs' diff IDs.
    fn verify_diff_ids(
        &self,
        mut layers: Vec<(String, Digest, LayerCompression, Digest, Digest)>,
    ) -> Result<(), LoadError> {
        let mut seen = BTreeSet::new();
        layers.retain(|(_, digest, _, diff_id, _)| seen.insert((*digest, *diff_id)));
        layers
            .par_iter()
            .try_for_each(|(path, digest, compression, expected, config)| {
                let actual = if *compression == LayerCompression::None {
                    *digest
                } else {
                    self.diff_id(path, *compression)?.0
                };
                if actual != *expected {
                    return Err(LoadError::DiffIdMismatch {
                        layer: digest.to_string(),
                        config: *config,
                        expected: *expected,
                        actual,
                    });
                }
                Ok(())
            })
    }

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

    fn docker_manifest(
        &self,
        f: &FileRef,
        options: &LoadOptions,
    ) -> Result<Vec<DockerManifestEntry>, LoadError> {
        let bytes = self
            .files
            .read_json("manifest.json", f, options.max_json_size)?;
        serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
            what: "manifest.json".to_owned(),
            source,
        })
    }

    /// Docker 25+ archives are OCI layouts whose `index.json` may lack names; take them from
    /// `manifest.json`'s `RepoTags` by matching configs.
    fn name_from_docker_manifest(
        &mut self,
        f: &FileRef,
        options: &LoadOptions,
    ) -> Result<(), LoadError> {
        if self.images.iter().all(|i| !i.names.is_empty()) {
            return Ok(());
        }
        let entries = self.docker_manifest(f, options)?;
        for image in self.images.iter_mut().filter(|i| i.names.is_empty()) {
            if media_type::kind(&image.descriptor.media_type) != Kind::Manifest {
                continue;
            }
            let (path, _) = &self.blobs[&image.descriptor.digest];
            let Some(file) = self.files.lookup(path)? else {
                continue;
            };
            let bytes = self.files.read_json(path, &file, options.max_json_size)?;
            let Ok(Parsed::Manifest(m)) =
                manifest::parse(&bytes, &image.descriptor.media_type, path)
            else {
                continue;
            };
            let config_path = format!("blobs/sha256/{}", m.config.digest.hex());
            if let Some(e) = entries
                .iter()
                .find(|e| normalize(&e.config).ok().as_deref() == Some(config_path.as_str()))
            {
                image.names = e.repo_tags.clone().unwrap_or_default();
            }
        }
        Ok(())
    }

    fn verify_docker(&mut self, f: &FileRef, options: &LoadOptions) -> Result<(), LoadError> {
        let entries = self.docker_manifest(f, options)?;
        if entries.is_empty() {
            return Err(LoadError::Empty {
                what: "manifest.json".to_owned(),
            });
        }
        for entry in entries {
            let image = entry
                .repo_tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .unwrap_or_else(|| entry.config.clone());
            let config_file =
                self.files
                    .lookup(&entry.config)?
                    .ok_or_else(|| LoadError::MissingConfig {
                        image: image.clone(),
                        path: entry.config.clone(),
                    })?;
            let config =
                self.files
                    .read_json(&entry.config, &config_file, options.max_json_size)?;
            let config_digest = Digest::of(&config);
            check_named_digest(&entry.config, config_digest)?;
            let rootfs: ConfigRootfs =
                serde_json::from_slice(&config).map_err(|source| LoadError::Json {
                    what: format!("image config {}", entry.config),
                    source,
                })?;
            let diff_ids = rootfs.rootfs.diff_ids;
            if diff_ids.len() != entry.layers.len() {
                return Err(LoadError::LayerCount {
                    config: config_digest,
                    diff_ids: diff_ids.len(),
                    layers: entry.layers.len(),
                });
            }
            let checked: Vec<(FileRef, Digest, LayerCompression)> = entry
                .layers
                .par_iter()
                .zip(&diff_ids)
                .map(|(path, expected)| {
                    self.verify_docker_layer(&image, path, *expected, config_digest)
                })
                .collect::<Result<_, _>>()?;
            let mut layers = Vec::new();
            for ((f, digest, compression), path) in checked.into_iter().zip(&entry.layers) {
                let mt = media_type::Flavor::Oci
                    .layer(compression)
                    .unwrap_or(media_type::OCI_LAYER);
                layers.push(Descriptor::new(mt, digest, f.size));
                self.blobs.insert(digest, (normalize(path)?, f.size));
            }
            let mut config_path = normalize(&entry.config)?;
            // Follow links so the blob map points at the staged file itself.
            if let Files::Staged { entries, .. } = &self.files {
                while let Some(Entry::Link(t)) = entries.get(&config_path) {
                    config_path = t.clone();
                }
            }
            self.blobs
                .insert(config_digest, (config_path, config.len() as u64));
            let m = Manifest {
                schema_version: 2,
                media_type: media_type::OCI_MANIFEST.to_owned(),
                artifact_type: None,
                config: Descriptor::new(media_type::OCI_CONFIG, config_digest, config.len() as u64),
                layers,
                subject: None,
                annotations: BTreeMap::new(),
            };
            let bytes = manifest::to_json(&m);
            let descriptor = Descriptor::of_bytes(media_type::OCI_MANIFEST, &bytes);
            self.generated.insert(descriptor.digest, bytes);
            self.images.push(LoadedImage {
                names: entry.repo_tags.unwrap_or_default(),
                ref_name: None,
                descriptor,
            });
        }
        Ok(())
    }

    /// Checks one docker-archive layer: its name's digest if it has one, and its diff ID.
    fn verify_docker_layer(
        &self,
        image: &str,
        path: &str,
        expected: Digest,
        config: Digest,
    ) -> Result<(FileRef, Digest, LayerCompression), LoadError> {
        let f = self
            .files
            .lookup(path)?
            .ok_or_else(|| LoadError::MissingLayer {
                image: image.to_owned(),
                path: path.to_owned(),
            })?;
        let digest = self.files.digest(path, &f)?;
        check_named_digest(path, digest)?;
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let mut r = BufReader::new(File::open(&f.path).map_err(read_err)?);
        let compression = compress::detect(&mut r).map_err(read_err)?;
        let actual = if compression == LayerCompression::None {
            digest
        } else {
            self.diff_id(path, compression)?.0
        };
        if actual != expected {
            return Err(LoadError::DiffIdMismatch {
                layer: path.to_owned(),
                config,
                expected,
                actual,
            });
        }
        Ok((f, digest, compression))
    }
}

/// Paths like `blobs/sha256/<hex>` or `<hex>.json` name their content's digest: hold them to it.
fn check_named_digest(path: &str, actual: Digest) -> Result<(), LoadError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".json").unwrap_or(name);
    if name.len() == 64
        && let Ok(expected) = format!("sha256:{name}").parse::<Digest>()
        && expected != actual
    {
        return Err(LoadError::DigestMismatch {
            what: path.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
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
            .map_err(|e| read(io::Error::other(e.to_string())))?;
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
