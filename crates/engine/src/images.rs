//! Images in the local store: names → manifests → configs and layers; unpacking layers into
//! snapshots (one per chain ID, shared by every image with the same bottom layers); turning a
//! snapshot chain back into layers and a new image; `kiln import` of a rootfs tar.

use std::io::{BufReader, Read};

use kiln_cache::{CacheKey, CacheRecord, ImageRef, LayerRef, Timestamp};
use kiln_executor::snapshot::{ApplyOptions, DiffOptions, SnapshotId};
use kiln_llb::image::{History, ImageConfig};
use kiln_oci::compress::{self, Compression};
use kiln_oci::manifest::{self, Manifest, Parsed};
use kiln_oci::media_type::Flavor;
use kiln_oci::{BlobSource, Digest, ImageLayer, ImageOptions};
use sha2::Digest as _;

use crate::error::EngineError;
use crate::reference;
use crate::worker::Worker;

/// Largest manifest or config blob we read into memory.
const MAX_JSON_BLOB: u64 = 8 << 20;

/// An image found in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The canonical name it was found by, if any.
    pub name: Option<String>,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
}

impl Image {
    /// Docker's image ID: the config digest.
    pub fn id(&self) -> Digest {
        self.config_digest
    }

    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

/// A record key in the store's cache table for engine bookkeeping, kept apart from solver keys
/// by a domain prefix.
fn bookkeeping_key(kind: &str, id: &str) -> CacheKey {
    let mut h = sha2::Sha256::new();
    h.update(b"kiln-engine/");
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    CacheKey(h.finalize().into())
}

/// The record key of a snapshot's layer blob in one compression and level. The default (gzip
/// level 6) keeps the key unpacking uses, so the blob of an unpacked base layer is found again.
fn layer_key(snapshot: &SnapshotId, compression: Compression) -> CacheKey {
    if compression == Compression::default() {
        bookkeeping_key("layer", snapshot.as_str())
    } else {
        bookkeeping_key(&format!("layer-{compression}"), snapshot.as_str())
    }
}

/// The chain ID of layers (OCI image spec): the identity of a stack of diff IDs.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => *diff_id,
            Some(prev) => Digest::of(format!("{prev} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Worker {
    /// Finds an image by name (normalized as Docker does), by image ID or by manifest digest.
    pub fn image(&self, name: &str) -> Result<Image, EngineError> {
        let canonical = reference::normalize(name);
        if let Some(r) = self.store().image_ref(&canonical)? {
            return self.image_from_ref(Some(canonical), &r);
        }
        // An ID (config digest) or a unique prefix of one, as `docker inspect` accepts.
        let wanted = name.trim_start_matches("sha256:");
        if wanted.len() >= 6 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (ref_name, r) in self.store().image_refs()? {
                let image = self.image_from_ref(Some(ref_name), &r)?;
                if image.config_digest.hex().starts_with(wanted)
                    || image.manifest_digest.hex().starts_with(wanted)
                {
                    return Ok(image);
                }
            }
        }
        Err(EngineError::ImageNotFound(name.to_string()))
    }

    fn image_from_ref(&self, name: Option<String>, r: &ImageRef) -> Result<Image, EngineError> {
        let label = name.clone().unwrap_or_else(|| r.target.to_string());
        let invalid = |reason: String| EngineError::InvalidImage {
            name: label.clone(),
            reason,
        };
        let blobs = self.blobs();
        let mut digest = r.target;
        let mut media_type = r.media_type.clone();
        // An index: take the manifest for this host's platform (or the only one).
        for _ in 0..4 {
            let bytes = blobs
                .read_verified(&digest, MAX_JSON_BLOB)
                .map_err(|e| invalid(e.to_string()))?;
            match manifest::parse(&bytes, &media_type, "image manifest")
                .map_err(|e| invalid(e.to_string()))?
            {
                Parsed::Manifest(manifest) => {
                    let config_digest = manifest.config.digest;
                    let config_bytes = blobs
                        .read_verified(&config_digest, MAX_JSON_BLOB)
                        .map_err(|e| invalid(e.to_string()))?;
                    let config: ImageConfig = serde_json::from_slice(&config_bytes)
                        .map_err(|e| invalid(format!("bad config: {e}")))?;
                    return Ok(Image {
                        name,
                        manifest_digest: digest,
                        manifest,
                        config_digest,
                        config,
                    });
                }
                Parsed::Index(index) => {
                    let host = kiln_llb::Platform::host();
                    let chosen = index
                        .manifests
                        .iter()
                        .find(|d| {
                            d.platform.as_ref().is_some_and(|p| {
                                p.os == host.os && p.architecture == host.architecture
                            })
                        })
                        .or_else(|| index.manifests.first())
                        .ok_or_else(|| invalid("empty image index".into()))?;
                    digest = chosen.digest;
                    media_type = chosen.media_type.clone();
                }
            }
        }
        Err(invalid("image indexes nested too deeply".into()))
    }

    /// Makes sure every layer of `image` is unpacked into a snapshot and returns the top one
    /// (`None` for an image without layers).
    pub fn unpack(&self, image: &Image) -> Result<Option<SnapshotId>, EngineError> {
        let name = image.name.clone().unwrap_or_default();
        let diff_ids = &image.config.rootfs.diff_ids;
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(EngineError::InvalidImage {
                name,
                reason: format!(
                    "config lists {} layers but the manifest has {}",
                    diff_ids.len(),
                    image.manifest.layers.len()
                ),
            });
        }
        let layers: Vec<(&kiln_oci::Descriptor, &Digest)> =
            image.manifest.layers.iter().zip(diff_ids).collect();
        self.unpack_layers(&name, &layers)
    }

    /// Makes sure a stack of layer blobs (bottom first, each with its diff ID; the blobs in the
    /// content store) is unpacked into snapshots, one per chain ID, and returns the top one.
    /// `what` names the image or cache the layers belong to, for errors.
    pub fn unpack_layers(
        &self,
        what: &str,
        layers: &[(&kiln_oci::Descriptor, &Digest)],
    ) -> Result<Option<SnapshotId>, EngineError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| **d).collect();
        let mut parent: Option<SnapshotId> = None;
        for (chain_id, (desc, diff_id)) in chain_ids(&diff_ids).iter().zip(layers) {
            let (desc, diff_id) = (*desc, *diff_id);
            let key = bookkeeping_key("chain", &chain_id.to_string());
            if let Some(id) = self.chain_snapshot(chain_id)? {
                parent = Some(id);
                continue;
            }
            let active = self
                .snapshots()
                .prepare(&format!("unpack-{}", chain_id.hex()), parent.as_ref())?;
            let blob = self.store().content().open_verified(&desc.digest)?;
            let mut reader = BufReader::new(blob);
            let kind = compress::detect(&mut reader).map_err(|source| EngineError::Io {
                what: format!("read layer {}", desc.digest),
                source,
            })?;
            let tar = compress::decompress(reader, kind).map_err(|source| EngineError::Io {
                what: format!("decompress layer {}", desc.digest),
                source,
            })?;
            let mut hashing = kiln_oci::digest::HashingReader::new(tar);
            let applied = self
                .snapshots()
                .apply(&active, &mut hashing, &ApplyOptions::default());
            if let Err(e) = applied {
                let _ = self.snapshots().discard(active);
                return Err(e.into());
            }
            // Drain what the tar reader left (padding) so the digest covers the whole stream.
            let _ = std::io::copy(&mut hashing, &mut std::io::sink());
            let (got, _) = hashing.finish();
            if got != *diff_id {
                let _ = self.snapshots().discard(active);
                return Err(EngineError::InvalidImage {
                    name: what.to_string(),
                    reason: format!(
                        "layer {} has diff ID {got}, config says {diff_id}",
                        desc.digest
                    ),
                });
            }
            let id = self.snapshots().commit(active)?;
            let mut record = CacheRecord::new(Some(id.as_str().to_string()));
            record.description = format!("unpacked layer {}", desc.digest);
            self.store().put_record(&key, &record)?;
            self.remember_layer(
                &id,
                &LayerRef {
                    digest: desc.digest,
                    size: desc.size,
                    media_type: desc.media_type.clone(),
                    diff_id: *diff_id,
                },
            )?;
            parent = Some(id);
        }
        Ok(parent)
    }

    /// The snapshot already unpacked for a chain ID, if any.
    pub fn chain_snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotId>, EngineError> {
        let key = bookkeeping_key("chain", &chain_id.to_string());
        if let Some(record) = self.store().get_record(&key)?
            && let Some(id) = record.snapshot.as_deref()
            && let Ok(id) = SnapshotId::parse(id)
            && self.snapshots().fs_dir(&id).exists()
        {
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// How many bottom layers of a stack (given by diff IDs) are already unpacked.
    pub fn unpacked_prefix(&self, diff_ids: &[Digest]) -> Result<usize, EngineError> {
        let chains = chain_ids(diff_ids);
        for (i, chain_id) in chains.iter().enumerate().rev() {
            if self.chain_snapshot(chain_id)?.is_some() {
                return Ok(i + 1);
            }
        }
        Ok(0)
    }

    fn remember_layer(&self, snapshot: &SnapshotId, layer: &LayerRef) -> Result<(), EngineError> {
        let mut record = CacheRecord::new(Some(snapshot.as_str().to_string()));
        record.layers = vec![layer.clone()];
        record.description = "layer blob".into();
        self.store()
            .put_record(&bookkeeping_key("layer", snapshot.as_str()), &record)?;
        Ok(())
    }

    /// The layer blob of one snapshot's own changes, compressing its diff the first time.
    pub fn layer_of(
        &self,
        snapshot: &SnapshotId,
        compression: Compression,
        source_date_epoch: Option<u64>,
    ) -> Result<LayerRef, EngineError> {
        // A snapshot's blob is remembered per compression and level: a build asking for zstd
        // must not get the gzip blob an earlier build (or the unpacked base image) left. The
        // media type is checked too, as unpacking records a base layer's blob, whatever its
        // compression, under the default key.
        let wanted = compression.kind();
        let own_key = layer_key(snapshot, compression);
        if source_date_epoch.is_none()
            && let Some(record) = self.store().get_record(&own_key)?
            && let Some(layer) = record.layers.first()
            && kiln_oci::media_type::kind(&layer.media_type)
                == kiln_oci::media_type::Kind::Layer(wanted)
            && self.store().content().exists(&layer.digest)
        {
            return Ok(layer.clone());
        }
        let (pipe_reader, pipe_writer) = std::io::pipe().map_err(|source| EngineError::Io {
            what: "create a pipe for layer compression".into(),
            source,
        })?;
        let opts = DiffOptions { source_date_epoch };
        let layer = std::thread::scope(|scope| {
            let differ = scope.spawn(move || {
                let writer = std::io::BufWriter::with_capacity(1 << 20, pipe_writer);
                self.snapshots().diff(snapshot, writer, &opts)
            });
            let mut blob = self.store().content().writer(None)?;
            let compressed = compress::compress_layer(
                BufReader::with_capacity(1 << 20, pipe_reader),
                compression,
                &mut blob,
            );
            let diffed = differ
                .join()
                .map_err(|_| EngineError::Bug("the layer diff thread panicked".into()))?;
            diffed?;
            let (desc, _) = compressed.map_err(|e| EngineError::Oci(e.to_string()))?;
            blob.commit()?;
            Ok::<_, EngineError>(LayerRef {
                digest: desc.digest,
                size: desc.size,
                media_type: Flavor::Oci
                    .layer(desc.compression)
                    .unwrap_or("application/vnd.oci.image.layer.v1.tar+gzip")
                    .to_string(),
                diff_id: desc.diff_id,
            })
        })?;
        if source_date_epoch.is_none() {
            let mut record = CacheRecord::new(Some(snapshot.as_str().to_string()));
            record.layers = vec![layer.clone()];
            record.description = "layer blob".into();
            self.store().put_record(&own_key, &record)?;
        }
        Ok(layer)
    }

    /// Stores a new image: the layers of `top`'s snapshot chain, `config` with their diff IDs,
    /// a manifest; then points every name in `names` at it.
    pub fn commit_image(
        &self,
        top: Option<&SnapshotId>,
        mut config: ImageConfig,
        names: &[String],
        options: &CommitOptions,
    ) -> Result<Image, EngineError> {
        let chain = match top {
            Some(id) => self.snapshots().chain(id)?,
            None => Vec::new(),
        };
        // `chain` is top-most first; layers go bottom first. Layers compress in parallel (gzip
        // is single-threaded), a core each.
        let bottom_first: Vec<&SnapshotId> = chain.iter().rev().collect();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let mut layers = Vec::with_capacity(chain.len());
        for batch in bottom_first.chunks(workers) {
            let results: Vec<Result<LayerRef, EngineError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|id| {
                        scope.spawn(move || {
                            self.layer_of(id, options.compression, options.source_date_epoch)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(EngineError::Bug(
                                "a layer compression thread panicked".into(),
                            ))
                        })
                    })
                    .collect()
            });
            for r in results {
                layers.push(r?);
            }
        }
        let image_layers: Vec<ImageLayer> = layers
            .iter()
            .map(|l| ImageLayer {
                diff_id: l.diff_id,
                digest: l.digest,
                size: l.size,
                compression: match kiln_oci::media_type::kind(&l.media_type) {
                    kiln_oci::media_type::Kind::Layer(c) => c,
                    _ => kiln_oci::media_type::LayerCompression::Gzip,
                },
            })
            .collect();
        reconcile_history(&mut config, image_layers.len());
        let assembled = kiln_oci::assemble(
            &config,
            &image_layers,
            &ImageOptions {
                flavor: options.flavor,
                ..ImageOptions::default()
            },
        )
        .map_err(|e| EngineError::Oci(e.to_string()))?;
        assembled
            .store(self.blobs())
            .map_err(|e| EngineError::Oci(e.to_string()))?;
        let target = ImageRef {
            target: assembled.manifest_descriptor.digest,
            media_type: assembled.manifest_descriptor.media_type.clone(),
            size: assembled.manifest_descriptor.size,
            created: Timestamp::now(),
        };
        for name in names {
            self.store()
                .set_image_ref(&reference::normalize(name), &target)?;
        }
        let manifest = match manifest::parse(
            &assembled.manifest,
            &assembled.manifest_descriptor.media_type,
            "new manifest",
        ) {
            Ok(Parsed::Manifest(m)) => m,
            _ => return Err(EngineError::Bug("assembled manifest does not parse".into())),
        };
        Ok(Image {
            name: names.first().map(|n| reference::normalize(n)),
            manifest_digest: assembled.manifest_descriptor.digest,
            manifest,
            config_digest: assembled.config_descriptor.digest,
            config,
        })
    }

    /// `kiln import`: a rootfs tar (optionally compressed) becomes a one-layer image.
    pub fn import_rootfs(
        &self,
        mut input: impl Read,
        name: Option<&str>,
        mut config: ImageConfig,
        source: &str,
    ) -> Result<Image, EngineError> {
        let mut blob = self.store().content().writer(None)?;
        // Store the layer compressed; the diff ID is taken from the decompressed stream.
        let mut buffered = BufReader::new(&mut input);
        let kind = compress::detect(&mut buffered).map_err(|source| EngineError::Io {
            what: "read the rootfs tar".into(),
            source,
        })?;
        let tar = compress::decompress(buffered, kind).map_err(|source| EngineError::Io {
            what: "decompress the rootfs tar".into(),
            source,
        })?;
        let (desc, _) = compress::compress_layer(tar, Compression::Gzip { level: 6 }, &mut blob)
            .map_err(|e| EngineError::Oci(e.to_string()))?;
        blob.commit()?;
        let now = now_rfc3339();
        config.rootfs.diff_ids = vec![desc.diff_id];
        config.created.get_or_insert_with(|| now.clone());
        if config.os.is_empty() {
            let host = kiln_llb::Platform::host();
            config.os = host.os;
            config.architecture = host.architecture;
            config.variant = host.variant;
        }
        config.history = vec![History {
            created: Some(now),
            created_by: format!("kiln import {source}"),
            comment: "Imported from a rootfs tar".into(),
            ..History::default()
        }];
        let layer = ImageLayer::from(&desc);
        let assembled = kiln_oci::assemble(&config, &[layer], &ImageOptions::default())
            .map_err(|e| EngineError::Oci(e.to_string()))?;
        assembled
            .store(self.blobs())
            .map_err(|e| EngineError::Oci(e.to_string()))?;
        let target = ImageRef {
            target: assembled.manifest_descriptor.digest,
            media_type: assembled.manifest_descriptor.media_type.clone(),
            size: assembled.manifest_descriptor.size,
            created: Timestamp::now(),
        };
        let key = match name {
            Some(n) => reference::normalize(n),
            None => format!("sha256:{}", assembled.config_descriptor.digest.hex()),
        };
        self.store().set_image_ref(&key, &target)?;
        self.image(&key)
    }

    /// Every named image: (canonical name, image).
    pub fn images(&self) -> Result<Vec<(String, Image)>, EngineError> {
        let mut out = Vec::new();
        for (name, r) in self.store().image_refs()? {
            out.push((name.clone(), self.image_from_ref(Some(name), &r)?));
        }
        Ok(out)
    }

    /// Points `new_name` at the image `existing` names.
    pub fn tag(&self, existing: &str, new_name: &str) -> Result<(), EngineError> {
        let canonical = reference::normalize(existing);
        let target = match self.store().image_ref(&canonical)? {
            Some(r) => r,
            None => {
                let image = self.image(existing)?;
                let name = image
                    .name
                    .ok_or(EngineError::ImageNotFound(existing.into()))?;
                self.store()
                    .image_ref(&name)?
                    .ok_or(EngineError::ImageNotFound(existing.into()))?
            }
        };
        self.store()
            .set_image_ref(&reference::normalize(new_name), &target)?;
        Ok(())
    }

    /// Removes a name; the blobs go at the next prune.
    pub fn untag(&self, name: &str) -> Result<(), EngineError> {
        match self.store().delete_image_ref(&reference::normalize(name))? {
            Some(_) => Ok(()),
            None => Err(EngineError::ImageNotFound(name.into())),
        }
    }
}

/// Options for [`Worker::commit_image`].
#[derive(Debug, Clone)]
pub struct CommitOptions {
    pub compression: Compression,
    pub flavor: Flavor,
    pub source_date_epoch: Option<u64>,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            compression: Compression::Gzip { level: 6 },
            flavor: Flavor::Oci,
            source_date_epoch: None,
        }
    }
}

/// Makes the history agree with the layers: the number of entries without `empty_layer` must
/// equal the number of layers (Docker checks this on load). When the frontend's guess differs,
/// the newest non-empty entries win and older surplus ones are marked empty.
fn reconcile_history(config: &mut ImageConfig, layers: usize) {
    let non_empty = config.history.iter().filter(|h| !h.empty_layer).count();
    if non_empty > layers {
        let mut surplus = non_empty - layers;
        for h in config.history.iter_mut() {
            if surplus == 0 {
                break;
            }
            if !h.empty_layer {
                h.empty_layer = true;
                surplus -= 1;
            }
        }
    } else if non_empty < layers {
        for _ in non_empty..layers {
            config.history.push(History {
                created_by: "kiln: layer without a history entry".into(),
                ..History::default()
            });
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    kiln_llb::image::format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}
