//! The composition root: implements the solver's operation trait for LLB ops over the executor's
//! snapshots and sandboxes, the frontend's image resolver over the local store, and exporters.

#![deny(unsafe_code)]

pub mod fileop;
