//! The seam between the commands and whatever runs builds and holds images: a [`Backend`].
//!
//! [`LocalBackend`] runs the engine and the image store in this process (the default, no
//! daemon). A remote backend (`--builder`) implements the same trait over the `kiln.v1` gRPC
//! API, so every build and image command works the same against a worker. The run engine is
//! local by nature and stays outside the trait (`Context::runtime`).

mod local;
pub mod remote;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_engine::{BuildError, BuildRequest, CancellationToken, ProgressSender};
use kiln_frontend::lower::Lowered;
use kiln_image::{
    CheckReport, DiskUsage, Image, Loaded, PruneOptions, PruneReport, PullEvent, PushEvent, Pushed,
    Removed, SaveFormat,
};
use kiln_llb::Digest;
use kiln_llb::image::ImageConfig;

pub use local::LocalBackend;

/// What a finished build gives the command: the image's identity and names, and for a remote
/// build what it cost to send and fetch.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image ID (config digest).
    pub image_id: Digest,
    pub manifest_digest: Digest,
    /// The names the image got in the store that holds it (canonical).
    pub names: Vec<String>,
    /// Set when a worker ran the build.
    pub remote: Option<RemoteBuild>,
}

/// What a remote build did besides building.
#[derive(Debug, Clone, Default)]
pub struct RemoteBuild {
    /// The address of the worker that ran it.
    pub builder: String,
    pub worker_id: String,
    pub build_id: String,
    /// Context bytes sent on the wire (compressed), nodes and files.
    pub context_uploaded_bytes: u64,
    /// Layer, config and manifest bytes downloaded for `--load`.
    pub layers_downloaded_bytes: u64,
    /// The image came into the local store (`--load`).
    pub loaded: bool,
    /// The image went somewhere besides the worker's store: pushed, or an `-o` file output.
    pub exported: bool,
}

/// What the build and image commands need, wherever the work happens.
pub trait Backend: Send + Sync {
    /// Runs a build to the end: progress goes to `progress` while it runs; `cancel` stops it.
    fn build(
        &self,
        request: BuildRequest,
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
    ) -> Result<BuildOutcome, BuildError>;

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

    /// Pulls `name` for `platform` (the host's when `None`), as `--platform` asks.
    fn pull_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> anyhow::Result<Image>;

    /// The platforms of the stored image `name` (one per manifest of an index); empty when
    /// they cannot be told.
    fn platforms(&self, _name: &str) -> Vec<kiln_llb::Platform> {
        Vec::new()
    }

    /// The stored image `name` for `platform`: an index's manifest for it.
    fn image_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
    ) -> anyhow::Result<Image> {
        match platform {
            None => self.image(name),
            Some(_) => anyhow::bail!("not supported yet: --platform with --builder"),
        }
    }

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

    /// A backend on the workers a `--builder` value names (addresses, or a builder named in
    /// `~/.config/kiln/config.toml`), with mTLS from `tls_dir` or the named builder's.
    pub fn remote(
        &self,
        builder: &str,
        tls_dir: Option<&Path>,
        load: bool,
    ) -> anyhow::Result<remote::RemoteBackend> {
        let spec = remote::resolve(builder)?;
        let tls_dir = tls_dir.map(Path::to_path_buf).or(spec.tls_dir);
        Ok(remote::RemoteBackend::new(remote::RemoteOptions {
            addresses: spec.addresses,
            tls: remote::client_tls(tls_dir.as_deref())?,
            load,
            root: self.root.clone(),
        }))
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
