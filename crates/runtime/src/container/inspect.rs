//! What a container shows without being changed: Docker-shaped inspect JSON, its logs, and
//! samples of its resource use for `kiln stats`.

use std::fs;
use std::path::Path;

use kiln_executor::sandbox::OutputSink;

use super::Runtime;
use crate::error::RuntimeError;
use crate::logs::LogOptions;
use crate::ports;
use crate::store::{Container, MountConfig, NetworkMode, Status};
use crate::volume;

impl Runtime {
    /// Writes the container's logs to `out`.
    pub fn logs(
        &self,
        c: &Container,
        opts: &LogOptions,
        out: &mut dyn OutputSink,
    ) -> Result<(), RuntimeError> {
        let id = c.id().to_string();
        let mut running = || self.get(&id).is_ok_and(|c| c.state.is_running());
        crate::logs::read_logs(&c.log_path(), opts, out, &mut running)
    }

    /// Docker-shaped `inspect` output for a container.
    pub fn inspect_json(&self, c: &Container) -> serde_json::Value {
        use serde_json::json;
        let cfg = &c.config;
        let st = &c.state;
        let ports = ports::docker_json(&cfg.ports);
        let mounts: Vec<serde_json::Value> = cfg
            .mounts
            .iter()
            .map(|m| match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
                } => json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
                MountConfig::Volume {
                    name,
                    target,
                    readonly,
                    ..
                } => json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": volume::volumes_dir(self.root()).join(name).join("_data"),
                    "Destination": target,
                    "RW": !readonly,
                }),
                MountConfig::Tmpfs { target, .. } => {
                    json!({"Type": "tmpfs", "Source": "", "Destination": target, "RW": true})
                }
            })
            .collect();
        let health = crate::health::read(c).filter(|_| st.status == Status::Running);
        json!({
            "Id": cfg.id,
            "Created": cfg.created,
            "Path": cfg.path,
            "Args": cfg.args,
            "State": {
                "Status": st.status.to_string(),
                "Running": st.status == Status::Running,
                "Paused": false,
                "Restarting": st.status == Status::Restarting,
                "OOMKilled": st.oom_killed,
                "Dead": st.status == Status::Dead,
                "Pid": st.pid,
                "ExitCode": st.exit_code.unwrap_or(0),
                "Error": st.error.clone().unwrap_or_default(),
                "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "Health": health,
            },
            "Image": cfg.image_id,
            "LogPath": c.log_path(),
            "Name": format!("/{}", cfg.name),
            "RestartCount": st.restart_count,
            "HostConfig": {
                "NetworkMode": match cfg.network {
                    NetworkMode::None => "none",
                    NetworkMode::Host => "host",
                    NetworkMode::Named => cfg.network_name.as_deref().unwrap_or_default(),
                },
                "PortBindings": ports,
                "RestartPolicy": cfg.restart,
                "AutoRemove": cfg.auto_remove,
                "ReadonlyRootfs": cfg.read_only,
                "Memory": cfg.memory.unwrap_or(0),
                "NanoCpus": cfg.cpus_millis.unwrap_or(0) * 1_000_000,
                "PidsLimit": cfg.pids_limit,
                // Docker shows null unless --security-opt was given.
                "SecurityOpt": (!cfg.security_opt.is_empty()).then_some(&cfg.security_opt),
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": cfg.hostname,
                "User": cfg.user,
                "Env": cfg.env,
                "Cmd": cfg.cmd,
                "Entrypoint": cfg.entrypoint,
                "WorkingDir": cfg.working_dir,
                "Image": cfg.image,
                "StopSignal": cfg.stop_signal,
                "OpenStdin": cfg.open_stdin,
                "Tty": cfg.tty,
            },
            "NetworkSettings": { "Ports": ports::docker_json(&ports::published(c)), "IPAddress": cfg.ip.clone().unwrap_or_default() },
        })
    }
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory in use: its cgroup's charge when it has one (a memory limit gives it one), else
    /// the resident set of its processes.
    pub memory_bytes: Option<u64>,
    pub memory_limit: Option<u64>,
    /// Processes in its pid namespace.
    pub pids: u64,
    /// CPU time its processes have used (user + system), in nanoseconds.
    pub cpu_nanos: u64,
}

impl Runtime {
    /// Samples `c`'s memory (its cgroup, else its processes' RSS), CPU time and process count
    /// (both from the processes of its pid namespace).
    pub fn stats(&self, c: &Container) -> Result<Stats, RuntimeError> {
        let c = self.get(c.id())?;
        if c.state.status != Status::Running {
            return Ok(Stats::default());
        }
        let read = |dir: &Path, f: &str| -> Option<u64> {
            fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok()
        };
        let mut stats = Stats::default();
        for dir in &c.state.cgroup_dirs {
            if let Some(v) =
                read(dir, "memory.usage_in_bytes").or_else(|| read(dir, "memory.current"))
            {
                stats.memory_bytes = Some(v);
                stats.memory_limit =
                    read(dir, "memory.limit_in_bytes").or_else(|| read(dir, "memory.max"));
            }
        }
        let ns = fs::read_link(format!("/proc/{}/ns/pid", c.state.pid)).ok();
        let (Some(ns), Ok(procs)) = (ns, fs::read_dir("/proc")) else {
            return Ok(stats);
        };
        // Clock ticks and page size are fixed for the host; sysconf is the only way to ask.
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as u64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .unwrap_or(4096) as u64;
        let mut rss = 0u64;
        for entry in procs.flatten() {
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                || fs::read_link(entry.path().join("ns/pid")).ok().as_ref() != Some(&ns)
            {
                continue;
            }
            stats.pids += 1;
            if let Ok(stat) = fs::read_to_string(entry.path().join("stat"))
                && let Some((_, after_comm)) = stat.rsplit_once(')')
            {
                // Fields after the command name: state is the 3rd field, utime the 14th.
                let fields: Vec<&str> = after_comm.split_whitespace().collect();
                let cpu: u64 = [11, 12]
                    .iter()
                    .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                    .sum();
                stats.cpu_nanos += cpu * 1_000_000_000 / ticks;
            }
            if let Ok(statm) = fs::read_to_string(entry.path().join("statm")) {
                rss += statm
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * page;
            }
        }
        if stats.memory_bytes.is_none() {
            stats.memory_bytes = Some(rss);
        }
        Ok(stats)
    }
}
