//! kiln's build graph vocabulary: content-addressed ops, the `Definition` that holds them, and
//! the image config a build produces.
//!
//! No I/O, no async, no workspace dependency: every other crate speaks these types. An op's
//! digest is sha256 over a hand-written canonical encoding (`encode`), so equal ops share cache
//! and a change to any field that affects the result changes the digest. Hints for humans
//! (`OpMetadata`, `SourceMap`) sit beside the graph and never enter a digest.

#![deny(unsafe_code)]

pub mod definition;
pub mod digest;
pub mod encode;
pub mod image;
pub mod op;
pub mod reference;

pub use definition::{
    Definition, DefinitionError, OpMetadata, Position, Range, SourceFile, SourceLocation, SourceMap,
};
pub use digest::{Digest, DigestParseError};
pub use encode::{encode_op, encode_op_without_inputs, op_digest};
pub use op::{
    CacheSharing, ChmodError, CopyAction, Device, ExecOp, FileAction, FileMode, FileOp, GitSource,
    HttpSource, IdOrName, ImageSource, Input, LocalSource, MergeOp, MkdirAction, MkfileAction,
    Mount, MountKind, MountSource, NetworkMode, Op, Owner, Platform, PlatformParseError, RmAction,
    SecretEnv, SecurityMode, SourceOp, SymlinkAction,
};
pub use reference::{Reference, ReferenceError};
