//! What a container shows without being changed: Docker-shaped inspect JSON and its logs.

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
        if c.config.host.log_config.driver == "none" {
            return Err(RuntimeError::Invalid(
                "configured logging driver does not support reading".into(),
            ));
        }
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
                    ..
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
                MountConfig::Tmpfs {
                    target, readonly, ..
                } => {
                    json!({"Type": "tmpfs", "Source": "", "Destination": target, "RW": !readonly})
                }
            })
            .collect();
        let health = crate::health::read(c).filter(|_| st.status == Status::Running);
        let hs = &cfg.host;
        // Docker shows null for a list never given, [] for some, and the memory+swap total
        // it set (twice the memory) when only --memory was.
        let list = |v: &[String]| (!v.is_empty()).then_some(v.to_vec());
        let memory_swap = match (hs.memory_swap, cfg.memory) {
            (Some(s), _) => s,
            (None, Some(m)) => 2 * m as i64,
            (None, None) => 0,
        };
        let ulimits: Vec<serde_json::Value> = hs
            .ulimits
            .iter()
            .map(|u| json!({"Name": u.name, "Hard": u.hard, "Soft": u.soft}))
            .collect();
        let devices: Vec<serde_json::Value> = hs
            .devices
            .iter()
            .map(|d| json!({"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container, "CgroupPermissions": d.cgroup_permissions}))
            .collect();
        json!({
            "Id": cfg.id,
            "Created": cfg.created,
            "Path": cfg.path,
            "Args": cfg.args,
            "State": {
                "Status": if st.paused { "paused".to_string() } else { st.status.to_string() },
                "Running": st.status == Status::Running,
                "Paused": st.paused,
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
                "CapAdd": list(&hs.cap_add),
                "CapDrop": list(&hs.cap_drop),
                "Privileged": hs.privileged,
                "Init": hs.init.then_some(true),
                "Ulimits": (!ulimits.is_empty()).then_some(ulimits),
                "GroupAdd": list(&hs.group_add),
                "Devices": devices,
                "ExtraHosts": list(&hs.extra_hosts),
                "Dns": hs.dns,
                "DnsSearch": hs.dns_search,
                "DnsOptions": hs.dns_options,
                "Sysctls": (!hs.sysctls.is_empty()).then_some(&hs.sysctls),
                "ShmSize": hs.shm_size.unwrap_or(64 << 20),
                "IpcMode": if hs.ipc_mode.is_empty() {
                    "private"
                } else {
                    hs.ipc_mode.as_str()
                },
                "PidMode": hs.pid_mode,
                "UTSMode": hs.uts_mode,
                "LogConfig": hs.log_config,
                "MemorySwap": memory_swap,
                "CpuShares": hs.cpu_shares.unwrap_or(0),
                "CpusetCpus": hs.cpuset_cpus.clone().unwrap_or_default(),
                "OomKillDisable": hs.oom_kill_disable,
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
                "StopTimeout": hs.stop_timeout,
                "Labels": cfg.labels,
                "OpenStdin": cfg.open_stdin,
                "Tty": cfg.tty,
            },
            "NetworkSettings": { "Ports": ports::docker_json(&ports::published(c)), "IPAddress": cfg.ip.clone().unwrap_or_default() },
        })
    }
}
