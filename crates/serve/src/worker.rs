//! The `kiln.v1` service: one worker over one store and one engine. Each method is a thin shim
//! over the store, the engine or the build registry.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use kiln_engine::Engine;
use kiln_image::ImageStore;
use kiln_proto::negotiate;
use kiln_proto::upload::CHUNK_BYTES;
use kiln_proto::v1::kiln_server::Kiln;
use kiln_proto::v1::*;
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::blobs::Blobs;
use crate::builds::Builds;
use crate::contexts::Contexts;
use crate::server::{Config, ServeError};

/// The largest message either side sends (uploads and downloads are chunked well below it).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

pub(crate) struct Inner {
    pub(crate) id: String,
    pub(crate) images: Arc<ImageStore>,
    pub(crate) engine: Engine,
    pub(crate) blobs: Blobs,
    pub(crate) builds: Arc<Builds>,
    pub(crate) contexts: Arc<Contexts>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) max_builds: usize,
    pub(crate) queued: AtomicU32,
    pub(crate) draining: AtomicBool,
    pub(crate) client_grace: Duration,
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct Worker(pub(crate) Arc<Inner>);

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        what: what.to_string(),
        source,
    }
}

impl Worker {
    pub(crate) fn new(images: Arc<ImageStore>, config: &Config) -> Result<Worker, ServeError> {
        let id = worker_id(&config.root)?;
        let contexts = Contexts::open(&config.root).map_err(io("prepare the context directory"))?;
        let max_builds = config.max_builds.max(1);
        Ok(Worker(Arc::new(Inner {
            id,
            engine: Engine::new(images.clone(), None),
            images,
            blobs: Blobs::default(),
            builds: Arc::new(Builds::default()),
            contexts: Arc::new(contexts),
            slots: Arc::new(Semaphore::new(max_builds)),
            max_builds,
            queued: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            client_grace: config.client_grace,
        })))
    }

    pub(crate) fn id(&self) -> &str {
        &self.0.id
    }

    /// Refuses new builds, waits up to `timeout` for the running ones, cancels the rest and
    /// waits (briefly) for them to stop. Returns how many were cancelled.
    pub(crate) async fn drain(&self, timeout: Duration) -> usize {
        self.0.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.0.builds.running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let running = self.0.builds.running();
        for build in &running {
            tracing::warn!("build {}: cancelled by the worker's shutdown", build.id);
            build.cancel.cancel();
        }
        let cancelled = running.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.0.builds.running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancelled
    }
}

/// A stable id kept under the root, so clients can tell workers apart across restarts.
fn worker_id(root: &std::path::Path) -> Result<String, ServeError> {
    let dir = root.join("remote");
    std::fs::create_dir_all(&dir).map_err(io("create the worker directory"))?;
    let path = dir.join("worker-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    h.update(root.as_os_str().as_encoded_bytes());
    let id = hex::encode(&h.finalize()[..12]);
    let temp = dir.join(format!("worker-id.{}", std::process::id()));
    std::fs::write(&temp, &id).map_err(io("write the worker id"))?;
    std::fs::rename(&temp, &path).map_err(io("write the worker id"))?;
    Ok(id)
}

fn load() -> (u32, u32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |l| (l * 100.0) as u32);
    (cpus, avg)
}

fn disk_free(path: &std::path::Path) -> u64 {
    rustix::fs::statvfs(path)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("this is a bug in kiln: a task failed: {e}")))?
}

fn usage(du: kiln_image::DiskUsage) -> DiskUsageResponse {
    macro_rules! line {
        ($l:expr) => {
            Some(UsageLine {
                count: $l.count,
                bytes: $l.bytes,
                reclaimable: $l.reclaimable,
            })
        };
    }
    DiskUsageResponse {
        images: line!(du.images),
        build_cache: line!(du.build_cache),
        snapshots: line!(du.snapshots),
        blobs: line!(du.blobs),
    }
}

#[tonic::async_trait]
impl Kiln for Worker {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let r = request.get_ref();
        let ours = negotiate::OURS;
        let protocol = negotiate::choose(
            negotiate::Range {
                min: r.min_protocol,
                max: r.max_protocol,
            },
            ours,
        )
        .unwrap_or(0);
        let (cpus, load_average_centi) = load();
        let running = self.0.builds.running().len() as u32;
        let queued = self.0.queued.load(Ordering::SeqCst);
        Ok(Response::new(InfoResponse {
            worker_id: self.0.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            min_protocol: ours.min,
            max_protocol: ours.max,
            protocol,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: kiln_llb::Platform::host().architecture,
                variant: kiln_llb::Platform::host().variant.unwrap_or_default(),
            }),
            limits: Some(Limits {
                max_builds: self.0.max_builds as u32,
                max_message_bytes: MAX_MESSAGE as u64,
                chunk_bytes: CHUNK_BYTES as u64,
            }),
            load: Some(Load {
                running_builds: running.saturating_sub(queued),
                queued_builds: queued,
                cpus,
                load_average_centi,
                disk_free_bytes: disk_free(self.0.images.root()),
            }),
        }))
    }

    async fn find_missing(
        &self,
        request: Request<FindMissingRequest>,
    ) -> Result<Response<FindMissingResponse>, Status> {
        let worker = self.clone();
        let blobs = request.into_inner().blobs;
        let missing = blocking(move || {
            let mut missing = Vec::new();
            for b in &blobs {
                if !worker.0.blobs.present(&worker.0.images, b)? {
                    missing.push(b.digest.clone());
                }
            }
            Ok(missing)
        })
        .await?;
        Ok(Response::new(FindMissingResponse { missing }))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<UploadResponse>, Status> {
        let answer = self
            .0
            .blobs
            .upload(&self.0.images, request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    type BuildStream = Boxed<BuildDown>;

    async fn build(
        &self,
        request: Request<Streaming<BuildUp>>,
    ) -> Result<Response<Self::BuildStream>, Status> {
        if self.0.draining.load(Ordering::SeqCst) {
            return Err(Status::unavailable(format!(
                "worker {} is shutting down",
                self.0.id
            )));
        }
        let stream = crate::session::start(self.clone(), request.into_inner()).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    type AttachStream = Boxed<BuildDown>;

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let r = request.into_inner();
        let build = self.0.builds.get(&r.build_id).ok_or_else(|| {
            Status::not_found(format!(
                "no build {} on worker {} (finished builds are kept for 10 minutes)",
                r.build_id, self.0.id
            ))
        })?;
        Ok(Response::new(Box::pin(build.follow(r.after_seq, false))))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let r = request.into_inner();
        let cancelled = match self.0.builds.get(&r.build_id) {
            Some(build) if !build.is_done() => {
                tracing::info!("build {}: cancelled ({})", build.id, r.reason);
                build.cancel.cancel();
                true
            }
            _ => false,
        };
        Ok(Response::new(CancelResponse { cancelled }))
    }

    type DownloadStream = Boxed<DownloadChunk>;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let stream = self.0.blobs.download(&self.0.images, request.get_ref())?;
        Ok(Response::new(stream))
    }

    async fn disk_usage(
        &self,
        _: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        let images = self.0.images.clone();
        let du = blocking(move || {
            images
                .disk_usage()
                .map_err(|e| Status::internal(crate::convert::chain(&e)))
        })
        .await?;
        Ok(Response::new(usage(du)))
    }

    async fn prune(
        &self,
        request: Request<PruneRequest>,
    ) -> Result<Response<PruneResponse>, Status> {
        let r = request.into_inner();
        let options = kiln_image::PruneOptions {
            all: r.all,
            keep_storage: r.keep_storage,
            until: r.until_nanos.map(Duration::from_nanos),
        };
        let images = self.0.images.clone();
        let report = blocking(move || {
            images
                .prune_cache(&options)
                .map_err(|e| Status::internal(crate::convert::chain(&e)))
        })
        .await?;
        Ok(Response::new(PruneResponse {
            records_removed: report.records_removed.len() as u64,
            snapshots_removed: report.snapshots_removed.len() as u64,
            blobs_removed: report.blobs_removed.len() as u64,
            reclaimed_bytes: report.reclaimed,
            errors: report.errors,
        }))
    }
}
