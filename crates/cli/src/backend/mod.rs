//! The seam between the commands and whatever runs builds and holds images: a [`Backend`].
//!
//! [`LocalBackend`] runs the engine and the image store in this process (the default, no
//! daemon). A remote backend (`--builder`) implements the same trait over the `kiln.v1` gRPC
//! API, so every build and image command works the same against a worker. The run engine is
//! local by nature and stays outside the trait (`Context::runtime`).

mod local;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_engine::{BuildError, BuildRequest, BuildResult, CancellationToken, ProgressSender};
use kiln_frontend::lower::Lowered;
use kiln_image::{
    CheckReport, DiskUsage, Image, Loaded, PruneOptions, PruneReport, PullEvent, PushEvent, Pushed,
    Removed, SaveFormat,
};
use kiln_llb::image::ImageConfig;

pub use local::LocalBackend;

/// What the build and image commands need, wherever the work happens.
pub trait Backend: Send + Sync {
    /// Runs a build to the end: progress goes to `progress` while it runs; `cancel` stops it.
    fn build(
        &self,
        request: BuildRequest,
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
    ) -> Result<BuildResult, BuildError>;

    /// Lowers a Dockerfile without running it (`build --print`).
    fn lower(&self, request: &BuildRequest) -> Result<Lowered, BuildError>;

    /// Every named image: (canonical name, image).
    fn images(&self) -> anyhow::Result<Vec<(String, Image)>>;

    /// One image by name, ID or manifest digest.
    fn image(&self, name: &str) -> anyhow::Result<Image>;

    /// Gives `existing`'s image the name `new_name`.
    fn tag(&self, existing: &str, new_name: &str) -> anyhow::Result<()>;

    /// `rmi`: untags a name, or removes an image by ID (`force` when it has several names).
    fn remove(&self, name: &str, force: bool) -> anyhow::Result<Removed>;

    /// `import`: a root filesystem tar as a one-layer image.
    fn import(
        &self,
        input: &mut dyn Read,
        name: Option<&str>,
        config: ImageConfig,
        source: &str,
    ) -> anyhow::Result<Image>;

    fn pull(&self, name: &str, progress: &(dyn Fn(PullEvent) + Sync)) -> anyhow::Result<Image>;

    /// Pushes `name` to `destination` (default: `name` itself).
    fn push(
        &self,
        name: &str,
        destination: Option<&str>,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> anyhow::Result<Pushed>;

    /// Writes `names` as one archive.
    fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write)
    -> anyhow::Result<()>;

    /// Loads an archive (docker or OCI, plain or compressed).
    fn load_archive(&self, input: &mut dyn Read) -> anyhow::Result<Vec<Loaded>>;

    /// Loads an OCI layout directory (or an unpacked docker archive).
    fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<Loaded>>;

    /// `builder prune`.
    fn prune_cache(&self, options: &PruneOptions) -> anyhow::Result<PruneReport>;

    /// What the store holds.
    fn disk_usage(&self) -> anyhow::Result<DiskUsage>;

    /// `system check`.
    fn check(&self, repair: bool) -> anyhow::Result<CheckReport>;

    /// Where this backend keeps its store, for messages.
    fn describe(&self) -> String;
}

/// What every command gets: the store root and, on demand, the backend and the run engine.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    local: std::sync::OnceLock<LocalBackend>,
}

impl Context {
    pub fn new(root: PathBuf) -> Context {
        Context {
            root,
            local: std::sync::OnceLock::new(),
        }
    }

    /// The local store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backend builds and image commands go to.
    pub fn backend(&self) -> anyhow::Result<&dyn Backend> {
        Ok(self.local()?)
    }

    /// The run engine over the local store.
    pub fn runtime(&self) -> anyhow::Result<kiln_runtime::Runtime> {
        Ok(kiln_runtime::Runtime::new(self.local()?.images().clone()))
    }

    fn local(&self) -> anyhow::Result<&LocalBackend> {
        if let Some(local) = self.local.get() {
            return Ok(local);
        }
        let opened = LocalBackend::open(&self.root)?;
        Ok(self.local.get_or_init(|| opened))
    }
}
