//! kiln's run engine: containers from images in the local store, without a daemon.
//!
//! A container is a directory `<root>/containers/<id>/` (config, state, logs, its own overlay
//! upper and work dirs over the image's snapshots, which a store lease keeps from pruning). It
//! runs either attached to the `kiln run` that made it, or under a monitor process (the kiln
//! binary re-executed as `kiln container-monitor ID`) that outlives the CLI, collects logs and
//! the exit status, applies the restart policy and serves published ports. Every other command
//! (`ps`, `logs`, `stop`, `exec`, …) reads the records and acts on the processes directly.
//!
//! Images come from `kiln_image::ImageStore` (lookup, unpacking, users and groups); containers
//! run in `kiln_executor`'s sandbox.

#![deny(unsafe_code)]

pub mod attach;
mod container;
pub mod cp;
mod error;
pub mod events;
mod exec;
pub mod health;
mod logs;
pub(crate) mod net;
pub mod network;
mod options;
pub mod ports;
pub mod prune;
mod pty;
mod store;
mod sys;
pub mod system;
pub mod volume;

pub use container::{
    Change, CommitOptions, CopyDirection, Created, NetIo, Runtime, StartMode, StatsSample,
    UpdateOptions, Usage, parse_signal,
};
pub use error::RuntimeError;
pub use exec::ExecOptions;
pub use logs::LogOptions;
pub use options::{RunOptions, check_size};
pub use store::{
    Container, ContainerConfig, ContainerState, HostSettings, MountConfig, NetworkLink,
    NetworkMode, PortMapping, RestartPolicy, Status,
};
pub use volume::Volume;

/// The sandbox types the run engine's API speaks (process I/O and start failures).
pub use kiln_executor::sandbox::{SandboxError, Stdin, Stream};
