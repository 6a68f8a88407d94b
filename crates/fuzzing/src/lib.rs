//! The bodies of kiln's fuzz targets, one function per untrusted input, and a small mutator.
//!
//! Two drivers run them: the cargo-fuzz binaries in `fuzz/` (libFuzzer, coverage guided, for
//! long runs) and this crate's `tests/replay.rs`, which `cargo test` runs in CI: every file of
//! `fuzz/corpus/<target>/` plus a bounded number of inputs [`mutate::Mutator`] derives from
//! them. A target panics only on a bug (a panic in kiln, or a property of its own that fails),
//! so both drivers report the same crashes.

#![deny(unsafe_code)]

pub mod mutate;
mod targets;

/// One fuzz target: its name (the directory under `fuzz/corpus/`), its body, and whether its
/// inputs are tar streams (the mutator then repairs header checksums, so mutations get past
/// the checksum test).
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub tar: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "dockerfile",
        run: targets::text::dockerfile,
        tar: false,
    },
    Target {
        name: "dockerignore",
        run: targets::text::dockerignore,
        tar: false,
    },
    Target {
        name: "compose",
        run: targets::text::compose,
        tar: false,
    },
    Target {
        name: "layer_apply",
        run: targets::layer::layer_apply,
        tar: true,
    },
    Target {
        name: "oci_manifest",
        run: targets::oci::manifest,
        tar: false,
    },
    Target {
        name: "oci_config",
        run: targets::oci::config,
        tar: false,
    },
    Target {
        name: "image_archive",
        run: targets::archive::image_archive,
        tar: true,
    },
    Target {
        name: "image_dir",
        run: targets::archive::image_dir,
        tar: true,
    },
    Target {
        name: "registry_response",
        run: targets::registry::response,
        tar: false,
    },
    Target {
        name: "cache_document",
        run: targets::cache::document,
        tar: false,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Seed inputs made by code (archives with real digests, tars of each entry kind), which
/// `tests/replay.rs` writes into `fuzz/corpus/` when asked.
pub mod seeds {
    pub use crate::targets::seeds::all;
}
