//! The image store: names → manifests → configs in one local root; layers unpacked into
//! snapshots and snapshots committed back into layers; `kiln import`, pull, push, load, save and
//! the build's exporters; and what is read inside an image's root filesystem (symlink-safe
//! paths, users and groups). The build (`kiln_engine`) and the run engine (`kiln_runtime`) both
//! reach images only through [`ImageStore`].

#![deny(unsafe_code)]

pub mod attest;
mod commit;
mod error;
pub mod export;
mod gc;
mod image;
mod import;
mod load;
mod name;
pub mod output;
mod pull;
mod push;
mod receive;
pub mod rootfs;
mod store;
mod unpack;

pub use commit::{CommitOptions, now_rfc3339};
pub use error::{Cause, ImageError};
pub use export::SaveFormat;
pub use gc::Snapshots;
pub use image::{Image, Removed, chain_ids, platform_of_config};
pub use kiln_cache::{CheckReport, DiskUsage, PruneOptions, PruneReport, default_root};
pub use load::Loaded;
pub use name::{familiar, store_name};
pub use output::{Output, OutputKind, OutputParseError};
pub use pull::describe as describe_pull;
pub use push::describe as describe_push;
pub use receive::{Received, ReceivedBlob};
pub use store::{ImageStore, with_private_mounts};

pub use kiln_registry::{PullEvent, PushEvent, Pushed};
