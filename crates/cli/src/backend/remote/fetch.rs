//! What comes back from a remote build: `-o` outputs downloaded (and unpacked where they name
//! a directory), and with `--load` the image's blobs that the local store lacks, then the image
//! named locally. Downloads resume from where a broken one stopped.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use kiln_engine::{BuildRequest, Progress};
use kiln_image::{OutputKind, ReceivedBlob};
use kiln_llb::Digest;
use kiln_proto::client::Worker;
use kiln_proto::v1::{self as pb, DownloadRequest};

use super::RemoteBackend;
use crate::backend::RemoteBuild;

/// Attempts per blob before a download is given up.
const ATTEMPTS: usize = 3;

/// Writes blob `digest` from the worker into `out`; returns the bytes received.
pub async fn download(worker: &Worker, digest: &str, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut offset = 0u64;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let stream = worker
            .client
            .clone()
            .download(DownloadRequest {
                digest: digest.to_string(),
                offset,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                anyhow::bail!("{}", s.message())
            }
            Err(s) => {
                last = Some(s.message().to_string());
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    if chunk.offset != offset {
                        anyhow::bail!(
                            "the worker sent {digest} from byte {} when {offset} was next",
                            chunk.offset
                        );
                    }
                    out.write_all(&chunk.data)
                        .with_context(|| format!("failed to write {digest}"))?;
                    offset += chunk.data.len() as u64;
                }
                Ok(None) => return Ok(offset),
                Err(s) => {
                    last = Some(s.message().to_string());
                    break;
                }
            }
        }
    }
    anyhow::bail!(
        "downloading {digest} failed {ATTEMPTS} times: {}",
        last.unwrap_or_default()
    )
}

/// Fetches the outputs the request asked for; returns the image's identity and names.
pub(super) async fn finish(
    backend: &RemoteBackend,
    worker: &Worker,
    request: &BuildRequest,
    result: &pb::BuildResult,
    remote: &mut RemoteBuild,
    report: &dyn Fn(Progress),
) -> anyhow::Result<(Digest, Digest, Vec<String>)> {
    let image = result
        .image
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the result has no image"))?;
    let config: Digest = image.config_digest.parse()?;
    let manifest: Digest = image.manifest_digest.parse()?;
    for artifact in &result.artifacts {
        let output = request
            .outputs
            .get(artifact.output as usize)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "an artifact for output {} that was not asked for",
                    artifact.output
                )
            })?;
        let dest = output
            .dest
            .clone()
            .ok_or_else(|| anyhow::anyhow!("output {} has no dest", artifact.output))?;
        place(worker, artifact, output.kind, output.tar, &dest).await?;
        if dest != Path::new("-") {
            report(Progress::Info(format!(
                "exporting to {} done",
                dest.display()
            )));
        }
        remote.exported = true;
    }
    for p in &result.pushed {
        report(Progress::Info(format!(
            "pushed {} {} (from the builder)",
            p.name, p.digest
        )));
        remote.exported = true;
    }
    for c in &result.cache_exports {
        report(Progress::Info(format!(
            "exporting cache to {}: {} records, {} layers done",
            c.destination, c.records, c.layers
        )));
    }
    let mut names = image.names.clone();
    if backend.options.load {
        let local = backend.local()?.images().clone();
        let blobs: Vec<ReceivedBlob> = image
            .blobs
            .iter()
            .skip(1)
            .map(|d| {
                Ok(ReceivedBlob {
                    digest: d.digest.parse()?,
                    size: d.size,
                    media_type: d.media_type.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let first = image
            .blobs
            .first()
            .ok_or_else(|| anyhow::anyhow!("the result lists no manifest"))?;
        let manifest_blob = ReceivedBlob {
            digest: first.digest.parse()?,
            size: first.size,
            media_type: first.media_type.clone(),
        };
        let tags = request.store_names();
        let handle = tokio::runtime::Handle::current();
        let worker = worker.clone();
        let received = tokio::task::spawn_blocking(move || {
            local.receive_image(&manifest_blob, &config, &blobs, &tags, &mut |blob, out| {
                handle
                    .block_on(download(&worker, &blob.digest.to_string(), out))
                    .map(|_| ())
                    .map_err(|e| crate::error::chain(&e))
            })
        })
        .await
        .context("the load task failed")??;
        remote.layers_downloaded_bytes = received.fetched_bytes;
        remote.loaded = true;
        report(Progress::Info(format!(
            "loading the image into the local store: {} downloaded",
            kiln_runtime::system::human_size(received.fetched_bytes)
        )));
        names = received.names;
    }
    Ok((config, manifest, names))
}

/// Downloads one artifact and puts it where its output says.
async fn place(
    worker: &Worker,
    artifact: &pb::Artifact,
    kind: OutputKind,
    tar: bool,
    dest: &Path,
) -> anyhow::Result<()> {
    // A directory output arrives as a tar of it: local always, oci with tar=false.
    let unpack = kind == OutputKind::Local || (kind == OutputKind::Oci && !tar);
    if dest == Path::new("-") {
        let mut out = std::io::stdout().lock();
        download(worker, &artifact.digest, &mut out).await?;
        out.flush()?;
        return Ok(());
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("failed to create {}", parent.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(&parent)
        .with_context(|| format!("failed to create a file in {}", parent.display()))?;
    download(worker, &artifact.digest, temp.as_file_mut()).await?;
    if unpack {
        std::fs::create_dir_all(dest)
            .with_context(|| format!("failed to create {}", dest.display()))?;
        let file = temp.reopen()?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
        archive
            .unpack(dest)
            .with_context(|| format!("failed to unpack the output into {}", dest.display()))?;
    } else {
        temp.persist(dest)
            .with_context(|| format!("failed to write {}", dest.display()))?;
    }
    Ok(())
}
