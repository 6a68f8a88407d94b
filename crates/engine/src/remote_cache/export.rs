//! `--cache-to`: the records a build used (hits and new results), chosen by mode, written as a
//! cache document plus layer blobs to a registry or an OCI layout directory, or inline.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kiln_executor::snapshot::SnapshotId;
use kiln_image::ImageStore;
use kiln_oci::compress::Compression;
use kiln_oci::manifest::{self, Manifest};
use kiln_oci::{BlobSink, Descriptor, Digest, media_type};
use kiln_registry::{Client, PushOptions, Reference};

use super::format::{CACHE_CONFIG_MEDIA_TYPE, CACHE_VERSION, CacheConfig, CacheEntry, CacheLayer};
use super::spec::{CacheExport, CacheMode};
use crate::error::EngineError;

/// One record a build used: found under `keys`, handing `output_key` to its dependents, with
/// `snapshot` as its filesystem (`None`: empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedRecord {
    pub keys: Vec<[u8; 32]>,
    pub output_key: [u8; 32],
    pub snapshot: Option<SnapshotId>,
}

/// The records a build used, collected by the solver's store adapter as the build runs.
#[derive(Debug, Clone, Default)]
pub struct UsedRecords(Arc<Mutex<Vec<UsedRecord>>>);

impl UsedRecords {
    pub fn push(&self, record: UsedRecord) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> Vec<UsedRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What the build hands the exporter.
#[derive(Debug, Clone)]
pub struct ExportInput {
    pub used: Vec<UsedRecord>,
    /// The final image's top snapshot.
    pub top: Option<SnapshotId>,
    /// The final image's creation key (hex) and time.
    pub created: Option<(String, String)>,
}

/// Builds the document for `mode`, compressing any layer not yet compressed. Returns the document
/// and, for each of its layers, the snapshot it is the diff of (bottom-up within each chain).
pub fn document(
    images: &ImageStore,
    input: &ExportInput,
    mode: CacheMode,
) -> Result<(CacheConfig, Vec<SnapshotId>), EngineError> {
    let final_chain: HashSet<SnapshotId> = match &input.top {
        Some(top) => images.snapshots().chain(top)?.into_iter().collect(),
        None => HashSet::new(),
    };
    let mut layer_index: HashMap<SnapshotId, u32> = HashMap::new();
    let mut layers: Vec<CacheLayer> = Vec::new();
    let mut layer_snapshots: Vec<SnapshotId> = Vec::new();
    // (output key, chain) → every key it is found by: records with the same result merge.
    let mut merged: BTreeMap<(String, Vec<u32>), BTreeSet<String>> = BTreeMap::new();
    for record in &input.used {
        let chain: Vec<SnapshotId> = match &record.snapshot {
            None => Vec::new(),
            Some(id) => {
                if mode == CacheMode::Min && !final_chain.contains(id) {
                    continue;
                }
                let mut chain = images.snapshots().chain(id)?;
                chain.reverse();
                chain
            }
        };
        let mut indexes = Vec::with_capacity(chain.len());
        for id in chain {
            let index = match layer_index.get(&id) {
                Some(&i) => i,
                None => {
                    let layer = images.layer_of(&id, Compression::default(), None)?;
                    let i = layers.len() as u32;
                    layers.push(CacheLayer {
                        media_type: layer.media_type.clone(),
                        digest: layer.digest,
                        size: layer.size,
                        diff_id: layer.diff_id,
                    });
                    layer_snapshots.push(id.clone());
                    layer_index.insert(id, i);
                    i
                }
            };
            indexes.push(index);
        }
        merged
            .entry((hex::encode(record.output_key), indexes))
            .or_default()
            .extend(record.keys.iter().map(hex::encode));
    }
    let records = merged
        .into_iter()
        .map(|((output_key, chain), keys)| CacheEntry {
            keys: keys.into_iter().collect(),
            output_key,
            chain,
        })
        .collect();
    let created = input.created.iter().cloned().collect();
    Ok((
        CacheConfig {
            version: CACHE_VERSION,
            layers,
            records,
            created,
        },
        layer_snapshots,
    ))
}

/// The document of an inline cache (min mode): the final image's steps, their chains as
/// positions in the image's own layers, which are not repeated in it.
pub fn inline_document(
    images: &ImageStore,
    input: &ExportInput,
) -> Result<CacheConfig, EngineError> {
    let mut bottom_first = match &input.top {
        Some(top) => images.snapshots().chain(top)?,
        None => Vec::new(),
    };
    bottom_first.reverse();
    let position: HashMap<&SnapshotId, u32> = bottom_first
        .iter()
        .enumerate()
        .map(|(i, id)| (id, i as u32))
        .collect();
    let mut merged: BTreeMap<(String, Vec<u32>), BTreeSet<String>> = BTreeMap::new();
    for record in &input.used {
        let chain = match &record.snapshot {
            None => Vec::new(),
            Some(id) => match position.get(id) {
                Some(&top) => (0..=top).collect(),
                None => continue,
            },
        };
        merged
            .entry((hex::encode(record.output_key), chain))
            .or_default()
            .extend(record.keys.iter().map(hex::encode));
    }
    Ok(CacheConfig {
        version: CACHE_VERSION,
        layers: Vec::new(),
        records: merged
            .into_iter()
            .map(|((output_key, chain), keys)| CacheEntry {
                keys: keys.into_iter().collect(),
                output_key,
                chain,
            })
            .collect(),
        created: input.created.iter().cloned().collect(),
    })
}

/// What an export wrote, for the build's report.
#[derive(Debug, Clone)]
pub struct Exported {
    pub destination: String,
    pub records: usize,
    pub layers: usize,
    /// The cache manifest's digest (registry and local exports).
    pub digest: Option<Digest>,
}

/// Writes the cache to a registry or a directory. (An inline cache is written into the image
/// config by the build.)
pub fn export(
    images: &ImageStore,
    spec: &CacheExport,
    input: &ExportInput,
    client: Option<&Client>,
) -> Result<Exported, EngineError> {
    let (mode, destination) = match spec {
        CacheExport::Registry {
            reference, mode, ..
        } => (*mode, reference.clone()),
        CacheExport::Local { dir, mode, .. } => (*mode, dir.display().to_string()),
        CacheExport::Inline => {
            return Err(EngineError::Bug(
                "an inline cache is written with the image, not exported".into(),
            ));
        }
    };
    let (doc, _) = document(images, input, mode)?;
    let lease = images
        .store()
        .create_lease(&kiln_cache::LeaseOptions::default())?;
    let result = write(images, spec, &doc, &lease.id, client);
    let released = images.store().delete_lease(&lease.id);
    let digest = result?;
    released?;
    Ok(Exported {
        destination,
        records: doc.records.len(),
        layers: doc.layers.len(),
        digest: Some(digest),
    })
}

fn write(
    images: &ImageStore,
    spec: &CacheExport,
    doc: &CacheConfig,
    lease: &str,
    client: Option<&Client>,
) -> Result<Digest, EngineError> {
    let sink = kiln_oci::store::LeasedStore {
        store: images.store(),
        lease,
    };
    let put = |bytes: &[u8]| -> Result<Digest, EngineError> {
        let digest = Digest::of(bytes);
        sink.put(&digest, bytes.len() as u64, &mut &bytes[..])
            .map_err(|e| crate::error::format_error("store the cache document", e))?;
        Ok(digest)
    };
    let config = doc.to_bytes();
    let config_desc = Descriptor::new(CACHE_CONFIG_MEDIA_TYPE, put(&config)?, config.len() as u64);
    // The layers must be leased too: the export holds them while the push or copy runs.
    for l in &doc.layers {
        sink.contains(&l.digest)
            .map_err(|e| crate::error::format_error("lease a cache layer", e))?;
    }
    let cache_manifest = Manifest {
        schema_version: 2,
        media_type: media_type::OCI_MANIFEST.to_owned(),
        artifact_type: None,
        config: config_desc,
        layers: doc
            .layers
            .iter()
            .map(|l| Descriptor::new(l.media_type.clone(), l.digest, l.size))
            .collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = manifest::to_json(&cache_manifest);
    let top = Descriptor::new(media_type::OCI_MANIFEST, put(&bytes)?, bytes.len() as u64);
    match spec {
        CacheExport::Registry { reference, .. } => {
            let dest = Reference::parse(reference).map_err(|source| EngineError::InvalidCache {
                label: reference.clone(),
                source: source.into(),
            })?;
            let owned;
            let client = match client {
                Some(c) => c,
                None => {
                    owned = Client::from_env().map_err(|e| {
                        crate::error::registry_error("export cache to", reference, e)
                    })?;
                    &owned
                }
            };
            let progress = |_| {};
            let opts = PushOptions {
                concurrency: 4,
                chunk_size: kiln_registry::push::DEFAULT_CHUNK_SIZE,
                mount_from: Vec::new(),
                progress: &progress,
            };
            kiln_registry::push(client, images.blobs(), &top, &dest, &opts)
                .map_err(|e| crate::error::registry_error("export cache to", reference, e))?;
        }
        CacheExport::Local { dir, tag, .. } => {
            let named = kiln_oci::export::NamedImage {
                name: Some(format!("kiln-cache:{tag}")),
                descriptor: top.clone(),
            };
            kiln_oci::export::write_oci_layout(dir, images.blobs(), &[named]).map_err(|e| {
                crate::error::format_error(format!("export cache to {}", dir.display()), e)
            })?;
        }
        CacheExport::Inline => {
            return Err(EngineError::Bug(
                "an inline cache is written with the image, not exported".into(),
            ));
        }
    }
    Ok(top.digest)
}
