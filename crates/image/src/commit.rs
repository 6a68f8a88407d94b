//! Snapshots back into images: the layer blob of each snapshot of a chain (compressed once per
//! compression and remembered), the config and manifest, and the names.

use std::io::BufReader;

use kiln_cache::{CacheRecord, ImageRef, LayerRef, Timestamp};
use kiln_executor::snapshot::{DiffOptions, SnapshotId};
use kiln_llb::image::{History, ImageConfig};
use kiln_oci::compress::{self, Compression};
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::media_type::Flavor;
use kiln_oci::{ImageLayer, ImageOptions};

use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;
use crate::unpack::layer_key;

impl ImageStore {
    /// Runs `f` under a new lease, deleted afterwards whatever `f` returns: whatever `f`
    /// stores under it is safe from a concurrent prune until something else names it.
    pub(crate) fn with_lease<T>(
        &self,
        f: impl FnOnce(&str) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let lease = self
            .store()
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        let result = f(&lease.id);
        let released = self.store().delete_lease(&lease.id);
        let value = result?;
        released?;
        Ok(value)
    }

    /// The layer blob of one snapshot's own changes, compressing its diff the first time.
    /// The blob is protected from a concurrent prune by the cache record this writes (and,
    /// until that is written, by a lease); a caller that must keep it longer than a prune of
    /// the build cache takes a lease and uses [`ImageStore::layer_of_leased`].
    pub fn layer_of(
        &self,
        snapshot: &SnapshotId,
        compression: Compression,
        source_date_epoch: Option<u64>,
    ) -> Result<LayerRef, ImageError> {
        self.with_lease(|lease| {
            self.layer_of_leased(snapshot, compression, source_date_epoch, lease)
        })
    }

    /// [`ImageStore::layer_of`] with the blob added to `lease`, so it stays while the lease
    /// does, whatever prunes run meanwhile.
    pub fn layer_of_leased(
        &self,
        snapshot: &SnapshotId,
        compression: Compression,
        source_date_epoch: Option<u64>,
        lease: &str,
    ) -> Result<LayerRef, ImageError> {
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
        {
            // Lease first, then look: a blob seen present after it is leased stays present.
            self.store().lease_blob(lease, layer.digest)?;
            if self.store().content().exists(&layer.digest) {
                return Ok(layer.clone());
            }
        }
        let (pipe_reader, pipe_writer) = std::io::pipe().map_err(|source| ImageError::Io {
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
                .map_err(|_| ImageError::Bug("the layer diff thread panicked".into()))?;
            // A failed write of the blob (a full disk) stops the reading end of the pipe,
            // and the differ then sees only a broken pipe: the compressor's error is the cause.
            // A differ that fails first ends the pipe early, which the compressor does not
            // notice, so its error wins otherwise.
            let (desc, _) = match compressed {
                Err(e) => {
                    return Err(ImageError::format(
                        format!("write a layer blob of snapshot {snapshot}"),
                        e,
                    ));
                }
                Ok(done) => {
                    diffed?;
                    done
                }
            };
            blob.commit_leased(lease)?;
            Ok::<_, ImageError>(LayerRef {
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
    ///
    /// Everything it writes is under a lease until the names point at it, so a prune running
    /// meanwhile in another process cannot take a blob the new image needs.
    pub fn commit_image(
        &self,
        top: Option<&SnapshotId>,
        config: ImageConfig,
        names: &[String],
        options: &CommitOptions,
    ) -> Result<Image, ImageError> {
        self.with_lease(|lease| self.commit_image_leased(top, config, names, options, lease))
    }

    fn commit_image_leased(
        &self,
        top: Option<&SnapshotId>,
        mut config: ImageConfig,
        names: &[String],
        options: &CommitOptions,
        lease: &str,
    ) -> Result<Image, ImageError> {
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
            let results: Vec<Result<LayerRef, ImageError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|id| {
                        scope.spawn(move || {
                            self.layer_of_leased(
                                id,
                                options.compression,
                                options.source_date_epoch,
                                lease,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(ImageError::Bug(
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
        .map_err(|e| ImageError::format("assemble the image", e))?;
        assembled
            .store(&kiln_oci::store::LeasedStore {
                store: self.store(),
                lease,
            })
            .map_err(|e| ImageError::format("store the image", e))?;
        let target = ImageRef {
            target: assembled.manifest_descriptor.digest,
            media_type: assembled.manifest_descriptor.media_type.clone(),
            size: assembled.manifest_descriptor.size,
            created: Timestamp::now(),
        };
        let names = names
            .iter()
            .map(|n| crate::name::store_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        for name in &names {
            self.store().set_image_ref(name, &target)?;
        }
        let manifest = match manifest::parse(
            &assembled.manifest,
            &assembled.manifest_descriptor.media_type,
            "new manifest",
        ) {
            Ok(Parsed::Manifest(m)) => m,
            _ => return Err(ImageError::Bug("assembled manifest does not parse".into())),
        };
        Ok(Image {
            name: names.first().cloned(),
            manifest_digest: assembled.manifest_descriptor.digest,
            manifest,
            config_digest: assembled.config_descriptor.digest,
            config,
        })
    }
}

/// Options for [`ImageStore::commit_image`].
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

/// The current time as RFC 3339 with nanoseconds, as image configs and history record it.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    kiln_llb::image::format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}
