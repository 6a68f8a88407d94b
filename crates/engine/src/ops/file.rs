//! File ops: copy (COPY/ADD, from the context, another stage or an archive), mkdir, mkfile, rm,
//! symlink, run in Rust on the base snapshot mounted in a private mount namespace, with `--chown`
//! resolved against the destination's passwd and group; and the content key of a copy from the
//! build context.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_image::rootfs::resolve_in_root;
use kiln_image::rootfs::user as owner;
use kiln_image::{ImageStore, with_private_mounts};
use kiln_llb::{CopyAction, Digest, FileAction, FileOp, IdOrName, Owner};
use kiln_solver::ContentKey;

use super::{BuildEnv, Vertex, commit_or_discard, input_indexes, value_of};
use crate::context;
use crate::error::EngineError;
use crate::fileop::archive;
use crate::fileop::copy::{self, CopyOptions, Ownership, SourceFilter};
use crate::value::Value;

/// The content key of a file op that copies from the build context: the selected files'
/// content, hashed on the blocking pool.
pub(super) async fn content_key(
    file: &FileOp,
    input_index: &[Digest],
    inputs: &[Value],
) -> Result<Option<ContentKey>, EngineError> {
    let file = file.clone();
    let input_index = input_index.to_vec();
    let inputs = inputs.to_vec();
    tokio::task::spawn_blocking(move || context::copy_content_key(&file, &input_index, &inputs))
        .await
        .map_err(EngineError::task("content key"))?
}

/// Runs a file op's actions on the blocking pool.
pub(super) async fn execute(
    vertex: &Vertex,
    file: &FileOp,
    inputs: &[Value],
) -> Result<Value, EngineError> {
    let env = vertex.env.clone();
    let file = file.clone();
    let index = input_indexes(&vertex.op);
    let inputs = inputs.to_vec();
    let digest = vertex.digest;
    tokio::task::spawn_blocking(move || run_file_op(&env, &file, &digest, &index, &inputs))
        .await
        .map_err(EngineError::task("file op"))?
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
    commit_or_discard(images, active, result)
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
