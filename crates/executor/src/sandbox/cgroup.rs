//! Per-sandbox cgroups: memory, CPU, cpuset and pids limits on cgroup v2 or v1 per controller;
//! for a container (`CgroupLimits::container`) a cgroup in every hierarchy, Docker's device
//! rules, and the host directories the sandbox shows read-only at `/sys/fs/cgroup`.
//!
//! Hosts differ: pure v2, pure v1, or hybrid (v1 controllers plus an empty v2 tree, as on this
//! project's CI). Each controller is placed on v2 when the unified hierarchy offers it and on
//! its own v1 hierarchy otherwise.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::spec::{CgroupLimits, Device, DeviceKind};

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
    /// What the sandbox shows at `/sys/fs/cgroup` (container mode only).
    views: Vec<View>,
}

/// One cgroup directory as the sandbox sees it under `/sys/fs/cgroup`.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// The sandbox's own cgroup directory on the host.
    pub(crate) host_dir: PathBuf,
    /// The name under `/sys/fs/cgroup` (the host's mount point name, `memory`, `cpu,cpuacct`,
    /// `systemd`); empty for a pure v2 host, whose one hierarchy is `/sys/fs/cgroup` itself.
    pub(crate) name: String,
}

/// A cgroup hierarchy as mounted on the host.
#[derive(Debug, Clone)]
pub(super) struct Hierarchy {
    pub(super) point: PathBuf,
    version: Version,
    /// The v1 controllers (and `name=` option) of the mount.
    pub(super) controllers: Vec<String>,
}

/// Where the cgroup filesystems are mounted.
#[derive(Debug, Default)]
pub(super) struct Mounts {
    pub(super) v2: Option<PathBuf>,
    pub(super) v1: Vec<Hierarchy>,
}

pub(super) fn mounts() -> io::Result<Mounts> {
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
                let controllers: Vec<String> = superopts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                    .map(str::to_string)
                    .collect();
                // The same hierarchy may be mounted twice; the first mount serves.
                if !m.v1.iter().any(|h| h.controllers == controllers) {
                    m.v1.push(Hierarchy {
                        point,
                        version: Version::V1,
                        controllers,
                    });
                }
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
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| (h.point.clone(), Version::V1))
    }

    /// Every hierarchy a container gets a cgroup in: each v1 one and the v2 tree.
    fn all(&self) -> Vec<Hierarchy> {
        let mut all = self.v1.clone();
        if let Some(v2) = &self.v2 {
            all.push(Hierarchy {
                point: v2.clone(),
                version: Version::V2,
                controllers: Vec::new(),
            });
        }
        all
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), SandboxError> {
    fs::write(dir.join(file), value).map_err(|source| SandboxError::Cgroup {
        what: format!("failed to write {value:?} to {}", dir.join(file).display()),
        source,
    })
}

/// The device cgroup rules of a container (cgroup v1 `devices.allow` lines): Docker's
/// defaults (any device may be created, only the standard ones used, ptys and tun) plus the
/// sandbox's own devices.
pub(crate) fn device_rules(devices: &[Device]) -> Vec<String> {
    let mut rules: Vec<String> = [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:8 rwm",
        "c 1:7 rwm",
        "c 5:0 rwm",
        "c 1:5 rwm",
        "c 1:9 rwm",
        "c 136:* rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    for d in devices {
        let kind = match d.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        rules.push(format!("{kind} {}:{} {}", d.major, d.minor, d.access));
    }
    rules
}

/// What [`Cgroups::create`] needs besides the limits.
pub(crate) struct Request<'a> {
    pub(crate) limits: &'a CgroupLimits,
    /// v1 `devices.allow` rules (container mode); `None` allows every device (privileged).
    pub(crate) device_rules: Option<Vec<String>>,
}

impl Cgroups {
    /// Creates `<hierarchy>/<parent>/<id>` for each controller with a limit (in container
    /// mode: in every hierarchy) and sets the limits.
    pub(crate) fn create(id: &str, req: &Request<'_>) -> Result<Cgroups, SandboxError> {
        let limits = req.limits;
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
            views: Vec::new(),
        };
        let result = cg.populate(id, req, &mounts, &parent);
        if let Err(e) = result {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn populate(
        &mut self,
        id: &str,
        req: &Request<'_>,
        mounts: &Mounts,
        parent: &Path,
    ) -> Result<(), SandboxError> {
        let limits = req.limits;
        let wanted: [(&str, bool); 4] = [
            (
                "memory",
                limits.memory_bytes.is_some()
                    || limits.memory_swap.is_some()
                    || limits.oom_kill_disable,
            ),
            ("cpu", limits.cpu.is_some() || limits.cpu_shares.is_some()),
            ("cpuset", limits.cpuset_cpus.is_some()),
            ("pids", limits.pids_max.is_some()),
        ];
        if limits.container {
            for h in mounts.all() {
                // A hybrid host's empty v2 tree gets the container too (as Docker does), but
                // only a pure v2 host's tree is what the container sees.
                let shown = h.version == Version::V1 || mounts.v1.is_empty();
                self.make_dir(&h.point, parent, id, h.version, None)?;
                let dir = h.point.join(parent).join(id);
                if h.version == Version::V1 {
                    self.init_v1(&h, &dir, req)?;
                }
                if shown {
                    let name = match h.version {
                        Version::V2 => String::new(),
                        Version::V1 => h
                            .point
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| h.controllers.join(",")),
                    };
                    self.views.push(View {
                        host_dir: dir,
                        name,
                    });
                }
            }
        }
        for (controller, on) in wanted {
            if !on {
                continue;
            }
            let (root, version) = mounts.place(controller).ok_or_else(|| {
                SandboxError::NotSupported(format!(
                    "{controller} limit: no cgroup hierarchy offers the {controller} controller"
                ))
            })?;
            let dir = root.join(parent).join(id);
            if !self.dirs.iter().any(|(d, _)| *d == dir) {
                self.make_dir(&root, parent, id, version, Some(controller))?;
            } else if version == Version::V2 {
                enable_v2(&root, parent, controller)?;
            }
            self.set_limit(&dir, version, controller, limits)?;
            if controller == "memory" {
                self.memory = Some((dir, version));
            }
        }
        Ok(())
    }

    /// What a fresh v1 container cgroup needs before a process may join it: cpus and memory
    /// nodes for cpuset (empty in a new cgroup), the device rules.
    fn init_v1(&self, h: &Hierarchy, dir: &Path, req: &Request<'_>) -> Result<(), SandboxError> {
        let has = |c: &str| h.controllers.iter().any(|x| x == c);
        if has("cpuset") {
            inherit_cpuset(&h.point, dir)?;
        }
        if has("devices") {
            match &req.device_rules {
                Some(rules) => {
                    write(dir, "devices.deny", "a")?;
                    for rule in rules {
                        write(dir, "devices.allow", rule)?;
                    }
                }
                None => write(dir, "devices.allow", "a")?,
            }
        }
        Ok(())
    }

    fn make_dir(
        &mut self,
        root: &Path,
        parent: &Path,
        id: &str,
        version: Version,
        controller: Option<&str>,
    ) -> Result<(), SandboxError> {
        let parent_dir = root.join(parent);
        fs::create_dir_all(&parent_dir).map_err(|source| SandboxError::Cgroup {
            what: format!("failed to create cgroup {}", parent_dir.display()),
            source,
        })?;
        if version == Version::V2
            && let Some(c) = controller
        {
            enable_v2(root, parent, c)?;
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
            ("memory", v) => set_memory(dir, v, limits)?,
            ("cpu", Version::V1) => {
                if let Some(q) = limits.cpu {
                    write(dir, "cpu.cfs_period_us", &q.period_us.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &q.quota_us.to_string())?;
                }
                if let Some(s) = limits.cpu_shares {
                    write(dir, "cpu.shares", &s.to_string())?;
                }
            }
            ("cpu", Version::V2) => {
                if let Some(q) = limits.cpu {
                    write(dir, "cpu.max", &format!("{} {}", q.quota_us, q.period_us))?;
                }
                if let Some(s) = limits.cpu_shares {
                    write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
                }
            }
            ("cpuset", v) => {
                if v == Version::V1 && !limits.container {
                    inherit_cpuset(dir.parent().and_then(Path::parent).unwrap_or(dir), dir)?;
                }
                if let Some(cpus) = &limits.cpuset_cpus {
                    write(dir, "cpuset.cpus", cpus)?;
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

    /// The directories the sandbox shows at `/sys/fs/cgroup` (container mode).
    pub(crate) fn views(&self) -> &[View] {
        &self.views
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

    /// SIGKILLs every process left in the cgroups (a sandbox without a pid namespace of its
    /// own: nothing else ends them when the command exits). Returns how many were signalled.
    pub(crate) fn kill_all(&self) -> usize {
        let mut n = 0;
        for (dir, _) in &self.dirs {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Removes the directories. Runs after pid 1 was reaped, when the pid namespace is empty;
    /// the kernel may still be finishing the last exits (on a loaded host a v2 cgroup has
    /// been seen busy for over a second), so EBUSY is retried for up to five seconds.
    pub(crate) fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for (dir, _) in self.dirs.drain(..) {
            let mut ok = false;
            for attempt in 0..1000 {
                match fs::remove_dir(&dir) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        ok = true;
                        break;
                    }
                    Err(_) if attempt < 999 => {
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
        self.views.clear();
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

/// The memory limit, swap and OOM killer settings. Docker's swap rules for a container: no
/// `memory_swap` means as much swap as memory (twice the limit in total), -1 unlimited; a
/// build step (not a container) gets none.
fn set_memory(dir: &Path, v: Version, limits: &CgroupLimits) -> Result<(), SandboxError> {
    let (limit, swap) = match v {
        Version::V1 => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        Version::V2 => ("memory.max", "memory.swap.max"),
    };
    if let Some(bytes) = limits.memory_bytes {
        write(dir, limit, &bytes.to_string())?;
        // The swap file exists only where the kernel accounts swap.
        if dir.join(swap).exists() {
            let total: Option<i64> = match (limits.memory_swap, limits.container) {
                (Some(s), _) => Some(s),
                (None, true) => Some(2 * bytes as i64),
                (None, false) => Some(bytes as i64),
            };
            let value = match (v, total) {
                (_, Some(-1)) | (_, None) => match v {
                    Version::V1 => "-1".to_string(),
                    Version::V2 => "max".to_string(),
                },
                (Version::V1, Some(t)) => t.to_string(),
                (Version::V2, Some(t)) => (t - bytes as i64).max(0).to_string(),
            };
            write(dir, swap, &value)?;
        }
    }
    if limits.oom_kill_disable && v == Version::V1 {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// cgroup v1 `cpu.shares` (2..262144, default 1024) as v2's `cpu.weight` (1..10000, default
/// 100), the conversion runc and the OCI spec use.
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the nearest ancestor that has them into each
/// empty level down to `dir` (a new v1 cpuset cgroup starts empty, and nothing may join it).
fn inherit_cpuset(root: &Path, dir: &Path) -> Result<(), SandboxError> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut levels = vec![root.to_path_buf()];
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        levels.push(cur.clone());
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut value = String::new();
        for level in &levels {
            let now = fs::read_to_string(level.join(file)).unwrap_or_default();
            if now.trim().is_empty() {
                if !value.is_empty() {
                    write(level, file, &value)?;
                }
            } else {
                value = now.trim().to_string();
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_to_weights_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn device_rules_extend_dockers_defaults() {
        let rules = device_rules(&[Device {
            host_path: "/dev/fuse".into(),
            path: "/dev/fuse".into(),
            kind: DeviceKind::Char,
            major: 10,
            minor: 229,
            access: "rw".into(),
        }]);
        assert_eq!(rules[0], "c *:* m");
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert_eq!(rules.last().unwrap(), "c 10:229 rw");
    }
}
