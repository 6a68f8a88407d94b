//! Sending a context to a worker: `FindMissing` top-down through the tree (one call for an
//! unchanged context), then the missing nodes and files uploaded in parallel, zstd-compressed
//! where it pays. Returns the bytes that went on the wire.

use std::sync::Arc;

use anyhow::Context as _;
use kiln_llb::Digest;
use kiln_proto::tree::Diff;
use kiln_proto::upload::{self, CHUNK_BYTES};
use kiln_proto::v1::kiln_client::KilnClient;
use kiln_proto::v1::{BlobKind, Compression, FindMissingRequest, UploadChunk};
use tonic::transport::Channel;

use super::walk::Walked;

/// Uploads at once.
const PARALLEL: usize = 8;

/// Files smaller than this go uncompressed: zstd's frame costs more than it saves.
const COMPRESS_FROM: u64 = 512;

/// Makes the worker hold the whole tree; returns the bytes sent.
pub async fn sync(client: &KilnClient<Channel>, walked: &Arc<Walked>) -> anyhow::Result<u64> {
    // An unchanged context: one question, and no tree needed when the worker has it.
    let root = walked.summary.root;
    let present = client
        .clone()
        .find_missing(FindMissingRequest {
            blobs: vec![kiln_proto::v1::BlobRef {
                digest: root.to_string(),
                size: 0,
                kind: BlobKind::Tree as i32,
            }],
        })
        .await
        .map_err(|s| anyhow::anyhow!("FindMissing failed: {}", s.message()))?
        .into_inner()
        .missing
        .is_empty();
    if present {
        return Ok(0);
    }
    {
        let walked = walked.clone();
        tokio::task::spawn_blocking(move || walked.full().map(|_| ()))
            .await
            .context("the tree task failed")??;
    }
    let full = walked.full()?;
    let mut diff = Diff::new(&full.tree);
    while !diff.is_done() {
        let missing = client
            .clone()
            .find_missing(FindMissingRequest {
                blobs: diff.query().to_vec(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("FindMissing failed: {}", s.message()))?
            .into_inner()
            .missing;
        diff.answer(&missing)
            .map_err(|e| anyhow::anyhow!("the worker's FindMissing answer: {e}"))?;
    }
    let plan = diff.plan();
    let mut blobs: Vec<(Digest, BlobKind)> =
        plan.nodes.iter().map(|d| (*d, BlobKind::Tree)).collect();
    blobs.extend(plan.files.iter().map(|d| (*d, BlobKind::File)));
    upload_all(client, walked, blobs).await
}

/// Uploads `blobs` (nodes and file contents of `walked`), [`PARALLEL`] at a time.
pub async fn upload_all(
    client: &KilnClient<Channel>,
    walked: &Arc<Walked>,
    blobs: Vec<(Digest, BlobKind)>,
) -> anyhow::Result<u64> {
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for (digest, kind) in blobs {
        let permit = limit.clone().acquire_owned().await?;
        let client = client.clone();
        let walked = walked.clone();
        tasks.spawn(async move {
            let _permit = permit;
            upload_one(client, &walked, digest, kind).await
        });
    }
    let mut sent = 0;
    while let Some(done) = tasks.join_next().await {
        sent += done.context("an upload task failed")??;
    }
    Ok(sent)
}

async fn upload_one(
    mut client: KilnClient<Channel>,
    walked: &Walked,
    digest: Digest,
    kind: BlobKind,
) -> anyhow::Result<u64> {
    let full = walked.full()?;
    let chunks = match kind {
        BlobKind::Tree => {
            let node = full.tree.node(&digest).ok_or_else(|| {
                anyhow::anyhow!("the worker asked for {digest}, not in this context")
            })?;
            upload::chunks(node.bytes(), BlobKind::Tree)
        }
        _ => {
            let path = full
                .paths
                .get(&digest)
                .ok_or_else(|| {
                    anyhow::anyhow!("the worker asked for {digest}, not in this context")
                })?
                .clone();
            let size = full.tree.files().get(&digest).map_or(0, |f| f.size);
            tokio::task::spawn_blocking(move || file_chunks(&path, digest, size))
                .await
                .context("a file upload task failed")??
        }
    };
    let wire: u64 = chunks.iter().map(|c| c.data.len() as u64).sum();
    let answer = client
        .upload(tokio_stream::iter(chunks))
        .await
        .map_err(|s| anyhow::anyhow!("uploading {digest} failed: {}", s.message()))?
        .into_inner();
    Ok(if answer.already_present { 0 } else { wire })
}

/// A file's upload messages: zstd-compressed when that is smaller. The file is read now; if
/// it changed since it was hashed, the worker refuses it (its digest no longer matches) and the
/// build fails naming the file, rather than building from bytes nobody hashed.
fn file_chunks(
    path: &std::path::Path,
    digest: Digest,
    size: u64,
) -> anyhow::Result<Vec<UploadChunk>> {
    let data = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    if data.len() as u64 != size {
        anyhow::bail!(
            "{} changed while the context was being sent; build again",
            path.display()
        );
    }
    let (compression, wire) = if size >= COMPRESS_FROM {
        let packed = zstd::bulk::compress(&data, 3).context("zstd failed")?;
        if packed.len() < data.len() {
            (Compression::Zstd, packed)
        } else {
            (Compression::None, data)
        }
    } else {
        (Compression::None, data)
    };
    let mut chunks: Vec<UploadChunk> = wire
        .chunks(CHUNK_BYTES)
        .map(|c| UploadChunk {
            header: None,
            data: c.to_vec(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(UploadChunk::default());
    }
    chunks[0].header = Some(upload::header(&digest, size, BlobKind::File, compression));
    Ok(chunks)
}
