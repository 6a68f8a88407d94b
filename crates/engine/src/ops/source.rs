//! Source ops: an image (its layers unpacked into snapshots, keyed by their chain ID), a local
//! directory (the build context, read in place and keyed by the build's session), a URL (ADD's
//! download as a one-file snapshot), scratch.

use std::sync::Arc;

use kiln_executor::snapshot::Mounts;
use kiln_image::ImageStore;
use kiln_llb::{Digest, HttpSource, ImageSource, SourceOp};

use super::{Vertex, commit_or_discard};
use crate::error::EngineError;
use crate::fileop::http;
use crate::value::Value;

impl Vertex {
    /// An image source's cache key. An image is its layers: key it by their chain ID, so the
    /// same layers reached through another manifest (a docker-archive round trip, a
    /// re-compressing mirror, a second import of one tar) key every dependent step the same, as
    /// BuildKit's keys do. A name without a digest is looked up now, so a re-tag of the base is
    /// never hidden by the cache.
    pub(super) fn image_key(&self, image: &ImageSource, key: &mut Vec<u8>) {
        let found = match &image.digest {
            Some(digest) => self.env.images.image(&digest.to_string()),
            None => self.env.images.image(&image.reference),
        };
        match found {
            Ok(found) => {
                key.extend_from_slice(b"image-layers\0");
                match kiln_image::chain_ids(&found.config.rootfs.diff_ids).last() {
                    Some(chain) => key.extend_from_slice(chain.hex().as_bytes()),
                    None => key.extend_from_slice(b"none"),
                }
            }
            // Executing will report the lookup's error; the key only has to be unique.
            Err(_) => key.extend_from_slice(self.digest.hex().as_bytes()),
        }
    }

    /// What a local source's key adds to its op's encoding: the build's session, so each build
    /// reads the directory afresh (what is copied from it is keyed by content instead).
    pub(super) fn local_key(&self, key: &mut Vec<u8>) {
        key.extend_from_slice(b"\0session\0");
        key.extend_from_slice(self.env.session.as_bytes());
    }

    /// Resolves a source that needs no download: scratch, an image, a local directory.
    pub(super) fn source(&self, source: &SourceOp) -> Result<Value, EngineError> {
        match source {
            SourceOp::Scratch => Ok(Value::Scratch),
            SourceOp::Image(image) => {
                // The frontend pinned the manifest it resolved; build exactly that one.
                let found = match &image.digest {
                    Some(digest) => self.env.images.image(&digest.to_string()),
                    None => self.env.images.image(&image.reference),
                }?;
                Ok(match self.env.images.unpack(&found)? {
                    Some(id) => Value::Snapshot(id),
                    None => Value::Scratch,
                })
            }
            SourceOp::Local(local) => self
                .env
                .locals
                .iter()
                .find(|(name, _)| *name == local.name)
                .map(|(_, dir)| Value::Local(dir.clone()))
                .ok_or_else(|| {
                    EngineError::Bug(format!("local source {:?} was not provided", local.name))
                }),
            SourceOp::Http(_) => Err(EngineError::Bug(
                "http sources are downloaded in execute".into(),
            )),
            SourceOp::Git(git) => Err(EngineError::NotSupported(format!(
                "git sources ({})",
                git.remote
            ))),
        }
    }
}

/// ADD from a URL, on the blocking pool.
pub(super) async fn download(
    images: Arc<ImageStore>,
    http: &HttpSource,
    digest: Digest,
) -> Result<Value, EngineError> {
    let http = http.clone();
    tokio::task::spawn_blocking(move || download_source(&images, &http, &digest))
        .await
        .map_err(EngineError::task("download"))?
}

/// ADD from a URL: the download becomes a one-file snapshot. The cache key is the op (URL
/// and checksum), so a URL is fetched once per store until `--no-cache`.
fn download_source(
    images: &ImageStore,
    http: &HttpSource,
    digest: &Digest,
) -> Result<Value, EngineError> {
    let active = images
        .snapshots()
        .prepare(&format!("http-{}", digest.hex()), None)?;
    let result = (|| {
        let dir = match active.mounts() {
            Mounts::Bind { source, .. } => source.clone(),
            Mounts::Overlay { upperdir, .. } => upperdir.clone(),
            Mounts::OverlayReadonly { .. } => {
                return Err(EngineError::Bug("prepare gave a read-only mount".into()));
            }
        };
        let name = http
            .filename
            .clone()
            .unwrap_or_else(|| http::filename_from_url(&http.url));
        let checksum = http.checksum.as_ref().map(|d| d.to_string());
        http::download(
            &http.url,
            &dir,
            &name,
            http.chmod.unwrap_or(0o600),
            checksum.as_deref(),
        )?;
        Ok(())
    })();
    commit_or_discard(images, active, result)
}
