//! The compose model: load, interpolate, merge, validate and render compose files.
#![deny(unsafe_code)]

pub mod diagnostic;
pub mod dotenv;
mod error;
pub mod interpolate;
mod merge;
pub mod model;
pub mod units;
pub mod yaml;

pub use error::ComposeError;
