//! A new container's host-side settings (`HostSettings`) from `kiln run`'s flags, every
//! value checked before anything is made, with Docker's messages and warnings.

use std::collections::BTreeMap;

use super::Runtime;
use crate::error::RuntimeError;
use crate::options::{self, RunOptions, host, security};
use crate::store::HostSettings;

/// What the flags decide besides the network.
pub(crate) struct Settings {
    pub(crate) host: HostSettings,
    pub(crate) security_opt: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

impl Runtime {
    /// Checks and records the host-side flags of `opts`; `net_host` says whether the
    /// container uses the host's network, `gateway` is the address `host-gateway` names.
    pub(crate) fn host_settings(
        &self,
        opts: &RunOptions,
        net_host: bool,
        gateway: Option<String>,
    ) -> Result<Settings, RuntimeError> {
        let mut warnings = Vec::new();
        let sec = security::parse_security_opts(&opts.security_opt)?;
        // Recorded as given (Docker shows them so); checked and normalized here.
        let (cap_add, cap_drop) = (opts.cap_add.clone(), opts.cap_drop.clone());
        security::capabilities(&cap_add, &cap_drop, opts.privileged)?;
        let ulimits = opts
            .ulimits
            .iter()
            .map(|u| host::parse_ulimit(u))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = opts
            .devices
            .iter()
            .map(|d| security::parse_device(d))
            .collect::<Result<Vec<_>, _>>()?;
        let ipc_mode = self.namespace_ref("ipc", opts.ipc.as_deref())?;
        let pid_mode = self.namespace_ref("pid", opts.pid.as_deref())?;
        let uts_mode = host::namespace_mode("uts", opts.uts.as_deref().unwrap_or(""))?;
        if uts_mode == "host" && opts.hostname.is_some() {
            return Err(RuntimeError::Invalid(
                "conflicting options: hostname and the UTS mode".into(),
            ));
        }
        let mut sysctls = BTreeMap::new();
        for s in &opts.sysctls {
            let (k, v) = security::parse_sysctl(s, ipc_mode == "host", net_host)?;
            sysctls.insert(k, v);
        }
        let mut extra_hosts = Vec::new();
        for h in &opts.add_hosts {
            let (name, ip) = host::parse_add_host(h)?;
            let ip = if ip == "host-gateway" {
                gateway.clone().ok_or_else(|| {
                    RuntimeError::Invalid(format!(
                        "--add-host {h}: no bridge network gives this container a host gateway \
                         (run a container on the default bridge first, or use --network bridge)"
                    ))
                })?
            } else {
                ip
            };
            extra_hosts.push(format!("{name}:{ip}"));
        }
        for d in &opts.dns {
            host::check_dns(d)?;
        }
        if net_host && !opts.dns.is_empty() {
            return Err(RuntimeError::Invalid(
                "conflicting options: dns and the network mode".into(),
            ));
        }
        let shm_size = match opts.shm_size.as_deref() {
            Some(s) => match options::parse_size(s)? {
                0 => {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid argument {s:?} for \"--shm-size\" flag: SHM size must be greater than 0"
                    )));
                }
                n => Some(n),
            },
            None => None,
        };
        let stop_timeout = match opts.stop_timeout {
            None => None,
            Some(t) if t >= 0 => Some(u32::try_from(t).unwrap_or(u32::MAX)),
            Some(t) => {
                return Err(RuntimeError::Invalid(format!(
                    "invalid --stop-timeout {t}: must be 0 or more seconds"
                )));
            }
        };
        let memory = opts
            .memory
            .as_deref()
            .map(options::parse_size)
            .transpose()?;
        let memory_swap = opts
            .memory_swap
            .as_deref()
            .map(|s| host::memory_swap(s, memory))
            .transpose()?;
        if opts.oom_kill_disable && memory.is_none() {
            warnings.push(
                "disabling the OOM killer on containers without setting a '-m/--memory' limit may be dangerous".into(),
            );
        }
        let cpu_shares = match opts.cpu_shares {
            None | Some(0) => None,
            Some(n) if n < 0 => {
                return Err(RuntimeError::Invalid(format!(
                    "invalid --cpu-shares {n}: must be positive"
                )));
            }
            Some(n) => Some(n as u64),
        };
        let host = HostSettings {
            cap_add,
            cap_drop,
            privileged: opts.privileged,
            init: opts.init,
            ulimits,
            group_add: opts.group_add.clone(),
            devices,
            extra_hosts,
            dns: opts.dns.clone(),
            dns_search: opts.dns_search.clone(),
            dns_options: opts.dns_options.clone(),
            sysctls,
            shm_size,
            ipc_mode,
            pid_mode,
            uts_mode,
            stop_timeout,
            log_config: host::log_config(opts.log_driver.as_deref(), &opts.log_opts)?,
            memory_swap,
            cpu_shares,
            cpuset_cpus: opts.cpuset_cpus.as_deref().map(host::cpuset).transpose()?,
            oom_kill_disable: opts.oom_kill_disable,
            no_new_privileges: sec.no_new_privileges,
        };
        Ok(Settings {
            host,
            security_opt: sec.recorded,
            warnings,
        })
    }

    /// `--ipc`/`--pid` with a container named: recorded by ID, as Docker does.
    fn namespace_ref(&self, flag: &str, value: Option<&str>) -> Result<String, RuntimeError> {
        let mode = host::namespace_mode(flag, value.unwrap_or(""))?;
        match mode.strip_prefix("container:") {
            Some(name) => Ok(format!("container:{}", self.get(name)?.id())),
            None => Ok(mode),
        }
    }

    /// The host gateway of a container's network: its bridge's address, else the default
    /// bridge's (as Docker's `host-gateway` names the default bridge's address).
    pub(crate) fn host_gateway(&self, network_name: Option<&str>) -> Option<String> {
        let name = network_name.unwrap_or(crate::network::DEFAULT_BRIDGE);
        crate::network::inspect(self.root(), name)
            .ok()
            .map(|n| n.gateway().to_string())
    }
}
