//! Source ops: an image (its layers unpacked into snapshots, keyed by their chain ID), a local
//! directory (the build context, read in place and keyed by the build's session), a URL (ADD's
//! download as a one-file snapshot), a git checkout (keyed by the commit its ref resolved to),
//! scratch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_executor::snapshot::Mounts;
use kiln_image::ImageStore;
use kiln_llb::{Digest, GitSource, HttpSource, ImageSource, SourceOp};

use super::{Vertex, commit_or_discard};
use crate::error::EngineError;
use crate::fileop::http;
use crate::git;
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
            SourceOp::Git(_) => Err(EngineError::Bug(
                "git sources are checked out in execute".into(),
            )),
        }
    }

    /// A git source's cache key: the commit its ref resolved to for this build (not the ref's
    /// name), the subdirectory and whether `.git` is kept. The remote is part of it: the same
    /// commit id from two repositories is taken for two sources.
    pub(super) fn git_key(&self, git: &GitSource, key: &mut Vec<u8>) {
        key.extend_from_slice(b"git\0");
        key.extend_from_slice(git.remote.as_bytes());
        key.push(0);
        match self.env.git_commits.get(&self.digest) {
            Some(commit) => key.extend_from_slice(commit.as_bytes()),
            // Executing will report why the ref did not resolve; the key only has to be unique.
            None => key.extend_from_slice(self.digest.hex().as_bytes()),
        }
        key.push(0);
        key.extend_from_slice(git.subdir.as_deref().unwrap_or("").as_bytes());
        key.push(0);
        key.push(u8::from(git.keep_git_dir));
    }
}

/// Resolves every git source of a build to the commit its ref points at now (before the
/// solve, so cache keys hold commits).
pub(crate) fn resolve_git_sources(
    definition: &kiln_llb::Definition,
) -> Result<BTreeMap<Digest, String>, (Digest, EngineError)> {
    let mut out = BTreeMap::new();
    for (digest, op) in definition.topological() {
        if let kiln_llb::Op::Source(SourceOp::Git(git)) = op {
            let commit =
                git::resolve(&git.remote, git.reference.as_deref()).map_err(|e| (digest, e))?;
            if let Some(expected) = &git.checksum
                && !commit.starts_with(&expected.to_ascii_lowercase())
            {
                return Err((
                    digest,
                    EngineError::Git(format!(
                        "{}#{}: expected commit {expected}, got {commit}",
                        git.remote,
                        git.reference.as_deref().unwrap_or("HEAD")
                    )),
                ));
            }
            out.insert(digest, commit);
        }
    }
    Ok(out)
}

/// ADD from a git repository: the checkout becomes a snapshot, on the blocking pool.
pub(super) async fn git_checkout(
    images: Arc<ImageStore>,
    git: &GitSource,
    commit: Option<String>,
    digest: Digest,
) -> Result<Value, EngineError> {
    let git = git.clone();
    tokio::task::spawn_blocking(move || {
        let commit = match commit {
            Some(c) => c,
            None => git::resolve(&git.remote, git.reference.as_deref())?,
        };
        let active = images
            .snapshots()
            .prepare(&format!("git-{}", digest.hex()), None)?;
        let result = (|| {
            let dir = snapshot_dir(&active)?;
            let scratch = images.tempdir("git-")?;
            git::checkout(
                &git::Checkout {
                    remote: &git.remote,
                    reference: git.reference.as_deref(),
                    commit: &commit,
                    subdir: git.subdir.as_deref(),
                    keep_git_dir: git.keep_git_dir,
                },
                &dir,
                scratch.path(),
            )
        })();
        commit_or_discard(&images, active, result)
    })
    .await
    .map_err(EngineError::task("git checkout"))?
}

/// The writable directory of a snapshot prepared without a parent.
fn snapshot_dir(active: &kiln_executor::snapshot::ActiveSnapshot) -> Result<PathBuf, EngineError> {
    match active.mounts() {
        Mounts::Bind { source, .. } => Ok(source.clone()),
        Mounts::Overlay { upperdir, .. } => Ok(upperdir.clone()),
        Mounts::OverlayReadonly { .. } => {
            Err(EngineError::Bug("prepare gave a read-only mount".into()))
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
        let dir = snapshot_dir(&active)?;
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
