//! Per-sandbox cgroups for memory, CPU and pids limits, on cgroup v2 or v1 per controller.
//!
//! Hosts differ: pure v2, pure v1, or hybrid (v1 controllers plus an empty v2 tree, as on this
//! project's CI). Each controller is placed on v2 when the unified hierarchy offers it and on
//! its own v1 hierarchy otherwise.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::spec::CgroupLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The cgroups made for one sandbox; removed by [`Cgroups::remove`].
#[derive(Debug)]
pub(crate) struct Cgroups {
    /// Each created directory once (v2 may hold several controllers in one).
    dirs: Vec<(PathBuf, Version)>,
    memory: Option<(PathBuf, Version)>,
}

/// Where the cgroup filesystems are mounted.
#[derive(Debug, Default)]
struct Mounts {
    v2: Option<PathBuf>,
    v1: Vec<(PathBuf, Vec<String>)>,
}

fn mounts() -> io::Result<Mounts> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut m = Mounts::default();
    for line in info.lines() {
        // "... mountpoint options - fstype source superoptions"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let _source = r.next();
        let superopts = r.next().unwrap_or("");
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        match fstype {
            "cgroup2" if m.v2.is_none() => m.v2 = Some(point),
            "cgroup" => {
                let controllers = superopts.split(',').map(str::to_string).collect();
                m.v1.push((point, controllers));
            }
            _ => {}
        }
    }
    Ok(m)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl Mounts {
    fn place(&self, controller: &str) -> Option<(PathBuf, Version)> {
        if let Some(v2) = &self.v2
            && fs::read_to_string(v2.join("cgroup.controllers"))
                .map(|c| c.split_whitespace().any(|x| x == controller))
                .unwrap_or(false)
        {
            return Some((v2.clone(), Version::V2));
        }
        self.v1
            .iter()
            .find(|(_, ctl)| ctl.iter().any(|c| c == controller))
            .map(|(p, _)| (p.clone(), Version::V1))
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), SandboxError> {
    fs::write(dir.join(file), value).map_err(|source| SandboxError::Cgroup {
        what: format!("failed to write {value:?} to {}", dir.join(file).display()),
        source,
    })
}

impl Cgroups {
    /// Creates `<hierarchy>/<parent>/<id>` for each controller with a limit and sets the limits.
    pub(crate) fn create(id: &str, limits: &CgroupLimits) -> Result<Cgroups, SandboxError> {
        let mounts = mounts().map_err(|source| SandboxError::Cgroup {
            what: "failed to read /proc/self/mountinfo".into(),
            source,
        })?;
        let parent = limits
            .parent
            .strip_prefix("/")
            .unwrap_or(&limits.parent)
            .to_path_buf();
        let mut cg = Cgroups {
            dirs: Vec::new(),
            memory: None,
        };
        let wanted: [(&str, bool); 3] = [
            ("memory", limits.memory_bytes.is_some()),
            ("cpu", limits.cpu.is_some()),
            ("pids", limits.pids_max.is_some()),
        ];
        for (controller, on) in wanted {
            if !on {
                continue;
            }
            let (root, version) = mounts.place(controller).ok_or_else(|| {
                SandboxError::NotSupported(format!(
                    "{controller} limit: no cgroup hierarchy offers the {controller} controller"
                ))
            })?;
            let dir = root.join(&parent).join(id);
            if !cg.dirs.iter().any(|(d, _)| *d == dir) {
                if let Err(e) = cg.make_dir(&root, &parent, id, version, controller) {
                    cg.remove();
                    return Err(e);
                }
            } else if version == Version::V2
                && let Err(e) = enable_v2(&root, &parent, controller)
            {
                cg.remove();
                return Err(e);
            }
            let set = cg.set_limit(&dir, version, controller, limits);
            if let Err(e) = set {
                cg.remove();
                return Err(e);
            }
            if controller == "memory" {
                cg.memory = Some((dir, version));
            }
        }
        Ok(cg)
    }

    fn make_dir(
        &mut self,
        root: &Path,
        parent: &Path,
        id: &str,
        version: Version,
        controller: &str,
    ) -> Result<(), SandboxError> {
        let parent_dir = root.join(parent);
        fs::create_dir_all(&parent_dir).map_err(|source| SandboxError::Cgroup {
            what: format!("failed to create cgroup {}", parent_dir.display()),
            source,
        })?;
        if version == Version::V2 {
            enable_v2(root, parent, controller)?;
        }
        let dir = parent_dir.join(id);
        fs::create_dir(&dir).map_err(|source| SandboxError::Cgroup {
            what: format!("failed to create cgroup {}", dir.display()),
            source,
        })?;
        self.dirs.push((dir, version));
        Ok(())
    }

    fn set_limit(
        &self,
        dir: &Path,
        version: Version,
        controller: &str,
        limits: &CgroupLimits,
    ) -> Result<(), SandboxError> {
        match (controller, version) {
            ("memory", v) => {
                let bytes = limits.memory_bytes.unwrap_or(0).to_string();
                let (limit, swap) = match v {
                    Version::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
                    Version::V2 => ("memory.max", "memory.swap.max"),
                };
                write(dir, limit, &bytes)?;
                // Without a swap limit a hog would swap instead of being stopped; the file
                // only exists where the kernel accounts swap.
                if dir.join(swap).exists() {
                    let value = if v == Version::V2 {
                        "0"
                    } else {
                        bytes.as_str()
                    };
                    write(dir, swap, value)?;
                }
            }
            ("cpu", Version::V1) => {
                if let Some(q) = limits.cpu {
                    write(dir, "cpu.cfs_period_us", &q.period_us.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &q.quota_us.to_string())?;
                }
            }
            ("cpu", Version::V2) => {
                if let Some(q) = limits.cpu {
                    write(dir, "cpu.max", &format!("{} {}", q.quota_us, q.period_us))?;
                }
            }
            ("pids", _) => {
                write(dir, "pids.max", &limits.pids_max.unwrap_or(0).to_string())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `cgroup.procs` of every directory, opened for the child to write "0" (itself) into.
    pub(crate) fn procs_files(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.dirs
            .iter()
            .map(|(dir, _)| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| SandboxError::Cgroup {
                        what: format!("failed to open {}", path.display()),
                        source,
                    })
            })
            .collect()
    }

    /// Whether the OOM killer acted in the memory cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some((dir, version)) = &self.memory else {
            return false;
        };
        let file = match version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .map(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
            .unwrap_or(false)
    }

    /// Removes the directories. Runs after pid 1 was reaped, when the pid namespace is empty;
    /// the kernel may still be finishing the last exits, so EBUSY is retried briefly.
    pub(crate) fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for (dir, _) in self.dirs.drain(..) {
            let mut ok = false;
            for attempt in 0..200 {
                match fs::remove_dir(&dir) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        ok = true;
                        break;
                    }
                    Err(_) if attempt < 199 => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "failed to remove sandbox cgroup");
                    }
                }
            }
            if !ok {
                left.push(dir);
            }
        }
        self.memory = None;
        left
    }

    pub(crate) fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(d, _)| d.as_path())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            self.remove();
        }
    }
}

/// Enables `controller` for children along `parent` in a v2 tree (root, then each level).
fn enable_v2(root: &Path, parent: &Path, controller: &str) -> Result<(), SandboxError> {
    let mut dir = root.to_path_buf();
    let mut levels = vec![dir.clone()];
    for c in parent.components() {
        dir.push(c);
        levels.push(dir.clone());
    }
    for level in levels {
        let current = fs::read_to_string(level.join("cgroup.subtree_control")).unwrap_or_default();
        if current.split_whitespace().any(|c| c == controller) {
            continue;
        }
        write(&level, "cgroup.subtree_control", &format!("+{controller}"))?;
    }
    Ok(())
}
