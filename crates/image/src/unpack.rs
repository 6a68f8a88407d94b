//! Unpacking image layers into snapshots: one snapshot per chain ID, shared by every image with
//! the same bottom layers, each layer verified against its diff ID while it is applied.

use std::io::BufReader;

use kiln_cache::{CacheKey, CacheRecord, LayerRef};
use kiln_executor::snapshot::{ApplyOptions, SnapshotId};
use kiln_oci::Digest;
use kiln_oci::compress::{self, Compression};
use sha2::Digest as _;

use crate::error::ImageError;
use crate::image::{Image, chain_ids};
use crate::store::ImageStore;

/// A record key in the store's cache table for engine bookkeeping, kept apart from solver keys
/// by a domain prefix.
pub(crate) fn bookkeeping_key(kind: &str, id: &str) -> CacheKey {
    let mut h = sha2::Sha256::new();
    h.update(b"kiln-engine/");
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    CacheKey(h.finalize().into())
}

/// The record key of a snapshot's layer blob in one compression and level. The default (gzip
/// level 6) keeps the key unpacking uses, so the blob of an unpacked base layer is found again.
pub(crate) fn layer_key(snapshot: &SnapshotId, compression: Compression) -> CacheKey {
    if compression == Compression::default() {
        bookkeeping_key("layer", snapshot.as_str())
    } else {
        bookkeeping_key(&format!("layer-{compression}"), snapshot.as_str())
    }
}

impl ImageStore {
    /// Makes sure every layer of `image` is unpacked into a snapshot and returns the top one
    /// (`None` for an image without layers).
    pub fn unpack(&self, image: &Image) -> Result<Option<SnapshotId>, ImageError> {
        let name = image.name.clone().unwrap_or_default();
        let diff_ids = &image.config.rootfs.diff_ids;
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(ImageError::InvalidImage {
                name,
                source: Box::new(kiln_oci::Error::LayerCount {
                    image: format!("manifest {}", image.manifest_digest),
                    config: image.config_digest,
                    diff_ids: diff_ids.len(),
                    layers: image.manifest.layers.len(),
                }),
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
    ) -> Result<Option<SnapshotId>, ImageError> {
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
            let kind = compress::detect(&mut reader).map_err(|source| ImageError::Io {
                what: format!("read layer {}", desc.digest),
                source,
            })?;
            let tar = compress::decompress(reader, kind).map_err(|source| ImageError::Io {
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
                return Err(ImageError::InvalidImage {
                    name: what.to_string(),
                    source: Box::new(kiln_oci::Error::DiffId {
                        layer: desc.digest.to_string(),
                        listed_by: "its config".to_owned(),
                        expected: *diff_id,
                        actual: got,
                    }),
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
    pub fn chain_snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotId>, ImageError> {
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
    pub fn unpacked_prefix(&self, diff_ids: &[Digest]) -> Result<usize, ImageError> {
        let chains = chain_ids(diff_ids);
        for (i, chain_id) in chains.iter().enumerate().rev() {
            if self.chain_snapshot(chain_id)?.is_some() {
                return Ok(i + 1);
            }
        }
        Ok(0)
    }

    fn remember_layer(&self, snapshot: &SnapshotId, layer: &LayerRef) -> Result<(), ImageError> {
        let mut record = CacheRecord::new(Some(snapshot.as_str().to_string()));
        record.layers = vec![layer.clone()];
        record.description = "layer blob".into();
        self.store()
            .put_record(&bookkeeping_key("layer", snapshot.as_str()), &record)?;
        Ok(())
    }
}
