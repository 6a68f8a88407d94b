//! A registry client for kiln: references, the registry config file, docker credentials, token
//! and basic auth, and pull/push of images over the OCI distribution API.
//!
//! - [`reference`]: `busybox` → `docker.io/library/busybox:latest`, tags and digests.
//! - [`config`]: kiln's config file (`insecure`, `mirrors` per registry).
//! - [`credentials`]: `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers`), read and
//!   written in Docker's format.
//! - [`client`]: the HTTP transport with auth challenges, a token cache and retries.
//! - [`pull`] and [`push`]: whole images between a registry and any `BlobSource`/`BlobSink`.
//!
//! The crate is blocking: transfers run on plain threads, which suits a CLI that otherwise
//! waits, and keeps the HTTP stack small (ureq over rustls).

#![deny(unsafe_code)]

pub mod client;
pub mod config;
pub mod credentials;
mod download;
pub mod error;
pub mod pull;
pub mod push;
pub mod reference;

/// The parsers of registry answers, for the fuzz targets (`crates/fuzzing`, `fuzz/`): not part
/// of the API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::config::Endpoint;

    /// A token service's answer → the token, or why it is refused.
    pub fn parse_token(body: &[u8]) -> Result<String, String> {
        crate::client::parse_token(body).map_err(|(reason, _)| reason.to_owned())
    }

    /// An error body → the text kiln shows.
    pub fn error_text(body: &[u8]) -> String {
        crate::client::error_text_of(body)
    }

    /// A `WWW-Authenticate` header → `Some((is_bearer, realm, service))` when understood.
    pub fn parse_challenge(header: &str) -> Option<(bool, String, Option<String>)> {
        crate::client::fuzz_challenge(header)
    }

    /// The start of a `Content-Range` header.
    pub fn range_start(header: &str) -> Option<u64> {
        crate::download::range_start(header)
    }

    /// A `Location` header resolved against `http://registry.test:5000`.
    pub fn resolve_location(location: &str) -> String {
        let ep = Endpoint {
            base: "http://registry.test:5000".into(),
            host: "registry.test:5000".into(),
            mirror: false,
        };
        crate::client::resolve_location(&ep, location)
    }
}

pub use client::Client;
pub use config::RegistryConfig;
pub use credentials::{Credential, DockerConfig};
pub use error::RegistryError;
pub use pull::{PullEvent, PullOptions, Pulled, pull};
pub use push::{PushEvent, PushOptions, Pushed, push};
pub use reference::Reference;
