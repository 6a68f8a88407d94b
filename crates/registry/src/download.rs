//! Blob downloads: several at once, each streamed through a verifying reader into the sink. A
//! connection that breaks or stalls mid-blob is resumed with a `Range` request from the byte
//! where it stopped (or read again from the start, when the registry ignores `Range`); the
//! digest still covers every byte. A blob that does not match its digest or size is not stored
//! and not retried, and a failure of the sink (a full disk) is not retried either.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_oci::digest::Hasher;
use kiln_oci::{BlobSink, Descriptor, Digest};

use crate::client::{Body, Client, Scope, backoff, check, error_text};
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::pull::{PullEvent, PullOptions};
use crate::reference::Reference;

/// Resumes of one blob at most, even when each one makes progress: a registry that cuts every
/// connection after a few bytes is given up on rather than followed forever.
const MAX_RESUMES: u32 = 64;

/// Downloads `blobs` (duplicates once) with `opts.concurrency` threads; the first failure stops
/// the others after their current blob.
pub(crate) fn fetch_blobs(
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
                    let blob = Blob {
                        client,
                        ep,
                        scope,
                        reference,
                        desc: d,
                        opts,
                    };
                    if let Err(e) = blob.fetch(sink) {
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

/// One blob to download.
struct Blob<'a> {
    client: &'a Client,
    ep: &'a Endpoint,
    scope: &'a Scope,
    reference: &'a Reference,
    desc: &'a Descriptor,
    opts: &'a PullOptions<'a>,
}

impl Blob<'_> {
    fn url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/{}",
            self.ep.base,
            self.reference.repository(),
            self.desc.digest
        )
    }

    fn what(&self) -> String {
        format!("blob {} of {}", self.desc.digest, self.reference)
    }

    fn fetch(&self, sink: &(dyn BlobSink + Sync)) -> Result<(), RegistryError> {
        let d = self.desc;
        if sink.contains(&d.digest)? {
            (self.opts.progress)(PullEvent::BlobExists {
                digest: d.digest,
                size: d.size,
            });
            return Ok(());
        }
        (self.opts.progress)(PullEvent::BlobStarted {
            digest: d.digest,
            size: d.size,
        });
        let mut reader = Verify {
            inner: Resuming {
                blob: self,
                body: None,
                offset: 0,
                failures: 0,
                resumes: 0,
                gave_up: None,
            },
            hasher: Hasher::new(),
            expected: d.digest,
            size: d.size,
            mismatch: None,
        };
        match sink.put(&d.digest, d.size, &mut reader) {
            Ok(()) => {}
            Err(_) if reader.mismatch.is_some() => {
                return Err(RegistryError::DigestMismatch {
                    registry: self.ep.host.clone(),
                    what: format!("blob of {}", self.reference),
                    expected: d.digest,
                    actual: reader.mismatch.unwrap_or_default(),
                });
            }
            // The network side gave up: its error says where and why.
            Err(_) if reader.inner.gave_up.is_some() => {
                return Err(reader
                    .inner
                    .gave_up
                    .take()
                    .expect("checked just above: gave_up is set"));
            }
            // The sink failed while the download was fine (a full disk, a read-only store):
            // downloading again would fail the same way.
            Err(e) => return Err(e.into()),
        }
        (self.opts.progress)(PullEvent::BlobDone {
            digest: d.digest,
            size: d.size,
        });
        Ok(())
    }

    /// GETs the blob from byte `offset` on: the body positioned at `offset`. Transient
    /// failures come back for [`Resuming`] to retry.
    fn request(&self, offset: u64) -> Result<Box<dyn Read + Send>, RegistryError> {
        let url = self.url();
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 {
            &[("Range", &range)]
        } else {
            &[]
        };
        // One try here: `Resuming` counts the failures and backs off.
        let resp = self.client.send_attempts(
            self.ep,
            self.scope,
            "GET",
            &url,
            headers,
            &Body::Empty,
            1,
        )?;
        let status = resp.status();
        if offset > 0 && status == 416 {
            // The registry has fewer bytes than the manifest says.
            return Err(RegistryError::DigestMismatch {
                registry: self.ep.host.clone(),
                what: format!("blob of {}", self.reference),
                expected: self.desc.digest,
                actual: format!(
                    "only {offset} bytes, the manifest says {} bytes",
                    self.desc.size
                ),
            });
        }
        let resp = check(
            self.ep,
            "GET",
            &url,
            &format!("blob {}", self.desc.digest),
            resp,
        )?;
        match status {
            200 => {
                let mut body = resp.into_reader();
                if offset > 0 {
                    // No range support: read past what we have; the digest still checks it all.
                    let skipped = io::copy(&mut (&mut body).take(offset), &mut io::sink())
                        .map_err(|e| self.transport(&url, e))?;
                    if skipped < offset {
                        return Err(self.transport(
                            &url,
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the connection closed while skipping to the resume point",
                            ),
                        ));
                    }
                }
                Ok(body)
            }
            206 if offset > 0 => {
                let start = resp
                    .header("content-range")
                    .and_then(range_start)
                    .unwrap_or(u64::MAX);
                if start != offset {
                    return Err(RegistryError::Status {
                        registry: self.ep.host.clone(),
                        method: "GET".into(),
                        url,
                        status,
                        body: format!(
                            "asked for bytes from {offset}, got Content-Range {:?}",
                            resp.header("content-range").unwrap_or("")
                        ),
                    });
                }
                Ok(resp.into_reader())
            }
            _ => Err(RegistryError::Status {
                registry: self.ep.host.clone(),
                method: "GET".into(),
                url,
                status,
                body: error_text(resp),
            }),
        }
    }

    fn transport(&self, url: &str, e: io::Error) -> RegistryError {
        RegistryError::Transport {
            registry: self.ep.host.clone(),
            url: url.to_owned(),
            source: Box::new(e),
        }
    }
}

/// The start of a `Content-Range: bytes START-END/TOTAL` header.
pub(crate) fn range_start(header: &str) -> Option<u64> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

/// The body of a blob, resumed after a broken or stalled connection; the sink sees one
/// stream. When it gives up, `gave_up` holds the error to report.
struct Resuming<'a> {
    blob: &'a Blob<'a>,
    body: Option<Box<dyn Read + Send>>,
    /// Bytes delivered so far.
    offset: u64,
    /// Failures since the last byte arrived.
    failures: u32,
    resumes: u32,
    gave_up: Option<RegistryError>,
}

impl Resuming<'_> {
    /// Records a failure; `Err` when it is time to give up.
    fn failed(&mut self, cause: RegistryError) -> io::Result<()> {
        self.body = None;
        self.failures += 1;
        self.resumes += 1;
        let attempts = self.blob.client.attempts;
        if self.failures >= attempts || self.resumes > MAX_RESUMES || !cause.is_transient() {
            let message = cause.to_string();
            let size = self.blob.desc.size;
            self.gave_up = Some(if cause.is_transient() {
                RegistryError::GaveUp {
                    registry: self.blob.ep.host.clone(),
                    what: format!(
                        "{} ({} of {size} bytes received)",
                        self.blob.what(),
                        self.offset
                    ),
                    attempts: self.resumes,
                    source: Box::new(cause),
                }
            } else {
                cause
            });
            return Err(io::Error::other(message));
        }
        (self.blob.opts.progress)(PullEvent::BlobRetry {
            digest: self.blob.desc.digest,
            attempt: self.resumes,
            reason: format!(
                "{message}; resuming at byte {}",
                self.offset,
                message = cause
            ),
        });
        backoff(self.failures);
        Ok(())
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let body = match self.body.as_mut() {
                Some(b) => b,
                None => match self.blob.request(self.offset) {
                    Ok(b) => self.body.insert(b),
                    Err(e) => {
                        self.failed(e)?;
                        continue;
                    }
                },
            };
            let url = self.blob.url();
            match body.read(buf) {
                Ok(0) if self.offset < self.blob.desc.size => {
                    // A clean end before the size the manifest gives: a connection closed
                    // early, or a registry with less than promised (the resume finds out).
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the connection ended after {} bytes", self.offset),
                    );
                    self.failed(self.blob.transport(&url, e))?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    if n > 0 {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.failed(self.blob.transport(&url, e))?,
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_range_starts() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/*"), Some(0));
        assert_eq!(range_start("items 1-2/3"), None);
        assert_eq!(range_start("bytes x-2/3"), None);
    }
}
