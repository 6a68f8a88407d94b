//! Changing a container after it was made: `rename`, `update` (its limits and restart
//! policy, live when it runs), `network connect`/`disconnect`; and `top` (its processes as
//! the host's `ps` shows them).

use std::fs;
use std::path::PathBuf;

use super::Runtime;
use crate::error::{RuntimeError, io_err};
use crate::events;
use crate::options::{self, host};
use crate::store::{self, Container, NetworkLink, NetworkMode, Status, write_json};

/// `kiln update`'s options (only the ones given change anything).
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub restart: Option<String>,
}

/// Writes a cgroup file of a running container.
fn write_cgroup(dirs: &[PathBuf], file: &str, value: &str) -> Result<bool, RuntimeError> {
    for d in dirs {
        let p = d.join(file);
        if p.exists() {
            fs::write(&p, value).map_err(io_err(format!("write {value} to {}", p.display())))?;
            return Ok(true);
        }
    }
    Ok(false)
}

impl Runtime {
    /// Gives `c` a new name (under the names lock, so two renames never take one name).
    pub fn rename(&self, c: &Container, new_name: &str) -> Result<(), RuntimeError> {
        let new_name = new_name.trim_start_matches('/');
        let valid = new_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && new_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(RuntimeError::Invalid(format!(
                "invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let names = store::lock_names(self.root())?;
        let c = self.get(c.id())?;
        if c.name() == new_name {
            return Err(RuntimeError::Invalid(
                "renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(other) = store::list(self.root())?
            .into_iter()
            .find(|o| o.config.name == new_name)
        {
            return Err(RuntimeError::NameInUse {
                name: new_name.to_string(),
                id: other.config.id,
            });
        }
        let old = c.config.name.clone();
        let mut config = c.config.clone();
        config.name = new_name.to_string();
        write_json(&c.dir.join("config.json"), &config)?;
        drop(names);
        if let Some(n) = &config.network_name {
            crate::network::refresh_hosts(self.root(), n)?;
        }
        let renamed = Container { config, ..c };
        events::record(
            self.root(),
            events::container_with(&renamed, "rename", [("oldName", format!("/{old}"))]),
        );
        Ok(())
    }

    /// Changes `c`'s limits and restart policy; a running container's cgroups change at once.
    pub fn update(&self, c: &Container, opts: &UpdateOptions) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        let mut config = c.config.clone();
        let running = c.state.status == Status::Running;
        let dirs = &c.state.cgroup_dirs;
        if let Some(r) = &opts.restart {
            let policy = options::parse_restart(r)?;
            if config.auto_remove && policy != crate::store::RestartPolicy::No {
                return Err(RuntimeError::Invalid(
                    "restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            config.restart = policy;
        }
        let memory = opts
            .memory
            .as_deref()
            .map(options::parse_size)
            .transpose()?;
        let new_memory = memory.or(config.memory);
        let swap = opts
            .memory_swap
            .as_deref()
            .map(|s| host::memory_swap(s, new_memory))
            .transpose()?;
        if let Some(m) = memory {
            if running {
                // memsw must stay at least the memory limit: raise it first when growing.
                let total = swap.or(config.host.memory_swap).unwrap_or(2 * m as i64);
                // What the kernel has now decides the order (no limit reads as a huge one).
                let current = dirs
                    .iter()
                    .find_map(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                let grow = m > current;
                if grow {
                    write_cgroup(dirs, "memory.memsw.limit_in_bytes", &total.to_string())?;
                }
                if !write_cgroup(dirs, "memory.limit_in_bytes", &m.to_string())? {
                    write_cgroup(dirs, "memory.max", &m.to_string())?;
                }
                if !grow {
                    write_cgroup(dirs, "memory.memsw.limit_in_bytes", &total.to_string())?;
                }
            }
            config.memory = Some(m);
        }
        if let Some(s) = swap {
            if running && memory.is_none() {
                write_cgroup(dirs, "memory.memsw.limit_in_bytes", &s.to_string())?;
            }
            config.host.memory_swap = Some(s);
        }
        if let Some(cpus) = &opts.cpus {
            let millis = options::parse_cpus(cpus)?;
            if running && !write_cgroup(dirs, "cpu.cfs_quota_us", &(millis * 100).to_string())? {
                write_cgroup(dirs, "cpu.max", &format!("{} 100000", millis * 100))?;
            }
            config.cpus_millis = Some(millis);
        }
        if let Some(shares) = opts.cpu_shares {
            if shares < 0 {
                return Err(RuntimeError::Invalid(format!(
                    "invalid --cpu-shares {shares}"
                )));
            }
            if running && shares > 0 {
                write_cgroup(dirs, "cpu.shares", &shares.to_string())?;
            }
            config.host.cpu_shares = (shares > 0).then_some(shares as u64);
        }
        if let Some(cpus) = &opts.cpuset_cpus {
            let cpus = host::cpuset(cpus)?;
            if running {
                write_cgroup(dirs, "cpuset.cpus", &cpus)?;
            }
            config.host.cpuset_cpus = Some(cpus);
        }
        if let Some(p) = opts.pids_limit {
            let limit = (p > 0).then_some(p as u64);
            if running {
                write_cgroup(
                    dirs,
                    "pids.max",
                    &limit.map_or("max".to_string(), |l| l.to_string()),
                )?;
            }
            config.pids_limit = limit;
        }
        write_json(&c.dir.join("config.json"), &config)?;
        events::record(self.root(), events::container(&c, "update"));
        Ok(())
    }

    /// `kiln top`: the host's `ps` with `ps_args` (default `-ef`), only the rows of the
    /// container's processes (those in its cgroup). Returns the header and rows as printed.
    pub fn top(&self, c: &Container, ps_args: &[String]) -> Result<String, RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running {
            return Err(RuntimeError::NotRunning(c.name().to_string()));
        }
        let mut pids: Vec<i32> = Vec::new();
        for d in &c.state.cgroup_dirs {
            let text = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for p in text.lines().filter_map(|l| l.trim().parse().ok()) {
                if !pids.contains(&p) {
                    pids.push(p);
                }
            }
        }
        if pids.is_empty() {
            pids.push(c.state.pid);
        }
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(io_err("run ps"))?;
        if !out.status.success() {
            return Err(RuntimeError::Invalid(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let column = header
            .split_whitespace()
            .position(|f| f == "PID")
            .ok_or_else(|| RuntimeError::Invalid("couldn't find PID field in ps output".into()))?;
        let mut shown = format!("{header}\n");
        for l in lines {
            if l.split_whitespace()
                .nth(column)
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| pids.contains(&p))
            {
                shown.push_str(l);
                shown.push('\n');
            }
        }
        events::record(self.root(), events::container(&c, "top"));
        Ok(shown)
    }

    /// Connects `c` to the user network `name` (live when it runs, as `eth<N>`).
    pub fn network_connect(&self, c: &Container, name: &str) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        let info = crate::network::inspect(self.root(), name)?;
        match c.config.network {
            NetworkMode::Host => {
                return Err(RuntimeError::Invalid(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ));
            }
            NetworkMode::None => {
                return Err(RuntimeError::Invalid(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
                ));
            }
            NetworkMode::Named => {}
        }
        if crate::network::address_on(&c.config, name).is_some() {
            return Err(RuntimeError::Invalid(format!(
                "endpoint with name {} already exists in network {name}",
                c.name()
            )));
        }
        let ip = crate::network::allocate_ip(self.root(), &info)?.to_string();
        let index = c
            .config
            .extra_networks
            .iter()
            .map(|l| l.index)
            .max()
            .unwrap_or(0)
            + 1;
        let mut config = c.config.clone();
        config.extra_networks.push(NetworkLink {
            name: name.to_string(),
            ip: ip.clone(),
            index,
        });
        write_json(&c.dir.join("config.json"), &config)?;
        if c.state.status == Status::Running
            && let Err(e) = crate::network::attach_extra(self.root(), &info, c.id(), &ip, index)
        {
            write_json(&c.dir.join("config.json"), &c.config)?;
            crate::network::release_lease(self.root(), Some(name), Some(&ip));
            return Err(e);
        }
        crate::network::refresh_hosts(self.root(), name)?;
        events::record(
            self.root(),
            events::new(
                "network",
                "connect",
                &info.id,
                [
                    ("container".to_string(), c.id().to_string()),
                    ("name".into(), name.to_string()),
                    ("type".into(), "bridge".into()),
                ]
                .into(),
            ),
        );
        Ok(())
    }

    /// Disconnects `c` from a network it was connected to.
    pub fn network_disconnect(&self, c: &Container, name: &str) -> Result<(), RuntimeError> {
        let c = self.get(c.id())?;
        let info = crate::network::inspect(self.root(), name)?;
        if c.config.network_name.as_deref() == Some(name) {
            return Err(RuntimeError::NotSupported(format!(
                "disconnecting a container from the network it was created on ({name})"
            )));
        }
        let Some(link) = c
            .config
            .extra_networks
            .iter()
            .find(|l| l.name == name)
            .cloned()
        else {
            return Err(RuntimeError::Invalid(format!(
                "container {} is not connected to network {name}",
                c.id()
            )));
        };
        let mut config = c.config.clone();
        config.extra_networks.retain(|l| l.name != name);
        write_json(&c.dir.join("config.json"), &config)?;
        if c.state.status == Status::Running {
            crate::network::detach_extra(c.id(), link.index);
        }
        crate::network::release_lease(self.root(), Some(name), Some(&link.ip));
        crate::network::refresh_hosts(self.root(), name)?;
        events::record(
            self.root(),
            events::new(
                "network",
                "disconnect",
                &info.id,
                [
                    ("container".to_string(), c.id().to_string()),
                    ("name".into(), name.to_string()),
                    ("type".into(), "bridge".into()),
                ]
                .into(),
            ),
        );
        Ok(())
    }
}
