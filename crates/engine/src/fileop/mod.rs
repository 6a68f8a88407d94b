//! File operations done directly on snapshots in Rust (no sandbox): COPY/ADD copies, mkdir,
//! mkfile, rm, symlink, with BuildKit's semantics. Paths resolve inside the destination root
//! with `kiln_image::rootfs`, and `--chown` names with its passwd and group lookup.

pub(crate) mod archive;
pub(crate) mod copy;
pub(crate) mod glob;
pub(crate) mod http;
pub(crate) mod merge;

#[cfg(test)]
mod copy_tests;
