//! What a container changed in its filesystem: `diff` (its upper dir read against the
//! image's layers), `commit` (the upper dir as a new image layer through the image store) and
//! `export` (the whole filesystem as a tar stream, through the chrooted copy helper).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_executor::snapshot::SnapshotId;
use kiln_image::Image;
use kiln_llb::image::History;

use super::Runtime;
use crate::error::{RuntimeError, io_err};
use crate::events;
use crate::store::{Container, Status};

/// One line of `kiln diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A` added, `C` changed, `D` deleted.
    pub kind: char,
    pub path: String,
}

/// What the sandbox may have left in the upper dir as mount points of a running container
/// (Docker keeps the same ones out of `diff` and `commit` in its init layer).
const MOUNT_POINTS: [&str; 6] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
    "/dev",
];

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `rel` exists in the image's layers (top-most first), a whiteout above hiding it.
fn in_lower(lowers: &[PathBuf], rel: &Path) -> bool {
    for layer in lowers {
        match fs::symlink_metadata(layer.join(rel)) {
            Ok(m) if is_whiteout(&m) => return false,
            Ok(_) => return true,
            Err(_) => {}
        }
    }
    false
}

/// Whether `rel` in the upper dir is only a mount point the sandbox made: one of
/// [`MOUNT_POINTS`], empty, and not in the image.
fn is_stub(upper: &Path, lowers: &[PathBuf], rel: &Path) -> bool {
    let abs = Path::new("/").join(rel);
    if !MOUNT_POINTS.iter().any(|m| Path::new(m) == abs) || in_lower(lowers, rel) {
        return false;
    }
    let p = upper.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(m) if m.is_dir() => fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none()),
        _ => false,
    }
}

/// The changes in `upper` against `lowers`, sorted by path.
pub(crate) fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, RuntimeError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let entries = fs::read_dir(&dir).map_err(io_err(format!("list {}", dir.display())))?;
        for e in entries.flatten() {
            let child = rel.join(e.file_name());
            let meta = e
                .metadata()
                .map_err(io_err(format!("stat {}", e.path().display())))?;
            if is_stub(upper, lowers, &child) {
                continue;
            }
            let path = format!("/{}", child.display());
            let existed = in_lower(lowers, &child);
            let kind = if is_whiteout(&meta) {
                if !existed {
                    continue;
                }
                'D'
            } else if existed {
                'C'
            } else {
                'A'
            };
            out.push(Change { kind, path });
            if meta.is_dir() {
                stack.push(child);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `kiln commit`'s options.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `REPOSITORY[:TAG]` the image gets.
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// Dockerfile instructions applied to the config (`CMD`, `ENV`, `LABEL`, ...).
    pub changes: Vec<String>,
    /// Freeze a running container while its layer is copied (the default).
    pub pause: bool,
}

impl Runtime {
    fn lowers(&self, c: &Container) -> Result<Vec<PathBuf>, RuntimeError> {
        let top = c
            .config
            .snapshot
            .as_deref()
            .map(SnapshotId::parse)
            .transpose()?;
        Ok(self.layers(top.as_ref(), &c.dir)?[1..].to_vec())
    }

    /// `kiln diff`: what the container added, changed and deleted.
    pub fn diff(&self, c: &Container) -> Result<Vec<Change>, RuntimeError> {
        changes(&c.dir.join("upper"), &self.lowers(c)?)
    }

    /// `kiln export`: the container's filesystem as a tar stream on `out`.
    pub fn export(
        &self,
        c: &Container,
        out: &mut (dyn Write + Send),
        kiln_exe: &Path,
    ) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        self.with_root(&c, |root| {
            let mut child = self
                .cp_helper(kiln_exe, root)
                .arg("export")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(io_err("start the export helper"))?;
            let copied = match child.stdout.take() {
                Some(mut from) => std::io::copy(&mut from, out)
                    .map(|_| ())
                    .map_err(io_err("write the export")),
                None => Err(RuntimeError::Bug("the export helper has no stdout".into())),
            };
            let helper = child
                .wait_with_output()
                .map_err(io_err("wait for the export helper"))?;
            super::copy::helper_result(helper)?;
            copied
        })?;
        events::record(self.root(), events::container(&c, "export"));
        Ok(())
    }

    /// `kiln commit`: a new image of the container's image plus its changes as one layer,
    /// with its configuration (command, environment, working directory, user, labels) and
    /// `changes` applied.
    pub fn commit(&self, c: &Container, opts: &CommitOptions) -> Result<Image, RuntimeError> {
        let c = self.get(c.id())?;
        let reference = opts.reference.clone().ok_or_else(|| {
            RuntimeError::NotSupported(
                "commit without a repository name (kiln keeps no unnamed images)".into(),
            )
        })?;
        let image = self.images.image(&c.config.image_id)?;
        let parent = c
            .config
            .snapshot
            .as_deref()
            .map(SnapshotId::parse)
            .transpose()?;
        let lowers = self.lowers(&c)?;
        let key = format!("commit-{}-{}", &c.id()[..12], crate::store::new_id()?);
        let active = self.images.snapshots().prepare(&key, parent.as_ref())?;
        let running = c.state.status == Status::Running && !c.state.paused;
        let freeze = running && opts.pause;
        if freeze {
            self.pause_quietly(&c)?;
        }
        let copied = copy_layer(&c.dir.join("upper"), &active.upper_dir(), &lowers);
        if freeze {
            self.thaw(&self.get(c.id())?)?;
        }
        if let Err(e) = copied {
            let _ = self.images.snapshots().discard(active);
            return Err(e);
        }
        let top = self.images.snapshots().commit(active)?;
        let mut config = image.config.clone();
        let rc = &mut config.config;
        rc.cmd = (!c.config.cmd.is_empty()).then(|| c.config.cmd.clone());
        rc.entrypoint = (!c.config.entrypoint.is_empty()).then(|| c.config.entrypoint.clone());
        let image_env = rc.env.clone();
        rc.env = c
            .config
            .env
            .iter()
            .filter(|e| {
                let key = e.split('=').next().unwrap_or("");
                // What kiln added for the container, not what it was given.
                !matches!(key, "HOSTNAME" | "HOME" | "TERM")
                    || image_env.iter().any(|i| i.split('=').next() == Some(key))
            })
            .cloned()
            .collect();
        rc.working_dir = c.config.working_dir.clone();
        rc.user = c.config.user.clone();
        rc.labels = c.config.labels.clone();
        for change in &opts.changes {
            apply_change(rc, change)?;
        }
        let now = kiln_image::now_rfc3339();
        config.created = Some(now.clone());
        if let Some(a) = &opts.author {
            config.author = Some(a.clone());
        }
        config.history.push(History {
            created: Some(now),
            created_by: c.config.argv().join(" "),
            author: opts.author.clone().unwrap_or_default(),
            comment: opts.message.clone().unwrap_or_default(),
            empty_layer: false,
        });
        let made = self.images.commit_image(
            Some(&top),
            config,
            &[reference],
            &kiln_image::CommitOptions::default(),
        )?;
        events::record(self.root(), events::container(&c, "commit"));
        Ok(made)
    }

    /// Freezes a running container for a moment (no `pause` event: it is part of a commit).
    fn pause_quietly(&self, c: &Container) -> Result<(), RuntimeError> {
        if let Err(e) = self.pause_inner(c) {
            tracing::warn!(error = %e, "committing without pausing the container");
        }
        Ok(())
    }
}

/// Copies the container's upper dir into a new snapshot's upper dir as it is (whiteouts,
/// opaque directories, owners, modes and times), then removes the mount-point stubs.
fn copy_layer(upper: &Path, dest: &Path, lowers: &[PathBuf]) -> Result<(), RuntimeError> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", upper.display()))
        .arg(dest)
        .status()
        .map_err(io_err("run cp to copy the container's layer"))?;
    if !status.success() {
        return Err(RuntimeError::Io {
            what: "copy the container's layer".into(),
            source: std::io::Error::other(format!("cp exited with {status}")),
        });
    }
    for m in MOUNT_POINTS {
        let rel = Path::new(m.trim_start_matches('/'));
        if is_stub(dest, lowers, rel) {
            let p = dest.join(rel);
            let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir(&p));
        }
    }
    Ok(())
}

/// One `--change` instruction on the image config (`CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`,
/// `LABEL`, `USER`, `WORKDIR`, `VOLUME`, `STOPSIGNAL`).
fn apply_change(rc: &mut kiln_llb::image::RunConfig, change: &str) -> Result<(), RuntimeError> {
    let (word, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((change.trim(), ""));
    let rest = rest.trim();
    let list = |s: &str| -> Vec<String> {
        match serde_json::from_str::<Vec<String>>(s) {
            Ok(v) => v,
            Err(_) => vec!["/bin/sh".into(), "-c".into(), s.to_string()],
        }
    };
    let pairs = |s: &str| -> BTreeMap<String, String> {
        s.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => rc.cmd = Some(list(rest)),
        "ENTRYPOINT" => rc.entrypoint = Some(list(rest)),
        "ENV" => {
            let mut set: Vec<(String, String)> = pairs(rest).into_iter().collect();
            if set.is_empty()
                && let Some((k, v)) = rest.split_once(char::is_whitespace)
            {
                set.push((k.to_string(), v.trim().to_string()));
            }
            for (k, v) in set {
                rc.env.retain(|e| e.split('=').next() != Some(k.as_str()));
                rc.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => rc.labels.extend(pairs(rest)),
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                rc.exposed_ports.insert(p);
            }
        }
        "USER" => rc.user = rest.to_string(),
        "WORKDIR" => rc.working_dir = rest.to_string(),
        "VOLUME" => {
            for v in list_or_words(rest) {
                rc.volumes.insert(v);
            }
        }
        "STOPSIGNAL" => rc.stop_signal = rest.to_string(),
        other => {
            return Err(RuntimeError::NotSupported(format!(
                "--change {other} (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME and STOPSIGNAL are)"
            )));
        }
    }
    Ok(())
}

fn list_or_words(s: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(s)
        .unwrap_or_else(|_| s.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_an_upper_dir_against_the_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        for d in ["etc", "bin", "var/www", "tmp"] {
            fs::create_dir_all(lower.join(d)).unwrap();
        }
        fs::write(lower.join("etc/passwd"), "root").unwrap();
        fs::write(lower.join("bin/ls"), "ls").unwrap();
        for d in ["etc", "bin", "a/b", "tmp"] {
            fs::create_dir_all(upper.join(d)).unwrap();
        }
        fs::write(upper.join("etc/passwd"), "root\nx").unwrap();
        fs::write(upper.join("a/b/f"), "x").unwrap();
        // A whiteout, and the stub of a mount point.
        nix::sys::stat::mknod(
            &upper.join("bin/ls"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        let got: Vec<String> = changes(&upper, &[lower])
            .unwrap()
            .into_iter()
            .map(|c| format!("{} {}", c.kind, c.path))
            .collect();
        assert_eq!(
            got,
            [
                "A /a",
                "A /a/b",
                "A /a/b/f",
                "C /bin",
                "D /bin/ls",
                "C /etc",
                "C /etc/passwd",
                "C /tmp"
            ]
        );
    }

    #[test]
    fn changes_edit_the_config() {
        let mut rc = kiln_llb::image::RunConfig::default();
        apply_change(&mut rc, "CMD [\"sh\", \"-c\", \"x\"]").unwrap();
        apply_change(&mut rc, "ENV A=1 B=2").unwrap();
        apply_change(&mut rc, "ENV C three").unwrap();
        apply_change(&mut rc, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut rc, "entrypoint /bin/app --x").unwrap();
        assert_eq!(rc.cmd.clone().unwrap(), ["sh", "-c", "x"]);
        assert_eq!(rc.env, ["A=1", "B=2", "C=three"]);
        assert!(rc.exposed_ports.contains("80/tcp") && rc.exposed_ports.contains("53/udp"));
        assert_eq!(
            rc.entrypoint.clone().unwrap(),
            ["/bin/sh", "-c", "/bin/app --x"]
        );
        assert!(apply_change(&mut rc, "RUN x").is_err());
    }
}
