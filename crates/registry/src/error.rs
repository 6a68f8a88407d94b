//! The registry client's errors: each names the registry and the step that failed.

use kiln_oci::Digest;

/// A cause kept for `source()`: an error of a lower layer, or a message where there is none.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid config file {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: Cause,
    },
    #[error("failed to {what}: {source}")]
    Credentials {
        what: String,
        #[source]
        source: Cause,
    },
    #[error("failed to reach registry {registry} ({url}): {source}")]
    Transport {
        registry: String,
        url: String,
        #[source]
        source: Cause,
    },
    #[error(
        "authentication required by registry {registry}: {reason} (run `kiln login {registry}`)"
    )]
    Unauthorized {
        registry: String,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("registry {registry} denied access to {repository}: {reason}")]
    Denied {
        registry: String,
        repository: String,
        reason: String,
    },
    #[error("{what} not found in registry {registry}")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} answered {method} {url} with {status}: {body}")]
    Status {
        registry: String,
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "digest mismatch for {what} from registry {registry}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: String,
    },
    /// Retries and resumes ran out: `what` names the blob or manifest and how far it got.
    #[error("gave up on {what} at registry {registry} after {attempts} attempts: {source}")]
    GaveUp {
        registry: String,
        what: String,
        attempts: u32,
        #[source]
        source: Cause,
    },
    #[error("invalid manifest from registry {registry}: {source}")]
    Manifest {
        registry: String,
        #[source]
        source: Cause,
    },
    #[error("no manifest for platform {platform} in {reference}")]
    NoPlatform { reference: String, platform: String },
    #[error(transparent)]
    Blob(#[from] kiln_oci::BlobError),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Worth another attempt: the network or the server had a moment, the request was fine.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
