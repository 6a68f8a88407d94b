//! File operations done directly on snapshots in Rust (no sandbox): COPY/ADD copies, mkdir,
//! mkfile, rm, symlink, with BuildKit's semantics.

pub mod archive;
pub mod copy;
pub mod glob;
pub mod http;
pub mod merge;
pub mod owner;
pub mod resolve;
