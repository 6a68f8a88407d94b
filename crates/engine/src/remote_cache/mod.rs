//! Build cache shared through registries and directories (`--cache-to`, `--cache-from`), as
//! BuildKit's registry, local and inline caches are: the results of a build's steps, keyed by the
//! solver's cache keys, exported as layer blobs plus a small document; a build elsewhere imports
//! the document and, where a step's key matches, fetches the layers instead of running the step.
//!
//! - [`format`]: the document and its media types.
//! - [`spec`]: the `type=registry,ref=…` option syntax.
//! - [`export`]: which records a build used, and writing them out.
//! - [`import`]: reading a document, and turning a hit into a snapshot.

pub(crate) mod export;
pub(crate) mod format;
pub(crate) mod import;
pub(crate) mod spec;

pub use import::RemoteCache;
pub use spec::{CacheExport, CacheImport, CacheMode, CacheSpecError};
