//! One module per kind of input; each target is `fn(&[u8])` and panics only on a bug.

pub mod archive;
pub mod cache;
pub mod layer;
pub mod oci;
pub mod registry;
pub mod seeds;
pub mod text;

/// A scratch directory for targets that write files, under the system temp dir.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-fuzz-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a scratch directory for fuzzing: {e}"))
}
