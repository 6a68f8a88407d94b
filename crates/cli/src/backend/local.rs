//! The in-process backend: the engine and the image store over the local root.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use kiln_engine::{BuildError, BuildRequest, CancellationToken, ProgressSender};
use kiln_frontend::lower::Lowered;
use kiln_image::{
    CheckReport, DiskUsage, Image, ImageStore, Loaded, PruneOptions, PruneReport, PullEvent,
    PushEvent, Pushed, Removed, SaveFormat,
};
use kiln_llb::image::ImageConfig;

use super::{Backend, BuildOutcome};

/// Builds and images in this process, over the store at one root.
#[derive(Debug)]
pub struct LocalBackend {
    images: Arc<ImageStore>,
}

impl LocalBackend {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> anyhow::Result<LocalBackend> {
        let images = ImageStore::open(root)
            .with_context(|| format!("failed to open the store at {}", root.display()))?;
        Ok(LocalBackend {
            images: Arc::new(images),
        })
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }
}

fn registry_client() -> anyhow::Result<kiln_registry::Client> {
    Ok(kiln_registry::Client::from_env()?)
}

impl Backend for LocalBackend {
    fn build(
        &self,
        request: BuildRequest,
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
    ) -> Result<BuildOutcome, BuildError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                BuildError::Engine(kiln_engine::EngineError::Io {
                    what: "start the async runtime".into(),
                    source: e,
                })
            })?;
        let result = runtime.block_on(kiln_engine::build(
            self.images.clone(),
            request,
            progress,
            cancel,
        ))?;
        Ok(BuildOutcome {
            // A multi-platform build's image is its index, as with Docker's containerd store.
            image_id: result.index.unwrap_or_else(|| result.image.id()),
            manifest_digest: result.index.unwrap_or(result.image.manifest_digest),
            names: result.names,
            remote: None,
        })
    }

    fn lower(&self, request: &BuildRequest) -> Result<Lowered, BuildError> {
        kiln_engine::lower_only(&self.images, request)
    }

    fn images(&self) -> anyhow::Result<Vec<(String, Image)>> {
        Ok(self.images.images()?)
    }

    fn image(&self, name: &str) -> anyhow::Result<Image> {
        Ok(self.images.image(name)?)
    }

    fn tag(&self, existing: &str, new_name: &str) -> anyhow::Result<()> {
        Ok(self.images.tag(existing, new_name)?)
    }

    fn remove(&self, name: &str, force: bool) -> anyhow::Result<Removed> {
        Ok(self.images.remove(name, force)?)
    }

    fn import(
        &self,
        input: &mut dyn Read,
        name: Option<&str>,
        config: ImageConfig,
        source: &str,
    ) -> anyhow::Result<Image> {
        Ok(self.images.import_rootfs(input, name, config, source)?)
    }

    fn pull_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> anyhow::Result<Image> {
        Ok(self
            .images
            .pull_for(&registry_client()?, name, platform, progress)?)
    }

    fn platforms(&self, name: &str) -> Vec<kiln_llb::Platform> {
        self.images.platforms_of(name).unwrap_or_default()
    }

    fn image_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
    ) -> anyhow::Result<Image> {
        Ok(self.images.image_for(name, platform)?)
    }

    fn push(
        &self,
        name: &str,
        destination: Option<&str>,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> anyhow::Result<Pushed> {
        Ok(self
            .images
            .push(&registry_client()?, name, destination, progress)?)
    }

    fn save(
        &self,
        names: &[String],
        format: SaveFormat,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let images = kiln_image::export::named_images(&self.images, names)?;
        Ok(kiln_image::export::save(
            &self.images,
            &images,
            format,
            out,
        )?)
    }

    fn load_archive(&self, input: &mut dyn Read) -> anyhow::Result<Vec<Loaded>> {
        Ok(self.images.load_archive(input)?)
    }

    fn load_dir(&self, dir: &Path) -> anyhow::Result<Vec<Loaded>> {
        Ok(self.images.load_dir(dir)?)
    }

    fn prune_cache(&self, options: &PruneOptions) -> anyhow::Result<PruneReport> {
        Ok(self.images.prune_cache(options)?)
    }

    fn disk_usage(&self) -> anyhow::Result<DiskUsage> {
        Ok(self.images.disk_usage()?)
    }

    fn check(&self, repair: bool) -> anyhow::Result<CheckReport> {
        Ok(self.images.check(repair)?)
    }

    fn describe(&self) -> String {
        format!("the store at {}", self.images.root().display())
    }
}
