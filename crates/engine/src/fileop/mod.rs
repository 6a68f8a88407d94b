//! What the file ops (`ops/file.rs`) and ADD build on, done directly on snapshots in Rust (no
//! sandbox): the copy engine with BuildKit's semantics (`copy`, `glob`), archive extraction and
//! downloads for ADD (`archive`, `http`), stacked trees for `COPY --link` (`merge`). Paths
//! resolve inside the destination root with `kiln_image::rootfs`.

pub(crate) mod archive;
pub(crate) mod copy;
pub(crate) mod glob;
pub(crate) mod http;
pub(crate) mod merge;

#[cfg(test)]
mod copy_tests;
