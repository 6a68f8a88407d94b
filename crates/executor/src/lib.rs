//! The executor: a Linux sandbox library (spec in, process result out) and, beside it, the
//! overlay snapshotter that turns directories into layers and back.
//!
//! `snapshot` never imports `sandbox` or `sys`, so exporters can use it alone.

pub mod sandbox;
pub mod snapshot;
mod sys;
