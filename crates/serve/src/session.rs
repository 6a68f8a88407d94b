//! One `Build` stream: the request; the context made complete (asking the client for the blobs
//! the store lacks) and materialized; the secrets asked for and kept in memory; a slot (queued
//! while `--max-builds` are running); the engine's build with its progress forwarded; and one
//! result or failure. The client's stream carries its answers and `cancel`; when it ends, the
//! build's artifacts are dropped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_engine::{BuildResult, SecretBytes, SecretSource};
use kiln_llb::Digest;
use kiln_proto::tree;
use kiln_proto::v1 as pb;
use pb::build_down::Msg;
use pb::build_up;
use tokio::sync::oneshot;
use tonic::{Status, Streaming};

use crate::blobs::{StoreSource, parse_digest};
use crate::builds::Build;
use crate::convert::{self, Refusal};
use crate::ssh::Forward;
use crate::worker::Worker;

/// Rounds of `NeedBlobs` before the context is declared impossible to complete (each round
/// reveals at least one more directory level).
const MAX_ROUNDS: usize = tree::MAX_DEPTH + 2;

/// How long a client may take to answer a request of the worker.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Answers the client owes, by request id.
#[derive(Default)]
struct Pending {
    blobs: HashMap<u64, oneshot::Sender<pb::BlobsSent>>,
    secrets: HashMap<u64, oneshot::Sender<pb::SecretValue>>,
}

struct Session {
    worker: Worker,
    build: Arc<Build>,
    pending: Arc<Mutex<Pending>>,
    /// The client's ssh agents, relayed over the stream.
    forward: Forward,
    next_request: std::sync::atomic::AtomicU64,
    /// Fires when the client's stream ends (the client is done, or gone).
    client_done: tokio::sync::watch::Receiver<bool>,
}

/// Takes the request off the stream, registers the build and starts it; returns the stream of
/// its messages for the client.
pub(crate) async fn start(
    worker: Worker,
    mut up: Streaming<pb::BuildUp>,
) -> Result<tokio_stream::wrappers::ReceiverStream<Result<pb::BuildDown, Status>>, Status> {
    let first = up
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("the build stream ended before its request"))?;
    let Some(build_up::Msg::Request(request)) = first.msg else {
        return Err(Status::invalid_argument(
            "the first message of a build must be its request",
        ));
    };
    let build = worker.0.builds.create(worker.0.client_grace);
    build.push(Msg::Accepted(pb::Accepted {
        build_id: build.id.clone(),
        worker_id: worker.0.id.clone(),
    }));
    tracing::info!(
        "build {}: accepted ({})",
        build.id,
        if request.description.is_empty() {
            "no description"
        } else {
            &request.description
        }
    );
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (done_tx, client_done) = tokio::sync::watch::channel(false);
    let forward = Forward::new(build.clone());
    tokio::spawn(read_client(
        up,
        build.clone(),
        pending.clone(),
        forward.clone(),
        done_tx,
    ));
    let session = Session {
        worker: worker.clone(),
        build: build.clone(),
        pending,
        forward,
        next_request: std::sync::atomic::AtomicU64::new(1),
        client_done,
    };
    let stream = build.follow(0, true);
    tokio::spawn(async move {
        session.run(request).await;
    });
    Ok(stream)
}

/// Routes the client's messages until its stream ends.
async fn read_client(
    mut up: Streaming<pb::BuildUp>,
    build: Arc<Build>,
    pending: Arc<Mutex<Pending>>,
    forward: Forward,
    done: tokio::sync::watch::Sender<bool>,
) {
    while let Ok(Some(message)) = up.message().await {
        match message.msg {
            Some(build_up::Msg::BlobsSent(sent)) => {
                let tx = lock(&pending).blobs.remove(&sent.request_id);
                if let Some(tx) = tx {
                    let _ = tx.send(sent);
                }
            }
            Some(build_up::Msg::Secret(secret)) => {
                let tx = lock(&pending).secrets.remove(&secret.request_id);
                if let Some(tx) = tx {
                    let _ = tx.send(secret);
                }
            }
            Some(build_up::Msg::Cancel(c)) => {
                tracing::info!("build {}: cancelled by its client ({})", build.id, c.reason);
                build.cancel.cancel();
            }
            Some(build_up::Msg::Ssh(data)) => forward.deliver(data),
            // Never asked for by this worker; a stray answer is ignored.
            Some(build_up::Msg::Credential(_)) => {}
            Some(build_up::Msg::Request(_)) | None => {}
        }
    }
    forward.close();
    let _ = done.send(true);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a session stopped before a result.
enum Stop {
    Refused(Refusal),
    Failed(pb::BuildFailure),
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refused(r)
    }
}

fn worker_failure(message: String) -> Stop {
    Stop::Failed(pb::BuildFailure {
        kind: pb::FailureKind::Worker as i32,
        message,
        ..Default::default()
    })
}

fn cancelled() -> Stop {
    Stop::Failed(pb::BuildFailure {
        kind: pb::FailureKind::Cancelled as i32,
        message: "build cancelled".into(),
        ..Default::default()
    })
}

impl Session {
    async fn run(self, request: pb::BuildRequest) {
        let artifacts = match self.worker.0.images.tempdir("remote-artifacts-") {
            Ok(dir) => dir,
            Err(e) => {
                self.finish(Err(worker_failure(format!(
                    "failed to make the artifact directory: {}",
                    convert::chain(&e)
                ))));
                return;
            }
        };
        let outcome = self.build(&request, artifacts.path()).await;
        let names = match &outcome {
            Ok((_, artifacts)) => artifacts.clone(),
            Err(_) => Vec::new(),
        };
        self.finish(outcome.map(|(m, _)| m));
        // The client downloads artifacts after the result; they go when its stream ends.
        if !names.is_empty() {
            let mut done = self.client_done.clone();
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, done.wait_for(|d| *d)).await;
            for digest in &names {
                self.worker.0.blobs.remove_artifact(digest);
            }
        }
        drop(artifacts);
    }

    fn finish(&self, outcome: Result<pb::BuildResult, Stop>) {
        let msg = match outcome {
            Ok(result) => {
                tracing::info!("build {}: done", self.build.id);
                Msg::Result(result)
            }
            Err(Stop::Refused(r)) => Msg::Failure(r.to_failure()),
            Err(Stop::Failed(f)) => {
                tracing::info!("build {}: failed: {}", self.build.id, f.message);
                Msg::Failure(f)
            }
        };
        self.build.push(msg);
        self.build.finish();
        self.worker.0.builds.retire(self.build.id.clone());
    }

    fn request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for an answer, or for the build to be cancelled.
    async fn answer<T>(&self, rx: oneshot::Receiver<T>, what: &str) -> Result<T, Stop> {
        tokio::select! {
            answer = tokio::time::timeout(ANSWER_TIMEOUT, rx) => match answer {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(_)) => Err(worker_failure(format!("the client went away before sending {what}"))),
                Err(_) => Err(worker_failure(format!("the client did not send {what} within {ANSWER_TIMEOUT:?}"))),
            },
            _ = self.build.cancel.cancelled() => Err(cancelled()),
        }
    }

    async fn build(
        &self,
        request: &pb::BuildRequest,
        artifacts: &std::path::Path,
    ) -> Result<(pb::BuildResult, Vec<Digest>), Stop> {
        let project = format!("{}\0{}", request.description, request.dockerfile_name);
        let (context, mut received) = match &request.context {
            Some(c) => {
                let (held, n) = self.hold(&c.root, "context.root", project.clone()).await?;
                (Some(held), n)
            }
            None => (None, 0),
        };
        // `--build-context NAME=DIR`s: trees like the main context, each in a slot of its own.
        let mut named = Vec::new();
        let mut named_dirs = HashMap::new();
        for (i, nc) in request.named_contexts.iter().enumerate() {
            if let Some(pb::named_context::Source::Dir(c)) = &nc.source {
                let field = format!("named_contexts[{i}].dir.root");
                let slot = format!("{project}\0--build-context {}", nc.name);
                let (held, n) = self.hold(&c.root, &field, slot).await?;
                received += n;
                named_dirs.insert(i, held.path.clone());
                named.push(held);
            }
        }
        let mut engine_request = convert::request(
            request,
            context.as_ref().map(|h| h.path.as_path()),
            &named_dirs,
            artifacts,
        )?;
        if !request.ssh.is_empty() {
            let forward: Arc<dyn kiln_engine::SshForward> = Arc::new(self.forward.clone());
            engine_request.extras.ssh_forward = Some(forward);
        }
        for spec in &request.secrets {
            let value = self.secret(&spec.id).await?;
            if let Some(bytes) = value {
                engine_request
                    .secrets
                    .0
                    .push((spec.id.clone(), SecretSource::Memory(SecretBytes(bytes))));
            }
        }
        let _slot = self.slot().await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = self.worker.0.engine.clone();
        let cancel = self.build.cancel.clone();
        let outputs = engine_request.outputs.clone();
        let running =
            tokio::spawn(async move { engine.build(engine_request, Some(tx), cancel).await });
        while let Some(p) = rx.recv().await {
            if let Some(msg) = convert::progress(p) {
                self.build.push(msg);
            }
        }
        let result = running.await.map_err(|e| {
            worker_failure(format!("this is a bug in kiln: the build task failed: {e}"))
        })?;
        drop(context);
        drop(named);
        match result {
            Ok(result) => self.result(result, &outputs, received).await,
            Err(e) => Err(Stop::Failed(convert::failure(&e))),
        }
    }

    /// Completes the tree `root` (a digest in `field`) and holds a directory of it for the
    /// build, in the slot of `project`; returns it with the content bytes asked for.
    async fn hold(
        &self,
        root: &str,
        field: &str,
        project: String,
    ) -> Result<(crate::contexts::Held, u64), Stop> {
        let root =
            parse_digest(root, field).map_err(|s| Refusal::Invalid(s.message().to_string()))?;
        let received = self.complete_context(root).await?;
        let contexts = self.worker.0.contexts.clone();
        let images = self.worker.0.images.clone();
        let held = tokio::task::spawn_blocking(move || contexts.hold_for(&images, root, &project))
            .await
            .map_err(|e| worker_failure(format!("this is a bug in kiln: {e}")))?
            .map_err(|e| worker_failure(format!("failed to write the build context: {e}")))?;
        Ok((held, received))
    }

    /// Asks for what the store lacks under `root` until the tree is complete; returns the
    /// content bytes it asked for (file sizes; nodes are small and not counted).
    async fn complete_context(&self, root: Digest) -> Result<u64, Stop> {
        let worker = &self.worker.0;
        if worker.blobs.is_complete(&worker.images, &root) {
            return Ok(0);
        }
        let mut asked = 0u64;
        for _ in 0..MAX_ROUNDS {
            let images = worker.images.clone();
            let missing = tokio::task::spawn_blocking(move || {
                tree::missing_under(&root, &StoreSource(&images))
            })
            .await
            .map_err(|e| worker_failure(format!("this is a bug in kiln: {e}")))?
            .map_err(|e| Refusal::Invalid(format!("context tree {root}: {e}")))?;
            if missing.is_empty() {
                worker.blobs.mark_complete(root);
                return Ok(asked);
            }
            asked += missing.iter().map(|b| b.size).sum::<u64>();
            let id = self.request_id();
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).blobs.insert(id, tx);
            self.build.push(Msg::NeedBlobs(pb::NeedBlobs {
                request_id: id,
                blobs: missing,
            }));
            let sent = self.answer(rx, "the context's blobs").await?;
            if let Some(f) = sent.failed.first() {
                return Err(Refusal::Invalid(format!(
                    "the client could not upload {} of the context: {}",
                    f.digest, f.reason
                ))
                .into());
            }
        }
        Err(Refusal::Invalid(format!("context tree {root} never became complete")).into())
    }

    /// Asks the client for a secret; `None` when it has no such secret (a step that needs it
    /// then fails as it would locally).
    async fn secret(&self, id: &str) -> Result<Option<Vec<u8>>, Stop> {
        let request_id = self.request_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).secrets.insert(request_id, tx);
        self.build.push(Msg::NeedSecret(pb::NeedSecret {
            request_id,
            id: id.to_string(),
        }));
        let answer = self.answer(rx, &format!("secret {id}")).await?;
        match answer.answer {
            Some(pb::secret_value::Answer::Value(v)) => Ok(Some(v)),
            Some(pb::secret_value::Answer::Error(e)) => {
                Err(Refusal::Invalid(format!("secret {id}: {e}")).into())
            }
            None => Ok(None),
        }
    }

    /// A build slot; while none is free the build says it is queued.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Stop> {
        let slots = self.worker.0.slots.clone();
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = &self.worker.0.queued;
        let position = queued.fetch_add(1, Ordering::SeqCst) + 1;
        self.build.push(Msg::Queued(pb::Queued { position }));
        let permit = tokio::select! {
            p = slots.acquire_owned() => p.map_err(|_| worker_failure("the worker is shutting down".into())),
            _ = self.build.cancel.cancelled() => Err(cancelled()),
        };
        queued.fetch_sub(1, Ordering::SeqCst);
        permit
    }

    /// The result message: the image and its blobs, and each file output registered for
    /// Download.
    async fn result(
        &self,
        result: BuildResult,
        outputs: &[kiln_image::Output],
        received: u64,
    ) -> Result<(pb::BuildResult, Vec<Digest>), Stop> {
        let image = &result.image;
        let mut blobs = vec![
            pb::Descriptor {
                media_type: image.manifest.media_type.clone(),
                digest: image.manifest_digest.to_string(),
                size: self
                    .worker
                    .0
                    .images
                    .blobs()
                    .info(&image.manifest_digest)
                    .map(|i| i.size)
                    .unwrap_or(0),
            },
            pb::Descriptor {
                media_type: image.manifest.config.media_type.clone(),
                digest: image.config_digest.to_string(),
                size: image.manifest.config.size,
            },
        ];
        for layer in &image.manifest.layers {
            blobs.push(pb::Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.to_string(),
                size: layer.size,
            });
        }
        let mut artifacts = Vec::new();
        let mut registered = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            if !convert::is_artifact(output) {
                continue;
            }
            let Some(path) = output.dest.clone() else {
                continue;
            };
            let (digest, size) = tokio::task::spawn_blocking({
                let path = path.clone();
                move || hash_file(&path)
            })
            .await
            .map_err(|e| worker_failure(format!("this is a bug in kiln: {e}")))?
            .map_err(|e| worker_failure(format!("failed to read output {i}: {e}")))?;
            self.worker.0.blobs.add_artifact(digest, path);
            registered.push(digest);
            artifacts.push(pb::Artifact {
                output: i as u32,
                digest: digest.to_string(),
                size,
            });
        }
        Ok((
            pb::BuildResult {
                image: Some(pb::ImageResult {
                    config_digest: image.config_digest.to_string(),
                    manifest_digest: image.manifest_digest.to_string(),
                    blobs,
                    names: result.names.clone(),
                }),
                artifacts,
                cache_exports: result
                    .cache_exports
                    .iter()
                    .map(|c| pb::CacheExported {
                        destination: c.destination.clone(),
                        records: c.records as u64,
                        layers: c.layers as u64,
                        digest: c.digest.map(|d| d.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                pushed: result
                    .pushed
                    .iter()
                    .map(|(name, digest)| pb::Pushed {
                        name: name.clone(),
                        digest: digest.to_string(),
                    })
                    .collect(),
                context_received_bytes: received,
            },
            registered,
        ))
    }
}

fn hash_file(path: &std::path::Path) -> std::io::Result<(Digest, u64)> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let size = std::io::copy(&mut file, &mut h)?;
    Ok((Digest::from_bytes(h.finalize().into()), size))
}
