//! `pause` and `unpause`: the container's processes frozen and thawed through its freezer
//! cgroup (v1 `freezer.state`, v2 `cgroup.freeze`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Runtime;
use crate::error::{RuntimeError, io_err};
use crate::events;
use crate::store::{self, Container, Status};

/// The file that freezes a cgroup, and the values for frozen and thawed.
fn freezer(dirs: &[PathBuf]) -> Option<(PathBuf, &'static str, &'static str)> {
    dirs.iter().find_map(|d| {
        if d.join("freezer.state").exists() {
            Some((d.join("freezer.state"), "FROZEN", "THAWED"))
        } else if d.join("cgroup.freeze").exists() {
            Some((d.join("cgroup.freeze"), "1", "0"))
        } else {
            None
        }
    })
}

/// Whether the cgroups are frozen (or freezing).
pub(crate) fn is_frozen(dirs: &[PathBuf]) -> bool {
    let Some((file, frozen, _)) = freezer(dirs) else {
        return false;
    };
    let state = fs::read_to_string(&file).unwrap_or_default();
    let state = state.trim();
    state == frozen || state == "FREEZING"
}

/// Writes `value` and waits for the kernel to reach it (v1 passes through FREEZING).
fn set(file: &Path, value: &str) -> Result<(), RuntimeError> {
    fs::write(file, value).map_err(io_err(format!("write {value} to {}", file.display())))?;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if fs::read_to_string(file).is_ok_and(|s| s.trim() == value) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(RuntimeError::Monitor(format!(
        "{} did not become {value}",
        file.display()
    )))
}

impl Runtime {
    /// Freezes every process of a running container.
    pub fn pause(&self, c: &Container) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        self.pause_inner(&c)?;
        events::record(self.root(), events::container(&c, "pause"));
        Ok(())
    }

    pub(crate) fn pause_inner(&self, c: &Container) -> Result<(), RuntimeError> {
        if c.state.status != Status::Running || !store::is_alive(c.state.pid, c.state.pid_start) {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        if c.state.paused {
            return Err(RuntimeError::Invalid(format!(
                "container {} is already paused",
                c.id()
            )));
        }
        let (file, frozen, _) = freezer(&c.state.cgroup_dirs).ok_or_else(|| {
            RuntimeError::NotSupported("pause: the host offers no freezer cgroup".into())
        })?;
        set(&file, frozen)
    }

    /// Thaws a paused container.
    pub fn unpause(&self, c: &Container) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        if !c.state.paused {
            return Err(RuntimeError::Invalid(format!(
                "container {} is not paused",
                c.id()
            )));
        }
        self.thaw(&c)?;
        events::record(self.root(), events::container(&c, "unpause"));
        Ok(())
    }

    /// Thaws `c` if it is frozen (stop, kill and rm must reach its processes).
    pub(crate) fn thaw(&self, c: &Container) -> Result<(), RuntimeError> {
        if let Some((file, _, thawed)) = freezer(&c.state.cgroup_dirs)
            && is_frozen(&c.state.cgroup_dirs)
        {
            set(&file, thawed)?;
        }
        Ok(())
    }
}
