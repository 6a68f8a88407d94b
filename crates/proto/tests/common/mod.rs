//! A tiny reference worker for tests: enough of `kiln.v1` over a real connection to prove the
//! generated API, the listener and the connector work (Info, FindMissing, Upload with
//! verification, resumable Download, health). The real worker is `kiln serve`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kiln_llb::Digest;
use kiln_proto::tls::{self, Address, FailedHandshake, Listener, ServerOptions, ServerTls};
use kiln_proto::upload::{CHUNK_BYTES, Target, UploadError, Verifier};
use kiln_proto::v1::kiln_server::{Kiln, KilnServer};
use kiln_proto::v1::*;
use kiln_proto::{negotiate, tls::PeerInfo};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

type Blobs = Arc<Mutex<HashMap<Digest, Vec<u8>>>>;

#[derive(Default, Clone)]
pub struct RefWorker {
    pub blobs: Blobs,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn not_supported(what: &str) -> Status {
    Status::unimplemented(format!(
        "not supported yet: {what} in the reference test worker"
    ))
}

#[tonic::async_trait]
impl Kiln for RefWorker {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let r = request.get_ref();
        let client = negotiate::Range {
            min: r.min_protocol,
            max: r.max_protocol,
        };
        let ours = negotiate::OURS;
        // A real worker answers with protocol 0 and lets the client explain; this one too.
        let protocol = negotiate::choose(client, ours).unwrap_or(0);
        let peer = request.extensions().get::<PeerInfo>().cloned();
        Ok(Response::new(InfoResponse {
            worker_id: format!(
                "reference (client cert: {})",
                peer.is_some_and(|p| p.client_cert.is_some())
            ),
            version: "test".into(),
            min_protocol: ours.min,
            max_protocol: ours.max,
            protocol,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: String::new(),
            }),
            limits: Some(Limits {
                max_builds: 1,
                max_message_bytes: 4 << 20,
                chunk_bytes: CHUNK_BYTES as u64,
            }),
            load: Some(Load::default()),
        }))
    }

    async fn find_missing(
        &self,
        request: Request<FindMissingRequest>,
    ) -> Result<Response<FindMissingResponse>, Status> {
        let blobs = self.blobs.lock().unwrap();
        let mut missing = Vec::new();
        for b in &request.get_ref().blobs {
            let d: Digest = b
                .digest
                .parse()
                .map_err(|e| Status::invalid_argument(format!("{e}")))?;
            if !blobs.contains_key(&d) {
                missing.push(b.digest.clone());
            }
        }
        Ok(Response::new(FindMissingResponse { missing }))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<UploadResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or(UploadError::NoHeader)?;
        let header = first.header.as_ref().ok_or(UploadError::NoHeader)?;
        let target = Target::from_header(header)?;
        let mut verifier = Verifier::new(&target, Vec::new())?;
        let mut received = first.data.len() as u64;
        verifier.write(&first.data)?;
        while let Some(chunk) = stream.message().await? {
            if chunk.header.is_some() {
                return Err(UploadError::SecondHeader.into());
            }
            received += chunk.data.len() as u64;
            verifier.write(&chunk.data)?;
        }
        let bytes = verifier.finish()?;
        let already = self
            .blobs
            .lock()
            .unwrap()
            .insert(target.digest, bytes)
            .is_some();
        Ok(Response::new(UploadResponse {
            digest: target.digest.to_string(),
            received_bytes: received,
            already_present: already,
        }))
    }

    type BuildStream = Boxed<BuildDown>;

    async fn build(
        &self,
        _: Request<Streaming<BuildUp>>,
    ) -> Result<Response<Self::BuildStream>, Status> {
        Err(not_supported("builds"))
    }

    type AttachStream = Boxed<BuildDown>;

    async fn attach(
        &self,
        _: Request<AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Err(not_supported("attach"))
    }

    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<CancelResponse>, Status> {
        Err(not_supported("cancel"))
    }

    type DownloadStream = Boxed<DownloadChunk>;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let r = request.into_inner();
        let d: Digest = r
            .digest
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let blob = self
            .blobs
            .lock()
            .unwrap()
            .get(&d)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("blob {d} is not in the store")))?;
        if r.offset > blob.len() as u64 {
            return Err(Status::out_of_range(format!(
                "offset {} is past the end of {d} ({} bytes)",
                r.offset,
                blob.len()
            )));
        }
        let size = blob.len() as u64;
        let mut chunks = Vec::new();
        let mut offset = r.offset as usize;
        // Small chunks, so a test can stop in the middle.
        for piece in blob[offset..].chunks(1000) {
            chunks.push(Ok(DownloadChunk {
                offset: offset as u64,
                data: piece.to_vec(),
                size: if chunks.is_empty() { size } else { 0 },
            }));
            offset += piece.len();
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn disk_usage(
        &self,
        _: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        Err(not_supported("disk usage"))
    }

    async fn prune(&self, _: Request<PruneRequest>) -> Result<Response<PruneResponse>, Status> {
        Err(not_supported("prune"))
    }
}

/// A running reference worker on a loopback port.
pub struct Running {
    pub address: Address,
    pub worker: RefWorker,
    pub failures: Arc<Mutex<Vec<FailedHandshake>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn failures(&self) -> Vec<FailedHandshake> {
        self.failures.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the reference worker with the Kiln and health services on 127.0.0.1:0.
pub async fn start(tls: Option<ServerTls>) -> Running {
    start_on(&"tcp://127.0.0.1:0".parse().unwrap(), tls).await
}

/// Starts the reference worker on `address` (a loopback port or a unix socket of the test's).
pub async fn start_on(address: &Address, tls: Option<ServerTls>) -> Running {
    let listener = Listener::bind(address).await.expect("bind");
    let address = listener.local_address().unwrap();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let incoming = tls::incoming(
        listener,
        ServerOptions {
            tls,
            ..ServerOptions::default()
        },
        move |f| sink.lock().unwrap().push(f),
    );
    let worker = RefWorker::default();
    let (health, health_service) = kiln_proto::health::server::health_reporter();
    health.set_serving::<KilnServer<RefWorker>>().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let service = KilnServer::new(worker.clone());
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
    });
    Running {
        address,
        worker,
        failures,
        shutdown: Some(tx),
        task: Some(task),
    }
}
