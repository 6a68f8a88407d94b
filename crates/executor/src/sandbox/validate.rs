//! Step 1 of the setup: a spec is checked before anything is created, and its paths and
//! strings become what the child can use (absolute, without `..`, without NUL bytes).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::SandboxError;
use super::spec::SandboxSpec;
use crate::sys;

/// Each mount may add a few status reports, written while the parent is suspended in clone;
/// this stays far below what the status pipe buffers (4096 reports) so the child never blocks.
const MAX_MOUNTS: usize = 512;

pub(crate) fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    if spec.rootless {
        return Err(SandboxError::NotSupported("rootless sandbox".into()));
    }
    if spec.argv.is_empty() {
        return Err(SandboxError::InvalidSpec("argv is empty".into()));
    }
    if !sys::is_root() {
        return Err(SandboxError::NotSupported(
            "sandbox without root privileges (rootless sandbox)".into(),
        ));
    }
    inner_path(&spec.cwd, "working directory")?;
    if spec.mounts.len() > MAX_MOUNTS {
        return Err(SandboxError::InvalidSpec(format!(
            "{} mounts requested, at most {MAX_MOUNTS} are supported",
            spec.mounts.len()
        )));
    }
    for m in &spec.mounts {
        inner_path(m.target(), "mount target")?;
    }
    if spec.hostname.len() > 64 {
        return Err(SandboxError::InvalidSpec(format!(
            "hostname {:?} is longer than 64 bytes",
            spec.hostname
        )));
    }
    Ok(())
}

pub(super) fn cstr(bytes: &[u8], what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes)
        .map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

pub(super) fn cpath(p: &Path) -> Result<CString, SandboxError> {
    cstr(p.as_os_str().as_bytes(), &format!("path {}", p.display()))
}

/// An absolute path inside the sandbox without `..`, normalised.
pub(super) fn inner_path(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    if !p.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} is not an absolute path",
            p.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(SandboxError::InvalidSpec(format!(
                    "{what} {} must not contain '..'",
                    p.display()
                )));
            }
        }
    }
    Ok(out)
}
