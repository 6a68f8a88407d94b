//! The composition root: implements the solver's operation trait for LLB ops over the executor's
//! snapshots and sandboxes, the frontend's image resolver over the local store, and exporters.

#![deny(unsafe_code)]

pub mod build;
pub mod context;
pub mod error;
pub mod export;
pub mod fileop;
pub mod gc;
pub mod images;
pub mod load;
pub mod mounts;
pub mod pull;
pub mod push;
pub mod reference;
pub mod remote_cache;
pub mod value;
pub mod vertex;
pub mod worker;

pub use build::{
    BuildError, BuildRequest, BuildResult, StepLocation, build, build_lowered, lower_only,
};
pub use error::EngineError;
pub use images::{CommitOptions, Image};
pub use worker::Worker;
