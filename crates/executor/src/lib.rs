//! The executor: a Linux sandbox library (spec in, process result out) and, beside it, the
//! overlay snapshotter that turns directories into layers and back.
//!
//! `snapshot` never imports `sandbox` or `sys`, so exporters can use it alone. `sys` holds
//! every line of unsafe code (raw syscalls and the child between clone and exec).

#![deny(unsafe_code)]

pub mod emulation;
pub mod sandbox;
pub mod snapshot;
#[allow(unsafe_code)]
mod sys;
