//! `--cache-from`: read an exported cache document (from a registry or an OCI layout directory,
//! or inline in an image's config), answer the solver's lookups from it, and turn a hit into a
//! local snapshot by fetching the hit's layer blobs (verified) and unpacking them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_executor::snapshot::SnapshotId;
use kiln_image::ImageStore;
use kiln_oci::blob::DirBlobs;
use kiln_oci::manifest::{self, Manifest, Parsed};
use kiln_oci::{BlobSink, BlobSource, Descriptor, Digest, media_type};
use kiln_registry::{Client, PullOptions, Reference};

use super::format::{CACHE_CONFIG_MEDIA_TYPE, CacheConfig, CacheEntry, CacheLayer, parse_key};
use super::spec::CacheImport;
use crate::error::EngineError;
use crate::progress::Reporter;

/// Largest cache document or manifest read into memory.
const MAX_DOCUMENT: u64 = 16 << 20;
/// Config key of an inline cache document inside an image config.
pub const INLINE_CACHE_KEY: &str = "kiln.cache.v1";

/// Where a cache's blobs come from.
enum Source {
    Registry {
        client: Arc<Client>,
        reference: Reference,
    },
    Local {
        blobs: DirBlobs,
    },
}

/// An imported cache: lookups by key, and the blobs to fetch on a hit.
pub struct RemoteCache {
    label: String,
    source: Source,
    layers: Vec<CacheLayer>,
    records: Vec<CacheEntry>,
    by_key: HashMap<[u8; 32], usize>,
    created: BTreeMap<String, String>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("label", &self.label)
            .field("records", &self.records.len())
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// A record found in an imported cache.
#[derive(Debug, Clone)]
pub struct Hit {
    pub output_key: [u8; 32],
    /// The result's layers, bottom first (empty: an empty filesystem).
    pub layers: Vec<CacheLayer>,
}

/// One materialisation at a time per process: two steps hitting the same chain must not both
/// prepare its snapshots.
static MATERIALIZE: Mutex<()> = Mutex::new(());

/// A cache that cannot be used, and why (an error, or a message when there is no cause).
fn invalid(label: &str, source: impl Into<kiln_image::Cause>) -> EngineError {
    EngineError::InvalidCache {
        label: label.to_owned(),
        source: source.into(),
    }
}

impl RemoteCache {
    /// Reads the cache `spec` names. A registry cache needs the client (credentials, insecure
    /// registries) the rest of kiln uses.
    pub fn open(
        images: &ImageStore,
        spec: &CacheImport,
        client: Option<Arc<Client>>,
    ) -> Result<RemoteCache, EngineError> {
        match spec {
            CacheImport::Registry { reference } => {
                let client = match client {
                    Some(c) => c,
                    None => Arc::new(
                        Client::from_env()
                            .map_err(|e| crate::error::registry_error("read", reference, e))?,
                    ),
                };
                open_registry(images, reference, client)
            }
            CacheImport::Local { dir, tag } => open_local(dir, tag),
        }
    }

    /// What the cache was read from, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How many step results it holds.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// The record for a cache key, if the cache has one.
    pub fn lookup(&self, key: &[u8; 32]) -> Option<Hit> {
        let entry = &self.records[*self.by_key.get(key)?];
        Some(Hit {
            output_key: parse_key(&entry.output_key)?,
            layers: entry
                .chain
                .iter()
                .map(|&i| self.layers[i as usize].clone())
                .collect(),
        })
    }

    /// The creation time recorded for an image-creation key (hex).
    pub fn created(&self, key_hex: &str) -> Option<&str> {
        self.created.get(key_hex).map(String::as_str)
    }

    /// Fetches a hit's missing blobs into the store and unpacks them; returns the top snapshot
    /// (`None` for an empty filesystem).
    pub fn materialize(
        &self,
        images: &ImageStore,
        hit: &Hit,
        reporter: &Reporter,
    ) -> Result<Option<SnapshotId>, EngineError> {
        if hit.layers.is_empty() {
            return Ok(None);
        }
        let _one_at_a_time = MATERIALIZE.lock().unwrap_or_else(|p| p.into_inner());
        let lease = images
            .store()
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        let result = self.fetch_and_unpack(images, hit, &lease.id, reporter);
        let released = images.store().delete_lease(&lease.id);
        let top = result?;
        released?;
        Ok(top)
    }

    fn fetch_and_unpack(
        &self,
        images: &ImageStore,
        hit: &Hit,
        lease: &str,
        reporter: &Reporter,
    ) -> Result<Option<SnapshotId>, EngineError> {
        let sink = kiln_oci::store::LeasedStore {
            store: images.store(),
            lease,
        };
        let descriptors: Vec<Descriptor> = hit
            .layers
            .iter()
            .map(|l| Descriptor::new(l.media_type.clone(), l.digest, l.size))
            .collect();
        // Layers already unpacked here (a base image this store has) need no download.
        let diff_ids: Vec<Digest> = hit.layers.iter().map(|l| l.diff_id).collect();
        let skip = images.unpacked_prefix(&diff_ids)?;
        let missing = &descriptors[skip..];
        match &self.source {
            Source::Registry { client, reference } => {
                let label = &self.label;
                let progress = |event: kiln_registry::PullEvent| {
                    if matches!(event, kiln_registry::PullEvent::BlobStarted { .. }) {
                        reporter.info(format!(
                            "cache {label}: {}",
                            kiln_image::describe_pull(&event)
                        ));
                    }
                };
                let opts = PullOptions {
                    platform: kiln_llb::Platform::host(),
                    concurrency: 4,
                    progress: &progress,
                };
                kiln_registry::pull::pull_blobs(client, reference, missing, &sink, &opts)
                    .map_err(|e| crate::error::registry_error("fetch cache from", label, e))?;
            }
            Source::Local { blobs } => {
                for d in missing {
                    if sink
                        .contains(&d.digest)
                        .map_err(|e| invalid(&self.label, e))?
                    {
                        continue;
                    }
                    let mut reader = blobs.open(&d.digest).map_err(|e| invalid(&self.label, e))?;
                    sink.put(&d.digest, d.size, &mut reader)
                        .map_err(|e| invalid(&self.label, e))?;
                }
            }
        }
        let layers: Vec<(&Descriptor, &Digest)> = descriptors
            .iter()
            .zip(hit.layers.iter().map(|l| &l.diff_id))
            .collect();
        Ok(images.unpack_layers(&self.label, &layers)?)
    }
}

fn build(label: String, source: Source, doc: CacheConfig, layers: Vec<CacheLayer>) -> RemoteCache {
    let mut by_key = HashMap::new();
    for (i, entry) in doc.records.iter().enumerate() {
        for key in &entry.keys {
            if let Some(k) = parse_key(key) {
                by_key.entry(k).or_insert(i);
            }
        }
    }
    RemoteCache {
        label,
        source,
        layers,
        records: doc.records,
        by_key,
        created: doc.created,
    }
}

fn open_registry(
    images: &ImageStore,
    name: &str,
    client: Arc<Client>,
) -> Result<RemoteCache, EngineError> {
    let reference = Reference::parse(name).map_err(|e| invalid(name, e))?;
    let label = reference.to_string();
    let (bytes, mt, _) = kiln_registry::pull::get_manifest(&client, &reference)
        .map_err(|e| crate::error::registry_error("read cache", &label, e))?;
    let manifest = match manifest::parse(&bytes, &mt, &format!("cache manifest {label}")) {
        Ok(Parsed::Manifest(m)) => m,
        Ok(Parsed::Index(_)) => {
            return Err(invalid(
                &label,
                "not supported yet: a cache stored as an image index (BuildKit's format)",
            ));
        }
        Err(e) => return Err(invalid(&label, e)),
    };
    // The document is small: fetch it into the store (verified) and read it from there.
    let noop = |_| {};
    let opts = PullOptions {
        platform: kiln_llb::Platform::host(),
        concurrency: 1,
        progress: &noop,
    };
    kiln_registry::pull::pull_blobs(
        &client,
        &reference,
        std::slice::from_ref(&manifest.config),
        images.blobs(),
        &opts,
    )
    .map_err(|e| crate::error::registry_error("read cache", &label, e))?;
    let config = images
        .blobs()
        .read_verified(&manifest.config.digest, MAX_DOCUMENT)
        .map_err(|e| invalid(&label, e))?;
    let (doc, layers) = document(&label, &manifest, &config)?;
    Ok(build(
        label,
        Source::Registry { client, reference },
        doc,
        layers,
    ))
}

fn open_local(dir: &Path, tag: &str) -> Result<RemoteCache, EngineError> {
    let label = dir.display().to_string();
    let index_path = dir.join("index.json");
    let index_bytes = std::fs::read(&index_path).map_err(|source| EngineError::Io {
        what: format!("read cache {}", index_path.display()),
        source,
    })?;
    let index = match manifest::parse(&index_bytes, "", &index_path.display().to_string()) {
        Ok(Parsed::Index(i)) => i,
        Ok(Parsed::Manifest(_)) => return Err(invalid(&label, "index.json is not an index")),
        Err(e) => return Err(invalid(&label, e)),
    };
    let chosen = index
        .manifests
        .iter()
        .find(|d| {
            d.annotations
                .get(manifest::ANNOTATION_REF_NAME)
                .map(String::as_str)
                == Some(tag)
        })
        .or(match index.manifests.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| invalid(&label, format!("no cache tagged {tag:?} in index.json")))?;
    let blobs = DirBlobs::new(PathBuf::from(dir).join("blobs"));
    let bytes = blobs
        .read_verified(&chosen.digest, MAX_DOCUMENT)
        .map_err(|e| invalid(&label, e))?;
    let manifest = match manifest::parse(&bytes, &chosen.media_type, "cache manifest") {
        Ok(Parsed::Manifest(m)) => m,
        Ok(Parsed::Index(_)) => return Err(invalid(&label, "not supported yet: nested indexes")),
        Err(e) => return Err(invalid(&label, e)),
    };
    let config = blobs
        .read_verified(&manifest.config.digest, MAX_DOCUMENT)
        .map_err(|e| invalid(&label, e))?;
    let (doc, layers) = document(&label, &manifest, &config)?;
    Ok(build(label, Source::Local { blobs }, doc, layers))
}

/// The cache document a manifest carries: its own config blob, or an image config's inline
/// cache (whose chains index the image's layers).
fn document(
    label: &str,
    manifest: &Manifest,
    config: &[u8],
) -> Result<(CacheConfig, Vec<CacheLayer>), EngineError> {
    match manifest.config.media_type.as_str() {
        CACHE_CONFIG_MEDIA_TYPE => {
            let doc = CacheConfig::parse(config, None).map_err(|e| invalid(label, e))?;
            let layers = doc.layers.clone();
            Ok((doc, layers))
        }
        media_type::OCI_CONFIG | media_type::DOCKER_CONFIG => {
            let value: serde_json::Value =
                serde_json::from_slice(config).map_err(|e| invalid(label, e))?;
            let Some(inline) = value.get(INLINE_CACHE_KEY).and_then(|v| v.as_str()) else {
                return Err(invalid(
                    label,
                    "the image carries no inline cache (build it with --cache-to type=inline)",
                ));
            };
            let rootfs: manifest::ConfigRootfs =
                serde_json::from_value(value.clone()).map_err(|e| invalid(label, e))?;
            if rootfs.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(invalid(
                    label,
                    "config and manifest disagree on the layer count",
                ));
            }
            let doc = CacheConfig::parse(inline.as_bytes(), Some(manifest.layers.len()))
                .map_err(|e| invalid(label, e))?;
            let layers = manifest
                .layers
                .iter()
                .zip(&rootfs.rootfs.diff_ids)
                .map(|(d, diff_id)| CacheLayer {
                    media_type: d.media_type.clone(),
                    digest: d.digest,
                    size: d.size,
                    diff_id: *diff_id,
                })
                .collect();
            Ok((doc, layers))
        }
        other => Err(invalid(
            label,
            format!("not a kiln build cache (config media type {other:?})"),
        )),
    }
}
