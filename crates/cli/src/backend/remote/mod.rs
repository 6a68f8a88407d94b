//! The remote backend (`kiln build --builder ADDR[,ADDR...]`): builds run on `kiln serve`
//! workers over `kiln.v1`. The context goes up incrementally (`walk.rs`, `sync.rs`), the build
//! streams its progress back (`session.rs`), and outputs come down (`fetch.rs`): `--load` into
//! the local store (only the blobs it lacks), `-o` files where they were asked for.
//!
//! With several addresses the worker is chosen by rendezvous hashing of the context and
//! Dockerfile paths, so one project keeps landing on the same worker (whose cache is warm);
//! a worker that is down or full is skipped for the next one in that order.

mod agents;
mod builders;
mod fetch;
mod session;
mod sync;
mod walk;
mod wire;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kiln_engine::{BuildError, BuildRequest, CancellationToken, ProgressSender};
use kiln_frontend::lower::Lowered;
use kiln_image::{
    CheckReport, DiskUsage, Image, Loaded, PruneOptions, PruneReport, PullEvent, PushEvent, Pushed,
    Removed, SaveFormat,
};
use kiln_llb::image::ImageConfig;
use kiln_proto::client::Worker;
use kiln_proto::tls::{Address, ClientTls, ConnectOptions, TlsPaths};

pub use builders::resolve;

use super::{Backend, BuildOutcome, LocalBackend};

/// How to reach the workers, and what to do with a build's image.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub addresses: Vec<Address>,
    pub tls: Option<ClientTls>,
    /// `--load`: put the image into the local store.
    pub load: bool,
    /// The local store's root (for `--load` and the context stat cache).
    pub root: PathBuf,
}

/// Builds on workers.
#[derive(Debug)]
pub struct RemoteBackend {
    options: RemoteOptions,
    local: std::sync::OnceLock<LocalBackend>,
}

impl RemoteBackend {
    pub fn new(options: RemoteOptions) -> RemoteBackend {
        RemoteBackend {
            options,
            local: std::sync::OnceLock::new(),
        }
    }

    fn local(&self) -> anyhow::Result<&LocalBackend> {
        if let Some(l) = self.local.get() {
            return Ok(l);
        }
        let opened = LocalBackend::open(&self.options.root)?;
        Ok(self.local.get_or_init(|| opened))
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            tls: self.options.tls.clone(),
            ..ConnectOptions::default()
        }
    }

    /// Workers in rendezvous order for `key`, skipping those that are down; one that is full
    /// is used only when every reachable one is.
    async fn choose(&self, key: &[u8]) -> anyhow::Result<Worker> {
        let order = builders::rendezvous(&self.options.addresses, key);
        let mut errors = Vec::new();
        let mut full = None;
        for address in order {
            match kiln_proto::client::connect(&address, &self.connect_options(), VERSION).await {
                Ok(worker) => {
                    let busy = worker.info.load.as_ref().is_some_and(|l| {
                        let max = worker.info.limits.as_ref().map_or(1, |l| l.max_builds);
                        l.running_builds + l.queued_builds >= max.max(1)
                    });
                    if !busy {
                        return Ok(worker);
                    }
                    full.get_or_insert(worker);
                }
                Err(e) => errors.push(crate::error::chain_of(&e)),
            }
        }
        match full {
            Some(worker) => Ok(worker),
            None => anyhow::bail!("no builder could be reached: {}", errors.join("; ")),
        }
    }

    fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?)
    }

    /// `kiln builder info`: each worker's answer to Info.
    pub fn info(&self) -> anyhow::Result<Vec<Result<Worker, String>>> {
        Self::runtime()?.block_on(async {
            let mut out = Vec::new();
            for address in &self.options.addresses {
                out.push(
                    kiln_proto::client::connect(address, &self.connect_options(), VERSION)
                        .await
                        .map_err(|e| crate::error::chain_of(&e)),
                );
            }
            Ok(out)
        })
    }

    /// `kiln builder du`: each worker's disk usage.
    pub fn disk_usage_remote(
        &self,
    ) -> anyhow::Result<Vec<(Address, kiln_proto::v1::DiskUsageResponse)>> {
        Self::runtime()?.block_on(async {
            let mut out = Vec::new();
            for address in &self.options.addresses {
                let w =
                    kiln_proto::client::connect(address, &self.connect_options(), VERSION).await?;
                let du = w
                    .client
                    .clone()
                    .disk_usage(kiln_proto::v1::DiskUsageRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{address}: {}", s.message()))?
                    .into_inner();
                out.push((address.clone(), du));
            }
            Ok(out)
        })
    }

    /// `kiln builder prune`: prunes each worker's build cache.
    pub fn prune_remote(
        &self,
        options: &PruneOptions,
    ) -> anyhow::Result<Vec<(Address, kiln_proto::v1::PruneResponse)>> {
        let request = kiln_proto::v1::PruneRequest {
            all: options.all,
            keep_storage: options.keep_storage,
            until_nanos: options.until.map(|d| d.as_nanos() as u64),
        };
        Self::runtime()?.block_on(async {
            let mut out = Vec::new();
            for address in &self.options.addresses {
                let w =
                    kiln_proto::client::connect(address, &self.connect_options(), VERSION).await?;
                let report = w
                    .client
                    .clone()
                    .prune(request)
                    .await
                    .map_err(|s| anyhow::anyhow!("{address}: {}", s.message()))?
                    .into_inner();
                out.push((address.clone(), report));
            }
            Ok(out)
        })
    }

    /// `kiln build attach ID`: follows a build on whichever worker knows it.
    pub fn attach(
        &self,
        build_id: &str,
        progress: ProgressSender,
        cancel: CancellationToken,
    ) -> Result<BuildOutcome, BuildError> {
        let rt = Self::runtime().map_err(|e| worker_error(e.to_string()))?;
        rt.block_on(session::attach(self, build_id, progress, cancel))
    }
}

/// This client's version, as Info reports it to the worker.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn worker_error(message: String) -> BuildError {
    BuildError::Engine(kiln_engine::EngineError::Io {
        what: "build remotely".into(),
        source: std::io::Error::other(message),
    })
}

fn remote_only(what: &str) -> anyhow::Error {
    anyhow::anyhow!("not supported yet: {what} with --builder (it works on the local store)")
}

impl Backend for RemoteBackend {
    fn build(
        &self,
        request: BuildRequest,
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
    ) -> Result<BuildOutcome, BuildError> {
        let rt = Self::runtime().map_err(|e| worker_error(e.to_string()))?;
        rt.block_on(session::build(self, request, progress, cancel))
    }

    fn lower(&self, request: &BuildRequest) -> Result<Lowered, BuildError> {
        // `--print` needs base image configs; the local store has what the client pulled.
        self.local()
            .map_err(|e| worker_error(e.to_string()))?
            .lower(request)
    }

    fn images(&self) -> anyhow::Result<Vec<(String, Image)>> {
        Err(remote_only("listing images"))
    }

    fn image(&self, _: &str) -> anyhow::Result<Image> {
        Err(remote_only("inspecting images"))
    }

    fn tag(&self, _: &str, _: &str) -> anyhow::Result<()> {
        Err(remote_only("tag"))
    }

    fn remove(&self, _: &str, _: bool) -> anyhow::Result<Removed> {
        Err(remote_only("rmi"))
    }

    fn import(
        &self,
        _: &mut dyn Read,
        _: Option<&str>,
        _: ImageConfig,
        _: &str,
    ) -> anyhow::Result<Image> {
        Err(remote_only("import"))
    }

    fn pull_for(
        &self,
        _: &str,
        _: Option<&kiln_llb::Platform>,
        _: &(dyn Fn(PullEvent) + Sync),
    ) -> anyhow::Result<Image> {
        Err(remote_only("pull"))
    }

    fn push(
        &self,
        _: &str,
        _: Option<&str>,
        _: &(dyn Fn(PushEvent) + Sync),
    ) -> anyhow::Result<Pushed> {
        Err(remote_only("push (use `kiln build --push`)"))
    }

    fn save(&self, _: &[String], _: SaveFormat, _: &mut dyn Write) -> anyhow::Result<()> {
        Err(remote_only("save"))
    }

    fn load_archive(&self, _: &mut dyn Read) -> anyhow::Result<Vec<Loaded>> {
        Err(remote_only("load"))
    }

    fn load_dir(&self, _: &Path) -> anyhow::Result<Vec<Loaded>> {
        Err(remote_only("load"))
    }

    fn prune_cache(&self, _: &PruneOptions) -> anyhow::Result<PruneReport> {
        Err(remote_only(
            "this prune (use `kiln builder prune --builder`)",
        ))
    }

    fn disk_usage(&self) -> anyhow::Result<DiskUsage> {
        Err(remote_only(
            "this disk usage (use `kiln builder du --builder`)",
        ))
    }

    fn check(&self, _: bool) -> anyhow::Result<CheckReport> {
        Err(remote_only("system check"))
    }

    fn describe(&self) -> String {
        let list: Vec<String> = self
            .options
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        format!("the builder {}", list.join(","))
    }
}

/// The client's TLS from `--tls-dir` (or `KILN_TLS_DIR`), if any.
pub fn client_tls(dir: Option<&Path>) -> anyhow::Result<Option<ClientTls>> {
    match dir {
        Some(dir) => Ok(Some(ClientTls::load(&TlsPaths::in_dir(dir))?)),
        None => Ok(None),
    }
}
