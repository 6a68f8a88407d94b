//! Image formats: OCI and Docker manifests, indexes and configs as deterministic blobs, layer
//! compression, and import/export of OCI layouts, OCI archives and docker archives.
//!
//! - [`manifest`]: descriptors, manifests and indexes, parsed from either family of media types.
//! - [`compress`]: the one-pass layer pipeline (diff ID, blob digest and blob together).
//! - [`image`]: assembly of a config blob and a manifest from an `ImageConfig` and layers.
//! - [`export`] and [`import`]: layouts and archives out and in; import verifies everything
//!   before anything is stored.
//! - [`blob`]: the `BlobSource`/`BlobSink` traits; [`store`] implements them for the cache
//!   crate's content store.

#![deny(unsafe_code)]

pub mod blob;
pub mod compress;
pub mod digest;
mod error;
pub mod export;
pub mod image;
pub mod import;
pub mod manifest;
pub mod media_type;
pub mod names;
pub mod store;

pub use blob::{BlobError, BlobSink, BlobSource, DirBlobs, MemoryBlobs};
pub use compress::{Compression, LayerDescriptor, LayerWriter, compress_layer, compress_layers};
pub use digest::Digest;
pub use error::Error;
pub use export::{
    DockerArchiveOptions, DockerLayers, NamedImage, write_docker_archive, write_oci_archive,
    write_oci_layout,
};
pub use image::{
    AssembledImage, ImageLayer, ImageOptions, ResolvedImage, assemble, assemble_index, resolve,
};
pub use import::{Format, Import, LoadError, LoadOptions, LoadedImage, load_archive, load_dir};
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use media_type::Flavor;
