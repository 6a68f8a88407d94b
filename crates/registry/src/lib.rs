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

pub use client::Client;
pub use config::RegistryConfig;
pub use credentials::{Credential, DockerConfig};
pub use error::RegistryError;
pub use pull::{PullEvent, PullOptions, Pulled, pull};
pub use push::{PushEvent, PushOptions, Pushed, push};
pub use reference::Reference;
