//! `kiln build`: options in, a Dockerfile lowered and solved, progress shown, an image stored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kiln_engine::{
    BuildError, BuildRequest, CancellationToken, ContextInput, ContextSpec, FetchedContext,
    ProvenanceMode,
};
use kiln_frontend::diagnostic::{Diagnostic, Position, Severity, Span};
use kiln_image::{CommitOptions, Output};
use kiln_llb::{NetworkMode, Platform};

use super::check::Call;
use crate::backend::{Backend, BuildOutcome, Context};
use crate::progress::{Mode, Renderer};
use crate::runflags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Print {
    Llb,
    Dot,
    Outline,
    Targets,
    Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Default,
    Host,
    None,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, `-` (a tar archive or a Dockerfile on stdin), a git
    /// repository (`https://host/repo.git#ref:subdir`, `git://`, `file://`, a path to a bare
    /// repository) or the http(s) URL of a tarball or Dockerfile.
    context: String,
    /// With `attach`: the build id.
    #[arg(hide = true)]
    attach_id: Option<String>,
    /// Run the build on remote workers: `tcp://HOST:PORT` or `unix:///PATH`, comma-separated
    /// for several, or a builder named in ~/.config/kiln/config.toml.
    #[arg(long, env = "KILN_BUILDER", value_name = "ADDR[,ADDR...]|NAME")]
    builder: Option<String>,
    /// mTLS files for --builder: DIR/ca.pem (the worker's CA), DIR/cert.pem, DIR/key.pem.
    #[arg(long, env = "KILN_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// With --builder: put the image into the local store too (only the layers it lacks are
    /// downloaded). Local builds always store it.
    #[arg(long)]
    load: bool,
    /// Name and optionally tag the image (`name:tag`); repeatable.
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Set a build-time variable (`NAME=value`, or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    no_cache: bool,
    /// Run every step of these stages, ignoring the cache; repeatable.
    #[arg(long)]
    no_cache_filter: Vec<String>,
    /// Add a label to the image (`KEY=VALUE`); repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Network for RUN steps: `default` and `host` use the host's network, `none` isolates.
    #[arg(long, value_enum, default_value = "default")]
    network: NetworkArg,
    /// Progress output: auto (tty on a terminal, else plain), tty, plain, rawjson, quiet.
    #[arg(long, value_enum, default_value = "auto")]
    progress: Mode,
    /// Write the image ID to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON) to this file.
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// Say why each step that ran was not taken from the cache (a changed context file, build
    /// argument, environment value or base image, an earlier step, or a step never built).
    #[arg(long)]
    explain: bool,
    /// How many steps may run at once (default: four per core, at least eight).
    #[arg(long)]
    max_parallelism: Option<usize>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Check the registry for newer versions of the base images even when they are stored.
    #[arg(long)]
    pull: bool,
    /// Push the tagged image to its registry after the build.
    #[arg(long)]
    push: bool,
    /// Print the build graph, outline, targets or image config instead of building.
    #[arg(long, value_enum)]
    print: Option<Print>,
    /// Run the build checks on every stage instead of building; exits 1 when a rule is
    /// violated (`--call=check`).
    #[arg(long)]
    check: bool,
    /// What the build does: `build` (default), `check[,format=json]`, `outline` or `targets`.
    #[arg(long, value_name = "build|check|outline|targets")]
    call: Option<String>,
    /// Layer compression: gzip (default), zstd[,level=N] or uncompressed.
    #[arg(long)]
    compression: Option<String>,
    /// The target platforms (`linux/amd64,linux/arm64`; repeatable). RUN steps for another
    /// architecture run through QEMU user emulation (binfmt_misc).
    #[arg(long)]
    platform: Vec<String>,
    /// Expose a secret to `RUN --mount=type=secret` (`id=X,src=FILE` or `id=X,env=VAR`);
    /// repeatable.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// Where the result goes, in BuildKit's syntax: `type=image` (default), `type=oci,dest=FILE`
    /// (`tar=false` for a layout dir), `type=docker,dest=FILE`, `type=local,dest=DIR`,
    /// `type=tar,dest=FILE`; `dest=-` is stdout.
    #[arg(short, long = "output", value_name = "type=TYPE,dest=PATH,...")]
    output: Vec<String>,
    /// Import build cache: `type=registry,ref=REF` (or just `REF`), `type=local,src=DIR`;
    /// repeatable. A step whose key the cache has is fetched instead of run.
    #[arg(long = "cache-from", value_name = "type=TYPE,ref=REF|src=DIR")]
    cache_from: Vec<String>,
    /// Export build cache: `type=registry,ref=REF[,mode=min|max]`,
    /// `type=local,dest=DIR[,mode=min|max]`, `type=inline`; repeatable.
    #[arg(
        long = "cache-to",
        value_name = "type=TYPE,ref=REF|dest=DIR,mode=min|max"
    )]
    cache_to: Vec<String>,
    /// Grant an entitlement: `security.insecure` lets `RUN --security=insecure` run
    /// privileged; `network.host` is accepted (host networking needs no grant here).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<String>,
    /// Add a named context: `NAME=DIR`, `NAME=docker-image://REF`,
    /// `NAME=oci-layout://PATH[@DIGEST]` or `NAME=URL` (git or http); `FROM NAME`,
    /// `COPY --from=NAME` and a stage called NAME use it. Repeatable.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// Give `RUN --mount=type=ssh` an ssh agent: `default` ($SSH_AUTH_SOCK), `ID=SOCKET` or
    /// `ID=KEYFILE[,KEYFILE]`. Repeatable.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEYFILE[,KEYFILE]]")]
    ssh: Vec<String>,
    /// Add a line to /etc/hosts of RUN steps (`HOST:IP`); repeatable.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
    /// A resource limit for RUN steps (`nofile=1024:2048`); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimits: Vec<String>,
    /// The size of /dev/shm in RUN steps (`64m`).
    #[arg(long = "shm-size", value_name = "SIZE")]
    shm_size: Option<String>,
    /// Attach a SLSA provenance attestation to the image: `mode=min` (default with a bare
    /// `true`) or `mode=max`.
    #[arg(long, value_name = "mode=min|max")]
    provenance: Option<String>,
}

/// The `--output`s of a build, parsed and checked to fit one committed image.
fn outputs_of(args: &BuildArgs) -> anyhow::Result<Vec<Output>> {
    let mut outputs: Vec<Output> = Vec::new();
    for one in &args.output {
        let parsed: Output = one
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --output {one:?}: {e}"))?;
        outputs.push(parsed);
    }
    kiln_image::output::validate_outputs(&outputs).map_err(anyhow::Error::msg)?;
    Ok(outputs)
}

fn parse_kv(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("invalid {what} {s:?}: expected KEY=VALUE"),
    }
}

/// The context directory and the Dockerfile: a directory as given, or a context fetched into
/// one (stdin, a URL, a git repository; kept alive by the returned [`FetchedContext`]).
struct Sources {
    context: Option<PathBuf>,
    dockerfile: Vec<u8>,
    dockerfile_name: String,
    dockerfile_path: Option<PathBuf>,
    fetched: Option<FetchedContext>,
}

fn sources(args: &BuildArgs, root: &Path) -> anyhow::Result<Sources> {
    let stdin_dockerfile = args.file.as_deref() == Some(Path::new("-"));
    let fetch = |input: ContextInput<'_>| {
        kiln_engine::fetch_context(input, &root.join("tmp"))
            .map_err(|e| anyhow::anyhow!("{}", crate::error::chain_of(&e)))
    };
    let fetched = if args.context == "-" {
        if stdin_dockerfile {
            bail!("-f - and a context from stdin (-) cannot both read stdin");
        }
        Some(fetch(ContextInput::Stdin(&mut std::io::stdin().lock()))?)
    } else if kiln_engine::is_remote_context(&args.context) {
        Some(fetch(ContextInput::Url(&args.context))?)
    } else if let Some(url) = kiln_engine::bare_repository_url(&args.context) {
        Some(fetch(ContextInput::Url(&url))?)
    } else {
        None
    };
    // A Dockerfile where a context was expected (stdin text, a URL of a plain file): the build
    // has no context, as with `docker build - < Dockerfile`.
    if let Some(f) = &fetched
        && let Some(text) = &f.dockerfile
    {
        return Ok(Sources {
            context: None,
            dockerfile: text.clone(),
            dockerfile_name: "Dockerfile".into(),
            dockerfile_path: None,
            fetched,
        });
    }
    let context = match &fetched {
        Some(f) => f.path.clone(),
        None => {
            let context = PathBuf::from(&args.context);
            if !context.is_dir() {
                bail!("build context {} is not a directory", context.display());
            }
            context
        }
    };
    let (text, name, path) = if stdin_dockerfile {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("failed to read the Dockerfile from stdin")?;
        (text, "Dockerfile".to_string(), None)
    } else {
        let path = match &args.file {
            // A fetched context holds its Dockerfile: -f names a path inside it.
            Some(f) if fetched.is_some() => context.join(f),
            Some(f) => f.clone(),
            None => {
                let upper = context.join("Dockerfile");
                let lower = context.join("dockerfile");
                if !upper.exists() && lower.exists() {
                    lower
                } else {
                    upper
                }
            }
        };
        let text = std::fs::read(&path)
            .with_context(|| format!("failed to read Dockerfile {}", path.display()))?;
        let name = args
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "Dockerfile".to_string());
        (text, name, Some(path))
    };
    Ok(Sources {
        context: Some(std::fs::canonicalize(&context).unwrap_or(context)),
        dockerfile: text,
        dockerfile_name: name,
        dockerfile_path: path,
        fetched,
    })
}

fn request(
    args: &BuildArgs,
    root: &Path,
) -> anyhow::Result<(BuildRequest, Option<FetchedContext>)> {
    let Sources {
        context,
        dockerfile,
        dockerfile_name,
        dockerfile_path,
        fetched,
    } = sources(args, root)?;
    let mut build_args = Vec::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            // `--build-arg NAME` takes the value from the environment, or is ignored.
            None => {
                if let Ok(v) = std::env::var(arg) {
                    build_args.push((arg.clone(), v));
                }
            }
        }
    }
    let epoch_text = build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "SOURCE_DATE_EPOCH")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .filter(|v| !v.is_empty())
        });
    let source_date_epoch = match epoch_text {
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .ok_or_else(|| anyhow::anyhow!("invalid SOURCE_DATE_EPOCH: {v}"))?,
        ),
        None => None,
    };
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = parse_kv(l, "label")?;
        labels.insert(k, v);
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for value in &args.platform {
        for p in Platform::parse_list(value).map_err(|e| anyhow::anyhow!("{e}"))? {
            if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
    }
    let platform = match platforms.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let mut request = BuildRequest::new(context, dockerfile, &dockerfile_name);
    request.dockerfile_path = dockerfile_path;
    request.options.build_args = build_args;
    request.options.target = args.target.clone();
    request.options.labels = labels;
    request.options.platform = platform;
    if platforms.len() > 1 {
        request.platforms = platforms;
    }
    request.options.no_cache = args.no_cache;
    request.options.no_cache_filter = args.no_cache_filter.clone();
    request.options.network = match args.network {
        NetworkArg::Default => NetworkMode::Default,
        NetworkArg::Host => NetworkMode::Host,
        NetworkArg::None => NetworkMode::None,
    };
    request.options.source_date_epoch = source_date_epoch;
    request.outputs = outputs_of(args)?;
    request.tags = args.tags.clone();
    request.push = args.push;
    request.max_parallelism = args.max_parallelism;
    request.pull = args.pull;
    request.explain = args.explain;
    for secret in &args.secrets {
        let parsed = kiln_engine::Secrets::parse_flag(secret).map_err(anyhow::Error::msg)?;
        request.secrets.0.push(parsed);
    }
    for entitlement in &args.allow {
        match entitlement.as_str() {
            "security.insecure" => request.allow_insecure = true,
            "device" => request.extras.run.allow_devices = true,
            "network.host" => {}
            other => {
                bail!(
                    "unknown entitlement {other:?}: expected security.insecure, device or network.host"
                )
            }
        }
    }
    extras(args, &mut request.extras)?;
    request.extras.origin = fetched.as_ref().and_then(|f| f.origin.clone());
    for spec in &args.cache_from {
        request.cache_from.push(
            spec.parse()
                .map_err(|e| anyhow::anyhow!("invalid --cache-from {spec:?}: {e}"))?,
        );
    }
    for spec in &args.cache_to {
        request.cache_to.push(
            spec.parse()
                .map_err(|e| anyhow::anyhow!("invalid --cache-to {spec:?}: {e}"))?,
        );
    }
    request.commit = CommitOptions {
        compression: match &args.compression {
            Some(c) => c.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            None => CommitOptions::default().compression,
        },
        ..CommitOptions::default()
    };
    Ok((request, fetched))
}

/// `--build-context`, `--ssh`, `--add-host`, `--ulimit`, `--shm-size`, `--provenance`.
fn extras(args: &BuildArgs, extras: &mut kiln_engine::BuildExtras) -> anyhow::Result<()> {
    for value in &args.build_contexts {
        let (name, spec) = value
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("invalid --build-context {value:?}: expected NAME=VALUE")
            })?;
        let spec = ContextSpec::parse(spec)
            .map_err(|e| anyhow::anyhow!("invalid --build-context {value:?}: {e}"))?;
        extras.contexts.push((name.to_string(), spec));
    }
    for value in &args.ssh {
        extras
            .ssh
            .push(kiln_engine::SshSpec::parse(value).map_err(anyhow::Error::msg)?);
    }
    for value in &args.add_hosts {
        extras
            .run
            .extra_hosts
            .push(runflags::parse_add_host(value).map_err(anyhow::Error::msg)?);
    }
    for value in &args.ulimits {
        let (name, soft, hard) = runflags::parse_ulimit(value).map_err(anyhow::Error::msg)?;
        extras
            .run
            .ulimits
            .push(kiln_engine::Ulimit { name, soft, hard });
    }
    if let Some(size) = &args.shm_size {
        extras.run.shm_size = Some(runflags::parse_size(size).map_err(anyhow::Error::msg)?);
    }
    if let Some(value) = &args.provenance {
        extras.provenance = ProvenanceMode::parse(value).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

pub fn run(args: BuildArgs, ctx: &Context) -> ExitCode {
    match build(args, ctx) {
        Ok(code) => code,
        Err(e) => {
            crate::error::print(&crate::error::chain(&e), ctx.root());
            ExitCode::FAILURE
        }
    }
}

fn build(args: BuildArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if args.context == "attach"
        && let Some(id) = &args.attach_id
    {
        return attach(&args, id, ctx);
    }
    if let Some(extra) = &args.attach_id {
        bail!("unexpected argument {extra:?} (one build context is allowed)");
    }
    // A fetched context lives until the build is done.
    let (request, _fetched) = request(&args, ctx.root())?;
    let remote = match &args.builder {
        Some(builder) if !builder.is_empty() => {
            Some(ctx.remote(builder, args.tls_dir.as_deref(), args.load)?)
        }
        _ => None,
    };
    let backend: &dyn Backend = match &remote {
        Some(r) => r,
        None => ctx.backend()?,
    };
    let call = match (&args.call, args.check) {
        (Some(c), _) => Call::parse(c)?,
        (None, true) => Call::Check { json: false },
        (None, false) => Call::Build,
    };
    match call {
        Call::Check { json } => return Ok(super::check::run(backend, request, json)),
        Call::Outline => return print_only(backend, &request, Print::Outline),
        Call::Targets => return print_only(backend, &request, Print::Targets),
        Call::Build => {}
    }
    if let Some(print) = args.print {
        return print_only(backend, &request, print);
    }
    let to_stdout = request
        .outputs
        .iter()
        .any(|o| o.dest.as_deref() == Some(Path::new("-")));
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("refusing to write the output to a terminal: redirect stdout or give dest=FILE");
    }
    let mode = if args.quiet {
        Mode::Quiet
    } else {
        args.progress.resolve()
    };
    let mut renderer = Renderer::new(mode, Some(ctx.root().join("logs")));
    let names = request.store_names();
    let result = run_with_progress(&mut renderer, move |tx, cancel| {
        backend.build(request, Some(tx), cancel)
    })?;
    if let Some(log) = renderer.log_path() {
        eprintln!("full build log: {}", log.display());
    }
    let result = match result {
        Ok(result) => result,
        Err(e) => return Ok(report(&e, Some(&renderer), ctx.root())),
    };
    finish(&args, &result, &names, to_stdout, &renderer)
}

/// `kiln build attach ID`: follows a build on a worker until it ends.
fn attach(args: &BuildArgs, id: &str, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Some(builder) = args.builder.as_deref().filter(|b| !b.is_empty()) else {
        bail!("kiln build attach needs --builder (or KILN_BUILDER): the worker running the build");
    };
    let remote = ctx.remote(builder, args.tls_dir.as_deref(), false)?;
    let mode = if args.quiet {
        Mode::Quiet
    } else {
        args.progress.resolve()
    };
    let mut renderer = Renderer::new(mode, Some(ctx.root().join("logs")));
    let result = run_with_progress(&mut renderer, |tx, cancel| remote.attach(id, tx, cancel))?;
    let result = match result {
        Ok(result) => result,
        Err(BuildError::Cancelled) => {
            eprintln!("detached; the build goes on (kiln build attach {id} to follow it again)");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Ok(report(&e, Some(&renderer), ctx.root())),
    };
    finish(args, &result, &result.names.clone(), false, &renderer)
}

/// After a successful build: the id and metadata files, and what happened to the image.
fn finish(
    args: &BuildArgs,
    result: &BuildOutcome,
    names: &[String],
    to_stdout: bool,
    renderer: &Renderer,
) -> anyhow::Result<ExitCode> {
    let id = result.image_id.to_string();
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let mut meta = serde_json::json!({
            "containerimage.config.digest": id,
            "containerimage.digest": result.manifest_digest.to_string(),
            "image.name": args.tags.join(","),
        });
        if let (Some(steps), Some(obj)) = (renderer.explained(), meta.as_object_mut()) {
            let steps: Vec<_> = steps.iter().map(crate::explain::json).collect();
            obj.insert("kiln.explain".into(), steps.into());
        }
        if let Some(remote) = &result.remote {
            meta["kiln.remote"] = serde_json::json!({
                "builder": remote.builder,
                "worker_id": remote.worker_id,
                "build_id": remote.build_id,
                "context_uploaded_bytes": remote.context_uploaded_bytes,
                "layers_downloaded_bytes": remote.layers_downloaded_bytes,
            });
        }
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(remote) = &result.remote
        && !remote.loaded
        && !remote.exported
        && !args.quiet
    {
        eprintln!(
            "WARNING: no output specified: the result stays in the builder's store ({}); use --load, --push or -o to get it",
            remote.builder
        );
    }
    if args.quiet {
        // stdout may carry the exported archive.
        if to_stdout {
            eprintln!("{id}");
        } else {
            println!("{id}");
        }
    } else {
        eprintln!("writing image {id} done");
        for name in names {
            eprintln!("naming to {} done", kiln_image::store_name(name)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--print`: the graph, outline, targets or config, without building.
fn print_only(
    backend: &dyn Backend,
    request: &BuildRequest,
    print: Print,
) -> anyhow::Result<ExitCode> {
    let text = if print == Print::Targets {
        match kiln_frontend::lower::stages(&request.dockerfile) {
            Ok(stages) => kiln_frontend::print::targets(&stages),
            Err(d) => {
                let e = BuildError::Frontend {
                    diagnostic: Box::new(d),
                    source_text: String::from_utf8_lossy(&request.dockerfile).into_owned(),
                };
                return Ok(report(&e, None, Path::new("/")));
            }
        }
    } else {
        let lowered = match backend.lower(request) {
            Ok(l) => l,
            Err(e) => return Ok(report(&e, None, Path::new("/"))),
        };
        match print {
            Print::Llb => kiln_frontend::print::llb_text(&lowered.definition),
            Print::Dot => kiln_frontend::print::dot(&lowered.definition),
            Print::Outline => kiln_frontend::print::outline(&lowered.outline),
            Print::Config => kiln_frontend::print::config(&lowered.config),
            Print::Targets => unreachable!("handled above"),
        }
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the build on a thread of its own while this one draws its progress; Ctrl-C cancels it.
fn run_with_progress(
    renderer: &mut Renderer,
    job: impl FnOnce(kiln_engine::ProgressSender, CancellationToken) -> Result<BuildOutcome, BuildError>
    + Send,
) -> anyhow::Result<Result<BuildOutcome, BuildError>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let drawing = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    std::thread::scope(|scope| {
        let job = {
            let cancel = cancel.clone();
            scope.spawn(move || job(tx, cancel))
        };
        drawing.block_on(async {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
            let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
            let mut cancelled = false;
            loop {
                tokio::select! {
                    event = rx.recv() => match event {
                        Some(event) => renderer.handle(event),
                        None => break,
                    },
                    _ = ticker.tick() => renderer.draw(false),
                    _ = &mut ctrl_c, if !cancelled => {
                        eprintln!("\ncancelling the build (Ctrl-C)...");
                        cancel.cancel();
                        cancelled = true;
                    }
                }
            }
        });
        renderer.draw(true);
        job.join()
            .map_err(|_| anyhow::anyhow!("this is a bug in kiln: the build thread panicked"))
    })
}

/// Prints a build failure: the step, the Dockerfile lines with a caret, the step's last output.
fn report(error: &BuildError, renderer: Option<&Renderer>, root: &Path) -> ExitCode {
    match error {
        BuildError::Frontend {
            diagnostic,
            source_text,
        } => {
            let file = diagnostic
                .file
                .clone()
                .unwrap_or_else(|| "Dockerfile".into());
            eprint!("{}", diagnostic.render(&file, source_text));
        }
        BuildError::Step {
            vertex,
            name,
            message,
            location,
        } => {
            if let Some(renderer) = renderer {
                let tail = renderer.tail(vertex);
                if !tail.is_empty() {
                    eprintln!("------\n > {name}:");
                    for line in &tail {
                        eprintln!("{line}");
                    }
                    eprintln!("------");
                }
            }
            let headline = format!("failed to solve: {name}: {message}");
            match location.as_ref().and_then(|l| Some((l, l.ranges.first()?))) {
                Some((loc, range)) => {
                    let span = Span {
                        start: Position {
                            line: range.start.line,
                            column: range.start.column,
                        },
                        end: Position {
                            line: range.end.line,
                            column: range.end.column,
                        },
                    };
                    let d = Diagnostic::new(Severity::Error, headline, Some(span));
                    eprint!("{}", d.render(&loc.file, &loc.source_text));
                }
                None => eprintln!("error: {headline}"),
            }
            if let Some(hint) = crate::error::disk_full_hint(message, root) {
                eprintln!("error: {hint}");
            }
        }
        BuildError::Cancelled => eprintln!("error: build cancelled"),
        BuildError::Invalid(message) => eprintln!("error: {message}"),
        BuildError::Engine(e) => crate::error::print(&crate::error::chain_of(e), root),
    }
    ExitCode::FAILURE
}
