//! What a build is asked to do, what it gives back, and why it failed.

use std::path::PathBuf;

use kiln_frontend::diagnostic::Diagnostic;
use kiln_frontend::lower::BuildOptions;
use kiln_image::{CommitOptions, Image, Output};
use kiln_llb::{Digest, NetworkMode, Range};

use crate::error::EngineError;
use crate::extras::BuildExtras;
use crate::mounts::Secrets;
use crate::remote_cache::export::Exported;
use crate::remote_cache::{CacheExport, CacheImport};

/// What to build, and where the result goes.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context directory; `None` for a Dockerfile from stdin with no context.
    pub context: Option<PathBuf>,
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its path as the user named it (for diagnostics and `<name>.dockerignore`).
    pub dockerfile_name: String,
    /// Its path on disk, when it has one.
    pub dockerfile_path: Option<PathBuf>,
    pub options: BuildOptions,
    /// Two or more target platforms (`--platform a,b`): each is lowered as its own graph,
    /// all are solved together and the result is an image index. Empty: one platform,
    /// `options.platform`.
    pub platforms: Vec<kiln_llb::Platform>,
    /// The `-t` names. The store names the image by these and by the `name=` of every
    /// `type=image` output; archives record them when their output gives no `name=`.
    pub tags: Vec<String>,
    /// Where the result goes (`-o`); empty means `type=image`.
    pub outputs: Vec<Output>,
    /// Push every name the store gives the image to its registry (`--push`).
    pub push: bool,
    pub max_parallelism: Option<usize>,
    /// Pull base images even when the store has them (`--pull`).
    pub pull: bool,
    /// How layers are committed, before the outputs' own compression and media types apply.
    pub commit: CommitOptions,
    /// `--secret`s for `RUN --mount=type=secret`.
    pub secrets: Secrets,
    /// `--cache-from`: caches asked after a local miss, in order.
    pub cache_from: Vec<CacheImport>,
    /// `--cache-to`: where to write the build's cache after the image is stored.
    pub cache_to: Vec<CacheExport>,
    /// `--allow security.insecure`: `RUN --security=insecure` may run privileged.
    pub allow_insecure: bool,
    /// `--explain`: report why each step that ran was not taken from the cache
    /// ([`Progress::Explain`](crate::Progress::Explain)). What goes into each step's key is
    /// recorded on every build either way.
    pub explain: bool,
    /// Named contexts, ssh agents, RUN settings, provenance (all empty by default).
    pub extras: BuildExtras,
}

impl BuildRequest {
    /// A request with default options for a context directory and Dockerfile.
    pub fn new(context: Option<PathBuf>, dockerfile: Vec<u8>, dockerfile_name: &str) -> Self {
        BuildRequest {
            context,
            dockerfile,
            dockerfile_name: dockerfile_name.to_string(),
            dockerfile_path: None,
            options: BuildOptions {
                network: NetworkMode::Default,
                ..BuildOptions::default()
            },
            platforms: Vec::new(),
            tags: Vec::new(),
            outputs: Vec::new(),
            push: false,
            max_parallelism: None,
            pull: false,
            commit: CommitOptions::default(),
            secrets: Secrets::default(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            allow_insecure: false,
            explain: false,
            extras: BuildExtras::default(),
        }
    }

    /// The outputs, with `type=image` standing in when none was given.
    pub fn outputs(&self) -> Vec<Output> {
        if self.outputs.is_empty() {
            vec![Output::image()]
        } else {
            self.outputs.clone()
        }
    }

    /// Every name the store gives the image.
    pub fn store_names(&self) -> Vec<String> {
        kiln_image::output::store_names(&self.outputs(), &self.tags)
    }
}

/// A finished build.
#[derive(Debug)]
pub struct BuildResult {
    pub image: Image,
    /// The names the store gave it (canonical).
    pub names: Vec<String>,
    /// What each `--cache-to` wrote (those that failed with `ignore-error=true` are left out).
    pub cache_exports: Vec<Exported>,
    /// What `--push` (or `push=true`) pushed: each name with its manifest digest.
    pub pushed: Vec<(String, Digest)>,
    /// For several platforms: the image index the names point at (`image` is then the first
    /// platform's image).
    pub index: Option<Digest>,
}

/// Why a build failed, with what a front end needs to show it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile (or the options) could not be lowered: a located diagnostic.
    #[error("{diagnostic}")]
    Frontend {
        diagnostic: Box<Diagnostic>,
        source_text: String,
    },
    /// The request itself is not valid (conflicting outputs, a `--push` without a name).
    #[error("{0}")]
    Invalid(String),
    /// A step failed.
    #[error("{name}: {message}")]
    Step {
        vertex: Digest,
        /// The progress name, e.g. `[builder 2/4] RUN make`.
        name: String,
        message: String,
        /// The Dockerfile and the lines of the instruction.
        location: Option<Box<StepLocation>>,
    },
    #[error("build cancelled")]
    Cancelled,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<kiln_image::ImageError> for BuildError {
    fn from(e: kiln_image::ImageError) -> Self {
        BuildError::Engine(EngineError::Image(e))
    }
}

/// Where a failed step came from.
#[derive(Debug, Clone)]
pub struct StepLocation {
    pub file: String,
    pub source_text: String,
    pub ranges: Vec<Range>,
}
