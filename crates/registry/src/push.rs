//! Push: every blob of an image (skipping those the registry has, mounting those another
//! repository of the same registry has), layers in parallel, monolithic uploads for small blobs
//! and chunked ones for large, then child manifests, then the tagged manifest last, so a tag
//! never points at something incomplete.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_oci::manifest::{self, Parsed};
use kiln_oci::{BlobSource, Descriptor, Digest};

use crate::client::{Body, Client, Scope, backoff, check, resolve_location};
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::pull::MAX_MANIFEST_SIZE;
use crate::reference::Reference;

/// Blobs larger than this go up in chunks of this size.
pub const DEFAULT_CHUNK_SIZE: u64 = 32 << 20;

#[derive(Debug, Clone)]
pub enum PushEvent {
    BlobExists {
        digest: Digest,
        size: u64,
    },
    BlobMounted {
        digest: Digest,
        from: String,
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
    ManifestPushed {
        digest: Digest,
        target: String,
    },
}

pub struct PushOptions<'a> {
    pub concurrency: usize,
    /// Blobs above this size are uploaded in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Repositories of the destination registry that may hold the blobs already.
    pub mount_from: Vec<String>,
    pub progress: &'a (dyn Fn(PushEvent) + Sync),
}

impl std::fmt::Debug for PushOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("concurrency", &self.concurrency)
            .field("chunk_size", &self.chunk_size)
            .field("mount_from", &self.mount_from)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Pushed {
    /// The top manifest or index as the registry now has it.
    pub descriptor: Descriptor,
}

/// Pushes the image whose top manifest or index is `top` (in `source`) to `reference`.
pub fn push(
    client: &Client,
    source: &(dyn BlobSource + Sync),
    top: &Descriptor,
    reference: &Reference,
    opts: &PushOptions<'_>,
) -> Result<Pushed, RegistryError> {
    let ep = client.config().endpoint(reference.registry());
    let scope = Scope::push_mounting(reference.repository(), &opts.mount_from);
    let ctx = Ctx {
        client,
        ep: &ep,
        scope: &scope,
        reference,
        source,
        opts,
    };
    let bytes = source.read_verified(&top.digest, MAX_MANIFEST_SIZE)?;
    let parsed = manifest::parse(&bytes, &top.media_type, "image to push").map_err(|e| {
        RegistryError::Manifest {
            registry: ep.host.clone(),
            source: Box::new(e),
        }
    })?;
    match parsed {
        Parsed::Manifest(m) => ctx.push_image_blobs(&m)?,
        Parsed::Index(idx) => {
            for child in &idx.manifests {
                // Only the platforms this store has (a pulled image keeps one of them).
                if source.size(&child.digest)?.is_none() {
                    continue;
                }
                let cbytes = source.read_verified(&child.digest, MAX_MANIFEST_SIZE)?;
                match manifest::parse(&cbytes, &child.media_type, "child manifest") {
                    Ok(Parsed::Manifest(m)) => ctx.push_image_blobs(&m)?,
                    Ok(Parsed::Index(_)) => {
                        return Err(RegistryError::Manifest {
                            registry: ep.host.clone(),
                            source: "not supported yet: nested image indexes".into(),
                        });
                    }
                    Err(e) => {
                        return Err(RegistryError::Manifest {
                            registry: ep.host.clone(),
                            source: Box::new(e),
                        });
                    }
                }
                ctx.put_manifest(&child.digest.to_string(), &child.media_type, &cbytes)?;
            }
        }
    }
    let digest = ctx.put_manifest(&reference.target(), &top.media_type, &bytes)?;
    Ok(Pushed {
        descriptor: Descriptor::new(top.media_type.clone(), digest, bytes.len() as u64),
    })
}

struct Ctx<'a> {
    client: &'a Client,
    ep: &'a Endpoint,
    scope: &'a Scope,
    reference: &'a Reference,
    source: &'a (dyn BlobSource + Sync),
    opts: &'a PushOptions<'a>,
}

impl Ctx<'_> {
    fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.ep.base, self.reference.repository())
    }

    fn push_image_blobs(&self, m: &kiln_oci::Manifest) -> Result<(), RegistryError> {
        let mut seen = std::collections::BTreeSet::new();
        let blobs: VecDeque<&Descriptor> = m
            .layers
            .iter()
            .chain(std::iter::once(&m.config))
            .filter(|d| seen.insert(d.digest))
            .collect();
        let workers = self.opts.concurrency.clamp(1, 16).min(blobs.len().max(1));
        let queue = Mutex::new(blobs);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        if failed.load(Ordering::SeqCst) {
                            return;
                        }
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                        let Some(d) = next else { return };
                        if let Err(e) = self.push_blob(d) {
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

    fn push_blob(&self, d: &Descriptor) -> Result<(), RegistryError> {
        let progress = self.opts.progress;
        let url = self.repo_url(&format!("blobs/{}", d.digest));
        let resp = self
            .client
            .send(self.ep, self.scope, "HEAD", &url, &[], &Body::Empty)?;
        if resp.status() == 200 {
            progress(PushEvent::BlobExists {
                digest: d.digest,
                size: d.size,
            });
            return Ok(());
        }
        if self.source.size(&d.digest)?.is_none() {
            return Err(kiln_oci::BlobError::NotFound(d.digest).into());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload(d) {
                Ok(Some(from)) => {
                    progress(PushEvent::BlobMounted {
                        digest: d.digest,
                        from,
                    });
                    return Ok(());
                }
                Ok(None) => break,
                Err(e) if attempt < self.client.attempts && retryable(&e) => {
                    progress(PushEvent::BlobRetry {
                        digest: d.digest,
                        attempt,
                        reason: e.to_string(),
                    });
                    backoff(attempt);
                }
                Err(e @ RegistryError::GaveUp { .. }) => return Err(e),
                Err(e) if retryable(&e) => {
                    return Err(RegistryError::GaveUp {
                        registry: self.ep.host.clone(),
                        what: format!("uploading blob {} to {}", d.digest, self.reference),
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        progress(PushEvent::BlobDone {
            digest: d.digest,
            size: d.size,
        });
        Ok(())
    }

    /// One upload attempt: `Some(repo)` when the registry mounted the blob from `repo`.
    fn upload(&self, d: &Descriptor) -> Result<Option<String>, RegistryError> {
        let uploads = self.repo_url("blobs/uploads/");
        let mut location = None;
        for from in self
            .opts
            .mount_from
            .iter()
            .filter(|f| **f != self.reference.repository())
        {
            let url = format!("{uploads}?mount={}&from={from}", d.digest);
            let resp = self
                .client
                .send(self.ep, self.scope, "POST", &url, &[], &Body::Empty)?;
            match resp.status() {
                201 => return Ok(Some(from.clone())),
                202 => {
                    location = resp.header("location").map(str::to_owned);
                    break;
                }
                _ => {
                    check(self.ep, "POST", &url, self.reference.repository(), resp)?;
                }
            }
        }
        (self.opts.progress)(PushEvent::BlobStarted {
            digest: d.digest,
            size: d.size,
        });
        let mut location = match location {
            Some(l) => l,
            None => self.start_upload(&uploads)?,
        };
        location = resolve_location(self.ep, &location);
        if d.size > self.opts.chunk_size && self.opts.chunk_size > 0 {
            let mut offset = 0;
            let mut failures = 0;
            while offset < d.size {
                let len = self.opts.chunk_size.min(d.size - offset);
                match self.patch(&location, d, offset, len) {
                    Ok(next) => {
                        location = next;
                        offset += len;
                        failures = 0;
                    }
                    // The chunk may have reached the registry in part: ask how much it has
                    // and go on from there (a 416 means it had more or less than we thought).
                    Err(e) if e.is_transient() || is_status(&e, 416) => {
                        failures += 1;
                        if failures >= self.client.attempts {
                            return Err(RegistryError::GaveUp {
                                registry: self.ep.host.clone(),
                                what: format!(
                                    "uploading blob {} ({offset} of {} bytes accepted)",
                                    d.digest, d.size
                                ),
                                attempts: failures,
                                source: Box::new(e),
                            });
                        }
                        backoff(failures);
                        // A registry that cannot say (distribution 2.x drops an upload whose
                        // size no longer matches its state token) gets a new upload instead.
                        let Ok((next, have)) = self.upload_status(&location) else {
                            return Err(e);
                        };
                        (self.opts.progress)(PushEvent::BlobRetry {
                            digest: d.digest,
                            attempt: failures,
                            reason: format!("{e}; resuming the upload at byte {have}"),
                        });
                        location = next;
                        offset = have.min(d.size);
                    }
                    Err(e) => return Err(e),
                }
            }
            let url = with_digest(&location, &d.digest);
            let resp = self
                .client
                .send(self.ep, self.scope, "PUT", &url, &[], &Body::Empty)?;
            self.expect_created(resp, "PUT", &url)?;
        } else {
            let url = with_digest(&location, &d.digest);
            let open =
                || -> io::Result<Box<dyn Read + Send + '_>> { self.open_range(d, 0, d.size) };
            // One try: a PUT cut off half way may have left part of the blob in this upload,
            // so a retry starts a new upload (`push_blob`'s loop).
            let resp = self.client.send_attempts(
                self.ep,
                self.scope,
                "PUT",
                &url,
                &[("Content-Type", "application/octet-stream")],
                &Body::Stream {
                    len: d.size,
                    open: &open,
                },
                1,
            )?;
            self.expect_created(resp, "PUT", &url)?;
        }
        Ok(None)
    }

    /// Sends bytes `offset..offset + len` of `d` to the upload at `location`, once; the next
    /// location on success.
    fn patch(
        &self,
        location: &str,
        d: &Descriptor,
        offset: u64,
        len: u64,
    ) -> Result<String, RegistryError> {
        let open = || -> io::Result<Box<dyn Read + Send + '_>> { self.open_range(d, offset, len) };
        let range = format!("{offset}-{}", offset + len - 1);
        let resp = self.client.send_attempts(
            self.ep,
            self.scope,
            "PATCH",
            location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            &Body::Stream { len, open: &open },
            1,
        )?;
        let resp = check(
            self.ep,
            "PATCH",
            location,
            self.reference.repository(),
            resp,
        )?;
        let next = resp
            .header("location")
            .ok_or_else(|| self.protocol("PATCH", "no Location"))?;
        Ok(resolve_location(self.ep, next))
    }

    /// Where an upload stands (`GET` on its location): the location to continue at and how
    /// many bytes the registry holds (`Range: 0-LAST`).
    fn upload_status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let resp = self
            .client
            .send(self.ep, self.scope, "GET", location, &[], &Body::Empty)?;
        let resp = check(self.ep, "GET", location, self.reference.repository(), resp)?;
        if resp.status() != 204 {
            return Err(self.protocol("GET", &format!("status {}", resp.status())));
        }
        // `0-0` is both "nothing" and "one byte" in distribution's answers; taking it as
        // nothing costs at worst one refused chunk, after which the upload starts over.
        let have = match resp.header("range").and_then(|r| r.trim().split_once('-')) {
            Some((_, end)) => match end.trim().parse::<u64>() {
                Ok(0) | Err(_) => 0,
                Ok(end) => end + 1,
            },
            None => 0,
        };
        let next = resp
            .header("location")
            .map(|l| resolve_location(self.ep, l))
            .unwrap_or_else(|| location.to_owned());
        Ok((next, have))
    }

    /// The bytes `offset..offset+len` of a blob, streamed from the source (a seek, not a
    /// re-read of what came before). They are not hashed here: the registry checks the whole
    /// blob against the digest the final PUT names and refuses a mismatch.
    fn open_range(
        &self,
        d: &Descriptor,
        offset: u64,
        len: u64,
    ) -> io::Result<Box<dyn Read + Send + '_>> {
        self.source
            .open_range(&d.digest, offset, len)
            .map_err(io::Error::other)
    }

    fn start_upload(&self, uploads: &str) -> Result<String, RegistryError> {
        let resp = self
            .client
            .send(self.ep, self.scope, "POST", uploads, &[], &Body::Empty)?;
        let resp = check(self.ep, "POST", uploads, self.reference.repository(), resp)?;
        if resp.status() != 202 {
            return Err(self.protocol("POST", &format!("status {}", resp.status())));
        }
        resp.header("location")
            .map(str::to_owned)
            .ok_or_else(|| self.protocol("POST", "no Location"))
    }

    fn expect_created(
        &self,
        resp: ureq::Response,
        method: &str,
        url: &str,
    ) -> Result<(), RegistryError> {
        let resp = check(self.ep, method, url, self.reference.repository(), resp)?;
        if resp.status() != 201 {
            return Err(self.protocol(method, &format!("status {}", resp.status())));
        }
        Ok(())
    }

    fn protocol(&self, method: &str, what: &str) -> RegistryError {
        RegistryError::Status {
            registry: self.ep.host.clone(),
            method: method.to_owned(),
            url: self.repo_url("blobs/uploads/"),
            status: 0,
            body: format!("unexpected answer to an upload: {what}"),
        }
    }

    fn put_manifest(
        &self,
        target: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = self.repo_url(&format!("manifests/{target}"));
        let resp = self.client.send(
            self.ep,
            self.scope,
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            &Body::Bytes(bytes),
        )?;
        let resp = check(self.ep, "PUT", &url, &format!("manifest {target}"), resp)?;
        let digest = Digest::of(bytes);
        if let Some(claimed) = resp.header("docker-content-digest")
            && claimed != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                what: format!("pushed manifest {target}"),
                expected: digest,
                actual: claimed.to_owned(),
            });
        }
        (self.opts.progress)(PushEvent::ManifestPushed {
            digest,
            target: target.to_owned(),
        });
        Ok(digest)
    }
}

fn is_status(e: &RegistryError, code: u16) -> bool {
    matches!(e, RegistryError::Status { status, .. } if *status == code)
}

fn retryable(e: &RegistryError) -> bool {
    e.is_transient() || matches!(e, RegistryError::Status { .. })
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
