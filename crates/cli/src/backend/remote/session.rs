//! One remote build: walk and send the context, open the `Build` stream, answer the worker's
//! requests (blobs, secrets), turn its events into the same `Progress` a local build reports,
//! and on the result fetch what the outputs ask for. Ctrl-C sends `cancel`; a worker that dies
//! or goes silent ends the stream (HTTP/2 keepalives), and the error names the builder and the
//! step that was running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use kiln_engine::{
    BuildError, BuildRequest, CancellationToken, EventKind, Progress, ProgressSender, StepLocation,
    Stream, VertexEvent,
};
use kiln_llb::{Digest, Position, Range};
use kiln_proto::client::Worker;
use kiln_proto::v1 as pb;
use pb::build_down::Msg;
use pb::build_up;
use tokio::sync::mpsc;

use super::agents::Relays;
use super::walk::Walked;
use super::{RemoteBackend, wire, worker_error};
use crate::backend::{BuildOutcome, RemoteBuild};

/// After Ctrl-C, how long to wait for the worker to confirm before giving up on it.
const CANCEL_WAIT: Duration = Duration::from_millis(1500);

/// The notice mark the worker puts in a `Warning`'s vertex (kiln_serve's `INFO_MARK`).
const INFO_MARK: &str = "info";

pub(super) async fn build(
    backend: &RemoteBackend,
    request: BuildRequest,
    progress: Option<ProgressSender>,
    cancel: CancellationToken,
) -> Result<BuildOutcome, BuildError> {
    let report = |p: Progress| {
        if let Some(tx) = &progress {
            let _ = tx.send(p);
        }
    };
    let key = format!(
        "{}\0{}",
        request
            .context
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_default(),
        request
            .dockerfile_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| request.dockerfile_name.clone())
    );
    // The walk and the connection overlap: neither needs the other.
    let walking = async {
        let Some(context) = request.context.clone() else {
            return Ok(None);
        };
        let dockerfile = request.dockerfile_path.clone();
        let cache = backend.options.root.join("remote").join("context-stat");
        tokio::task::spawn_blocking(move || {
            super::walk::walk(&context, dockerfile.as_deref(), &cache)
        })
        .await
        .map_err(|e| worker_error(e.to_string()))?
        .map(|w| Some(Arc::new(w)))
        .map_err(|e| worker_error(crate::error::chain(&e)))
    };
    let started = std::time::Instant::now();
    let walking = async {
        let w = walking.await;
        tracing::debug!("context walked in {:?}", started.elapsed());
        w
    };
    let choosing = async {
        let w = backend.choose(key.as_bytes()).await;
        tracing::debug!("builder chosen in {:?}", started.elapsed());
        w
    };
    let (walked, worker) = tokio::join!(walking, choosing);
    let walked = walked?;
    let worker = worker.map_err(|e| worker_error(crate::error::chain(&e)))?;
    let relays = Relays::load(&request.extras.ssh)?;
    let named = walk_named(backend, &request).await?;
    for skipped in walked.iter().flat_map(|w| &w.skipped) {
        report(Progress::Warning(format!(
            "{skipped}: not a file, directory or link; left out of the context"
        )));
    }
    let builder = worker.address.to_string();
    let fail = |what: &str, e: anyhow::Error| {
        worker_error(format!(
            "builder {builder}: {what}: {}",
            crate::error::chain(&e)
        ))
    };
    let mut uploaded = 0;
    if let Some(w) = &walked {
        uploaded = super::sync::sync(&worker.client, w)
            .await
            .map_err(|e| fail("sending the context", e))?;
        tracing::debug!("context synced in {:?}", started.elapsed());
        report(Progress::Info(format!(
            "builder {builder}: context of {} files ({} read), {} sent",
            w.summary.files,
            w.hashed.load(std::sync::atomic::Ordering::Relaxed),
            human(uploaded)
        )));
    }
    for (_, w) in &named {
        uploaded += super::sync::sync(&worker.client, w)
            .await
            .map_err(|e| fail("sending a --build-context", e))?;
    }
    let named_refs: Vec<(usize, &Walked)> = named.iter().map(|(i, w)| (*i, &**w)).collect();
    let wire = wire::to_wire(
        &request,
        walked.as_deref(),
        &named_refs,
        backend.options.load,
        worker.info.protocol,
    )
    .map_err(|e| fail("the request", e))?;
    let mut run = Run {
        worker: &worker,
        builder: builder.clone(),
        walked: walked
            .iter()
            .cloned()
            .chain(named.iter().map(|(_, w)| w.clone()))
            .collect(),
        relays,
        request: &request,
        progress: progress.clone(),
        names: HashMap::new(),
        running: Vec::new(),
        uploaded,
        build_id: String::new(),
    };
    let (up, result) = run.stream(wire, cancel).await?;
    tracing::debug!("result in {:?}", started.elapsed());
    let mut remote = RemoteBuild {
        builder: builder.clone(),
        worker_id: worker.info.worker_id.clone(),
        build_id: run.build_id.clone(),
        context_uploaded_bytes: run.uploaded,
        ..RemoteBuild::default()
    };
    let outcome = super::fetch::finish(backend, &worker, &request, &result, &mut remote, &report)
        .await
        .map_err(|e| fail("fetching the result", e));
    // The worker keeps the artifacts until this stream ends.
    drop(up);
    let (image_id, manifest_digest, names) = outcome?;
    Ok(BuildOutcome {
        image_id,
        manifest_digest,
        names,
        remote: Some(remote),
    })
}

/// Follows a build another client started (`kiln build attach ID`).
pub(super) async fn attach(
    backend: &RemoteBackend,
    build_id: &str,
    progress: ProgressSender,
    cancel: CancellationToken,
) -> Result<BuildOutcome, BuildError> {
    let mut last = None;
    for address in &backend.options.addresses {
        let worker =
            match kiln_proto::client::connect(address, &backend.connect_options(), super::VERSION)
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    last = Some(crate::error::chain_of(&e));
                    continue;
                }
            };
        let stream = worker
            .client
            .clone()
            .attach(pb::AttachRequest {
                build_id: build_id.to_string(),
                after_seq: 0,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                last = Some(format!("{address}: {}", s.message()));
                continue;
            }
            Err(s) => return Err(worker_error(format!("builder {address}: {}", s.message()))),
        };
        let dockerfile = BuildRequest::new(None, Vec::new(), "Dockerfile");
        let mut run = Run {
            worker: &worker,
            builder: address.to_string(),
            walked: Vec::new(),
            relays: Relays::default(),
            request: &dockerfile,
            progress: Some(progress.clone()),
            names: HashMap::new(),
            running: Vec::new(),
            uploaded: 0,
            build_id: build_id.to_string(),
        };
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                _ = cancel.cancelled() => {
                    // Detaching leaves the build running, as `docker attach` with its detach keys.
                    return Err(BuildError::Cancelled);
                }
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => return Err(run.lost("the worker ended the stream without a result")),
                Err(s) => return Err(run.lost(s.message())),
            };
            match message.msg {
                Some(Msg::Result(result)) => {
                    let image = result.image.unwrap_or_default();
                    return Ok(BuildOutcome {
                        image_id: parse(&image.config_digest)?,
                        manifest_digest: parse(&image.manifest_digest)?,
                        names: image.names,
                        remote: Some(RemoteBuild {
                            builder: run.builder.clone(),
                            worker_id: worker.info.worker_id.clone(),
                            build_id: build_id.to_string(),
                            ..RemoteBuild::default()
                        }),
                    });
                }
                Some(Msg::Failure(f)) => return Err(run.failure(f)),
                Some(other) => run.show(other),
                None => {}
            }
        }
    }
    Err(worker_error(format!(
        "no builder knows build {build_id}{}",
        last.map(|l| format!(" ({l})")).unwrap_or_default()
    )))
}

/// Walks the `--build-context` directories (each with its own `.dockerignore`), by index.
async fn walk_named(
    backend: &RemoteBackend,
    request: &BuildRequest,
) -> Result<Vec<(usize, Arc<Walked>)>, BuildError> {
    let mut out = Vec::new();
    for (i, (name, spec)) in request.extras.contexts.iter().enumerate() {
        let kiln_engine::ContextSpec::Dir(dir) = spec else {
            continue;
        };
        let dir = dir.clone();
        let cache = backend.options.root.join("remote").join("context-stat");
        let walked = tokio::task::spawn_blocking(move || super::walk::walk(&dir, None, &cache))
            .await
            .map_err(|e| worker_error(e.to_string()))?
            .map_err(|e| {
                BuildError::Invalid(format!(
                    "--build-context {name}: {}",
                    crate::error::chain(&e)
                ))
            })?;
        out.push((i, Arc::new(walked)));
    }
    Ok(out)
}

fn parse(s: &str) -> Result<Digest, BuildError> {
    s.parse()
        .map_err(|e| worker_error(format!("the worker sent a bad digest {s:?}: {e}")))
}

struct Run<'a> {
    worker: &'a Worker,
    builder: String,
    /// The main context's tree first, then the `--build-context` directories'.
    walked: Vec<Arc<Walked>>,
    /// Forwarded ssh agents.
    relays: Relays,
    request: &'a BuildRequest,
    progress: Option<ProgressSender>,
    /// Step names by vertex digest.
    names: HashMap<String, String>,
    /// Steps started and not finished, in order.
    running: Vec<String>,
    uploaded: u64,
    build_id: String,
}

impl Run<'_> {
    fn report(&self, p: Progress) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(p);
        }
    }

    /// The stream broke: name the builder and what was running.
    fn lost(&self, why: &str) -> BuildError {
        let during = match self.running.last() {
            Some(step) => format!(" during {step}"),
            None => String::new(),
        };
        worker_error(format!(
            "builder {}: lost the connection{during}: {why}",
            self.builder
        ))
    }

    /// Runs the stream to its result; returns the open up-stream (the worker keeps the
    /// artifacts until it closes) with the result.
    async fn stream(
        &mut self,
        wire: pb::BuildRequest,
        cancel: CancellationToken,
    ) -> Result<(mpsc::Sender<pb::BuildUp>, pb::BuildResult), BuildError> {
        let (up, rx) = mpsc::channel(16);
        let _ = up
            .send(pb::BuildUp {
                msg: Some(build_up::Msg::Request(wire)),
            })
            .await;
        let mut down = self
            .worker
            .client
            .clone()
            .build(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| worker_error(format!("builder {}: {}", self.builder, s.message())))?
            .into_inner();
        let mut cancelled_at: Option<tokio::time::Instant> = None;
        loop {
            let deadline = cancelled_at.map(|t| t + CANCEL_WAIT);
            let next = tokio::select! {
                m = down.message() => m,
                _ = cancel.cancelled(), if cancelled_at.is_none() => {
                    cancelled_at = Some(tokio::time::Instant::now());
                    let _ = up.send(pb::BuildUp { msg: Some(build_up::Msg::Cancel(pb::CancelBuild {
                        reason: "cancelled by the client (Ctrl-C)".into(),
                    })) }).await;
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    return Err(BuildError::Cancelled);
                }
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => return Err(self.lost("the worker ended the stream without a result")),
                Err(s) => {
                    if cancelled_at.is_some() {
                        return Err(BuildError::Cancelled);
                    }
                    return Err(self.lost(s.message()));
                }
            };
            match message.msg {
                Some(Msg::Accepted(a)) => {
                    self.report(Progress::Info(format!(
                        "builder {}: build {} (`kiln build attach {}` follows it)",
                        self.builder, a.build_id, a.build_id
                    )));
                    self.build_id = a.build_id;
                }
                Some(Msg::NeedBlobs(need)) => {
                    let sent = self.send_blobs(&need).await;
                    self.uploaded += sent.as_ref().map_or(0, |(n, _)| *n);
                    let failed = sent.map_or_else(
                        |e| {
                            need.blobs
                                .iter()
                                .map(|b| pb::BlobFailure {
                                    digest: b.digest.clone(),
                                    reason: e.clone(),
                                })
                                .collect()
                        },
                        |(_, f)| f,
                    );
                    let _ = up
                        .send(pb::BuildUp {
                            msg: Some(build_up::Msg::BlobsSent(pb::BlobsSent {
                                request_id: need.request_id,
                                failed,
                            })),
                        })
                        .await;
                }
                Some(Msg::NeedSecret(need)) => {
                    let answer = match self.request.secrets.get(&need.id) {
                        Ok(Some(v)) => Some(pb::secret_value::Answer::Value(v)),
                        Ok(None) => None,
                        Err(e) => Some(pb::secret_value::Answer::Error(crate::error::chain_of(&e))),
                    };
                    let _ = up
                        .send(pb::BuildUp {
                            msg: Some(build_up::Msg::Secret(pb::SecretValue {
                                request_id: need.request_id,
                                answer,
                            })),
                        })
                        .await;
                }
                Some(Msg::SshOpen(open)) => self.relays.open(open, &up),
                Some(Msg::SshData(data)) => self.relays.data(data),
                Some(Msg::Result(result)) => return Ok((up, result)),
                Some(Msg::Failure(f)) => return Err(self.failure(f)),
                Some(other) => self.show(other),
                None => {}
            }
        }
    }

    /// Uploads what a NeedBlobs asks for; returns the bytes sent and what could not be.
    async fn send_blobs(
        &self,
        need: &pb::NeedBlobs,
    ) -> Result<(u64, Vec<pb::BlobFailure>), String> {
        if self.walked.is_empty() {
            return Err("this build sent no context".into());
        }
        // Each blob goes from the tree that has it (the main context or a named one).
        let mut by_tree: Vec<Vec<(Digest, pb::BlobKind)>> = vec![Vec::new(); self.walked.len()];
        for b in &need.blobs {
            let digest: Digest = b.digest.parse().map_err(|e| format!("{e}"))?;
            let kind = pb::BlobKind::try_from(b.kind).unwrap_or(pb::BlobKind::File);
            let owner = self.walked.iter().position(|w| {
                w.full().is_ok_and(|f| match kind {
                    pb::BlobKind::Tree => f.tree.node(&digest).is_some(),
                    _ => f.paths.contains_key(&digest),
                })
            });
            by_tree[owner.unwrap_or(0)].push((digest, kind));
        }
        let mut sent = 0;
        for (walked, blobs) in self.walked.iter().zip(by_tree) {
            if blobs.is_empty() {
                continue;
            }
            sent += super::sync::upload_all(&self.worker.client, walked, blobs)
                .await
                .map_err(|e| crate::error::chain(&e))?;
        }
        Ok((sent, Vec::new()))
    }

    /// Progress messages as the local renderer knows them.
    fn show(&mut self, msg: Msg) {
        match msg {
            Msg::Queued(q) => self.report(Progress::Info(format!(
                "builder {}: waiting for a free build slot (position {} in the queue)",
                self.builder, q.position
            ))),
            Msg::Vertices(v) => {
                let mut steps = Vec::new();
                for info in v.vertices {
                    if let Ok(d) = info.digest.parse::<Digest>() {
                        self.names.insert(info.digest.clone(), info.name.clone());
                        steps.push((d, info.name));
                    }
                }
                self.report(Progress::Steps(steps));
            }
            Msg::Event(e) => {
                if let Some(event) = self.event(e) {
                    self.report(Progress::Vertex(event));
                }
            }
            Msg::Explain(e) => self.report(Progress::Explain(wire::explanations(e))),
            Msg::Warning(w) if w.vertex == INFO_MARK => self.report(Progress::Info(w.message)),
            Msg::Warning(w) => self.report(Progress::Warning(w.message)),
            _ => {}
        }
    }

    fn event(&mut self, e: pb::VertexEvent) -> Option<VertexEvent<Digest>> {
        use pb::vertex_event::Kind;
        let vertex: Digest = e.vertex.parse().ok()?;
        let name = self
            .names
            .get(&e.vertex)
            .cloned()
            .unwrap_or_else(|| e.vertex.clone());
        let kind = match e.kind? {
            Kind::Cached(c) => EventKind::Cached {
                key: c.key.parse().ok()?,
                content: c.content,
            },
            Kind::Started(_) => {
                self.running.push(name);
                EventKind::Started
            }
            Kind::Log(l) => EventKind::Log {
                stream: if l.stream == pb::LogStream::Stderr as i32 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                data: l.data,
            },
            Kind::Completed(c) => {
                self.running.retain(|n| *n != name);
                EventKind::Completed {
                    key: c.key.parse().ok()?,
                    duration: Duration::from_nanos(c.duration_nanos),
                }
            }
            Kind::Failed(f) => {
                self.running.retain(|n| *n != name);
                EventKind::Failed {
                    error: f.error,
                    duration: Duration::from_nanos(f.duration_nanos),
                }
            }
            Kind::Cancelled(c) => {
                self.running.retain(|n| *n != name);
                EventKind::Cancelled {
                    duration: Duration::from_nanos(c.duration_nanos),
                }
            }
        };
        Some(VertexEvent {
            vertex,
            number: e.number,
            time: UNIX_EPOCH + Duration::from_nanos(e.time_unix_nanos.max(0) as u64),
            kind,
        })
    }

    /// The worker's failure as the error a local build would have given.
    fn failure(&self, f: pb::BuildFailure) -> BuildError {
        let source_text = String::from_utf8_lossy(&self.request.dockerfile).into_owned();
        match pb::FailureKind::try_from(f.kind) {
            Ok(pb::FailureKind::Frontend) if f.diagnostic.is_some() => {
                let d = f.diagnostic.unwrap_or_default();
                use kiln_frontend::diagnostic::{Diagnostic, Position, Severity, Span};
                let mut diagnostic = Diagnostic::new(
                    if d.severity == pb::Severity::Warning as i32 {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    d.message,
                    d.span.map(|s| Span {
                        start: Position {
                            line: s.start_line,
                            column: s.start_column,
                        },
                        end: Position {
                            line: s.end_line,
                            column: s.end_column,
                        },
                    }),
                );
                diagnostic.file = (!d.file.is_empty()).then_some(d.file);
                diagnostic.help = (!d.help.is_empty()).then_some(d.help);
                diagnostic.notes = d.notes;
                BuildError::Frontend {
                    diagnostic: Box::new(diagnostic),
                    source_text,
                }
            }
            Ok(pb::FailureKind::Step) if f.step.is_some() => {
                let s = f.step.unwrap_or_default();
                let vertex = s
                    .vertex
                    .parse()
                    .unwrap_or_else(|_| Digest::of(s.vertex.as_bytes()));
                BuildError::Step {
                    vertex,
                    name: s.name,
                    message: s.message,
                    location: s.location.map(|l| {
                        Box::new(StepLocation {
                            file: l.file,
                            source_text,
                            ranges: l
                                .ranges
                                .iter()
                                .map(|r| Range {
                                    start: Position {
                                        line: r.start_line,
                                        column: r.start_column,
                                    },
                                    end: Position {
                                        line: r.end_line,
                                        column: r.end_column,
                                    },
                                })
                                .collect(),
                        })
                    }),
                }
            }
            Ok(pb::FailureKind::Cancelled) => BuildError::Cancelled,
            Ok(pb::FailureKind::Invalid) => {
                BuildError::Invalid(format!("builder {}: {}", self.builder, f.message))
            }
            _ => worker_error(format!("builder {}: {}", self.builder, f.message)),
        }
    }
}

fn human(bytes: u64) -> String {
    kiln_runtime::system::human_size(bytes)
}
