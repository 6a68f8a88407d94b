//! Bridge networks: the default `bridge` (what `kiln run` joins unless told otherwise) and
//! user networks, each a Linux bridge with a private /24 and NAT outward; per running container
//! a named network namespace with `eth0` on the bridge, wired in process over rtnetlink.
//! Members of a user network find each other by name through the network's managed hosts file;
//! the default bridge gives no names (as Docker's). Traffic between different networks is
//! dropped (`net::firewall`).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::net::{firewall, lease, netlink, netns};
use crate::store::{self, ContainerConfig, NetworkMode, now_rfc3339, read_json, write_json};

/// A network's record, `<root>/networks/<name>/network.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    /// Third octet of 10.89.N.0/24.
    pub subnet_index: u8,
    pub bridge: String,
    pub created: String,
}

impl NetworkInfo {
    pub fn subnet(&self) -> String {
        format!("10.89.{}.0/24", self.subnet_index)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 89, self.subnet_index, 1)
    }
}

fn networks_dir(root: &Path) -> PathBuf {
    root.join("networks")
}

/// The managed hosts file bind-mounted at every member's /etc/hosts.
pub(crate) fn hosts_path(root: &Path, name: &str) -> PathBuf {
    networks_dir(root).join(name).join("hosts")
}

fn leases_dir(root: &Path, name: &str) -> PathBuf {
    networks_dir(root).join(name).join("leases")
}

/// Serialises subnet choice and bridge setup across kiln processes (and roots) on this host.
fn host_lock() -> Result<nix::fcntl::Flock<fs::File>, RuntimeError> {
    fs::create_dir_all("/run/kiln").map_err(io_err("create /run/kiln"))?;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/kiln/network.lock")
        .map_err(io_err("open /run/kiln/network.lock"))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        RuntimeError::Io {
            what: "lock /run/kiln/network.lock".into(),
            source: e.into(),
        }
    })
}

/// The network `--network bridge` joins, created on first use.
pub const DEFAULT_BRIDGE: &str = "bridge";

/// A name `network create` accepts (the built-in names are reserved).
fn valid_name(name: &str) -> bool {
    !matches!(name, "none" | "host" | "bridge" | "default") && valid_record_name(name)
}

/// A name a network record may have: user names and the default bridge.
fn valid_record_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn inspect(root: &Path, name: &str) -> Result<NetworkInfo, RuntimeError> {
    let path = networks_dir(root).join(name).join("network.json");
    if !valid_record_name(name) || !path.exists() {
        return Err(RuntimeError::Invalid(format!("no such network: {name}")));
    }
    read_json(&path)
}

pub fn list(root: &Path) -> Result<Vec<NetworkInfo>, RuntimeError> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(networks_dir(root)) {
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str()
                && let Ok(info) = inspect(root, n)
            {
                out.push(info);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A row of `network ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub driver: &'static str,
    /// Empty for `host`, `none` and a default bridge not made yet.
    pub subnet: String,
}

/// What `network ls` shows: the default `bridge` (always, as Docker lists it, even before its
/// first use), `host`, `none`, then the user networks by name.
pub fn listing(root: &Path) -> Result<Vec<Listed>, RuntimeError> {
    let mut nets = list(root)?;
    let default = match nets.iter().position(|n| n.name == DEFAULT_BRIDGE) {
        Some(i) => nets.remove(i).subnet(),
        None => String::new(),
    };
    let builtin = [
        (DEFAULT_BRIDGE, "bridge", default),
        ("host", "host", String::new()),
        ("none", "null", String::new()),
    ];
    Ok(builtin
        .into_iter()
        .map(|(name, driver, subnet)| Listed {
            name: name.to_string(),
            driver,
            subnet,
        })
        .chain(nets.into_iter().map(|n| {
            let subnet = n.subnet();
            Listed {
                name: n.name,
                driver: "bridge",
                subnet,
            }
        }))
        .collect())
}

/// The networks every container can use without creating one.
const BUILTIN: [(&str, &str); 2] = [
    (
        "none",
        "its own namespace with only lo; -p ports are proxied into it",
    ),
    ("host", "the host's network namespace"),
];

/// `network inspect NAME` as Docker shapes it (the built-in networks and a default bridge not
/// made yet included), with the member containers by ID.
pub fn inspect_json(root: &Path, name: &str) -> Result<serde_json::Value, RuntimeError> {
    if let Some((n, what)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        let driver = if *n == "none" { "null" } else { n };
        return Ok(
            serde_json::json!({"Name": n, "Driver": driver, "Scope": "local", "Description": what}),
        );
    }
    if name == DEFAULT_BRIDGE && inspect(root, name).is_err() {
        return Ok(serde_json::json!({
            "Name": name,
            "Driver": "bridge",
            "Scope": "local",
            "Description": "the default network; its bridge is made when the first container joins it",
        }));
    }
    let n = inspect(root, name)?;
    // Members, as Docker lists them: by ID, with their name and address.
    let members: serde_json::Map<String, serde_json::Value> = store::list(root)?
        .into_iter()
        .filter(|c| c.config.network_name.as_deref() == Some(n.name.as_str()))
        .map(|c| {
            let ip = c.config.ip.clone().unwrap_or_default();
            (
                c.config.id.clone(),
                serde_json::json!({"Name": c.config.name, "IPv4Address": format!("{ip}/24")}),
            )
        })
        .collect();
    Ok(serde_json::json!({
        "Containers": members,
        "Name": n.name,
        "Id": n.id,
        "Driver": "bridge",
        "Scope": "local",
        "Created": n.created,
        "IPAM": {"Config": [{"Subnet": n.subnet(), "Gateway": n.gateway().to_string()}]},
        "Options": {"com.docker.network.bridge.name": n.bridge},
    }))
}

/// Creates a network: picks a 10.89.N.0/24 no route on this host overlaps, creates its bridge.
pub fn create(root: &Path, name: &str) -> Result<NetworkInfo, RuntimeError> {
    if !valid_name(name) {
        return Err(RuntimeError::Invalid(format!(
            "invalid network name {name:?} (none, host, bridge and default are reserved)"
        )));
    }
    create_record(root, name)
}

/// The default bridge network of this root, created when first used.
pub fn default_bridge(root: &Path) -> Result<NetworkInfo, RuntimeError> {
    match inspect(root, DEFAULT_BRIDGE) {
        Ok(info) => Ok(info),
        Err(_) => match create_record(root, DEFAULT_BRIDGE) {
            // Another `kiln run` of this root made it first.
            Err(RuntimeError::Invalid(_)) if inspect(root, DEFAULT_BRIDGE).is_ok() => {
                inspect(root, DEFAULT_BRIDGE)
            }
            other => other,
        },
    }
}

/// Whether 10.89.`n`.0/24 overlaps none of `routes` (a default route overlaps nothing).
fn subnet_free(routes: &[(Ipv4Addr, u32)], n: u8) -> bool {
    let ours = (u32::from(Ipv4Addr::new(10, 89, n, 0)), 24u32);
    routes.iter().all(|(addr, len)| {
        if *len == 0 {
            return true;
        }
        // Two prefixes overlap when they agree on the shorter one's bits.
        let shorter = (*len).min(ours.1).min(32);
        let mask = u32::MAX << (32 - shorter);
        (u32::from(*addr) & mask) != (ours.0 & mask)
    })
}

fn create_record(root: &Path, name: &str) -> Result<NetworkInfo, RuntimeError> {
    if inspect(root, name).is_ok() {
        return Err(RuntimeError::Invalid(format!(
            "network {name} already exists"
        )));
    }
    let _lock = host_lock()?;
    // Made by a concurrent `kiln` of this root while we waited for the lock.
    if let Ok(info) = inspect(root, name) {
        return Ok(info);
    }
    collect_orphans();
    let index = free_subnet()?;
    let id = store::new_id()?;
    let info = NetworkInfo {
        name: name.to_string(),
        bridge: format!("kb{}", &id[..10]),
        id,
        subnet_index: index,
        created: now_rfc3339(),
    };
    let dir = networks_dir(root).join(name);
    bring_up(root, &info)?;
    let setup = (|| {
        fs::create_dir_all(&dir).map_err(io_err(format!("create network {name}")))?;
        fs::write(
            hosts_path(root, name),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        )
        .map_err(io_err("write the network's hosts file"))?;
        write_json(&dir.join("network.json"), &info)
    })();
    if let Err(e) = setup {
        teardown_bridge(&info.bridge, &info.subnet());
        return Err(e);
    }
    Ok(info)
}

/// The lowest 10.89.N.0/24 no route of this host overlaps (other kiln bridges included).
fn free_subnet() -> Result<u8, RuntimeError> {
    let routes = host_routes()?;
    (1..=254u8)
        .find(|n| subnet_free(&routes, *n))
        .ok_or_else(|| RuntimeError::Invalid("no free 10.89.N.0/24 subnet left".into()))
}

/// The host's IPv4 routes (main table) as (destination, prefix length), from `/proc/net/route`.
fn host_routes() -> Result<Vec<(Ipv4Addr, u32)>, RuntimeError> {
    let text = fs::read_to_string("/proc/net/route").map_err(io_err("read /proc/net/route"))?;
    Ok(parse_routes(&text))
}

/// `/proc/net/route` prints each address as the hex of its in-memory (network order) bytes
/// read as a native integer.
fn parse_routes(text: &str) -> Vec<(Ipv4Addr, u32)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            Some((Ipv4Addr::from(dst.to_ne_bytes()), mask.count_ones()))
        })
        .collect()
}

/// What a kiln bridge's interface alias starts with; the rest is its subnet and the path of
/// its network record, so a bridge whose root is gone can be found and removed.
const ALIAS_PREFIX: &str = "kiln-network ";

/// Creates the network's bridge with its gateway address and firewall rules (the caller
/// holds the host lock).
fn bring_up(root: &Path, info: &NetworkInfo) -> Result<(), RuntimeError> {
    let (bridge, subnet) = (&info.bridge, info.subnet());
    netlink::add_bridge(bridge, info.gateway(), 24).map_err(|e| {
        let _ = netlink::delete_link(bridge);
        io_err(format!("create bridge {bridge}"))(e)
    })?;
    // Only an absolute path names the record from anywhere; the kernel keeps 255 bytes.
    if let Ok(root) = fs::canonicalize(root) {
        let record = networks_dir(&root).join(&info.name).join("network.json");
        let alias = format!("{ALIAS_PREFIX}{subnet} {}", record.display());
        if alias.len() < 255 {
            let _ = fs::write(
                Path::new("/sys/class/net").join(bridge).join("ifalias"),
                alias,
            );
        }
    }
    let rules = firewall::add_network(bridge, &subnet).inspect_err(|_| {
        let _ = netlink::delete_link(bridge);
    })?;
    if rules == firewall::Setup::NoIptables {
        eprintln!(
            "warning: iptables not found: containers on network {} get no NAT to the outside \
             and no isolation from other networks",
            info.name
        );
    }
    Ok(())
}

/// Removes kiln bridges (and their rules) whose network record is gone: left by roots deleted
/// without `network rm`, they would otherwise hold a subnet until reboot.
fn collect_orphans() {
    let Ok(links) = fs::read_dir("/sys/class/net") else {
        return;
    };
    for link in links.flatten() {
        let Some(name) = link.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with("kb") {
            continue;
        }
        let alias = fs::read_to_string(link.path().join("ifalias")).unwrap_or_default();
        let Some((subnet, record)) = alias
            .trim_end_matches('\n')
            .strip_prefix(ALIAS_PREFIX)
            .and_then(|rest| rest.split_once(' '))
        else {
            continue;
        };
        if !Path::new(record).exists() {
            teardown_bridge(&name, subnet);
        }
    }
}

/// Makes sure the network's bridge exists before a container joins it: it is gone after a
/// reboot (or when taken for an orphan while its root was unreachable), its record is not.
fn ensure_bridge(root: &Path, info: &NetworkInfo) -> Result<(), RuntimeError> {
    let exists = || Path::new("/sys/class/net").join(&info.bridge).exists();
    if exists() {
        return Ok(());
    }
    let _lock = host_lock()?;
    if exists() {
        return Ok(());
    }
    if !subnet_free(&host_routes()?, info.subnet_index) {
        return Err(RuntimeError::Invalid(format!(
            "the bridge of network {} is gone and its subnet {} is now used by another route; \
             remove the network and create it again",
            info.name,
            info.subnet()
        )));
    }
    bring_up(root, info)
}

fn teardown_bridge(bridge: &str, subnet: &str) {
    firewall::remove_network(bridge, subnet);
    let _ = netlink::delete_link(bridge);
}

/// Removes a network no container uses (the default `bridge` too, unlike Docker, so a root
/// can be cleaned up completely; the next container on it makes it again).
pub fn remove(root: &Path, name: &str) -> Result<(), RuntimeError> {
    let info = inspect(root, name)?;
    if let Some(c) = store::list(root)?
        .into_iter()
        .find(|c| c.config.network_name.as_deref() == Some(name))
    {
        return Err(RuntimeError::Invalid(format!(
            "network {name} is in use by container {}",
            c.config.name
        )));
    }
    teardown_bridge(&info.bridge, &info.subnet());
    fs::remove_dir_all(networks_dir(root).join(name))
        .map_err(io_err(format!("remove network {name}")))
}

/// What `--network` (absent: the default bridge) means for a new container: its mode, and for
/// a bridge network the network's name and an address leased for the container.
pub(crate) fn resolve(
    root: &Path,
    network: Option<&str>,
) -> Result<(NetworkMode, Option<String>, Option<String>), RuntimeError> {
    let info = match network.unwrap_or(DEFAULT_BRIDGE) {
        "none" => return Ok((NetworkMode::None, None, None)),
        "host" => return Ok((NetworkMode::Host, None, None)),
        "bridge" | "default" => default_bridge(root)?,
        other => inspect(root, other)?,
    };
    let ip = allocate_ip(root, &info)?;
    Ok((NetworkMode::Named, Some(info.name), Some(ip.to_string())))
}

/// Leases the lowest free address of the network for a new container.
pub(crate) fn allocate_ip(root: &Path, info: &NetworkInfo) -> Result<Ipv4Addr, RuntimeError> {
    let used: Vec<Ipv4Addr> = store::list(root)?
        .into_iter()
        .filter(|c| c.config.network_name.as_deref() == Some(info.name.as_str()))
        .filter_map(|c| c.config.ip.and_then(|ip| ip.parse().ok()))
        .collect();
    let candidates = (2..=254u8).map(|n| Ipv4Addr::new(10, 89, info.subnet_index, n));
    lease::take(&leases_dir(root, &info.name), candidates, &used)?
        .ok_or_else(|| RuntimeError::Invalid(format!("network {} is full", info.name)))
}

/// Gives back what a removed container held on its network: its address, its entry in the
/// network's hosts file, and a namespace a killed owner could not delete.
pub(crate) fn release(root: &Path, config: &ContainerConfig) {
    let Some(name) = &config.network_name else {
        return;
    };
    if let Some(ip) = config.ip.as_deref().and_then(|ip| ip.parse().ok()) {
        lease::release(&leases_dir(root, name), ip);
    }
    let _ = refresh_hosts(root, name);
    forget_namespace(&config.id);
}

/// Whether members of the network find each other by name (user networks; not the default
/// bridge, as in Docker).
pub(crate) fn has_names(name: &str) -> bool {
    name != DEFAULT_BRIDGE
}

/// Rewrites the network's hosts file in place (members bind-mount this inode, so it must not
/// be replaced by a rename): localhost plus every container of the network.
pub(crate) fn refresh_hosts(root: &Path, name: &str) -> Result<(), RuntimeError> {
    if !has_names(name) {
        return Ok(());
    }
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    for c in store::list(root)? {
        if c.config.network_name.as_deref() == Some(name)
            && let Some(ip) = &c.config.ip
        {
            text.push_str(&format!("{ip}\t{}\t{}\n", c.config.name, c.config.hostname));
        }
    }
    fs::write(hosts_path(root, name), text).map_err(io_err("write the network's hosts file"))
}

fn netns_name(id: &str) -> String {
    format!("kiln-{}", &id[..12.min(id.len())])
}

/// The network namespace path of container `id` while it runs on a bridge network.
pub(crate) fn netns_path(id: &str) -> PathBuf {
    netns::path(&netns_name(id))
}

/// The network namespace of one running container, torn down on drop.
#[derive(Debug)]
pub(crate) struct Attachment {
    netns: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // The veth pair goes with the namespace once its last process is gone.
        netns::delete(&self.netns);
    }
}

/// Creates a namespace `kiln-<id12>` with `eth0` at `ip` on the network's bridge: the
/// namespace, the veth pair and the addresses are all made in process (no `ip` process).
pub(crate) fn attach(
    root: &Path,
    info: &NetworkInfo,
    id: &str,
    ip: &str,
) -> Result<Attachment, RuntimeError> {
    ensure_bridge(root, info)?;
    let name = netns_name(id);
    let path = netns::create(&name)?;
    let att = Attachment {
        netns: name.clone(),
    };
    let addr: Ipv4Addr = ip
        .parse()
        .map_err(|_| RuntimeError::Invalid(format!("invalid container address {ip}")))?;
    let host_if = format!("vk{}", &id[..10.min(id.len())]);
    // A host end left by a killed owner (its namespace is gone, the pair may linger briefly).
    let _ = netlink::delete_link(&host_if);
    let ns = fs::File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
    netlink::add_veth(&host_if, &info.bridge, &ns).map_err(io_err(format!(
        "create the veth pair {host_if} on bridge {}",
        info.bridge
    )))?;
    netlink::configure_inside(ns, addr, 24, info.gateway()).map_err(io_err(format!(
        "configure eth0 ({ip}) in network namespace {name}"
    )))?;
    Ok(att)
}

/// Deletes the named namespace of container `id` if one was left behind.
pub(crate) fn forget_namespace(id: &str) {
    let p = netns_path(id);
    if p.exists() {
        netns::delete(&netns_name(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_is_free_unless_a_route_overlaps_it() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let routes = [
            (ip("0.0.0.0"), 0),
            (ip("192.0.2.0"), 24),
            (ip("10.89.1.0"), 24),
            (ip("10.89.3.7"), 32),
            (ip("10.89.4.128"), 25),
        ];
        assert!(!subnet_free(&routes, 1));
        assert!(subnet_free(&routes, 2));
        assert!(!subnet_free(&routes, 3));
        assert!(!subnet_free(&routes, 4));
        assert!(!subnet_free(&[(ip("10.0.0.0"), 8)], 5));
        assert!(subnet_free(&[(ip("10.90.0.0"), 16)], 5));
    }

    #[test]
    fn proc_net_route_reads_as_prefixes() {
        let native = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             kb1\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n",
            native([192, 0, 2, 1]),
            native([10, 89, 1, 0]),
            native([255, 255, 255, 0]),
        );
        assert_eq!(
            parse_routes(&text),
            [
                (Ipv4Addr::UNSPECIFIED, 0),
                (Ipv4Addr::new(10, 89, 1, 0), 24)
            ]
        );
    }
}
