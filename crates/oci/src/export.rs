//! Writing images out: OCI layout directories, OCI archives and docker archives.
//!
//! Every blob is streamed from the source through a [`VerifyingReader`], so a corrupt store
//! fails the export instead of producing an archive with a wrong digest inside. Archives are
//! deterministic: fixed entry order, zero mtimes, root ownership, fixed modes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blob::{BlobError, BlobSink, BlobSource, DirBlobs};
use crate::compress;
use crate::digest::{Digest, HashingWriter, VerifyingReader};
use crate::error::Error;
use crate::manifest::{self, ConfigRootfs, Descriptor, Index, Manifest, Parsed};
use crate::media_type::{self, Kind, LayerCompression};
use crate::names;

/// Largest manifest, index or config an exporter reads into memory.
pub const MAX_JSON_SIZE: u64 = 8 << 20;
/// How deep indexes may nest inside indexes.
pub const MAX_INDEX_DEPTH: usize = 8;
/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An image to export: the descriptor of its manifest (or index) and the name to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedImage {
    /// A full reference such as `docker.io/library/app:1`, or `None` for an unnamed image.
    pub name: Option<String>,
    pub descriptor: Descriptor,
}

fn write_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Write { what, source }
}

/// Every blob reachable from `images` (manifests, indexes, configs, layers), each once, in the
/// order first reached.
pub fn reachable_blobs(
    source: &dyn BlobSource,
    images: &[NamedImage],
) -> Result<Vec<Descriptor>, Error> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for image in images {
        walk(source, &image.descriptor, 0, &mut seen, &mut out)?;
    }
    Ok(out)
}

fn walk(
    source: &dyn BlobSource,
    desc: &Descriptor,
    depth: usize,
    seen: &mut BTreeSet<Digest>,
    out: &mut Vec<Descriptor>,
) -> Result<(), Error> {
    if !seen.insert(desc.digest) {
        return Ok(());
    }
    out.push(desc.clone());
    match media_type::kind(&desc.media_type) {
        Kind::Manifest | Kind::Index => {}
        _ => return Ok(()),
    }
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::TooDeep(desc.digest));
    }
    let bytes = source.read_verified(&desc.digest, MAX_JSON_SIZE)?;
    match manifest::parse(&bytes, &desc.media_type, &desc.digest.to_string())? {
        Parsed::Manifest(m) => {
            for d in std::iter::once(&m.config).chain(&m.layers) {
                if seen.insert(d.digest) {
                    out.push(d.clone());
                }
            }
        }
        Parsed::Index(i) => {
            for d in &i.manifests {
                walk(source, d, depth + 1, seen, out)?;
            }
        }
    }
    Ok(())
}

/// The root `index.json` for `images`: one entry per image, carrying its name as
/// `io.containerd.image.name` (full) and `org.opencontainers.image.ref.name` (the tag), as
/// BuildKit and Docker write them.
pub fn root_index(images: &[NamedImage]) -> Index {
    let mut index = Index::new_oci();
    for image in images {
        let mut d = image.descriptor.clone();
        if let Some(name) = &image.name {
            d.annotations.insert(
                manifest::ANNOTATION_CONTAINERD_NAME.to_owned(),
                name.clone(),
            );
            if let Some(tag) = names::tag(name) {
                d.annotations
                    .insert(manifest::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
            }
        }
        index.manifests.push(d);
    }
    index
}

/// Writes an OCI image layout into `dir` (created if needed): `oci-layout`, `blobs/sha256/…` and
/// an `index.json` listing `images`. Blobs already present are kept; `index.json` is replaced
/// atomically, last, so a reader never sees it point at missing blobs.
pub fn write_oci_layout(
    dir: &Path,
    source: &dyn BlobSource,
    images: &[NamedImage],
) -> Result<Index, Error> {
    let blobs = reachable_blobs(source, images)?;
    fs::create_dir_all(dir).map_err(write_err(dir.display().to_string()))?;
    let sink = DirBlobs::new(dir.join("blobs"));
    for d in &blobs {
        let mut r = source.open(&d.digest)?;
        sink.put(&d.digest, d.size, &mut r)?;
    }
    write_file_atomic(&dir.join("oci-layout"), OCI_LAYOUT_FILE)?;
    let index = root_index(images);
    write_file_atomic(&dir.join("index.json"), &manifest::to_json(&index))?;
    Ok(index)
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = write_err(path.display().to_string());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = match tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir) {
        Ok(t) => t,
        Err(e) => return Err(err(e)),
    };
    let res = (|| {
        tmp.write_all(bytes)?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        Ok::<_, io::Error>(())
    })();
    match res {
        Ok(()) => tmp.persist(path).map(|_| ()).map_err(|e| err(e.error)),
        Err(e) => Err(err(e)),
    }
}

/// A tar writer with deterministic headers.
struct TarOut<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn new(w: W) -> TarOut<W> {
        TarOut {
            builder: tar::Builder::new(w),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str) -> Result<(), Error> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut h, path, io::empty())
            .map_err(write_err(path))
    }

    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), Error> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        self.builder
            .append_data(&mut h, path, data)
            .map_err(write_err(path))
    }

    fn blob(&mut self, source: &dyn BlobSource, d: &Descriptor) -> Result<(), Error> {
        let r = VerifyingReader::new(source.open(&d.digest)?, d.digest, d.size);
        self.file(&blob_path(&d.digest), d.size, r)
    }

    fn finish(self) -> Result<W, Error> {
        let mut out = self
            .builder
            .into_inner()
            .map_err(write_err("the end of the archive"))?;
        // Flush here so a buffered stdout or file reports its write error to the exporter's
        // caller instead of losing it in a drop.
        out.flush().map_err(write_err("the end of the archive"))?;
        Ok(out)
    }
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Writes an OCI archive (an OCI layout as a tar) of `images` to `out`, for example a file or
/// stdout, and returns `out`. Entry order: `oci-layout`, `index.json`, `blobs/`, then the blobs
/// in the order the images reach them.
pub fn write_oci_archive<W: Write>(
    out: W,
    source: &dyn BlobSource,
    images: &[NamedImage],
) -> Result<W, Error> {
    let blobs = reachable_blobs(source, images)?;
    let index = manifest::to_json(&root_index(images));
    let mut tar = TarOut::new(out);
    tar.file("oci-layout", OCI_LAYOUT_FILE.len() as u64, OCI_LAYOUT_FILE)?;
    tar.file("index.json", index.len() as u64, &index[..])?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for d in &blobs {
        tar.blob(source, d)?;
    }
    tar.finish()
}

/// How a docker archive stores layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerLayers {
    /// Uncompressed tars, as `docker save` writes them (layers are decompressed through a
    /// temporary file).
    #[default]
    Uncompressed,
    /// The blobs as stored (gzip or zstd); `docker load` detects the compression. Faster and
    /// smaller, but older tools that expect `docker save` output may not accept it.
    AsStored,
}

/// Options for [`write_docker_archive`].
#[derive(Debug, Clone, Default)]
pub struct DockerArchiveOptions {
    pub layers: DockerLayers,
    /// Where decompressed layers are spooled; the system temp dir when `None`.
    pub temp_dir: Option<PathBuf>,
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// Writes a docker archive (`docker save` format, the docker 25+ layout that is also an OCI
/// layout: `blobs/sha256/…`, `manifest.json`, `repositories`, `index.json`, `oci-layout`) of
/// `images` to `out`. Each image must be a single-platform manifest, or an index holding
/// exactly one image manifest.
pub fn write_docker_archive<W: Write>(
    out: W,
    source: &dyn BlobSource,
    images: &[NamedImage],
    options: &DockerArchiveOptions,
) -> Result<W, Error> {
    let mut tar = TarOut::new(out);
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    let mut written = BTreeSet::new();
    let mut layer_sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut index = Index::new_oci();
    for image in images {
        let (manifest_desc, manifest) = single_manifest(source, &image.descriptor)?;
        let config = source.read_verified(&manifest.config.digest, MAX_JSON_SIZE)?;
        let rootfs: ConfigRootfs =
            serde_json::from_slice(&config).map_err(|source| Error::Config {
                digest: manifest.config.digest,
                source,
            })?;
        if rootfs.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::LayerCount {
                image: format!("manifest {}", manifest_desc.digest),
                config: manifest.config.digest,
                diff_ids: rootfs.rootfs.diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        if written.insert(manifest.config.digest) {
            tar.file(
                &blob_path(&manifest.config.digest),
                config.len() as u64,
                &config[..],
            )?;
        }
        let mut out_layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&rootfs.rootfs.diff_ids) {
            let d = match options.layers {
                DockerLayers::AsStored => {
                    if written.insert(layer.digest) {
                        tar.blob(source, layer)?;
                    }
                    layer.clone()
                }
                DockerLayers::Uncompressed => {
                    let docker = manifest.media_type == media_type::DOCKER_MANIFEST;
                    let mt = if docker {
                        media_type::DOCKER_LAYER
                    } else {
                        media_type::OCI_LAYER
                    };
                    let size = match layer_sizes.get(diff_id) {
                        Some(size) => *size,
                        None => {
                            let size = uncompressed_layer(
                                &mut tar,
                                source,
                                layer,
                                *diff_id,
                                manifest.config.digest,
                                options,
                            )?;
                            written.insert(*diff_id);
                            layer_sizes.insert(*diff_id, size);
                            size
                        }
                    };
                    Descriptor::new(mt, *diff_id, size)
                }
            };
            out_layers.push(d);
        }
        // The manifest that describes what this archive holds: the original one when layers are
        // kept as stored, else one that points at the uncompressed layers (as docker 25+ does).
        let (desc, bytes) = if options.layers == DockerLayers::AsStored {
            let bytes = source.read_verified(&manifest_desc.digest, MAX_JSON_SIZE)?;
            (manifest_desc.clone(), bytes)
        } else {
            let m = Manifest {
                layers: out_layers.clone(),
                ..manifest.clone()
            };
            let bytes = manifest::to_json(&m);
            let mt = if m.media_type.is_empty() {
                media_type::OCI_MANIFEST
            } else {
                &m.media_type
            };
            (Descriptor::of_bytes(mt, &bytes), bytes)
        };
        if written.insert(desc.digest) {
            tar.file(&blob_path(&desc.digest), bytes.len() as u64, &bytes[..])?;
        }
        index.manifests.extend(
            root_index(&[NamedImage {
                name: image.name.clone(),
                descriptor: desc,
            }])
            .manifests,
        );
        let repo_tag = image.name.as_deref().and_then(names::repo_tag);
        if let (Some(rt), Some(top)) = (&repo_tag, out_layers.last()) {
            repositories
                .entry(names::repository(rt).to_owned())
                .or_default()
                .insert(
                    names::tag(rt).unwrap_or("latest").to_owned(),
                    top.digest.hex(),
                );
        }
        // `docker save` lists an image once with all its tags.
        let config_path = blob_path(&manifest.config.digest);
        let layer_paths: Vec<String> = out_layers.iter().map(|d| blob_path(&d.digest)).collect();
        match entries
            .iter_mut()
            .find(|e: &&mut DockerManifestEntry| e.config == config_path && e.layers == layer_paths)
        {
            Some(e) => e.repo_tags.get_or_insert_with(Vec::new).extend(repo_tag),
            None => entries.push(DockerManifestEntry {
                config: config_path,
                repo_tags: Some(repo_tag.into_iter().collect()),
                layers: layer_paths,
            }),
        }
    }
    let manifest_json =
        serde_json::to_vec(&entries).map_err(|e| write_err("manifest.json")(e.into()))?;
    tar.file(
        "manifest.json",
        manifest_json.len() as u64,
        &manifest_json[..],
    )?;
    let repos =
        serde_json::to_vec(&repositories).map_err(|e| write_err("repositories")(e.into()))?;
    tar.file("repositories", repos.len() as u64, &repos[..])?;
    let index = manifest::to_json(&index);
    tar.file("index.json", index.len() as u64, &index[..])?;
    tar.file("oci-layout", OCI_LAYOUT_FILE.len() as u64, OCI_LAYOUT_FILE)?;
    tar.finish()
}

/// Resolves `desc` to one image manifest: itself, or the only image in an index (attestation
/// manifests that BuildKit attaches are skipped).
fn single_manifest(
    source: &dyn BlobSource,
    desc: &Descriptor,
) -> Result<(Descriptor, Manifest), Error> {
    let mut desc = desc.clone();
    for _ in 0..=MAX_INDEX_DEPTH {
        let bytes = source.read_verified(&desc.digest, MAX_JSON_SIZE)?;
        match manifest::parse(&bytes, &desc.media_type, &desc.digest.to_string())? {
            Parsed::Manifest(m) => return Ok((desc, m)),
            Parsed::Index(i) => {
                let images: Vec<&Descriptor> = i.images().collect();
                match images.as_slice() {
                    [one] => desc = (*one).clone(),
                    _ => return Err(Error::MultiPlatform(desc.digest, images.len())),
                }
            }
        }
    }
    Err(Error::TooDeep(desc.digest))
}

/// Writes `layer` uncompressed into the archive as blob `diff_id` (which image `config` lists),
/// checking both its digest and its diff ID, and returns the uncompressed size.
fn uncompressed_layer<W: Write>(
    tar: &mut TarOut<W>,
    source: &dyn BlobSource,
    layer: &Descriptor,
    diff_id: Digest,
    config: Digest,
    options: &DockerArchiveOptions,
) -> Result<u64, Error> {
    let compression = match media_type::kind(&layer.media_type) {
        Kind::Layer(c) => c,
        _ => {
            // Unknown layer media type: trust the bytes, not the label.
            let mut r = BufReader::new(source.open(&layer.digest)?);
            compress::detect(&mut r).map_err(|source| BlobError::Read {
                digest: layer.digest,
                source,
            })?
        }
    };
    let path = blob_path(&diff_id);
    if compression == LayerCompression::None {
        if layer.digest != diff_id {
            return Err(Error::DiffId {
                layer: layer.digest.to_string(),
                listed_by: format!("image config {config}"),
                expected: diff_id,
                actual: layer.digest,
            });
        }
        tar.blob(source, layer)?;
        return Ok(layer.size);
    }
    // The tar header needs the size before the data, so spool the decompressed layer to disk;
    // memory stays flat whatever the layer's size.
    let spool = match &options.temp_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(write_err("a temporary file for a decompressed layer"))?;
    let read_err = |source| BlobError::Read {
        digest: layer.digest,
        source,
    };
    let verified = VerifyingReader::new(source.open(&layer.digest)?, layer.digest, layer.size);
    let mut w = HashingWriter::new(spool);
    compress::copy_decompressed(verified, compression, &mut w).map_err(read_err)?;
    let (actual, size, mut spool) = w.finish();
    if actual != diff_id {
        return Err(Error::DiffId {
            layer: layer.digest.to_string(),
            listed_by: format!("image config {config}"),
            expected: diff_id,
            actual,
        });
    }
    spool
        .rewind()
        .map_err(write_err("a temporary file for a decompressed layer"))?;
    tar.file(&path, size, VerifyingReader::new(spool, diff_id, size))?;
    Ok(size)
}

/// Writes bytes to a file path or, for `-`, to stdout: what `dest=` means in `--output`.
pub fn open_dest(dest: &Path) -> io::Result<Box<dyn Write>> {
    if dest == Path::new("-") {
        Ok(Box::new(io::BufWriter::new(io::stdout().lock())))
    } else {
        Ok(Box::new(io::BufWriter::new(File::create(dest)?)))
    }
}
