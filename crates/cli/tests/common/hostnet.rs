//! A record of the host state a test daemon could damage: network interfaces and their fixed
//! addresses, firewall chains and the rules of the builtin chains, forwarding sysctls, and the
//! paths a Docker daemon writes by default. Taken before a test starts a daemon and compared
//! after it stopped, so the test that damages the host is the one that fails (issue 23).
//!
//! Only what cannot change under a correct test on a busy machine is compared: interfaces and
//! rules that existed before must still be there (new ones may come from other tests), veth
//! ends and kiln's own bridges come and go with containers, and addresses with a lifetime
//! (DHCP, SLAAC) may be renewed, so only permanent ones count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a Docker daemon writes outside its data root and exec root unless it is kept from it.
const DOCKER_DEFAULT_PATHS: &[&str] = &[
    "/etc/docker/key.json",
    "/opt/containerd",
    "/run/containerd",
    "/run/docker",
    "/run/mount",
    "/var/lib/docker",
    "/var/lib/containerd",
];

/// The iptables chains every table's builtin rules live in.
const BUILTIN_CHAINS: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];

const SYSCTLS: &[&str] = &[
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    index: u64,
    up: bool,
    /// Permanent addresses as `addr/prefix`.
    addrs: BTreeSet<String>,
}

/// The host state of the calling thread's network namespace and of the filesystem.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    links: BTreeMap<String, Link>,
    /// `<tool> <table> :<chain> <policy>` and `<tool> <table> -A <builtin chain> ...` lines.
    firewall: BTreeSet<String>,
    sysctls: BTreeMap<&'static str, String>,
    paths: BTreeMap<PathBuf, bool>,
}

impl HostSnapshot {
    /// Records the state now. Commands run from the calling thread, so they see its network
    /// namespace (a test may give a thread a namespace of its own to play the host).
    pub fn capture() -> HostSnapshot {
        HostSnapshot {
            links: links(),
            firewall: firewall(),
            sysctls: SYSCTLS
                .iter()
                .filter_map(|k| Some((*k, std::fs::read_to_string(k).ok()?.trim().to_string())))
                .collect(),
            paths: watched_paths()
                .into_iter()
                .map(|p| {
                    let exists = p.symlink_metadata().is_ok();
                    (p, exists)
                })
                .collect(),
        }
    }

    /// Whether an interface of this name exists (with any index).
    pub fn has_link(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }

    /// What was there in `self` and is gone or different in `after`, one line each; empty when
    /// the host is as it was.
    pub fn damage(&self, after: &HostSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (name, before) in &self.links {
            match after.links.get(name) {
                None => out.push(format!("interface {name} was deleted")),
                Some(now) if now.index != before.index => out.push(format!(
                    "interface {name} was deleted and made again (index {} -> {})",
                    before.index, now.index
                )),
                Some(now) => {
                    if before.up && !now.up {
                        out.push(format!("interface {name} was set down"));
                    }
                    for addr in before.addrs.difference(&now.addrs) {
                        out.push(format!("interface {name} lost its address {addr}"));
                    }
                }
            }
        }
        for line in self.firewall.difference(&after.firewall) {
            out.push(format!("firewall line removed: {line}"));
        }
        for (key, value) in &self.sysctls {
            if let Some(now) = after.sysctls.get(key)
                && now != value
            {
                out.push(format!("{key} changed from {value} to {now}"));
            }
        }
        for (path, existed) in &self.paths {
            match (existed, after.paths.get(path)) {
                (false, Some(true)) => out.push(format!("{} was created", path.display())),
                (true, Some(false)) => out.push(format!("{} was removed", path.display())),
                _ => {}
            }
        }
        out
    }
}

/// Interfaces of this namespace, without veth ends (containers' plumbing) and kiln's own
/// bridges (tagged by their alias), which other tests make and remove at any time.
fn links() -> BTreeMap<String, Link> {
    let Ok(out) = Command::new("ip")
        .args(["-j", "-d", "addr", "show"])
        .output()
    else {
        return BTreeMap::new();
    };
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut links = BTreeMap::new();
    for l in parsed.as_array().into_iter().flatten() {
        let (Some(name), Some(index)) = (l["ifname"].as_str(), l["ifindex"].as_u64()) else {
            continue;
        };
        let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or("");
        let alias = l["ifalias"].as_str().unwrap_or("");
        if kind == "veth" || alias.starts_with("kiln-network ") {
            continue;
        }
        let up = l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"));
        let addrs = l["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["valid_life_time"].as_u64() == Some(u64::from(u32::MAX)))
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect();
        links.insert(name.to_string(), Link { index, up, addrs });
    }
    links
}

/// Chains (with their policies) of every table and the rules of the builtin chains, for IPv4
/// and IPv6, without counters; empty where the tools are missing. Rules in other chains (a
/// Docker's per-container `DOCKER` rules, kiln's per-network rules) come and go legitimately.
fn firewall() -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let Ok(out) = Command::new(tool).output() else {
            continue;
        };
        let mut table = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(chain) = line.strip_prefix(':') {
                // `:NAME POLICY [packets:bytes]`: the counters change all the time.
                let decl: Vec<&str> = chain.split_whitespace().take(2).collect();
                lines.insert(format!("{tool} {table} :{}", decl.join(" ")));
            } else if let Some(rule) = line.strip_prefix("-A ")
                && BUILTIN_CHAINS.contains(&rule.split_whitespace().next().unwrap_or(""))
            {
                lines.insert(format!("{tool} {table} -A {rule}"));
            }
        }
    }
    lines
}

/// [`DOCKER_DEFAULT_PATHS`] and a `docker` cgroup (the default cgroup parent) in every cgroup
/// hierarchy.
fn watched_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = DOCKER_DEFAULT_PATHS.iter().map(PathBuf::from).collect();
    paths.extend(cgroup_mounts().into_iter().map(|m| m.join("docker")));
    paths
}

/// The mount points of the cgroup hierarchies this process sees.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(point, _)| point)
        .collect()
}

/// The mounts under `dir` (a daemon's leftovers once it has stopped).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .map(|(point, _)| point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// (mount point, filesystem type) of every mount in this process's mount namespace.
fn mounts() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // `id parent major:minor root point options [optional...] - fstype source super`
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((PathBuf::from(unescape(point)), fstype.to_string()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
