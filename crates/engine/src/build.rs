//! `kiln build` as a library call: lower the Dockerfile, solve the graph with the solver over
//! this worker, and store the target as an image.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_frontend::diagnostic::Diagnostic;
use kiln_frontend::dockerignore::{self, PatternMatcher};
use kiln_frontend::lower::{self, BuildOptions, ImageResolver, ResolvedImage};
use kiln_llb::{Definition, Digest, NetworkMode, Platform, Range};
use kiln_solver::{
    CancellationToken, Event, Graph, SolveError, SolveOptions, Solver, SolverConfig,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::EngineError;
use crate::images::{CommitOptions, Image};
use crate::remote_cache::export::{ExportInput, Exported};
use crate::remote_cache::{CacheExport, CacheImport, RemoteCache};
use crate::value::{LocalDir, RecordStore, Value};
use crate::vertex::{BuildEnv, Vertex, input_indexes};
use crate::worker::Worker;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context directory; `None` for a Dockerfile from stdin with no context.
    pub context: Option<PathBuf>,
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its path as the user named it (for diagnostics and `<name>.dockerignore`).
    pub dockerfile_name: String,
    /// Its path on disk, when it has one.
    pub dockerfile_path: Option<PathBuf>,
    pub options: BuildOptions,
    /// Names to give the result (`-t`).
    pub tags: Vec<String>,
    pub max_parallelism: Option<usize>,
    /// Pull base images even when the store has them (`--pull`).
    pub pull: bool,
    pub commit: CommitOptions,
    /// `--secret`s for `RUN --mount=type=secret`.
    pub secrets: crate::mounts::Secrets,
    /// `--cache-from`: caches asked after a local miss, in order.
    pub cache_from: Vec<CacheImport>,
    /// `--cache-to`: where to write the build's cache after the image is stored.
    pub cache_to: Vec<CacheExport>,
    /// `--allow security.insecure`: `RUN --security=insecure` may run privileged.
    pub allow_insecure: bool,
}

/// A finished build.
#[derive(Debug)]
pub struct BuildResult {
    pub image: Image,
    /// What each `--cache-to` wrote (those that failed with `ignore-error=true` are left out).
    pub cache_exports: Vec<Exported>,
}

/// Why a build failed, with what the CLI needs to show it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile (or the options) could not be lowered: a located diagnostic.
    #[error("{diagnostic}")]
    Frontend {
        diagnostic: Box<Diagnostic>,
        source_text: String,
    },
    /// A step failed.
    #[error("{name}: {message}")]
    Step {
        vertex: Digest,
        /// The progress name, e.g. `[builder 2/4] RUN make`.
        name: String,
        message: String,
        /// The Dockerfile and the lines of the instruction.
        location: Option<Box<StepLocation>>,
    },
    #[error("build cancelled")]
    Cancelled,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Where a failed step came from.
#[derive(Debug, Clone)]
pub struct StepLocation {
    pub file: String,
    pub source_text: String,
    pub ranges: Vec<Range>,
}

/// The frontend's image resolver over the local store.
/// The worker, and the request (whose `pull` says to pull base images even when stored).
struct StoreResolver<'a>(&'a Worker, &'a BuildRequest);

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<ResolvedImage, String> {
        let image = crate::pull::resolve_or_pull(self.0, reference, self.1.pull)
            .map_err(|e| e.to_string())?;
        Ok(ResolvedImage {
            reference: image.name.clone().unwrap_or_else(|| reference.to_string()),
            digest: Some(image.manifest_digest),
            config: image.config,
        })
    }
}

/// Lowers a Dockerfile without running anything (`kiln build --print`).
pub fn lower_only(worker: &Worker, request: &BuildRequest) -> Result<lower::Lowered, BuildError> {
    let options = with_dockerignore(request)?;
    let resolver = StoreResolver(worker, request);
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

/// Runs a build to completion: events go to `events`, `cancel` stops it cleanly.
pub async fn build(
    worker: Arc<Worker>,
    request: BuildRequest,
    events: Option<UnboundedSender<Event<Digest>>>,
    cancel: CancellationToken,
) -> Result<BuildResult, BuildError> {
    let lowered = {
        let worker = worker.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || lower_only(&worker, &request))
            .await
            .map_err(|e| EngineError::Bug(format!("lowering task failed: {e}")))??
    };
    build_lowered(worker, request, lowered, events, cancel).await
}

/// [`build`] for a Dockerfile already lowered with [`lower_only`] (the CLI lowers first to
/// learn the step names it shows).
pub async fn build_lowered(
    worker: Arc<Worker>,
    request: BuildRequest,
    lowered: lower::Lowered,
    events: Option<UnboundedSender<Event<Digest>>>,
    cancel: CancellationToken,
) -> Result<BuildResult, BuildError> {
    let definition = lowered.definition;
    let Some(root) = definition.root() else {
        return Err(EngineError::Bug("the frontend produced a graph without a root".into()).into());
    };
    // Entitlements are checked before anything runs or is found in the cache, as BuildKit
    // does: a cached insecure step must not slip through a build that was not granted it.
    if !request.allow_insecure
        && let Some((digest, _)) = definition.topological().find(|(_, op)| {
            matches!(op, kiln_llb::Op::Exec(e) if e.security == kiln_llb::SecurityMode::Insecure)
        })
    {
        let e = crate::vertex::insecure_not_allowed();
        return Err(step_error(
            &definition,
            SolveError::VertexFailed {
                vertex: digest,
                source: Arc::new(e),
                cancelled: Vec::new(),
            },
        ));
    }

    let ignore = match read_dockerignore(&request)? {
        Some(text) => Some(
            PatternMatcher::parse(&text).map_err(|e| BuildError::Frontend {
                diagnostic: Box::new(Diagnostic::new(
                    kiln_frontend::diagnostic::Severity::Error,
                    format!("invalid .dockerignore: {e}"),
                    None,
                )),
                source_text: text.clone(),
            })?,
        ),
        None => None,
    };
    let empty_context;
    let context_dir = match &request.context {
        Some(dir) => dir.clone(),
        None => {
            empty_context = worker.tempdir("empty-context-")?;
            empty_context.path().to_path_buf()
        }
    };
    crate::context::load_stat_cache(&context_dir, Some(&worker.root().join("context-cache")));
    let env = Arc::new(BuildEnv {
        worker: worker.clone(),
        locals: vec![(
            request.options.context_name.clone(),
            Arc::new(LocalDir {
                path: context_dir,
                ignore,
            }),
        )],
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
    });

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

    let config = SolverConfig {
        max_parallelism: request
            .max_parallelism
            .unwrap_or_else(|| SolverConfig::default().max_parallelism),
    };
    let remotes = Arc::new(open_caches(&worker, &request.cache_from).await);
    let records = RecordStore::new(worker.clone()).with_remotes(remotes.clone());
    let used = records.used();
    let solver = Solver::with_config(records, config);
    let solved = solver
        .solve(
            &graph,
            &[root.vertex],
            SolveOptions {
                events,
                cancel: cancel.clone(),
            },
        )
        .await;
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
    let mut commit = request.commit.clone();
    if commit.source_date_epoch.is_none() {
        commit.source_date_epoch = request.options.source_date_epoch.map(|t| t.max(0) as u64);
    }
    let mut config = lowered.config;
    let epoch = commit.source_date_epoch;
    let created = match epoch {
        Some(t) => (None, kiln_llb::image::format_rfc3339(t as i64, 0)),
        None => {
            let (key, time) = reuse_created_time(&worker, &solved[0].key, &config, &remotes)?;
            (Some(key), time)
        }
    };
    fill_created(&mut config, &created.1);
    let input = ExportInput {
        used: used.snapshot(),
        top: top.clone(),
        created: created.0.map(|key| (key, created.1.clone())),
    };
    let inline = request.cache_to.contains(&CacheExport::Inline);
    tokio::task::spawn_blocking(move || {
        let mut config = config;
        if inline {
            let doc = crate::remote_cache::export::inline_document(&worker, &input)?;
            config.inline_cache = Some(String::from_utf8_lossy(&doc.to_bytes()).into_owned());
        }
        let image = worker.commit_image(top.as_ref(), config, &request.tags, &commit)?;
        let cache_exports = export_caches(&worker, &request.cache_to, &input)?;
        Ok::<_, BuildError>(BuildResult {
            image,
            cache_exports,
        })
    })
    .await
    .map_err(|e| EngineError::Bug(format!("export task failed: {e}")))?
}

/// Opens every `--cache-from`. One that cannot be read is a warning, as in BuildKit: the build
/// runs its steps instead.
async fn open_caches(worker: &Arc<Worker>, specs: &[CacheImport]) -> Vec<RemoteCache> {
    let mut out = Vec::new();
    for spec in specs {
        let worker = worker.clone();
        let spec = spec.clone();
        let opened =
            tokio::task::spawn_blocking(move || RemoteCache::open(&worker, &spec, None)).await;
        match opened {
            Ok(Ok(cache)) => {
                eprintln!(
                    "importing cache manifest from {}: {} records",
                    cache.label(),
                    cache.len()
                );
                out.push(cache);
            }
            Ok(Err(e)) => eprintln!("warning: failed to import cache: {e}"),
            Err(e) => eprintln!("warning: failed to import cache: {e}"),
        }
    }
    out
}

/// Writes every `--cache-to` but `inline` (written with the image).
fn export_caches(
    worker: &Worker,
    specs: &[CacheExport],
    input: &ExportInput,
) -> Result<Vec<Exported>, BuildError> {
    let mut out = Vec::new();
    for spec in specs {
        let ignore_error = match spec {
            CacheExport::Registry { ignore_error, .. }
            | CacheExport::Local { ignore_error, .. } => *ignore_error,
            CacheExport::Inline => continue,
        };
        match crate::remote_cache::export::export(worker, spec, input, None) {
            Ok(done) => out.push(done),
            Err(e) if ignore_error => eprintln!("warning: failed to export cache: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Sets the image's and the new history entries' `created` time where the frontend left them
/// empty (it fills them only for SOURCE_DATE_EPOCH).
fn fill_created(config: &mut kiln_llb::image::ImageConfig, now: &str) {
    let now = now.to_string();
    if config.created.is_none() {
        config.created = Some(now.clone());
    }
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(now.clone());
        }
    }
}

/// The creation time of an image built from exactly this result and config before, or now.
/// Rebuilding an unchanged Dockerfile thus gives the same image ID, as with `docker build`.
///
/// Returns the creation key (hex) with the time; an imported cache may supply the time of the
/// build that exported it.
fn reuse_created_time(
    worker: &Worker,
    result_key: &kiln_solver::CacheKey,
    config: &kiln_llb::image::ImageConfig,
    remotes: &[RemoteCache],
) -> Result<(String, String), EngineError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"kiln-engine/image-created/v1\0");
    h.update(result_key.as_bytes());
    h.update(serde_json::to_vec(config).unwrap_or_default());
    let key = kiln_cache::CacheKey(h.finalize().into());
    let key_hex = hex::encode(key.0);
    if let Some(record) = worker.store().get_record(&key)?
        && !record.description.is_empty()
    {
        return Ok((key_hex, record.description));
    }
    let time = remotes
        .iter()
        .find_map(|r| r.created(&key_hex))
        .map(str::to_string)
        .unwrap_or_else(crate::images::now_rfc3339);
    let mut record = kiln_cache::CacheRecord::new(None);
    record.description = time.clone();
    worker.store().put_record(&key, &record)?;
    Ok((key_hex, time))
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

impl BuildRequest {
    /// A request with default options for a context directory and Dockerfile.
    pub fn new(context: Option<PathBuf>, dockerfile: Vec<u8>, dockerfile_name: &str) -> Self {
        BuildRequest {
            context,
            dockerfile,
            dockerfile_name: dockerfile_name.to_string(),
            dockerfile_path: None,
            options: BuildOptions {
                network: NetworkMode::Default,
                ..BuildOptions::default()
            },
            tags: Vec::new(),
            max_parallelism: None,
            pull: false,
            commit: CommitOptions::default(),
            secrets: crate::mounts::Secrets::default(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            allow_insecure: false,
        }
    }
}
