//! kiln against BuildKit v0.24 (the reference in `../shared/tools/buildkit`): every runnable case
//! of Buildah's conformance data (`../shared/conformance/buildah-conformance`, read at run time)
//! and our own cases for each difference issue 16 found, built by both and compared as images:
//! the final filesystem (paths, types, modes, owners, symlink targets, contents, xattrs, and
//! mtimes that BuildKit kept from a source; build-time mtimes are not compared) and the config
//! (every `config` field, history, layer count). Skips with `skipped: ...` where the reference,
//! runc or `../shared` is absent.

mod common;

#[path = "conformance_buildkit/behaviours.rs"]
mod behaviours;
#[path = "conformance_buildkit/buildah.rs"]
mod buildah;
#[path = "conformance_buildkit/regressions.rs"]
mod regressions;
