//! Pull: resolve a reference (through mirrors first), pick this platform's manifest from an
//! index, then download layers concurrently, config and manifest last, each verified against
//! its digest while it streams into the sink. A blob whose bytes do not match is not stored.

use std::io::Read;

use kiln_llb::Platform;
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::{BlobSink, Descriptor, Digest, media_type};

use crate::client::{Body, Client, Scope, backoff, check};
use crate::config::Endpoint;
use crate::download::fetch_blobs;
use crate::error::{Cause, RegistryError};
use crate::reference::Reference;

/// Largest manifest or index read into memory.
pub const MAX_MANIFEST_SIZE: u64 = 8 << 20;

/// Every manifest type kiln understands, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Progress of a pull, for per-layer lines.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// The reference resolved to `digest` at `endpoint`.
    Resolved {
        endpoint: String,
        digest: Digest,
    },
    /// A mirror failed; the next endpoint is tried.
    MirrorFailed {
        endpoint: String,
        reason: String,
    },
    BlobExists {
        digest: Digest,
        size: u64,
    },
    BlobStarted {
        digest: Digest,
        size: u64,
    },
    BlobDone {
        digest: Digest,
        size: u64,
    },
    BlobRetry {
        digest: Digest,
        attempt: u32,
        reason: String,
    },
}

pub struct PullOptions<'a> {
    pub platform: Platform,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    pub progress: &'a (dyn Fn(PullEvent) + Sync),
}

impl std::fmt::Debug for PullOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The platform's image manifest (in the sink).
    pub manifest: Descriptor,
    /// The index it was chosen from, if the reference named one (in the sink too).
    pub index: Option<Descriptor>,
    /// The base URL it came from (a mirror or the registry).
    pub endpoint: String,
    /// The attestation manifests of the chosen image in the index (BuildKit's layout, with
    /// their annotations and platform), stored in the sink with their blobs.
    pub attestations: Vec<Descriptor>,
}

/// Pulls `reference` for `opts.platform` into `sink`.
pub fn pull(
    client: &Client,
    reference: &Reference,
    sink: &(dyn BlobSink + Sync),
    opts: &PullOptions<'_>,
) -> Result<Pulled, RegistryError> {
    let endpoints = client.config().pull_endpoints(reference.registry());
    let last = endpoints.len() - 1;
    for (i, ep) in endpoints.iter().enumerate() {
        match pull_from(client, ep, reference, sink, opts) {
            Ok(p) => return Ok(p),
            // A digest mismatch is never papered over by another source.
            Err(e) if i < last && !matches!(e, RegistryError::DigestMismatch { .. }) => {
                (opts.progress)(PullEvent::MirrorFailed {
                    endpoint: ep.base.clone(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("pull_endpoints always ends with the registry itself")
}

fn pull_from(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    sink: &(dyn BlobSink + Sync),
    opts: &PullOptions<'_>,
) -> Result<Pulled, RegistryError> {
    let scope = Scope::pull(reference.repository());
    let (bytes, mt, digest) = fetch_manifest(client, ep, &scope, reference, &reference.target())?;
    (opts.progress)(PullEvent::Resolved {
        endpoint: ep.base.clone(),
        digest,
    });
    let top = Descriptor::new(mt.clone(), digest, bytes.len() as u64);
    let invalid = |source: Cause| RegistryError::Manifest {
        registry: ep.host.clone(),
        source,
    };
    let parsed = manifest::parse(&bytes, &mt, &format!("manifest of {reference}"))
        .map_err(|e| invalid(Box::new(e)))?;
    let mut attestations = Vec::new();
    let (index, manifest_desc, manifest_bytes, manifest) = match parsed {
        Parsed::Manifest(m) => (None, top, bytes, m),
        Parsed::Index(idx) => {
            attestations = attestations_of(&idx);
            let chosen = choose_platform(&idx.manifests, &opts.platform).ok_or_else(|| {
                RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    platform: opts.platform.to_string(),
                }
            })?;
            // The index gives the manifest's size: a larger one is refused before it is
            // fetched, and what arrives must be exactly that long (its digest is checked too).
            if chosen.size > MAX_MANIFEST_SIZE {
                return Err(invalid(
                    format!(
                        "the index says manifest {} is {} bytes, more than the {MAX_MANIFEST_SIZE} allowed",
                        chosen.digest, chosen.size
                    )
                    .into(),
                ));
            }
            let (mbytes, mmt, mdigest) =
                fetch_manifest(client, ep, &scope, reference, &chosen.digest.to_string())?;
            if mbytes.len() as u64 != chosen.size {
                return Err(invalid(
                    format!(
                        "the index says manifest {} is {} bytes, the registry sent {}",
                        chosen.digest,
                        chosen.size,
                        mbytes.len()
                    )
                    .into(),
                ));
            }
            let m =
                match manifest::parse(&mbytes, &chosen.media_type, &format!("manifest {mdigest}"))
                    .map_err(|e| invalid(Box::new(e)))?
                {
                    Parsed::Manifest(m) => m,
                    Parsed::Index(_) => {
                        return Err(invalid("the platform's entry is another index".into()));
                    }
                };
            let mt = if chosen.media_type.is_empty() {
                mmt
            } else {
                chosen.media_type.clone()
            };
            let desc = Descriptor::new(mt, mdigest, mbytes.len() as u64);
            (Some((top, bytes)), desc, mbytes, m)
        }
    };
    if manifest.layers.iter().any(|l| !is_layer(&l.media_type)) {
        let odd = manifest
            .layers
            .iter()
            .find(|l| !is_layer(&l.media_type))
            .map(|l| l.media_type.clone())
            .unwrap_or_default();
        return Err(RegistryError::Manifest {
            registry: ep.host.clone(),
            source: format!("not supported yet: layers of media type {odd}").into(),
        });
    }
    // Layers first, config after: a pull that fails part way leaves no config or manifest
    // naming blobs that are not there.
    fetch_blobs(client, ep, &scope, reference, &manifest.layers, sink, opts)?;
    fetch_blobs(
        client,
        ep,
        &scope,
        reference,
        std::slice::from_ref(&manifest.config),
        sink,
        opts,
    )?;
    put_bytes(sink, &manifest_desc.digest, &manifest_bytes)?;
    // The image's attestations (BuildKit's layout) come along, so a copy pushed elsewhere keeps
    // them. Only those of the chosen manifest.
    attestations
        .retain(|d| d.annotations.get(REFERENCE_DIGEST) == Some(&manifest_desc.digest.to_string()));
    for d in &attestations {
        let (abytes, _, adigest) =
            fetch_manifest(client, ep, &scope, reference, &d.digest.to_string())?;
        let Ok(Parsed::Manifest(a)) =
            manifest::parse(&abytes, &d.media_type, &format!("attestation {adigest}"))
        else {
            return Err(invalid(
                format!("attestation {adigest} is not a manifest").into(),
            ));
        };
        let mut blobs = a.layers.clone();
        blobs.push(a.config.clone());
        fetch_blobs(client, ep, &scope, reference, &blobs, sink, opts)?;
        put_bytes(sink, &adigest, &abytes)?;
    }
    let index = match index {
        Some((desc, bytes)) => {
            put_bytes(sink, &desc.digest, &bytes)?;
            Some(desc)
        }
        None => None,
    };
    Ok(Pulled {
        manifest: manifest_desc,
        index,
        endpoint: ep.base.clone(),
        attestations,
    })
}

/// The index annotation pointing an attestation manifest at the image it describes.
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// The attestation manifests of an index (`vnd.docker.reference.type: attestation-manifest`).
fn attestations_of(idx: &kiln_oci::Index) -> Vec<Descriptor> {
    idx.manifests
        .iter()
        .filter(|d| {
            d.annotations
                .get(manifest::ANNOTATION_DOCKER_REFERENCE_TYPE)
                .is_some_and(|t| t == "attestation-manifest")
        })
        .cloned()
        .collect()
}

/// A manifest by tag or digest, from the registry itself (never a mirror): its bytes, media
/// type and digest. For documents that are not images to run, such as a build cache.
pub fn get_manifest(
    client: &Client,
    reference: &Reference,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let ep = client.config().endpoint(reference.registry());
    let scope = Scope::pull(reference.repository());
    fetch_manifest(client, &ep, &scope, reference, &reference.target())
}

/// Downloads `blobs` of `reference`'s repository into `sink`, concurrently, each verified
/// against its digest before it is stored; blobs the sink has are skipped.
pub fn pull_blobs(
    client: &Client,
    reference: &Reference,
    blobs: &[Descriptor],
    sink: &(dyn BlobSink + Sync),
    opts: &PullOptions<'_>,
) -> Result<(), RegistryError> {
    let ep = client.config().endpoint(reference.registry());
    let scope = Scope::pull(reference.repository());
    fetch_blobs(client, &ep, &scope, reference, blobs, sink, opts)
}

fn is_layer(mt: &str) -> bool {
    matches!(
        mt,
        media_type::OCI_LAYER
            | media_type::OCI_LAYER_GZIP
            | media_type::OCI_LAYER_ZSTD
            | media_type::OCI_LAYER_NONDIST
            | media_type::OCI_LAYER_NONDIST_GZIP
            | media_type::OCI_LAYER_NONDIST_ZSTD
            | media_type::DOCKER_LAYER
            | media_type::DOCKER_LAYER_GZIP
            | media_type::DOCKER_LAYER_FOREIGN
    )
}

fn put_bytes(
    sink: &(dyn BlobSink + Sync),
    digest: &Digest,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    if !sink.contains(digest)? {
        sink.put(digest, bytes.len() as u64, &mut &bytes[..])?;
    }
    Ok(())
}

/// The entry of an index for `platform`: same os and architecture, the same variant when both
/// say one; attestation manifests never match.
pub fn choose_platform<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Option<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = entries
        .iter()
        .filter(|d| {
            !d.annotations
                .contains_key(manifest::ANNOTATION_DOCKER_REFERENCE_TYPE)
        })
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            Some((
                d,
                Platform::new(&p.os, &p.architecture, p.variant.as_deref()),
            ))
        })
        .filter(|(_, p)| p.os == platform.os && p.architecture == platform.architecture)
        .collect();
    candidates
        .iter()
        .find(|(_, p)| p.variant == platform.variant)
        .or_else(|| {
            candidates
                .iter()
                .find(|(_, p)| p.variant.is_none() || platform.variant.is_none())
        })
        .map(|(d, _)| *d)
}

/// GETs a manifest by tag or digest: its bytes, media type and digest (verified when asked by
/// digest, and against the registry's `Docker-Content-Digest`).
pub(crate) fn fetch_manifest(
    client: &Client,
    ep: &Endpoint,
    scope: &Scope,
    reference: &Reference,
    target: &str,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let url = format!(
        "{}/v2/{}/manifests/{target}",
        ep.base,
        reference.repository()
    );
    let what = format!("manifest {}:{target}", reference.repository());
    let mut attempt = 0;
    let (mt, claimed, bytes) = loop {
        attempt += 1;
        let resp = client.send(
            ep,
            scope,
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            &Body::Empty,
        )?;
        let resp = check(ep, "GET", &url, &what, resp)?;
        let mt = resp
            .header("content-type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let claimed = resp.header("docker-content-digest").map(str::to_owned);
        let mut bytes = Vec::new();
        // Never more than the limit, whatever Content-Length claims.
        match resp
            .into_reader()
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
        {
            Ok(_) => break (mt, claimed, bytes),
            // The connection broke in the body: ask again.
            Err(_) if attempt < client.attempts => backoff(attempt),
            Err(e) => {
                return Err(RegistryError::GaveUp {
                    registry: ep.host.clone(),
                    what: what.clone(),
                    attempts: attempt,
                    source: Box::new(RegistryError::Transport {
                        registry: ep.host.clone(),
                        url: url.clone(),
                        source: Box::new(e),
                    }),
                });
            }
        }
    };
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(RegistryError::Manifest {
            registry: ep.host.clone(),
            source: format!("{what} is larger than {MAX_MANIFEST_SIZE} bytes").into(),
        });
    }
    let digest = Digest::of(&bytes);
    let expected = if target.starts_with("sha256:") {
        Some(target.to_owned())
    } else {
        claimed.filter(|c| c.starts_with("sha256:"))
    };
    if let Some(expected) = expected
        && expected != digest.to_string()
    {
        return Err(RegistryError::DigestMismatch {
            registry: ep.host.clone(),
            what,
            expected: expected.parse().unwrap_or(digest),
            actual: digest.to_string(),
        });
    }
    // Generic content types (`application/json`, `text/plain`) say nothing: let the document's
    // own mediaType decide.
    let mt = if mt.starts_with("application/vnd.") {
        mt
    } else {
        String::new()
    };
    Ok((bytes, mt, digest))
}
