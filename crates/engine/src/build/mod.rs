//! `kiln build` as a library call: lower the Dockerfile, solve the graph with the solver over
//! the image store, store the target as an image and send it where the outputs say.

mod finish;
mod platforms;
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

use crate::error::{EngineError, error_chain};
use crate::explain::Session;
use crate::ops::{BuildEnv, Vertex, input_indexes};
use crate::progress::{Progress, ProgressSender, Reporter};
use crate::remote_cache::{CacheImport, RemoteCache};
use crate::value::{LocalDir, RecordStore, Value};
use finish::Solved;

/// The frontend's image resolver over the local store: `FROM` of a missing image (or any image
/// with `--pull`) pulls it, and says so.
struct StoreResolver<'a> {
    images: &'a ImageStore,
    pull: bool,
    reporter: &'a Reporter,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let label = kiln_image::familiar(reference);
        let image = self
            .images
            .resolve_or_pull_for(reference, self.pull, Some(platform), &|event| {
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
    let mut options = with_dockerignore(request)?;
    options.named_contexts = crate::contexts::for_lowering(images, &request.extras)?;
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
    let started = kiln_image::now_rfc3339();
    let reporter = Reporter::new(progress.clone());
    platforms::check_supported(&request)?;
    let targets = platforms::of(&request);
    let lowered_all: Vec<lower::Lowered> = {
        let images = images.clone();
        let request = request.clone();
        let reporter = reporter.clone();
        let targets = targets.clone();
        tokio::task::spawn_blocking(move || {
            targets
                .into_iter()
                .map(|platform| {
                    let mut request = request.clone();
                    request.options.platform = platform;
                    lower_with(&images, &request, &reporter)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(EngineError::task("lowering"))??
    };
    // Each platform's lowering finds the same warnings: say each once.
    let mut warned = std::collections::BTreeSet::new();
    for warning in lowered_all.iter().flat_map(|l| &l.warnings) {
        if warned.insert(warning.short()) {
            reporter.warn(warning.short());
        }
    }
    let multi = lowered_all.len() > 1;
    let (definition, roots) = if multi {
        let host = Platform::host();
        let pairs: Vec<(Platform, &lower::Lowered)> = targets
            .iter()
            .map(|p| p.clone().unwrap_or_else(|| host.clone()))
            .zip(&lowered_all)
            .collect();
        platforms::merge(&pairs)?
    } else {
        let definition = lowered_all[0].definition.clone();
        let root = definition.root();
        (definition, root.into_iter().collect())
    };
    reporter.send(Progress::Steps(
        definition
            .topological()
            .filter_map(|(d, _)| Some((d, definition.metadata(&d).name?)))
            .collect(),
    ));
    if roots.is_empty() {
        return Err(EngineError::Bug("the frontend produced a graph without a root".into()).into());
    }
    check_entitlements(&definition, &request)?;
    let git_commits = {
        let definition = definition.clone();
        tokio::task::spawn_blocking(move || crate::ops::resolve_git_sources(&definition))
            .await
            .map_err(EngineError::task("git"))?
    }
    .map_err(|(vertex, e)| {
        step_error(
            &definition,
            SolveError::VertexFailed {
                vertex,
                source: Arc::new(e),
                cancelled: Vec::new(),
            },
        )
    })?;
    let env = build_env(&images, &request, &definition, git_commits)?;
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
    // What each step did feeds `--explain` (and the records of every build) as well.
    let explain = Arc::new(Session::open(images.root(), &request));
    let forward = {
        let reporter = reporter.clone();
        let explain = explain.clone();
        tokio::spawn(async move {
            while let Some(event) = vertex_events.recv().await {
                explain.observe(&event);
                reporter.send(Progress::Vertex(event));
            }
        })
    };
    let options = SolveOptions {
        events: Some(events),
        cancel: cancel.clone(),
    };
    let mut wanted: Vec<Digest> = Vec::new();
    for root in &roots {
        if !wanted.contains(&root.vertex) {
            wanted.push(root.vertex);
        }
    }
    let solved = solver.solve(&graph, &wanted, options).await;
    let _ = forward.await;
    let explained = {
        let definition = definition.clone();
        let env = env.clone();
        tokio::task::spawn_blocking(move || explain.finish(&definition, &env))
            .await
            .map_err(|e| EngineError::Bug(format!("explain task failed: {e}")))?
    };
    if request.explain {
        reporter.send(Progress::Explain(explained));
    }
    crate::context::save_stat_caches();
    let solved = solved.map_err(|e| step_error(&definition, e))?;
    let mut results = Vec::new();
    for (root, lowered) in roots.iter().zip(lowered_all) {
        let at = wanted
            .iter()
            .position(|w| *w == root.vertex)
            .ok_or_else(|| EngineError::Bug("a platform's root was not solved".into()))?;
        let top = match &solved[at].value {
            Value::Snapshot(id) => Some(id.clone()),
            Value::Scratch => None,
            Value::Local(_) => {
                return Err(EngineError::NotSupported(
                    "a build whose result is the context itself".into(),
                )
                .into());
            }
        };
        results.push((top, solved[at].key, lowered.config));
    }
    if multi {
        let solved = results
            .into_iter()
            .map(|(top, key, config)| Solved {
                top,
                key,
                config,
                used: used.clone(),
                provenance: None,
            })
            .collect();
        return tokio::task::spawn_blocking(move || {
            finish::finish_platforms(images, &request, solved, &remotes, &reporter)
        })
        .await
        .map_err(EngineError::task("export"))?;
    }
    let Some((top, key, config)) = results.pop() else {
        return Err(EngineError::Bug("the build solved nothing".into()).into());
    };
    let solved = Solved {
        top,
        key,
        config,
        used,
        provenance: request
            .extras
            .provenance
            .map(|mode| crate::provenance::Inputs {
                mode,
                definition: definition.clone(),
                git_commits: env.git_commits.clone(),
                started,
                session: env.session.clone(),
            }),
    };
    tokio::task::spawn_blocking(move || {
        finish::finish(images, &request, solved, &remotes, &reporter)
    })
    .await
    .map_err(EngineError::task("export"))?
}

/// Entitlements are checked before anything runs or is found in the cache, as BuildKit does:
/// a cached insecure step must not slip through a build that was not granted it.
fn check_entitlements(definition: &Definition, request: &BuildRequest) -> Result<(), BuildError> {
    let refused = |op: &kiln_llb::Op| match op {
        kiln_llb::Op::Exec(e) if e.security == kiln_llb::SecurityMode::Insecure => {
            (!request.allow_insecure).then(crate::ops::insecure_not_allowed)
        }
        kiln_llb::Op::Exec(e) if !e.devices.is_empty() => {
            (!request.extras.run.allow_devices).then(crate::ops::devices_not_allowed)
        }
        _ => None,
    };
    match definition
        .topological()
        .find_map(|(digest, op)| refused(op).map(|e| (digest, e)))
    {
        Some((digest, error)) => Err(step_error(
            definition,
            SolveError::VertexFailed {
                vertex: digest,
                source: Arc::new(error),
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
    git_commits: std::collections::BTreeMap<Digest, String>,
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
    let mut locals = vec![(
        request.options.context_name.clone(),
        Arc::new(LocalDir::new(context_dir, ignore)),
    )];
    locals.extend(crate::contexts::locals(&request.extras)?);
    Ok(Arc::new(BuildEnv {
        images: images.clone(),
        locals,
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
        git_commits,
        ssh: Arc::new(crate::ssh::SshAgents::load(
            &request.extras.ssh,
            request.extras.ssh_forward.as_ref(),
        )?),
        run: request.extras.run.clone(),
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
            .map_err(EngineError::Graph)?;
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
        SolveError::Graph(g) => EngineError::Graph(g).into(),
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

/// The message of the op's own error and its causes, without the solver's wrapping.
fn innermost_message(cause: &kiln_solver::Cause) -> String {
    let mut message = cause.to_string();
    let mut current: Option<&dyn std::error::Error> = std::error::Error::source(cause);
    while let Some(err) = current {
        if err.downcast_ref::<EngineError>().is_some() {
            return error_chain(err);
        }
        // An operating-system error alone ("No space left on device") does not say where:
        // keep the whole chain, which names the path.
        if err.downcast_ref::<std::io::Error>().is_some() && err.source().is_none() {
            return error_chain(&**cause);
        }
        message = err.to_string();
        current = err.source();
    }
    message
}
