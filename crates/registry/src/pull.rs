//! Pull: resolve a reference (through mirrors first), pick this platform's manifest from an
//! index, then download layers concurrently, config and manifest last, each verified against
//! its digest while it streams into the sink. A blob whose bytes do not match is not stored.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_llb::Platform;
use kiln_oci::digest::Hasher;
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::{BlobSink, Descriptor, Digest, media_type};

use crate::client::{Body, Client, Scope, check, error_text};
use crate::config::Endpoint;
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
            let (mbytes, mmt, mdigest) =
                fetch_manifest(client, ep, &scope, reference, &chosen.digest.to_string())?;
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
    let resp = client.send(
        ep,
        scope,
        "GET",
        &url,
        &[("Accept", MANIFEST_ACCEPT)],
        &Body::Empty,
    )?;
    let what = format!("manifest {}:{target}", reference.repository());
    let resp = check(ep, "GET", &url, &what, resp)?;
    let mt = resp
        .header("content-type")
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let claimed = resp.header("docker-content-digest").map(str::to_owned);
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            registry: ep.host.clone(),
            url: url.clone(),
            source: Box::new(e),
        })?;
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

/// Hashes what passes through and, at the end, fails instead of ending when the digest or
/// size is wrong, remembering which it was so the caller can tell corruption from network
/// trouble.
struct Verify<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    mismatch: Option<String>,
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            let (digest, len) = std::mem::take(&mut self.hasher).finish();
            if digest != self.expected || len != self.size {
                let m = format!("{digest} ({len} bytes, expected {})", self.size);
                self.mismatch = Some(m.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, m));
            }
            self.hasher = Hasher::new();
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        if self.hasher.len() > self.size {
            let m = format!("more than the {} bytes expected", self.size);
            self.mismatch = Some(m.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, m));
        }
        Ok(n)
    }
}

fn fetch_blobs(
    client: &Client,
    ep: &Endpoint,
    scope: &Scope,
    reference: &Reference,
    blobs: &[Descriptor],
    sink: &(dyn BlobSink + Sync),
    opts: &PullOptions<'_>,
) -> Result<(), RegistryError> {
    let mut seen = std::collections::BTreeSet::new();
    let queue: Mutex<VecDeque<&Descriptor>> =
        Mutex::new(blobs.iter().filter(|d| seen.insert(d.digest)).collect());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = opts.concurrency.clamp(1, 16).min(blobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(d) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    if let Err(e) = fetch_blob(client, ep, scope, reference, d, sink, opts) {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn fetch_blob(
    client: &Client,
    ep: &Endpoint,
    scope: &Scope,
    reference: &Reference,
    d: &Descriptor,
    sink: &(dyn BlobSink + Sync),
    opts: &PullOptions<'_>,
) -> Result<(), RegistryError> {
    if sink.contains(&d.digest)? {
        (opts.progress)(PullEvent::BlobExists {
            digest: d.digest,
            size: d.size,
        });
        return Ok(());
    }
    (opts.progress)(PullEvent::BlobStarted {
        digest: d.digest,
        size: d.size,
    });
    let url = format!(
        "{}/v2/{}/blobs/{}",
        ep.base,
        reference.repository(),
        d.digest
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = client.send(ep, scope, "GET", &url, &[], &Body::Empty)?;
        let resp = check(ep, "GET", &url, &format!("blob {}", d.digest), resp)?;
        if resp.status() != 200 {
            let status = resp.status();
            return Err(RegistryError::Status {
                registry: ep.host.clone(),
                method: "GET".into(),
                url,
                status,
                body: error_text(resp),
            });
        }
        let mut reader = Verify {
            inner: resp.into_reader(),
            hasher: Hasher::new(),
            expected: d.digest,
            size: d.size,
            mismatch: None,
        };
        match sink.put(&d.digest, d.size, &mut reader) {
            Ok(()) => break,
            Err(_) if reader.mismatch.is_some() => {
                return Err(RegistryError::DigestMismatch {
                    registry: ep.host.clone(),
                    what: format!("blob of {reference}"),
                    expected: d.digest,
                    actual: reader.mismatch.unwrap_or_default(),
                });
            }
            // The connection broke mid-blob (or the store failed): the sink kept nothing, so
            // start the blob over.
            Err(e) if attempt < client.attempts => {
                (opts.progress)(PullEvent::BlobRetry {
                    digest: d.digest,
                    attempt,
                    reason: e.to_string(),
                });
                std::thread::sleep(std::time::Duration::from_millis(200 << attempt.min(5)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    (opts.progress)(PullEvent::BlobDone {
        digest: d.digest,
        size: d.size,
    });
    Ok(())
}
