//! `kiln cp` on the container's side: the copy helper process chrooted into the container's
//! root (a running container's `/proc/<pid>/root`, else its rootfs overlay mounted in a
//! private mount namespace), with the tar stream of `crate::cp` between the two sides.

use std::path::Path;

use kiln_executor::snapshot::SnapshotId;

use super::Runtime;
use crate::error::{RuntimeError, io_err};
use crate::store::{self, Container, Status};

/// Which way `Runtime::copy` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    FromContainer,
    ToContainer,
}

/// The copy helper's exit: its stderr carries the reason when it failed.
pub(super) fn helper_result(out: std::process::Output) -> Result<(), RuntimeError> {
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim().trim_start_matches("error: ");
    Err(RuntimeError::Invalid(if text.is_empty() {
        format!("the copy failed ({})", out.status)
    } else {
        text.to_string()
    }))
}

impl Runtime {
    /// `kiln_exe container-cp ROOT`, the rest of the arguments to be added.
    pub(super) fn cp_helper(&self, kiln_exe: &Path, root: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(kiln_exe);
        cmd.arg("--root")
            .arg(self.root())
            .arg("container-cp")
            .arg(root)
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// `kiln cp`: copies between `container_path` in `c` and `host_path` (as the user wrote
    /// them: a trailing `/` or `/.` matters). The container side runs in `kiln_exe
    /// container-cp`, chrooted into the container's root, so the container's symlinks never
    /// reach the host (see `cp.rs`). A running container is reached through
    /// `/proc/<pid>/root`; a stopped one has its rootfs overlay mounted in a private mount
    /// namespace for the copy.
    pub fn copy(
        &self,
        c: &Container,
        container_path: &str,
        host_path: &str,
        direction: CopyDirection,
        kiln_exe: &Path,
    ) -> Result<(), RuntimeError> {
        if !container_path.starts_with('/') {
            return Err(RuntimeError::Invalid(format!(
                "container path {container_path:?} must be absolute"
            )));
        }
        let c = self.get(c.id())?;
        let cp = |root: &Path| -> Result<(), RuntimeError> {
            match direction {
                CopyDirection::FromContainer => {
                    let source = crate::cp::Source::parse(container_path);
                    let mut child = self
                        .cp_helper(kiln_exe, root)
                        .arg("pack")
                        .arg(&source.path)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .map_err(io_err("start the copy helper"))?;
                    let unpacked = match child.stdout.take() {
                        Some(out) => {
                            crate::cp::unpack(std::io::BufReader::new(out), host_path, &source)
                        }
                        None => Err(RuntimeError::Bug("the copy helper has no stdout".into())),
                    };
                    let helper = child
                        .wait_with_output()
                        .map_err(io_err("wait for the copy helper"))?;
                    helper_result(helper)?;
                    unpacked
                }
                CopyDirection::ToContainer => {
                    let source = crate::cp::Source::parse(host_path);
                    let mut cmd = self.cp_helper(kiln_exe, root);
                    cmd.arg("unpack").arg(container_path).arg(&source.name);
                    if source.contents_only {
                        cmd.arg("--contents");
                    }
                    let mut child = cmd
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .map_err(io_err("start the copy helper"))?;
                    let packed = match child.stdin.take() {
                        Some(input) => {
                            crate::cp::pack(&source.path, std::io::BufWriter::new(input))
                        }
                        None => Err(RuntimeError::Bug("the copy helper has no stdin".into())),
                    };
                    let helper = child
                        .wait_with_output()
                        .map_err(io_err("wait for the copy helper"))?;
                    // The helper's error says more than the broken pipe the packer saw.
                    helper_result(helper)?;
                    packed
                }
            }
        };
        self.with_root(&c, cp)
    }

    /// Runs `f` with the container's root filesystem: a running container's
    /// `/proc/<pid>/root`, else its rootfs overlay mounted in a private mount namespace
    /// (processes `f` starts run inside that namespace).
    pub(crate) fn with_root(
        &self,
        c: &Container,
        f: impl FnOnce(&Path) -> Result<(), RuntimeError> + Send,
    ) -> Result<(), RuntimeError> {
        let cp = f;
        if c.state.status == Status::Running && store::is_alive(c.state.pid, c.state.pid_start) {
            return cp(Path::new(&format!("/proc/{}/root", c.state.pid)));
        }
        let top = c
            .config
            .snapshot
            .as_deref()
            .map(SnapshotId::parse)
            .transpose()?;
        let layers = self.layers(top.as_ref(), &c.dir)?;
        if layers.len() == 1 {
            // No image layers: the upper dir is the whole rootfs.
            return cp(&c.dir.join("upper"));
        }
        let mnt = self.images.tempdir("cp-")?;
        let mounts = kiln_executor::snapshot::Mounts::Overlay {
            lowerdirs: layers[1..].to_vec(),
            upperdir: c.dir.join("upper"),
            workdir: c.dir.join("work"),
        };
        let target = mnt.path().to_path_buf();
        let mut failure = None;
        kiln_image::with_private_mounts(|| {
            mounts
                .mount(&target)
                .map_err(|source| kiln_image::ImageError::Io {
                    what: format!("mount the rootfs of container {}", c.name()),
                    source,
                })?;
            // cp runs as a child of this thread and so inside its mount namespace.
            failure = cp(&target).err();
            Ok::<_, RuntimeError>(())
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
