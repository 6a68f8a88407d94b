//! After the command: reap pid 1, read the OOM flag, remove the cgroups, the stubs the child
//! created in the rootfs and the state dir, so nothing is left on the host.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Instant;

use super::SandboxError;
use super::etc;
use super::io::{ExitInfo, ExitStatus};
use super::process::{Sandbox, io_err};
use crate::sys;

/// What to undo on the host once the sandbox is gone.
#[derive(Debug, Default)]
pub(super) struct Cleanup {
    pub(super) state_dir: Option<PathBuf>,
    /// Where stubs were created: the overlay's upper dir or the rootfs directory.
    pub(super) stub_root: PathBuf,
    pub(super) created: Vec<PathBuf>,
    pub(super) upper_had: Vec<PathBuf>,
}

impl Cleanup {
    fn run(&mut self) {
        for e in etc::remove_stubs(&self.stub_root, &self.created, &self.upper_had) {
            tracing::warn!(error = %e, "sandbox stub left behind");
        }
        self.created.clear();
        if let Some(dir) = self.state_dir.take()
            && let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "failed to remove sandbox state dir");
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

impl Sandbox {
    /// Reaps pid 1 (blocking) and cleans up; used on failure paths and by Drop.
    pub(super) fn finish_blocking(&mut self) -> Result<ExitInfo, SandboxError> {
        if self.exit.is_none() {
            let exit = sys::wait_pidfd(self.pidfd.as_fd(), false)
                .map_err(io_err("failed to wait for sandbox".into()))?;
            self.exit = exit.map(|e| (e, Instant::now()));
        }
        self.finish()
    }

    /// Cleans up after pid 1 was reaped and returns its exit.
    pub(super) fn finish(&mut self) -> Result<ExitInfo, SandboxError> {
        self.done = true;
        self.stdout = None;
        self.stderr = None;
        self.stdin = None;
        let oom_killed = self.cgroups.as_ref().is_some_and(|c| c.oom_killed());
        self.end_leftovers();
        if let Some(mut c) = self.cgroups.take() {
            let left = c.remove();
            if let Some(dir) = left.first() {
                self.cleanup.run();
                return Err(SandboxError::Cgroup {
                    what: format!("failed to remove cgroup {}", dir.display()),
                    source: io::Error::from_raw_os_error(libc::EBUSY),
                });
            }
        }
        self.cleanup.run();
        let (exit, at) = self.exit.ok_or_else(|| SandboxError::Setup {
            what: "sandbox process vanished without an exit status (this is a bug in kiln)".into(),
            source: io::Error::from_raw_os_error(libc::ECHILD),
        })?;
        Ok(ExitInfo {
            status: match exit {
                sys::Exit::Code(c) => ExitStatus::Code(c),
                sys::Exit::Signal(s) => ExitStatus::Signal(s),
            },
            oom_killed,
            wall_time: at.saturating_duration_since(self.started),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        if let Err(e) = self.finish_blocking() {
            tracing::warn!(id = %self.id, error = %e, "failed to clean up dropped sandbox");
        }
    }
}
