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
use crate::net::{bridge, lease, netlink, netns};
use crate::store::{self, ContainerConfig, NetworkMode, now_rfc3339, read_json, write_json};

/// The address of `c` on network `name`, if it is a member.
pub(crate) fn address_on(c: &ContainerConfig, name: &str) -> Option<String> {
    if c.network_name.as_deref() == Some(name) {
        return c.ip.clone();
    }
    c.extra_networks
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.ip.clone())
}

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
    pub(crate) fn subnet(&self) -> String {
        format!("10.89.{}.0/24", self.subnet_index)
    }

    pub(crate) fn gateway(&self) -> Ipv4Addr {
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

/// The network `--network bridge` joins, created on first use.
pub(crate) const DEFAULT_BRIDGE: &str = "bridge";

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

pub(crate) fn inspect(root: &Path, name: &str) -> Result<NetworkInfo, RuntimeError> {
    let path = networks_dir(root).join(name).join("network.json");
    if !valid_record_name(name) || !path.exists() {
        return Err(RuntimeError::Invalid(format!("no such network: {name}")));
    }
    read_json(&path)
}

pub(crate) fn list(root: &Path) -> Result<Vec<NetworkInfo>, RuntimeError> {
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

/// The ID of a built-in network: Docker gives every network one, and scripts take it from
/// `network ls -q`; kiln's are stable (a digest of the name).
fn builtin_id(name: &str) -> String {
    kiln_llb::Digest::of(format!("kiln built-in network {name}").as_bytes()).hex()
}

/// `network inspect NAME` as Docker shapes it (the built-in networks and a default bridge not
/// made yet included), with the member containers by ID.
pub fn inspect_json(root: &Path, name: &str) -> Result<serde_json::Value, RuntimeError> {
    if let Some((n, what)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        let driver = if *n == "none" { "null" } else { n };
        return Ok(serde_json::json!({
            "Name": n,
            "Id": builtin_id(n),
            "Driver": driver,
            "Scope": "local",
            "Description": what,
        }));
    }
    if name == DEFAULT_BRIDGE && inspect(root, name).is_err() {
        return Ok(serde_json::json!({
            "Name": name,
            "Id": builtin_id(name),
            "Driver": "bridge",
            "Scope": "local",
            "Description": "the default network; its bridge is made when the first container joins it",
        }));
    }
    let n = inspect(root, name)?;
    // Members, as Docker lists them: by ID, with their name and address.
    let members: serde_json::Map<String, serde_json::Value> = store::list(root)?
        .into_iter()
        .filter_map(|c| {
            let ip = address_on(&c.config, &n.name)?;
            Some((
                c.config.id.clone(),
                serde_json::json!({"Name": c.config.name, "IPv4Address": format!("{ip}/24")}),
            ))
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

/// A network just made (or found), with what its creator should be told about it.
#[derive(Debug, Clone)]
pub struct Created {
    pub info: NetworkInfo,
    /// One sentence each, lowercase (no iptables: no NAT and no isolation).
    pub warnings: Vec<String>,
}

/// Creates a network: picks a 10.89.N.0/24 no route on this host overlaps, creates its bridge.
pub fn create(root: &Path, name: &str) -> Result<Created, RuntimeError> {
    if !valid_name(name) {
        return Err(RuntimeError::Invalid(format!(
            "invalid network name {name:?} (none, host, bridge and default are reserved)"
        )));
    }
    create_record(root, name)
}

/// The default bridge network of this root, created when first used.
fn default_bridge(root: &Path) -> Result<Created, RuntimeError> {
    let found = |info| Created {
        info,
        warnings: Vec::new(),
    };
    match inspect(root, DEFAULT_BRIDGE) {
        Ok(info) => Ok(found(info)),
        Err(_) => match create_record(root, DEFAULT_BRIDGE) {
            // Another `kiln run` of this root made it first.
            Err(RuntimeError::Invalid(_)) if inspect(root, DEFAULT_BRIDGE).is_ok() => {
                inspect(root, DEFAULT_BRIDGE).map(found)
            }
            other => other,
        },
    }
}

fn create_record(root: &Path, name: &str) -> Result<Created, RuntimeError> {
    if inspect(root, name).is_ok() {
        return Err(RuntimeError::Invalid(format!(
            "network {name} already exists"
        )));
    }
    let lock = bridge::HostLock::take()?;
    // Made by a concurrent `kiln` of this root while we waited for the lock.
    if let Ok(info) = inspect(root, name) {
        return Ok(Created {
            info,
            warnings: Vec::new(),
        });
    }
    bridge::collect_orphans(&lock);
    let made = (|| {
        let index = bridge::free_subnet(&lock)?;
        let id = store::new_id()?;
        let info = NetworkInfo {
            name: name.to_string(),
            bridge: format!("kb{}", &id[..10]),
            id,
            subnet_index: index,
            created: now_rfc3339(),
        };
        let warnings = bring_up(&lock, root, &info)?;
        let dir = networks_dir(root).join(name);
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
            bridge::teardown(&lock, &info.bridge, &info.subnet());
            return Err(e);
        }
        crate::events::record(
            root,
            crate::events::new(
                "network",
                "create",
                &info.id,
                [
                    ("name".to_string(), info.name.clone()),
                    ("type".into(), "bridge".into()),
                ]
                .into(),
            ),
        );
        Ok(Created { info, warnings })
    })();
    if made.is_err() {
        // Orphans collected or forwarding turned on for a network that did not come.
        bridge::release_if_unused(&lock);
    }
    made
}

/// Creates the network's bridge with its gateway address, forwarding and firewall rules;
/// returns what the user should be warned of.
fn bring_up(
    lock: &bridge::HostLock,
    root: &Path,
    info: &NetworkInfo,
) -> Result<Vec<String>, RuntimeError> {
    // Only an absolute path names the record from anywhere.
    let record = fs::canonicalize(root)
        .ok()
        .map(|root| networks_dir(&root).join(&info.name).join("network.json"));
    let setup = bridge::bring_up(
        lock,
        &info.bridge,
        info.gateway(),
        &info.subnet(),
        record.as_deref(),
    )?;
    Ok(match setup {
        bridge::Setup::Done => Vec::new(),
        bridge::Setup::NoIptables => vec![format!(
            "iptables not found: containers on network {} get no NAT to the outside and no \
             isolation from other networks",
            info.name
        )],
    })
}

/// Makes sure the network's bridge exists before a container joins it: it is gone after a
/// reboot (or when taken for an orphan while its root was unreachable), its record is not.
fn ensure_bridge(root: &Path, info: &NetworkInfo) -> Result<(), RuntimeError> {
    if bridge::exists(&info.bridge) {
        return Ok(());
    }
    let lock = bridge::HostLock::take()?;
    if bridge::exists(&info.bridge) {
        return Ok(());
    }
    let made = (|| {
        if !bridge::subnet_is_free(&lock, info.subnet_index)? {
            return Err(RuntimeError::Invalid(format!(
                "the bridge of network {} is gone and its subnet {} is now used by another \
                 route; remove the network and create it again",
                info.name,
                info.subnet()
            )));
        }
        bring_up(&lock, root, info)
    })();
    match made {
        Ok(warnings) => {
            // Said when the network was made; the container's owner has no one to tell now.
            for w in warnings {
                tracing::warn!(network = %info.name, "{w}");
            }
            Ok(())
        }
        Err(e) => {
            bridge::release_if_unused(&lock);
            Err(e)
        }
    }
}

/// Removes a network no container uses (the default `bridge` too, unlike Docker, so a root
/// can be cleaned up completely; the next container on it makes it again). With the last
/// kiln network of the host go kiln's firewall chains and the forwarding it turned on.
pub fn remove(root: &Path, name: &str) -> Result<(), RuntimeError> {
    let info = inspect(root, name)?;
    if let Some(c) = store::list(root)?
        .into_iter()
        .find(|c| address_on(&c.config, name).is_some())
    {
        return Err(RuntimeError::Invalid(format!(
            "network {name} is in use by container {}",
            c.config.name
        )));
    }
    let lock = bridge::HostLock::take()?;
    bridge::teardown(&lock, &info.bridge, &info.subnet());
    let removed = fs::remove_dir_all(networks_dir(root).join(name))
        .map_err(io_err(format!("remove network {name}")));
    bridge::release_if_unused(&lock);
    if removed.is_ok() {
        crate::events::record(
            root,
            crate::events::new(
                "network",
                "destroy",
                &info.id,
                [
                    ("name".to_string(), name.to_string()),
                    ("type".into(), "bridge".into()),
                ]
                .into(),
            ),
        );
    }
    removed
}

/// What a new container's `--network` resolved to.
pub(crate) struct Resolved {
    pub(crate) mode: NetworkMode,
    /// For a bridge network: its name and the address leased for the container.
    pub(crate) name: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) warnings: Vec<String>,
}

/// What `--network` (absent: the default bridge) means for a new container: its mode, and for
/// a bridge network the network's name and an address leased for the container.
pub(crate) fn resolve(root: &Path, network: Option<&str>) -> Result<Resolved, RuntimeError> {
    let without = |mode| Resolved {
        mode,
        name: None,
        ip: None,
        warnings: Vec::new(),
    };
    let Created { info, warnings } = match network.unwrap_or(DEFAULT_BRIDGE) {
        "none" => return Ok(without(NetworkMode::None)),
        "host" => return Ok(without(NetworkMode::Host)),
        "bridge" | "default" => default_bridge(root)?,
        other => Created {
            info: inspect(root, other)?,
            warnings: Vec::new(),
        },
    };
    let ip = allocate_ip(root, &info)?;
    Ok(Resolved {
        mode: NetworkMode::Named,
        name: Some(info.name),
        ip: Some(ip.to_string()),
        warnings,
    })
}

/// Leases the lowest free address of the network for a new container.
pub(crate) fn allocate_ip(root: &Path, info: &NetworkInfo) -> Result<Ipv4Addr, RuntimeError> {
    let used: Vec<Ipv4Addr> = store::list(root)?
        .into_iter()
        .filter_map(|c| address_on(&c.config, &info.name)?.parse().ok())
        .collect();
    let candidates = (2..=254u8).map(|n| Ipv4Addr::new(10, 89, info.subnet_index, n));
    lease::take(&leases_dir(root, &info.name), candidates, &used)?
        .ok_or_else(|| RuntimeError::Invalid(format!("network {} is full", info.name)))
}

/// Gives back what a removed container held on its network: its address, its entry in the
/// network's hosts file, and a namespace a killed owner could not delete.
pub(crate) fn release(root: &Path, config: &ContainerConfig) {
    for link in &config.extra_networks {
        if let Ok(ip) = link.ip.parse() {
            lease::release(&leases_dir(root, &link.name), ip);
        }
        let _ = refresh_hosts(root, &link.name);
    }
    let Some(name) = &config.network_name else {
        return;
    };
    if let Some(ip) = config.ip.as_deref().and_then(|ip| ip.parse().ok()) {
        lease::release(&leases_dir(root, name), ip);
    }
    let _ = refresh_hosts(root, name);
    forget_namespace(&config.id);
}

/// Gives back an address leased for a container that was not made after all.
pub(crate) fn release_lease(root: &Path, network: Option<&str>, ip: Option<&str>) {
    if let (Some(name), Some(ip)) = (network, ip.and_then(|ip| ip.parse().ok())) {
        lease::release(&leases_dir(root, name), ip);
    }
}

/// Whether members of the network find each other by name (user networks; not the default
/// bridge, as in Docker).
pub(crate) fn has_names(name: &str) -> bool {
    name != DEFAULT_BRIDGE
}

/// A member's own hosts file (in its container directory), bind-mounted at its /etc/hosts.
pub(crate) fn member_hosts_path(container_dir: &Path) -> PathBuf {
    container_dir.join("hosts")
}

/// Rewrites the hosts file of every member of the network in place (a member bind-mounts
/// its file, so the inode must stay): Docker's lines, the member's `--add-host` entries and
/// own address, then every other container of the network by name, hostname and its aliases
/// on that network (a name several members share gets one line each). The
/// network's own file lists them all.
pub(crate) fn refresh_hosts(root: &Path, name: &str) -> Result<(), RuntimeError> {
    if !has_names(name) {
        return Ok(());
    }
    // One refresh at a time per root: each lists the members then writes every file, so two
    // interleaved (containers created at once) could leave one's older list last.
    let _lock = lock_hosts(root)?;
    let everyone = store::list(root)?;
    let line = |c: &store::Container, net: &str| {
        address_on(&c.config, net).map(|ip| {
            let mut l = format!("{ip}\t{}\t{}", c.config.name, c.config.hostname);
            for alias in c.config.aliases.get(net).into_iter().flatten() {
                l.push('\t');
                l.push_str(alias);
            }
            l.push('\n');
            l
        })
    };
    let members: Vec<&store::Container> = everyone
        .iter()
        .filter(|c| address_on(&c.config, name).is_some())
        .collect();
    let mut all = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    all.extend(members.iter().filter_map(|c| line(c, name)));
    fs::write(hosts_path(root, name), all).map_err(io_err("write the network's hosts file"))?;
    for c in &members {
        // The other members of every network with names this one is on.
        let mut nets: Vec<&str> = c.config.network_name.iter().map(String::as_str).collect();
        nets.extend(c.config.extra_networks.iter().map(|l| l.name.as_str()));
        let mut others = String::new();
        for net in nets.into_iter().filter(|n| has_names(n)) {
            for o in everyone.iter().filter(|o| o.config.id != c.config.id) {
                if let Some(l) = line(o, net)
                    && !others.contains(&l)
                {
                    others.push_str(&l);
                }
            }
        }
        let text = crate::container::member_hosts(&c.config, &others);
        let path = member_hosts_path(&c.dir);
        // Truncate and write, never replace: a running member holds this inode.
        fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
    }
    Ok(())
}

fn lock_hosts(root: &Path) -> Result<nix::fcntl::Flock<fs::File>, RuntimeError> {
    store::lock_file(&networks_dir(root), "hosts.lock")
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
    netlink::add_veth(&host_if, &info.bridge, &ns, "eth0").map_err(io_err(format!(
        "create the veth pair {host_if} on bridge {}",
        info.bridge
    )))?;
    netlink::configure_inside(ns, "eth0", addr, 24, Some(info.gateway())).map_err(io_err(
        format!("configure eth0 ({ip}) in network namespace {name}"),
    ))?;
    Ok(att)
}

/// The host end of container `id`'s link to its `index`-th connected network (1 and up):
/// `vk` + 8 digits of the ID + the index, within the 15 characters an interface name has.
fn extra_link_name(id: &str, index: usize) -> String {
    format!("vk{}n{index}", &id[..8.min(id.len())])
}

/// Wires the running container `id` (its namespace exists) to a further network as
/// `eth<index>`, without a default route (the first network keeps it).
pub(crate) fn attach_extra(
    root: &Path,
    info: &NetworkInfo,
    id: &str,
    ip: &str,
    index: usize,
) -> Result<(), RuntimeError> {
    ensure_bridge(root, info)?;
    let path = netns_path(id);
    let ns = fs::File::open(&path).map_err(io_err(format!("open {}", path.display())))?;
    let addr: Ipv4Addr = ip
        .parse()
        .map_err(|_| RuntimeError::Invalid(format!("invalid container address {ip}")))?;
    let host_if = extra_link_name(id, index);
    let _ = netlink::delete_link(&host_if);
    let peer = format!("eth{index}");
    netlink::add_veth(&host_if, &info.bridge, &ns, &peer).map_err(io_err(format!(
        "create the veth pair {host_if} on bridge {}",
        info.bridge
    )))?;
    netlink::configure_inside(ns, &peer, addr, 24, None).map_err(io_err(format!(
        "configure {peer} ({ip}) in the namespace of container {id}"
    )))
}

/// Unwires a running container's `index`-th connected network (deleting one end of a veth
/// pair deletes both).
pub(crate) fn detach_extra(id: &str, index: usize) {
    let _ = netlink::delete_link(&extra_link_name(id, index));
}

/// Deletes the named namespace of container `id` if one was left behind.
pub(crate) fn forget_namespace(id: &str) {
    let p = netns_path(id);
    if p.exists() {
        netns::delete(&netns_name(id));
    }
}
