//! `kiln build` as a library call: lower the Dockerfile, solve the graph with the solver over
//! the image store, store the target as an image and send it where the outputs say.

mod finish;
mod request;
mod shared;

pub use request::{BuildError, BuildRequest, BuildResult, StepLocation};
pub use shared::Engine;

use std::sync::Arc;

use kiln_frontend::diagnostic::{Diagnostic, Severity};
use kiln_frontend::dockerignore::{self, PatternMatcher};
use kiln_frontend::lower::{self, BuildOptions, ImageResolver, ResolvedImage};
use kiln_image::ImageStore;
use kiln_llb::{Definition, Digest, Platform};
use kiln_solver::{CancellationToken, Graph, SolveError, SolveOptions, Solver, SolverConfig};

use crate::error::EngineError;
use crate::progress::{Progress, ProgressSender, Reporter};
use crate::remote_cache::{CacheImport, RemoteCache};
use crate::value::{LocalDir, RecordStore, Value};
use crate::vertex::{BuildEnv, Vertex, input_indexes};
use finish::Solved;

/// The frontend's image resolver over the local store: `FROM` of a missing image (or any image
/// with `--pull`) pulls it, and says so.
struct StoreResolver<'a> {
    images: &'a ImageStore,
    pull: bool,
    reporter: &'a Reporter,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        let label = kiln_image::familiar(reference);
        let image = self
            .images
            .resolve_or_pull(reference, self.pull, &|event| {
                self.reporter.info(format!(
                    "pull {label}: {}",
                    kiln_image::describe_pull(&event)
                ));
            })
            .map_err(|e| error_chain(&e))?;
        Ok(ResolvedImage {
            reference: image.name.clone().unwrap_or_else(|| reference.to_string()),
            digest: Some(image.manifest_digest),
            config: image.config,
        })
    }
}

/// An error and its causes on one line (the frontend takes resolver errors as text).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Lowers a Dockerfile without running anything (`kiln build --print`).
pub fn lower_only(
    images: &ImageStore,
    request: &BuildRequest,
) -> Result<lower::Lowered, BuildError> {
    lower_with(images, request, &Reporter::default())
}

fn lower_with(
    images: &ImageStore,
    request: &BuildRequest,
    reporter: &Reporter,
) -> Result<lower::Lowered, BuildError> {
    let options = with_dockerignore(request)?;
    let resolver = StoreResolver {
        images,
        pull: request.pull,
        reporter,
    };
    lower::lower(&request.dockerfile, &options, &resolver).map_err(|d| BuildError::Frontend {
        diagnostic: Box::new(d),
        source_text: String::from_utf8_lossy(&request.dockerfile).into_owned(),
    })
}

fn read_dockerignore(request: &BuildRequest) -> Result<Option<String>, BuildError> {
    let Some(context) = &request.context else {
        return Ok(None);
    };
    let dockerfile = request
        .dockerfile_path
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    dockerignore::read_for_dockerfile(context, &dockerfile).map_err(|source| {
        BuildError::Engine(EngineError::Io {
            what: "read .dockerignore".into(),
            source,
        })
    })
}

fn with_dockerignore(request: &BuildRequest) -> Result<BuildOptions, BuildError> {
    let mut options = request.options.clone();
    options.dockerfile_name = request.dockerfile_name.clone();
    if let Some(text) = read_dockerignore(request)? {
        options.dockerignore = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
    }
    Ok(options)
}

/// Runs a build to completion: progress goes to `progress` (first the steps it will show,
/// then what happens to them, with the engine's warnings and notices), `cancel` stops it
/// cleanly. The image is committed, exported to every output and pushed when asked.
pub async fn build(
    images: Arc<ImageStore>,
    request: BuildRequest,
    progress: Option<ProgressSender>,
    cancel: CancellationToken,
) -> Result<BuildResult, BuildError> {
    build_with_solver(images, request, progress, cancel, None).await
}

/// [`build`], with the solver of an [`Engine`] when one is given and the request can use it.
async fn build_with_solver(
    images: Arc<ImageStore>,
    request: BuildRequest,
    progress: Option<ProgressSender>,
    cancel: CancellationToken,
    shared: Option<&shared::SharedSolver>,
) -> Result<BuildResult, BuildError> {
    kiln_image::output::validate_outputs(&request.outputs).map_err(BuildError::Invalid)?;
    let reporter = Reporter::new(progress.clone());
    let lowered = {
        let images = images.clone();
        let request = request.clone();
        let reporter = reporter.clone();
        tokio::task::spawn_blocking(move || lower_with(&images, &request, &reporter))
            .await
            .map_err(|e| EngineError::Bug(format!("lowering task failed: {e}")))??
    };
    let definition = lowered.definition;
    reporter.send(Progress::Steps(
        definition
            .topological()
            .filter_map(|(d, _)| Some((d, definition.metadata(&d).name?)))
            .collect(),
    ));
    let Some(root) = definition.root() else {
        return Err(EngineError::Bug("the frontend produced a graph without a root".into()).into());
    };
    check_entitlements(&definition, &request)?;
    let env = build_env(&images, &request, &definition)?;
    let graph = graph_of(&definition, &env)?;

    let config = SolverConfig {
        max_parallelism: request
            .max_parallelism
            .unwrap_or_else(|| SolverConfig::default().max_parallelism),
    };
    let remotes = Arc::new(open_caches(&images, &request.cache_from, &reporter).await);
    let (solver, used) = match shared.filter(|_| shared::can_share(&request)) {
        // The engine's solver: a vertex another build is running is joined, not run again.
        Some(solver) => (solver.clone(), Default::default()),
        None => {
            let records =
                RecordStore::new(images.clone()).with_remotes(remotes.clone(), reporter.clone());
            let used = records.used();
            (Solver::with_config(records, config), used)
        }
    };
    // The solver numbers its own events; they reach the front end through the same channel,
    // in order, before anything `finish` reports.
    let (events, mut vertex_events) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            while let Some(event) = vertex_events.recv().await {
                reporter.send(Progress::Vertex(event));
            }
        })
    };
    let options = SolveOptions {
        events: progress.is_some().then_some(events),
        cancel: cancel.clone(),
    };
    let solved = solver.solve(&graph, &[root.vertex], options).await;
    let _ = forward.await;
    crate::context::save_stat_caches();
    let solved = solved.map_err(|e| step_error(&definition, e))?;
    let top = match &solved[0].value {
        Value::Snapshot(id) => Some(id.clone()),
        Value::Scratch => None,
        Value::Local(_) => {
            return Err(EngineError::NotSupported(
                "a build whose result is the context itself".into(),
            )
            .into());
        }
    };
    let solved = Solved {
        top,
        key: solved[0].key,
        config: lowered.config,
        used,
    };
    tokio::task::spawn_blocking(move || {
        finish::finish(images, &request, solved, &remotes, &reporter)
    })
    .await
    .map_err(|e| EngineError::Bug(format!("export task failed: {e}")))?
}

/// Entitlements are checked before anything runs or is found in the cache, as BuildKit does:
/// a cached insecure step must not slip through a build that was not granted it.
fn check_entitlements(definition: &Definition, request: &BuildRequest) -> Result<(), BuildError> {
    if request.allow_insecure {
        return Ok(());
    }
    match definition.topological().find(|(_, op)| {
        matches!(op, kiln_llb::Op::Exec(e) if e.security == kiln_llb::SecurityMode::Insecure)
    }) {
        Some((digest, _)) => Err(step_error(
            definition,
            SolveError::VertexFailed {
                vertex: digest,
                source: Arc::new(crate::vertex::insecure_not_allowed()),
                cancelled: Vec::new(),
            },
        )),
        None => Ok(()),
    }
}

/// What every vertex of this build shares: the store, the context, secrets, defaults.
fn build_env(
    images: &Arc<ImageStore>,
    request: &BuildRequest,
    definition: &Definition,
) -> Result<Arc<BuildEnv>, BuildError> {
    let ignore = match read_dockerignore(request)? {
        Some(text) => Some(
            PatternMatcher::parse(&text).map_err(|e| BuildError::Frontend {
                diagnostic: Box::new(Diagnostic::new(
                    Severity::Error,
                    format!("invalid .dockerignore: {e}"),
                    None,
                )),
                source_text: text.clone(),
            })?,
        ),
        None => None,
    };
    let (context_dir, empty_context) = match &request.context {
        Some(dir) => (dir.clone(), None),
        None => {
            let empty = images.tempdir("empty-context-")?;
            (empty.path().to_path_buf(), Some(empty))
        }
    };
    crate::context::load_stat_cache(&context_dir, Some(&images.root().join("context-cache")));
    Ok(Arc::new(BuildEnv {
        images: images.clone(),
        locals: vec![(
            request.options.context_name.clone(),
            Arc::new(LocalDir {
                path: context_dir,
                ignore,
            }),
        )],
        _empty_context: empty_context,
        session: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ),
        default_network: request.options.network,
        secrets: Arc::new(request.secrets.clone()),
        local_sources: definition
            .topological()
            .filter(|(_, op)| matches!(op, kiln_llb::Op::Source(kiln_llb::SourceOp::Local(_))))
            .map(|(digest, _)| digest)
            .collect(),
        allow_insecure: request.allow_insecure,
    }))
}

/// The solver's graph: one vertex per LLB op.
fn graph_of(
    definition: &Definition,
    env: &Arc<BuildEnv>,
) -> Result<Graph<Digest, Vertex>, BuildError> {
    let mut graph = Graph::new();
    for (digest, op) in definition.topological() {
        let meta = definition.metadata(&digest);
        let vertex = Vertex {
            digest,
            op: op.clone(),
            ignore_cache: meta.ignore_cache,
            extra_env: meta.proxy_env.clone(),
            env: env.clone(),
        };
        graph
            .add(digest, vertex, &input_indexes(op))
            .map_err(|e| EngineError::Bug(format!("bad graph: {e}")))?;
    }
    Ok(graph)
}

/// Opens every `--cache-from`. One that cannot be read is a warning, as in BuildKit: the build
/// runs its steps instead.
async fn open_caches(
    images: &Arc<ImageStore>,
    specs: &[CacheImport],
    reporter: &Reporter,
) -> Vec<RemoteCache> {
    let mut out = Vec::new();
    for spec in specs {
        let images = images.clone();
        let spec = spec.clone();
        let opened =
            tokio::task::spawn_blocking(move || RemoteCache::open(&images, &spec, None)).await;
        match opened {
            Ok(Ok(cache)) => {
                reporter.info(format!(
                    "importing cache manifest from {}: {} records",
                    cache.label(),
                    cache.record_count()
                ));
                out.push(cache);
            }
            Ok(Err(e)) => reporter.warn(format!("failed to import cache: {}", error_chain(&e))),
            Err(e) => reporter.warn(format!("failed to import cache: {e}")),
        }
    }
    out
}

fn step_error(definition: &Definition, e: SolveError<Digest>) -> BuildError {
    match e {
        SolveError::Cancelled { .. } => BuildError::Cancelled,
        SolveError::Graph(g) => EngineError::Bug(format!("bad graph: {g}")).into(),
        SolveError::VertexFailed { vertex, source, .. } => {
            let meta = definition.metadata(&vertex);
            let name = meta.name.clone().unwrap_or_else(|| vertex.to_string());
            let map = definition.source_map();
            let location = map.locations.get(&vertex).and_then(|locs| {
                let loc = locs.first()?;
                let file = map.files.get(loc.file)?;
                Some(Box::new(StepLocation {
                    file: file.name.clone(),
                    source_text: String::from_utf8_lossy(&file.data).into_owned(),
                    ranges: loc.ranges.clone(),
                }))
            });
            let message = innermost_message(&source);
            BuildError::Step {
                vertex,
                name,
                message,
                location,
            }
        }
    }
}

/// The message of the op's own error, without the solver's wrapping.
fn innermost_message(cause: &kiln_solver::Cause) -> String {
    let mut message = cause.to_string();
    let mut current: Option<&dyn std::error::Error> = std::error::Error::source(cause);
    while let Some(err) = current {
        message = err.to_string();
        if err.downcast_ref::<EngineError>().is_some() {
            break;
        }
        current = err.source();
    }
    message
}
