//! kiln's remote-worker API: the generated `kiln.v1` gRPC messages and services, the context
//! Merkle tree a client sends, and mutual TLS with errors that name their cause.
//!
//! This crate knows the wire and nothing of the engine: `kiln serve` (the worker) and the CLI's
//! remote backend translate between these messages and the engine's types.

#![deny(unsafe_code)]

pub mod client;
pub mod negotiate;
pub mod tls;
pub mod tree;
pub mod upload;

/// The generated `kiln.v1` messages, the `Kiln` client (`v1::kiln_client::KilnClient`) and
/// server (`v1::kiln_server::{Kiln, KilnServer}`). `cargo xtask proto` regenerates it.
#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    include!("gen/kiln.v1.rs");
}

/// gRPC health (`grpc.health.v1`), which Kubernetes readiness probes and `kiln builder` use.
pub use tonic_health as health;

/// The gRPC service name of [`v1`], as the health service reports it.
pub const SERVICE_NAME: &str = v1::kiln_server::SERVICE_NAME;
