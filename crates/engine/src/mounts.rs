//! `RUN --mount`: turns an Exec op's LLB mounts into the sandbox's bind and tmpfs mounts —
//! bind mounts of other vertices' outputs (read-only, or read-write over a throwaway upper
//! layer), persistent cache directories under `<root>/cache-mounts`, tmpfs, and secrets from
//! the client. Everything here is mounted in the calling thread's private mount namespace
//! (`kiln_image::with_private_mounts`), so nothing outlives the step, even after SIGKILL.

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use kiln_executor::sandbox;
use kiln_executor::snapshot::ActiveSnapshot;
use kiln_llb::{CacheSharing, Digest, ExecOp, MountKind, MountSource};

use crate::error::EngineError;
use crate::fileop::copy::{self, CopyOptions, Ownership};
use crate::ssh::{ServedAgent, SshAgents};
use crate::value::Value;
use kiln_image::ImageStore;
use kiln_image::rootfs::resolve_in_root;

/// Where a secret's bytes come from (`kiln build --secret id=X,src=FILE` or `env=VAR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// The bytes themselves, held in memory only (a remote client sent them to `kiln serve`).
    Memory(SecretBytes),
}

/// A secret's bytes, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// The secrets a build was given, by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets(pub Vec<(String, SecretSource)>);

impl Secrets {
    /// Parses one `--secret` value: `id=X[,src=FILE|,source=FILE|,env=VAR][,type=file|env]`.
    /// Without `src` and `env`, the id names an environment variable, as in buildx.
    pub fn parse_flag(value: &str) -> Result<(String, SecretSource), String> {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        for part in value.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid secret {value:?}: expected key=value pairs"))?;
            match k.trim() {
                "id" => id = Some(v.to_string()),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                "type" => kind = Some(v.to_string()),
                other => return Err(format!("invalid secret {value:?}: unknown key {other:?}")),
            }
        }
        let id = id
            .or_else(|| src.clone())
            .or_else(|| env.clone())
            .ok_or_else(|| format!("invalid secret {value:?}: no id"))?;
        let source = match (src, env, kind.as_deref()) {
            (Some(f), _, None | Some("file")) => SecretSource::File(PathBuf::from(f)),
            (None, Some(e), None | Some("env")) => SecretSource::Env(e),
            (None, None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
            (None, None, _) => SecretSource::Env(id.clone()),
            _ => return Err(format!("invalid secret {value:?}: conflicting type")),
        };
        Ok((id, source))
    }

    /// The secret's bytes, `None` when no secret has this id.
    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let Some((_, source)) = self.0.iter().rev().find(|(i, _)| i == id) else {
            return Ok(None);
        };
        match source {
            SecretSource::File(path) => {
                fs::read(path).map(Some).map_err(|source| EngineError::Io {
                    what: format!("read secret {id} from {}", path.display()),
                    source,
                })
            }
            SecretSource::Env(var) => Ok(std::env::var_os(var).map(|v| {
                use std::os::unix::ffi::OsStrExt;
                v.as_bytes().to_vec()
            })),
            SecretSource::Memory(bytes) => Ok(Some(bytes.0.clone())),
        }
    }
}

/// The sandbox mounts and extra environment for one Exec op, with what must stay alive (and
/// be released) around the run.
pub struct Prepared {
    pub mounts: Vec<sandbox::Mount>,
    pub env: Vec<(String, String)>,
    /// Mount points made here, unmounted before their directories are removed.
    mounted: Vec<PathBuf>,
    /// Read-write bind sources: their upper layers are discarded after the run.
    scratch: Vec<ActiveSnapshot>,
    _temps: Vec<tempfile::TempDir>,
    /// `sharing=locked` (and `private`, see below) cache mounts hold a file lock for the run.
    _locks: Vec<File>,
    /// ssh agents served to the step, stopped when it is done.
    _ssh: Vec<ServedAgent>,
}

impl Prepared {
    /// Unmounts what `prepare` mounted and drops the throwaway layers of read-write binds.
    pub fn release(self, images: &ImageStore) {
        // Unmount before the temp dirs go: removing a directory tree through a live mount
        // would write into the mounted layers.
        for path in self.mounted.iter().rev() {
            let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        }
        for active in self.scratch {
            let _ = images.snapshots().discard(active);
        }
    }
}

/// True when the op has mounts that need a private mount namespace around the sandbox.
pub fn needs_namespace(exec: &ExecOp) -> bool {
    exec.mounts
        .iter()
        .any(|m| matches!(m.kind, MountKind::Bind { .. }))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

/// "{what}: not found" (BuildKit's wording), kept whole in the innermost error because that
/// is the part a failed step shows.
/// Where a secret's file lives while its step runs: a private directory on `/dev/shm` (memory)
/// when the host has that tmpfs, so a secret never reaches a disk; else under the store root.
fn secret_dir(images: &ImageStore) -> Result<tempfile::TempDir, EngineError> {
    let shm = std::path::Path::new("/dev/shm");
    let on_tmpfs = nix::sys::statfs::statfs(shm)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false);
    if on_tmpfs
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("kiln-secret-")
            .tempdir_in(shm)
    {
        return Ok(dir);
    }
    Ok(images.tempdir("secret-")?)
}

fn not_found(what: String) -> EngineError {
    EngineError::Io {
        what: format!("find {what}"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what}: not found")),
    }
}

/// A cache id as a directory name: readable characters kept, the rest replaced, and a hash of
/// the full id appended so different ids never share a directory.
fn cache_dir_name(id: &str) -> String {
    let readable: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = blake3::hash(id.as_bytes()).to_hex();
    format!("{}-{}", readable.trim_matches('_'), &hash[..16])
}

/// Prepares every mount of `exec`. Must run on a thread inside a private mount namespace when
/// [`needs_namespace`] is true.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    images: &ImageStore,
    exec: &ExecOp,
    digest: &Digest,
    index: &[Digest],
    inputs: &[Value],
    secrets: &Secrets,
    ssh: &SshAgents,
) -> Result<Prepared, EngineError> {
    let mut out = Prepared {
        mounts: Vec::new(),
        env: Vec::new(),
        mounted: Vec::new(),
        scratch: Vec::new(),
        _temps: Vec::new(),
        _locks: Vec::new(),
        _ssh: Vec::new(),
    };
    let result = prepare_into(&mut out, images, exec, digest, index, inputs, secrets, ssh);
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            out.release(images);
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare_into(
    out: &mut Prepared,
    images: &ImageStore,
    exec: &ExecOp,
    digest: &Digest,
    index: &[Digest],
    inputs: &[Value],
    secrets: &Secrets,
    ssh: &SshAgents,
) -> Result<(), EngineError> {
    for (n, mount) in exec.mounts.iter().enumerate() {
        let target = PathBuf::from(&mount.target);
        match &mount.kind {
            MountKind::Bind { source, readonly } => {
                let dir = bind_source(out, images, source, *readonly, digest, n, index, inputs)?;
                out.mounts.push(sandbox::Mount::Bind {
                    source: dir,
                    target,
                    readonly: *readonly,
                });
            }
            MountKind::Cache {
                id,
                sharing,
                source,
                uid,
                gid,
                mode,
                readonly,
            } => {
                // A cache with `from=` is its own cache per source filesystem (BuildKit keys it
                // by the id and the source's ref), first filled with that filesystem; the mount
                // shows its `source` path.
                let key = match source {
                    None => id.clone(),
                    Some(src) => {
                        let ident = match input_value(index, inputs, &src.input.vertex)? {
                            Value::Snapshot(s) => s.to_string(),
                            Value::Scratch => "scratch".to_string(),
                            Value::Local(_) => "context".to_string(),
                        };
                        format!("{id}\0{ident}")
                    }
                };
                let base = images.root().join("cache-mounts");
                fs::create_dir_all(&base).map_err(io("create the cache mount directory"))?;
                let dir = base.join(cache_dir_name(&key));
                if !dir.is_dir() {
                    // Created under a temporary name and renamed, so a concurrent build never
                    // sees a cache directory without its owner, mode or first contents.
                    let tmp = tempfile::Builder::new()
                        .prefix(".new-")
                        .tempdir_in(&base)
                        .map_err(io(format!("create cache mount {id}")))?;
                    match source {
                        None => {
                            chown(tmp.path(), Some(*uid), Some(*gid))
                                .map_err(io(format!("set the owner of cache mount {id}")))?;
                            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(*mode))
                                .map_err(io(format!("set the mode of cache mount {id}")))?;
                        }
                        Some(src) => {
                            let whole = MountSource {
                                input: src.input,
                                selector: "/".into(),
                            };
                            let from =
                                bind_source(out, images, &whole, true, digest, n, index, inputs)?;
                            let mut opts = CopyOptions::new(vec!["/".into()], "/", Ownership::Keep);
                            opts.always_replace = true;
                            copy::copy(&from, tmp.path(), &opts)?;
                        }
                    }
                    let tmp = tmp.keep();
                    if fs::rename(&tmp, &dir).is_err() {
                        // Another build created it first.
                        let _ = fs::remove_dir_all(&tmp);
                    }
                }
                if *sharing != CacheSharing::Shared {
                    // `locked` waits for the other user; `private` is served the same way
                    // (correct, if less parallel than a fresh copy).
                    let lock = File::create(base.join(format!("{}.lock", cache_dir_name(&key))))
                        .map_err(io(format!("lock cache mount {id}")))?;
                    lock_exclusive(&lock).map_err(io(format!("lock cache mount {id}")))?;
                    out._locks.push(lock);
                }
                let dir = match source {
                    None => dir,
                    Some(src) => {
                        let sub = resolve_in_root(&dir, &src.selector, true)
                            .map_err(io(format!("resolve cache source {}", src.selector)))?;
                        if !sub.is_dir() {
                            return Err(not_found(format!("cache mount source {}", src.selector)));
                        }
                        sub
                    }
                };
                out.mounts.push(sandbox::Mount::Bind {
                    source: dir,
                    target,
                    readonly: *readonly,
                });
            }
            MountKind::Tmpfs { size } => out.mounts.push(sandbox::Mount::Tmpfs {
                target,
                size: *size,
                mode: Some(0o1777),
                readonly: false,
                noexec: false,
            }),
            MountKind::Secret {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                let Some(bytes) = secrets.get(id)? else {
                    if *required {
                        return Err(not_found(format!("secret {id}")));
                    }
                    continue;
                };
                let dir = secret_dir(images)?;
                fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
                    .map_err(io("protect the secret directory"))?;
                let file = dir.path().join("secret");
                fs::write(&file, &bytes).map_err(io(format!("write secret {id}")))?;
                chown(&file, Some(*uid), Some(*gid))
                    .map_err(io(format!("set the owner of secret {id}")))?;
                fs::set_permissions(&file, fs::Permissions::from_mode(*mode))
                    .map_err(io(format!("set the mode of secret {id}")))?;
                out._temps.push(dir);
                out.mounts.push(sandbox::Mount::Bind {
                    source: file,
                    target,
                    readonly: true,
                });
            }
            MountKind::Ssh {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                let served = ssh.serve(id, socket_dir(images)?, (*uid, *gid), *mode)?;
                let Some(served) = served else {
                    if *required {
                        let id = if id.is_empty() { "default" } else { id };
                        return Err(EngineError::Ssh(format!(
                            "no ssh agent {id:?} was given to this build: build with --ssh {id}"
                        )));
                    }
                    continue;
                };
                out.mounts.push(sandbox::Mount::Bind {
                    source: served.socket().to_path_buf(),
                    target,
                    readonly: false,
                });
                out._ssh.push(served);
            }
        }
    }
    for secret in &exec.secret_env {
        match secrets.get(&secret.id)? {
            Some(bytes) => out.env.push((
                secret.name.clone(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            None if secret.required => {
                return Err(not_found(format!("secret {}", secret.id)));
            }
            None => {}
        }
    }
    Ok(())
}

/// A directory for an agent socket: under the store when the path fits a socket address
/// (108 bytes on Linux), else under the system's temporary directory.
fn socket_dir(images: &ImageStore) -> Result<tempfile::TempDir, EngineError> {
    let dir = images.tempdir("ssh-")?;
    if dir.path().join("agent.sock").as_os_str().len() < 100 {
        return Ok(dir);
    }
    tempfile::Builder::new()
        .prefix("kiln-ssh-")
        .tempdir()
        .map_err(io("create a directory for an ssh agent socket"))
}

fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    // Flock takes ownership; keep the descriptor open through a duplicate it owns.
    let dup = file.try_clone()?;
    match Flock::lock(dup, FlockArg::LockExclusive) {
        Ok(lock) => {
            // Leaking the guard keeps the lock until `file` (the same open description) closes.
            std::mem::forget(lock);
            Ok(())
        }
        Err((_, errno)) => Err(errno.into()),
    }
}

/// The solved value of a mount's input.
fn input_value<'a>(
    index: &[Digest],
    inputs: &'a [Value],
    vertex: &Digest,
) -> Result<&'a Value, EngineError> {
    index
        .iter()
        .position(|d| d == vertex)
        .and_then(|i| inputs.get(i))
        .ok_or_else(|| EngineError::Bug(format!("mount input {vertex} was not solved")))
}

/// Mounts a bind source and returns the host directory to bind (the selector inside it).
#[allow(clippy::too_many_arguments)]
fn bind_source(
    out: &mut Prepared,
    images: &ImageStore,
    source: &MountSource,
    readonly: bool,
    digest: &Digest,
    n: usize,
    index: &[Digest],
    inputs: &[Value],
) -> Result<PathBuf, EngineError> {
    let value = input_value(index, inputs, &source.input.vertex)?;
    let mountpoint = images.tempdir("bind-")?;
    let root: PathBuf = match value {
        Value::Scratch => mountpoint.path().to_path_buf(),
        Value::Snapshot(id) if readonly => {
            images
                .snapshots()
                .view(id)?
                .mount(mountpoint.path())
                .map_err(io("mount a bind source"))?;
            out.mounted.push(mountpoint.path().to_path_buf());
            mountpoint.path().to_path_buf()
        }
        Value::Snapshot(id) => {
            // Writes go to a throwaway layer that is discarded after the run.
            let active = images
                .snapshots()
                .prepare(&format!("bind-{}-{n}", digest.hex()), Some(id))?;
            active
                .mounts()
                .mount(mountpoint.path())
                .map_err(io("mount a read-write bind source"))?;
            out.mounted.push(mountpoint.path().to_path_buf());
            out.scratch.push(active);
            mountpoint.path().to_path_buf()
        }
        Value::Local(local) => {
            // `.dockerignore`d files are not part of the context for mounts either.
            let visible = match &local.ignore {
                Some(_) => {
                    let filtered = images.tempdir("ctxview-")?;
                    filtered_context(local, filtered.path())?;
                    let path = filtered.path().to_path_buf();
                    out._temps.push(filtered);
                    path
                }
                None => local.path.clone(),
            };
            if readonly {
                visible
            } else {
                overlay_over(out, images, &visible, mountpoint.path())?;
                mountpoint.path().to_path_buf()
            }
        }
    };
    out._temps.push(mountpoint);
    let dir = resolve_in_root(&root, &source.selector, true)
        .map_err(io(format!("resolve mount source {}", source.selector)))?;
    if dir.symlink_metadata().is_err() {
        return Err(not_found(format!("mount source {}", source.selector)));
    }
    Ok(dir)
}

/// Recreates the build context without its ignored paths under `dest`: files hard-linked
/// when the context shares the store's filesystem (copied otherwise), symlinks recreated.
fn filtered_context(local: &crate::value::LocalDir, dest: &Path) -> Result<(), EngineError> {
    for entry in walkdir::WalkDir::new(&local.path).min_depth(1) {
        let entry = entry.map_err(|e| EngineError::Io {
            what: format!("read the build context {}", local.path.display()),
            source: e.into(),
        })?;
        let Ok(rel) = entry.path().strip_prefix(&local.path) else {
            continue;
        };
        let rel_text = rel.to_string_lossy();
        if local.is_ignored(&rel_text) {
            continue;
        }
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io("create a context view directory"))?;
        }
        let ty = entry.file_type();
        let what = format!("add {rel_text} to the context view");
        if ty.is_dir() {
            fs::create_dir_all(&to).map_err(io(what))?;
        } else if ty.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(io(what.clone()))?;
            std::os::unix::fs::symlink(target, &to).map_err(io(what))?;
        } else if ty.is_file() && fs::hard_link(entry.path(), &to).is_err() {
            fs::copy(entry.path(), &to).map_err(io(what))?;
        }
    }
    Ok(())
}

/// An overlay of `lower` with a throwaway upper dir at `at`: a writable view of the build
/// context whose writes vanish with the temp dir.
fn overlay_over(
    out: &mut Prepared,
    images: &ImageStore,
    lower: &Path,
    at: &Path,
) -> Result<(), EngineError> {
    let scratch = images.tempdir("bindrw-")?;
    let upper = scratch.path().join("upper");
    let work = scratch.path().join("work");
    fs::create_dir_all(&upper).map_err(io("create an overlay upper dir"))?;
    fs::create_dir_all(&work).map_err(io("create an overlay work dir"))?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        at,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| EngineError::Io {
        what: format!("mount a writable overlay of {}", lower.display()),
        source: e.into(),
    })?;
    out.mounted.push(at.to_path_buf());
    out._temps.push(scratch);
    Ok(())
}

/// After a RUN, the mount points the runtime needed stay in the step's layer as BuildKit's runc
/// leaves them: `/dev`, `/proc` and `/sys`, 0755 and owned by root, where no layer had them
/// (a `FROM scratch` stage). The sandbox itself removes the stubs it made, so that a container
/// leaves its rootfs as it found it; this is the build's choice.
pub(crate) fn keep_mount_points(upper: &Path, layers: &[PathBuf]) -> Result<(), EngineError> {
    for dir in ["dev", "proc", "sys"] {
        if layers
            .iter()
            .any(|l| l.join(dir).symlink_metadata().is_ok())
        {
            continue;
        }
        let path = upper.join(dir);
        let io = |source| EngineError::Io {
            what: format!("create /{dir}"),
            source,
        };
        fs::create_dir(&path).map_err(io)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags_parse_like_buildx() {
        assert_eq!(
            Secrets::parse_flag("id=tok,src=/run/tok").expect("parse"),
            ("tok".into(), SecretSource::File("/run/tok".into()))
        );
        assert_eq!(
            Secrets::parse_flag("id=tok,env=TOKEN").expect("parse"),
            ("tok".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            Secrets::parse_flag("id=HOME").expect("parse"),
            ("HOME".into(), SecretSource::Env("HOME".into()))
        );
        assert!(Secrets::parse_flag("tok").is_err());
        assert!(Secrets::parse_flag("id=x,colour=blue").is_err());
    }

    #[test]
    fn cache_ids_map_to_distinct_directory_names() {
        let a = cache_dir_name("/root/.cache/go-build");
        let b = cache_dir_name("/root/.cache/go_build");
        assert_ne!(a, b);
        assert!(!a.contains('/'));
        assert!(a.starts_with("root_.cache_go-build-"), "{a}");
    }
}
