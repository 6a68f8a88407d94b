//! `kiln serve`: a long-running build worker that speaks `kiln.v1` (`crates/proto`) over one
//! image store, with one engine (one shared solver) for all its clients.
//!
//! The gRPC methods are thin shims: blobs go to and come from the store's content store
//! (`blobs.rs`), a build's context is materialized from there (`contexts.rs`), the request is
//! translated to the engine's (`convert.rs`) and run as a session (`session.rs`) whose events a
//! bounded log keeps for `Attach` (`builds.rs`). `peer.rs` keeps RUN steps away from the API.

#![deny(unsafe_code)]

mod blobs;
mod builds;
mod contexts;
mod convert;
mod extras;
mod peer;
mod server;
mod session;
mod ssh;
mod update;
mod worker;

pub use server::{Config, ServeError, Server};
