//! What can be wrong with an image read from or written to a blob store: its blobs, manifests,
//! configs and layers. Resolving, assembling and exporting images report it; loading an archive
//! reports it beside the archive's own errors ([`crate::LoadError::Image`]).

use std::io;

use crate::blob::BlobError;
use crate::digest::Digest;
use crate::export::MAX_INDEX_DEPTH;
use crate::manifest::ParseError;

/// Why an image could not be resolved, assembled or exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("invalid image config {digest}")]
    Config {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    /// `image` names what lists the layers: `manifest sha256:…`, or a docker archive's image.
    #[error("image config {config} lists {diff_ids} diff ids but {image} has {layers} layers")]
    LayerCount {
        image: String,
        config: Digest,
        diff_ids: usize,
        layers: usize,
    },
    /// `layer` is the layer's digest, or its path in a docker archive; `listed_by` what gives
    /// its diff ID (`image config sha256:…`).
    #[error("layer {layer} decompresses to {actual}, but {listed_by} says {expected}")]
    DiffId {
        layer: String,
        listed_by: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("image indexes nest deeper than {MAX_INDEX_DEPTH} levels at {0}")]
    TooDeep(Digest),
    #[error("image {index} has no manifest for platform {wanted}; it has: {available}")]
    NoPlatform {
        index: Digest,
        wanted: String,
        available: String,
    },
    #[error(
        "a docker archive holds one platform per image, but index {0} has {1} images: pick a platform first"
    )]
    MultiPlatform(Digest, usize),
    #[error("blob {digest} is not a layer (media type {media_type:?})")]
    NotALayer { digest: Digest, media_type: String },
    #[error(
        "docker schema 2 manifests cannot describe zstd layer {0}: use OCI media types or gzip"
    )]
    ZstdInDocker(Digest),
    #[error("docker schema 2 manifests have no annotations: drop them or use OCI media types")]
    DockerAnnotations,
    #[error("failed to serialize the image config")]
    SerializeConfig(#[source] serde_json::Error),
    #[error("failed to write {what}")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
}
