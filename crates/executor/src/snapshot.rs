//! containerd-style overlay snapshots, layer diff and apply.
//!
//! This module never imports the sandbox code (`crate::sandbox`, `crate::sys`), so exporters and
//! image loaders can use it alone.

pub mod overlay;
