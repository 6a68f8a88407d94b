//! Blobs in and out of the worker's content store: `FindMissing` (with context tree nodes
//! counted present only once their whole subtree is), `Upload` verified on write with
//! concurrent uploads of one digest collapsed into one writer, and resumable `Download` of
//! store blobs and of a build's artifacts (`-o` outputs, kept as files until the client is done).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kiln_image::ImageStore;
use kiln_llb::Digest;
use kiln_proto::tree::{self, Source};
use kiln_proto::upload::{CHUNK_BYTES, Target, UploadError, Verifier};
use kiln_proto::v1::{
    BlobKind, BlobRef, DownloadChunk, DownloadRequest, UploadChunk, UploadResponse,
};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

/// The content store as the context tree's blob source.
pub(crate) struct StoreSource<'a>(pub &'a ImageStore);

impl Source for StoreSource<'_> {
    fn contains(&self, digest: &Digest) -> std::io::Result<bool> {
        Ok(self.0.blobs().exists(digest))
    }

    fn read(&self, digest: &Digest) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.0.blobs().path(digest)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, digest: &Digest) -> std::io::Result<Option<Box<dyn Read + '_>>> {
        match std::fs::File::open(self.0.blobs().path(digest)) {
            Ok(f) => Ok(Some(Box::new(std::io::BufReader::with_capacity(
                256 << 10,
                f,
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A download's chunks.
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Result<DownloadChunk, Status>> + Send>>;

/// The worker's blob bookkeeping.
#[derive(Default)]
pub(crate) struct Blobs {
    /// Digests being uploaded right now: a second upload of one waits for the first.
    uploading: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Tree nodes whose whole subtree the store was seen to hold.
    complete: Mutex<HashSet<Digest>>,
    /// Artifacts of finished builds, by digest, until their client is done with them.
    artifacts: Mutex<HashMap<Digest, PathBuf>>,
}

pub(crate) fn parse_digest(s: &str, field: &str) -> Result<Digest, Status> {
    s.parse()
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("failed to {what}: {e}"))
}

impl Blobs {
    /// Whether the store holds `blob` (for a tree node: the node and all below it).
    pub(crate) fn present(&self, images: &ImageStore, blob: &BlobRef) -> Result<bool, Status> {
        let digest = parse_digest(&blob.digest, "blobs.digest")?;
        match BlobKind::try_from(blob.kind) {
            Ok(BlobKind::File | BlobKind::Blob) => Ok(images.blobs().exists(&digest)),
            Ok(BlobKind::Tree) => {
                if self.is_complete(images, &digest) {
                    return Ok(true);
                }
                let missing = tree::missing_under(&digest, &StoreSource(images))
                    .map_err(|e| Status::invalid_argument(format!("tree {digest}: {e}")))?;
                if missing.is_empty() {
                    self.complete
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(digest);
                }
                Ok(missing.is_empty())
            }
            _ => Err(Status::invalid_argument(format!(
                "blobs.kind: unknown value {} for {digest}",
                blob.kind
            ))),
        }
    }

    /// A node remembered complete counts only while its own blob is still there (a prune may
    /// have removed it; `missing_under` then finds the rest).
    pub(crate) fn is_complete(&self, images: &ImageStore, digest: &Digest) -> bool {
        let known = self
            .complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest);
        known && images.blobs().exists(digest)
    }

    pub(crate) fn mark_complete(&self, digest: Digest) {
        self.complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest);
    }

    /// One upload: verified while written; a digest the store has (or gets from a concurrent
    /// upload while this one waits) is answered `already_present`.
    pub(crate) async fn upload(
        &self,
        images: &ImageStore,
        mut stream: Streaming<UploadChunk>,
    ) -> Result<UploadResponse, Status> {
        let first = stream.message().await?.ok_or(UploadError::NoHeader)?;
        let header = first.header.as_ref().ok_or(UploadError::NoHeader)?;
        let target = Target::from_header(header)?;
        let already = UploadResponse {
            digest: target.digest.to_string(),
            received_bytes: 0,
            already_present: true,
        };
        if images.blobs().exists(&target.digest) {
            return Ok(already);
        }
        let gate = self
            .uploading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.digest)
            .or_default()
            .clone();
        let _writing = gate.lock().await;
        let result = if images.blobs().exists(&target.digest) {
            Ok(already)
        } else {
            write_upload(images, &target, first.data, &mut stream).await
        };
        let mut uploading = self.uploading.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&gate) <= 2 {
            uploading.remove(&target.digest);
        }
        result
    }

    pub(crate) fn add_artifact(&self, digest: Digest, path: PathBuf) {
        self.artifacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, path);
    }

    pub(crate) fn remove_artifact(&self, digest: &Digest) {
        self.artifacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
    }

    /// A blob (or artifact) from `offset`, in chunks, read on a blocking thread.
    pub(crate) fn download(
        &self,
        images: &ImageStore,
        request: &DownloadRequest,
    ) -> Result<Chunks, Status> {
        let digest = parse_digest(&request.digest, "digest")?;
        let path = self
            .artifacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned()
            .unwrap_or_else(|| images.blobs().path(&digest));
        let mut file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Status::not_found(format!("blob {digest} is not in the worker's store"))
            }
            _ => internal(&format!("open {}", path.display()), e),
        })?;
        let size = file
            .metadata()
            .map_err(|e| internal("stat a blob", e))?
            .len();
        if request.offset > size {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end of {digest} ({size} bytes)",
                request.offset
            )));
        }
        file.seek(SeekFrom::Start(request.offset))
            .map_err(|e| internal("seek in a blob", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut offset = request.offset;
        tokio::task::spawn_blocking(move || {
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(internal("read a blob", e)));
                        return;
                    }
                };
                if n == 0 && !first {
                    return;
                }
                buf.truncate(n);
                let chunk = DownloadChunk {
                    offset,
                    data: buf,
                    size: if first { size } else { 0 },
                };
                first = false;
                offset += n as u64;
                if tx.blocking_send(Ok(chunk)).is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

async fn write_upload(
    images: &ImageStore,
    target: &Target,
    first: Vec<u8>,
    stream: &mut Streaming<UploadChunk>,
) -> Result<UploadResponse, Status> {
    let writer = images
        .blobs()
        .writer(Some(target.digest))
        .map_err(|e| internal("start a blob", e))?
        .expect_size(target.size);
    let mut verifier = Verifier::new(target, writer)?;
    let mut received = first.len() as u64;
    tokio::task::block_in_place(|| verifier.write(&first))?;
    while let Some(chunk) = stream.message().await? {
        if chunk.header.is_some() {
            return Err(UploadError::SecondHeader.into());
        }
        received += chunk.data.len() as u64;
        tokio::task::block_in_place(|| verifier.write(&chunk.data))?;
    }
    let writer = verifier.finish()?;
    tokio::task::block_in_place(|| writer.commit()).map_err(|e| internal("store a blob", e))?;
    Ok(UploadResponse {
        digest: target.digest.to_string(),
        received_bytes: received,
        already_present: false,
    })
}
