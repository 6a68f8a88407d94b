//! LLB ops as solver operations: how each op kind gets its cache key and runs — Source (image,
//! local context), Exec (a sandbox over an overlay snapshot), File (copies and other file
//! actions in Rust on a mounted snapshot).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_executor::sandbox::{self, CancelToken, Network, RootFs, SandboxSpec, User};
use kiln_executor::snapshot::{Mounts, SnapshotId};
use kiln_llb::{
    CopyAction, Digest, ExecOp, FileAction, FileOp, IdOrName, NetworkMode, Op, Owner, SecurityMode,
    SourceOp,
};
use kiln_solver::{ContentKey, ExecCtx, Operation, Stream};

use crate::context;
use crate::error::EngineError;
use crate::fileop::copy::{self, CopyOptions, Ownership, SourceFilter};
use crate::fileop::{archive, http};
use crate::mounts::{self, Secrets};
use crate::value::{LocalDir, Value};
use kiln_image::rootfs::user::{self as owner, ResolvedUser};
use kiln_image::rootfs::{clean_abs, resolve_in_root};
use kiln_image::{ImageStore, with_private_mounts};

/// Settings shared by every vertex of one build.
#[derive(Debug)]
pub struct BuildEnv {
    pub images: Arc<ImageStore>,
    /// Local sources by name (`context`, `dockerfile`...).
    pub locals: Vec<(String, Arc<LocalDir>)>,
    /// The empty directory standing in for a missing context, removed with the build.
    pub _empty_context: Option<tempfile::TempDir>,
    /// Unique per build: local sources are keyed by it, so what is read from them is keyed by
    /// content instead.
    pub session: String,
    /// `kiln build --network`: the default for RUN steps.
    pub default_network: NetworkMode,
    /// `kiln build --secret`: what `RUN --mount=type=secret` reads.
    pub secrets: Arc<Secrets>,
    /// The graph's local-source vertices: only copies from these get a content key.
    pub local_sources: Vec<Digest>,
    /// `kiln build --allow security.insecure`: `RUN --security=insecure` may run privileged.
    pub allow_insecure: bool,
}

/// One LLB op of a build, ready for the solver.
pub struct Vertex {
    pub digest: Digest,
    pub op: Op,
    pub ignore_cache: bool,
    /// Environment added to an Exec op outside its digest and cache key (proxy settings).
    pub extra_env: Vec<(String, String)>,
    pub env: Arc<BuildEnv>,
}

impl Operation for Vertex {
    type Value = Value;
    type Error = EngineError;

    fn cache_key_base(&self) -> Vec<u8> {
        let mut key = b"kiln-engine/op/v2\0".to_vec();
        match &self.op {
            Op::Source(SourceOp::Image(image)) => {
                // An image is its layers: key it by their chain ID, so the same layers reached
                // through another manifest (a docker-archive round trip, a re-compressing
                // mirror, a second import of one tar) key every dependent step the same, as
                // BuildKit's keys do. A name without a digest is looked up now, so a re-tag of
                // the base is never hidden by the cache.
                let found = match &image.digest {
                    Some(digest) => self.env.images.image(&digest.to_string()),
                    None => self.env.images.image(&image.reference),
                };
                match found {
                    Ok(found) => {
                        key.extend_from_slice(b"image-layers\0");
                        match kiln_image::chain_ids(&found.config.rootfs.diff_ids).last() {
                            Some(chain) => key.extend_from_slice(chain.hex().as_bytes()),
                            None => key.extend_from_slice(b"none"),
                        }
                    }
                    // Executing will report the lookup's error; the key only has to be unique.
                    Err(_) => key.extend_from_slice(self.digest.hex().as_bytes()),
                }
            }
            op => {
                // Inputs by position: their own keys stand for them in the solver's key.
                key.extend_from_slice(&kiln_llb::encode_op_without_inputs(op, &input_indexes(op)));
                if let Op::Source(SourceOp::Local(_)) = op {
                    key.extend_from_slice(b"\0session\0");
                    key.extend_from_slice(self.env.session.as_bytes());
                }
            }
        }
        key
    }

    fn has_content_key(&self) -> bool {
        // Only copies from the build context are keyed by content. Claiming a content key for
        // a copy from another stage would make the solver materialise that stage just to
        // compute a key (and `None` anyway), serialising independent stages.
        matches!(&self.op, Op::File(file) if file.actions.iter().any(|a| matches!(
            a,
            FileAction::Copy(copy) if self.env.local_sources.contains(&copy.source.vertex)
        )))
    }

    async fn content_key(
        &self,
        inputs: &[Value],
        _ctx: &ExecCtx,
    ) -> Result<Option<ContentKey>, EngineError> {
        let Op::File(file) = &self.op else {
            return Ok(None);
        };
        let input_index = input_indexes(&self.op);
        let file = file.clone();
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || context::copy_content_key(&file, &input_index, &inputs))
            .await
            .map_err(|e| EngineError::Bug(format!("content key task failed: {e}")))?
    }

    async fn execute(&self, inputs: &[Value], ctx: &ExecCtx) -> Result<Value, EngineError> {
        match &self.op {
            Op::Source(SourceOp::Http(http)) => {
                let images = self.env.images.clone();
                let http = http.clone();
                let digest = self.digest;
                tokio::task::spawn_blocking(move || download_source(&images, &http, &digest))
                    .await
                    .map_err(|e| EngineError::Bug(format!("download task failed: {e}")))?
            }
            Op::Source(source) => self.source(source),
            Op::Exec(exec) => self.exec(exec, inputs, ctx).await,
            Op::File(file) => {
                let env = self.env.clone();
                let file = file.clone();
                let index = input_indexes(&self.op);
                let inputs = inputs.to_vec();
                let digest = self.digest;
                tokio::task::spawn_blocking(move || {
                    run_file_op(&env, &file, &digest, &index, &inputs)
                })
                .await
                .map_err(|e| EngineError::Bug(format!("file op task failed: {e}")))?
            }
            Op::Merge(merge) => {
                let images = self.env.images.clone();
                let index = input_indexes(&self.op);
                let order: Vec<Digest> = merge.inputs.iter().map(|i| i.vertex).collect();
                let inputs = inputs.to_vec();
                let digest = self.digest;
                tokio::task::spawn_blocking(move || {
                    let values = order
                        .iter()
                        .map(|d| value_of(&index, &inputs, d).cloned())
                        .collect::<Result<Vec<_>, _>>()?;
                    crate::fileop::merge::merge(&images, &values, &digest)
                })
                .await
                .map_err(|e| EngineError::Bug(format!("merge task failed: {e}")))?
            }
        }
    }

    fn ignore_cache(&self) -> bool {
        self.ignore_cache
    }
}

/// The distinct input vertices of an op in the order the solver graph lists them.
pub fn input_indexes(op: &Op) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for input in op.inputs() {
        if !out.contains(&input.vertex) {
            out.push(input.vertex);
        }
    }
    out
}

fn value_of<'a>(
    index: &[Digest],
    inputs: &'a [Value],
    digest: &Digest,
) -> Result<&'a Value, EngineError> {
    index
        .iter()
        .position(|d| d == digest)
        .and_then(|i| inputs.get(i))
        .ok_or_else(|| EngineError::Bug(format!("input {digest} of a vertex was not solved")))
}

impl Vertex {
    fn source(&self, source: &SourceOp) -> Result<Value, EngineError> {
        match source {
            SourceOp::Scratch => Ok(Value::Scratch),
            SourceOp::Image(image) => {
                // The frontend pinned the manifest it resolved; build exactly that one.
                let found = match &image.digest {
                    Some(digest) => self.env.images.image(&digest.to_string()),
                    None => self.env.images.image(&image.reference),
                }?;
                Ok(match self.env.images.unpack(&found)? {
                    Some(id) => Value::Snapshot(id),
                    None => Value::Scratch,
                })
            }
            SourceOp::Local(local) => self
                .env
                .locals
                .iter()
                .find(|(name, _)| *name == local.name)
                .map(|(_, dir)| Value::Local(dir.clone()))
                .ok_or_else(|| {
                    EngineError::Bug(format!("local source {:?} was not provided", local.name))
                }),
            SourceOp::Http(_) => Err(EngineError::Bug(
                "http sources are downloaded in execute".into(),
            )),
            SourceOp::Git(git) => Err(EngineError::NotSupported(format!(
                "git sources ({})",
                git.remote
            ))),
        }
    }

    async fn exec(
        &self,
        exec: &ExecOp,
        inputs: &[Value],
        ctx: &ExecCtx,
    ) -> Result<Value, EngineError> {
        if exec.security == SecurityMode::Insecure && !self.env.allow_insecure {
            return Err(insecure_not_allowed());
        }
        let index = input_indexes(&self.op);
        let parent = match value_of(&index, inputs, &exec.root.vertex)? {
            Value::Snapshot(id) => Some(id.clone()),
            Value::Scratch => None,
            Value::Local(_) => {
                return Err(EngineError::NotSupported(
                    "running a command on the build context as root filesystem".into(),
                ));
            }
        };
        let images = self.env.images.clone();
        let network = match (exec.network, self.env.default_network) {
            (NetworkMode::None, _) | (NetworkMode::Default, NetworkMode::None) => Network::None,
            _ => Network::Host,
        };
        let mut exec = exec.clone();
        exec.env.extend(self.extra_env.iter().cloned());
        let digest = self.digest;
        let log_ctx = ctx.clone();
        let cancel = CancelToken::new();
        let watcher = {
            let cancel = cancel.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.cancelled().await;
                cancel.cancel();
            })
        };
        let inputs = inputs.to_vec();
        let secrets = self.env.secrets.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mounts = ExecMounts {
                index: &index,
                inputs: &inputs,
                secrets: &secrets,
            };
            run_exec(
                &images,
                &exec,
                parent.as_ref(),
                network,
                &digest,
                &log_ctx,
                &cancel,
                &mounts,
            )
        })
        .await
        .map_err(|e| EngineError::Bug(format!("exec task failed: {e}")));
        watcher.abort();
        result?
    }
}

/// ADD from a URL: the download becomes a one-file snapshot. The cache key is the op (URL
/// and checksum), so a URL is fetched once per store until `--no-cache`.
fn download_source(
    images: &ImageStore,
    http: &kiln_llb::HttpSource,
    digest: &Digest,
) -> Result<Value, EngineError> {
    let active = images
        .snapshots()
        .prepare(&format!("http-{}", digest.hex()), None)?;
    let result = (|| {
        let dir = match active.mounts() {
            Mounts::Bind { source, .. } => source.clone(),
            Mounts::Overlay { upperdir, .. } => upperdir.clone(),
            Mounts::OverlayReadonly { .. } => {
                return Err(EngineError::Bug("prepare gave a read-only mount".into()));
            }
        };
        let name = http
            .filename
            .clone()
            .unwrap_or_else(|| http::filename_from_url(&http.url));
        let checksum = http.checksum.as_ref().map(|d| d.to_string());
        http::download(
            &http.url,
            &dir,
            &name,
            http.chmod.unwrap_or(0o600),
            checksum.as_deref(),
        )?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Value::Snapshot(images.snapshots().commit(active)?)),
        Err(e) => {
            let _ = images.snapshots().discard(active);
            Err(e)
        }
    }
}

/// What an Exec op's `--mount`s are made from.
struct ExecMounts<'a> {
    index: &'a [Digest],
    inputs: &'a [Value],
    secrets: &'a Secrets,
}

/// Runs the sandbox, with the op's `--mount`s prepared around it (in a private mount namespace
/// when some of them are mounted here).
fn run_sandbox(
    images: &ImageStore,
    exec: &ExecOp,
    spec: &SandboxSpec,
    digest: &Digest,
    extra: &ExecMounts<'_>,
    ctx: &ExecCtx,
    cancel: &CancelToken,
) -> Result<sandbox::ExitInfo, EngineError> {
    let start = |spec: &SandboxSpec| {
        let mut sink = |stream: sandbox::Stream, data: &[u8]| {
            let stream = match stream {
                sandbox::Stream::Stdout => Stream::Stdout,
                sandbox::Stream::Stderr => Stream::Stderr,
            };
            ctx.log(stream, data);
        };
        match sandbox::run(spec, &mut sink, cancel) {
            Err(sandbox::SandboxError::Cancelled) => Err(EngineError::Cancelled),
            other => Ok(other?),
        }
    };
    if exec.mounts.is_empty() && exec.secret_env.is_empty() {
        return start(spec);
    }
    let with_mounts = || {
        let prepared = mounts::prepare(
            images,
            exec,
            digest,
            extra.index,
            extra.inputs,
            extra.secrets,
        )?;
        let mut spec = spec.clone();
        spec.mounts.extend(prepared.mounts.iter().cloned());
        spec.env
            .extend(prepared.env.iter().map(|(k, v)| format!("{k}={v}")));
        let result = start(&spec);
        prepared.release(images);
        result
    };
    if mounts::needs_namespace(exec) {
        with_private_mounts(with_mounts)
    } else {
        with_mounts()
    }
}

#[allow(clippy::too_many_arguments)]
fn run_exec(
    images: &ImageStore,
    exec: &ExecOp,
    parent: Option<&SnapshotId>,
    network: Network,
    digest: &Digest,
    ctx: &ExecCtx,
    cancel: &CancelToken,
    extra: &ExecMounts<'_>,
) -> Result<Value, EngineError> {
    let active = images
        .snapshots()
        .prepare(&format!("exec-{}", digest.hex()), parent)?;
    let result = (|| {
        let (lowerdirs, upperdir, workdir) = match active.mounts().clone() {
            Mounts::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => (lowerdirs, upperdir, workdir),
            Mounts::Bind { source, .. } => (Vec::new(), source.clone(), PathBuf::new()),
            Mounts::OverlayReadonly { .. } => {
                return Err(EngineError::Bug("prepare gave a read-only mount".into()));
            }
        };
        let rootfs = if workdir.as_os_str().is_empty() {
            RootFs::Path(upperdir.clone())
        } else {
            RootFs::Overlay {
                lowerdirs: lowerdirs.clone(),
                upperdir: upperdir.clone(),
                workdir,
            }
        };
        let mut layers = vec![upperdir.clone()];
        layers.extend(lowerdirs.iter().cloned());
        let (user, home) = resolve_exec_user(&layers, &exec.user)?;
        let mut spec = SandboxSpec::new(rootfs, exec.args.clone());
        spec.env = exec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !exec.env.iter().any(|(k, _)| k == "HOME") {
            spec.env.push(format!("HOME={home}"));
        }
        spec.cwd = PathBuf::from(if exec.cwd.is_empty() { "/" } else { &exec.cwd });
        spec.user = user;
        spec.hostname = exec
            .hostname
            .clone()
            .unwrap_or_else(|| "buildkitsandbox".to_string());
        spec.etc_hostname = false;
        spec.network = network;
        spec.state_dir = images.root().join("run");
        if exec.security == SecurityMode::Insecure {
            // BuildKit's insecure mode: every capability, no seccomp filter, /proc and /sys
            // unmasked (the entitlement was checked before the step started).
            spec.capabilities = all_capabilities();
            spec.seccomp = kiln_executor::sandbox::Seccomp::Unconfined;
            spec.masked_paths.clear();
            spec.readonly_paths.clear();
        }
        ensure_cwd(&upperdir, &layers, &exec.cwd, spec.user.uid, spec.user.gid)?;
        let info = run_sandbox(images, exec, &spec, digest, extra, ctx, cancel)?;
        let command = exec.args.join(" ");
        if info.oom_killed {
            return Err(EngineError::OutOfMemory { command });
        }
        if !info.status.success() {
            return Err(EngineError::ProcessFailed {
                command,
                code: info.status.shell_code(),
            });
        }
        mounts::keep_mount_points(&upperdir, &layers)
    })();
    match result {
        Ok(()) => Ok(Value::Snapshot(images.snapshots().commit(active)?)),
        Err(e) => {
            let _ = images.snapshots().discard(active);
            Err(e)
        }
    }
}

/// Reads a file of a snapshot that is not mounted: the first layer (top-most first) that has it.
fn read_from_layers(layers: &[PathBuf], path: &str) -> Option<String> {
    let rel = path.trim_start_matches('/');
    layers
        .iter()
        .find_map(|layer| std::fs::read_to_string(layer.join(rel)).ok())
}

/// The user a RUN runs as, and the HOME it gets when the image sets none (passwd's, as in
/// BuildKit).
fn resolve_exec_user(layers: &[PathBuf], user: &str) -> Result<(User, String), EngineError> {
    let ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    } = owner::resolve_exec_user_with(&|p| read_from_layers(layers, p), user)?;
    // `USER uid:gid` gives no supplementary groups from /etc/group; the process still has its
    // primary group in its list, as under containerd (`id` prints `groups=1234`).
    let additional_gids = if additional_gids.is_empty() {
        vec![gid]
    } else {
        additional_gids
    };
    Ok((
        User {
            uid,
            gid,
            additional_gids,
        },
        home,
    ))
}

/// The working directory of a RUN exists before the command starts, as in BuildKit; when it is
/// missing from every layer it is created in the upper dir.
fn ensure_cwd(
    upper: &Path,
    layers: &[PathBuf],
    cwd: &str,
    uid: u32,
    gid: u32,
) -> Result<(), EngineError> {
    let rel = clean_abs(cwd);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || layers.iter().any(|l| l.join(rel).is_dir()) {
        return Ok(());
    }
    let dir = upper.join(rel);
    std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
        what: format!("create the working directory {cwd}"),
        source,
    })?;
    let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
    Ok(())
}

/// Resolves `--chown` against the destination root's passwd and group files (BuildKit's rules,
/// see `resolve_chown`).
fn ownership(
    owner: Option<&Owner>,
    dest_root: &Path,
    default: Ownership,
) -> Result<Ownership, EngineError> {
    let Some(owner) = owner else {
        return Ok(default);
    };
    let part = |v: &IdOrName| match v {
        IdOrName::Id(id) => id.to_string(),
        IdOrName::Name(name) => name.clone(),
    };
    let group = owner.group.as_ref().map(part);
    let (uid, gid) = owner::resolve_chown(dest_root, &part(&owner.user), group.as_deref());
    Ok(Ownership::Set { uid, gid })
}

fn run_file_op(
    env: &BuildEnv,
    file: &FileOp,
    digest: &Digest,
    index: &[Digest],
    inputs: &[Value],
) -> Result<Value, EngineError> {
    let images = &env.images;
    let parent = match value_of(index, inputs, &file.base.vertex)? {
        Value::Snapshot(id) => Some(id.clone()),
        Value::Scratch => None,
        Value::Local(_) => {
            return Err(EngineError::NotSupported(
                "file operations on the build context itself".into(),
            ));
        }
    };
    let active = images
        .snapshots()
        .prepare(&format!("file-{}", digest.hex()), parent.as_ref())?;
    let target = images.tempdir("mnt-")?;
    let sources = images.tempdir("src-")?;
    let result = with_private_mounts(|| {
        active
            .mounts()
            .mount(target.path())
            .map_err(|source| EngineError::Io {
                what: "mount the snapshot for a file operation".into(),
                source,
            })?;
        let dest_root = target.path();
        for (n, action) in file.actions.iter().enumerate() {
            match action {
                FileAction::Copy(copy) => {
                    let source_value = value_of(index, inputs, &copy.source.vertex)?;
                    let mount_dir = sources.path().join(n.to_string());
                    std::fs::create_dir_all(&mount_dir).map_err(|source| EngineError::Io {
                        what: "create a source mount point".into(),
                        source,
                    })?;
                    run_copy(images, copy, source_value, &mount_dir, dest_root)?;
                }
                FileAction::Mkdir(mkdir) => {
                    let path = resolve_dest(dest_root, &mkdir.path, true)?;
                    if !path.is_dir() {
                        let own = ownership(
                            mkdir.owner.as_ref(),
                            dest_root,
                            Ownership::Set { uid: 0, gid: 0 },
                        )?;
                        create_dirs(dest_root, &path, mkdir.mode, own, mkdir.make_parents)?;
                    }
                }
                FileAction::Mkfile(mkfile) => {
                    let path = resolve_dest(dest_root, &mkfile.path, true)?;
                    if let Some(parent) = path.parent() {
                        create_dirs(
                            dest_root,
                            parent,
                            0o755,
                            Ownership::Set { uid: 0, gid: 0 },
                            true,
                        )?;
                    }
                    let io = |source| EngineError::Io {
                        what: format!("write {}", mkfile.path),
                        source,
                    };
                    let _ = std::fs::remove_file(&path);
                    std::fs::write(&path, &mkfile.data).map_err(io)?;
                    let own = ownership(
                        mkfile.owner.as_ref(),
                        dest_root,
                        Ownership::Set { uid: 0, gid: 0 },
                    )?;
                    if let Ownership::Set { uid, gid } = own {
                        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io)?;
                    }
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mkfile.mode))
                        .map_err(io)?;
                    if let Some(ts) = mkfile.timestamp {
                        let t = filetime::FileTime::from_unix_time(ts, 0);
                        let _ = filetime::set_file_times(&path, t, t);
                    }
                }
                FileAction::Rm(rm) => {
                    let path = resolve_dest(dest_root, &rm.path, false)?;
                    let removed = match path.symlink_metadata() {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                        Ok(_) => std::fs::remove_file(&path),
                        Err(e) => Err(e),
                    };
                    if let Err(source) = removed
                        && !(rm.allow_not_found && source.kind() == std::io::ErrorKind::NotFound)
                    {
                        return Err(EngineError::Io {
                            what: format!("remove {}", rm.path),
                            source,
                        });
                    }
                }
                FileAction::Symlink(link) => {
                    let path = resolve_dest(dest_root, &link.path, false)?;
                    std::os::unix::fs::symlink(&link.target, &path).map_err(|source| {
                        EngineError::Io {
                            what: format!("create symlink {}", link.path),
                            source,
                        }
                    })?;
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(Value::Snapshot(images.snapshots().commit(active)?)),
        Err(e) => {
            let _ = images.snapshots().discard(active);
            Err(e)
        }
    }
}

/// A file action's path inside the mounted destination, as an engine error when it cannot be
/// resolved.
fn resolve_dest(dest_root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, EngineError> {
    resolve_in_root(dest_root, path, follow_last).map_err(|source| EngineError::Io {
        what: format!("resolve {path}"),
        source,
    })
}

fn create_dirs(
    root: &Path,
    path: &Path,
    mode: u32,
    own: Ownership,
    parents: bool,
) -> Result<(), EngineError> {
    use std::os::unix::fs::PermissionsExt;
    let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    let mut current = root.to_path_buf();
    let count = rel.components().count();
    for (i, part) in rel.components().enumerate() {
        current.push(part);
        if current.is_dir() {
            continue;
        }
        if i + 1 < count && !parents {
            return Err(EngineError::Io {
                what: format!("create {}", path.display()),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let io = |source| EngineError::Io {
            what: format!("create directory {}", current.display()),
            source,
        };
        std::fs::create_dir(&current).map_err(io)?;
        std::fs::set_permissions(&current, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Ownership::Set { uid, gid } = own {
            std::os::unix::fs::lchown(&current, Some(uid), Some(gid)).map_err(io)?;
        }
    }
    Ok(())
}

fn run_copy(
    images: &ImageStore,
    action: &CopyAction,
    source: &Value,
    mount_dir: &Path,
    dest_root: &Path,
) -> Result<(), EngineError> {
    let (src_root, default_owner, filter) = match source {
        Value::Local(local) => {
            let local2 = local.clone();
            (
                local.path.clone(),
                // Files from the build context belong to root in the image, as in BuildKit.
                Ownership::Set { uid: 0, gid: 0 },
                Some(SourceFilter(Arc::new(move |rel: &str| {
                    local2.is_ignored(rel)
                }))),
            )
        }
        Value::Scratch => (mount_dir.to_path_buf(), Ownership::Keep, None),
        Value::Snapshot(id) => {
            images
                .snapshots()
                .view(id)?
                .mount(mount_dir)
                .map_err(|source| EngineError::Io {
                    what: "mount a copy source".into(),
                    source,
                })?;
            (mount_dir.to_path_buf(), Ownership::Keep, None)
        }
    };
    let ownership = ownership(action.owner.as_ref(), dest_root, default_owner)?;
    let opts = CopyOptions::from_action(action, ownership, filter);
    if action.unpack {
        // Archive entries keep their recorded owners unless `--chown` is given.
        let archive_owner = match action.owner {
            Some(_) => ownership,
            None => Ownership::Keep,
        };
        archive::add(&src_root, dest_root, &opts, archive_owner)?;
        return Ok(());
    }
    copy::copy(&src_root, dest_root, &opts)?;
    Ok(())
}

/// Why a `RUN --security=insecure` step may not run: the build was not granted it.
pub(crate) fn insecure_not_allowed() -> EngineError {
    EngineError::NotAllowed(
        "RUN --security=insecure needs the security.insecure entitlement: build with \
         --allow security.insecure"
            .into(),
    )
}

/// Every capability this kernel has (bits 0 to `cap_last_cap`).
fn all_capabilities() -> u64 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63);
    if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}
