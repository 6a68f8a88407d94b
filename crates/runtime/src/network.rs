//! User-defined networks: a Linux bridge per network with a private /24, a veth pair and a
//! named network namespace per running container, and a managed hosts file per network so
//! containers find each other by name. Set up with the host's `ip` and `iptables` tools; other
//! networks' traffic is dropped at the bridge (isolation). No NAT outward yet.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::store::{self, now_rfc3339, read_json, write_json};

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

fn run(cmd: &str, args: &[&str]) -> Result<(), RuntimeError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(io_err(format!("run {cmd} {}", args.join(" "))))?;
    if !out.status.success() {
        return Err(RuntimeError::Io {
            what: format!("run {cmd} {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
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

/// Creates a network: picks a 10.89.N.0/24 no route on this host uses, creates its bridge.
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
        Err(_) => create_record(root, DEFAULT_BRIDGE),
    }
}

fn create_record(root: &Path, name: &str) -> Result<NetworkInfo, RuntimeError> {
    if inspect(root, name).is_ok() {
        return Err(RuntimeError::Invalid(format!(
            "network {name} already exists"
        )));
    }
    let _lock = host_lock()?;
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map_err(io_err("run ip route"))?;
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    let index = (1..=254u8)
        .find(|n| !routes.contains(&format!("10.89.{n}.")))
        .ok_or_else(|| RuntimeError::Invalid("no free 10.89.N.0/24 subnet left".into()))?;
    let id = store::new_id()?;
    let bridge = format!("kb{}", &id[..10]);
    let info = NetworkInfo {
        name: name.to_string(),
        id,
        subnet_index: index,
        bridge: bridge.clone(),
        created: now_rfc3339(),
    };
    run("ip", &["link", "add", &bridge, "type", "bridge"])?;
    let setup = (|| {
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", info.gateway()),
                "dev",
                &bridge,
            ],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        // Isolation: traffic from this bridge to any other kiln bridge is dropped; traffic
        // inside it is accepted (rule order: the ACCEPT is inserted last, so it is first).
        run(
            "iptables",
            &["-I", "FORWARD", "-i", &bridge, "-o", "kb+", "-j", "DROP"],
        )?;
        run(
            "iptables",
            &[
                "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        )?;
        // Outward traffic leaves with the host's address.
        let subnet = info.subnet();
        run("iptables", &nat_rule("-A", &subnet, &bridge))?;
        let dir = networks_dir(root).join(name);
        fs::create_dir_all(&dir).map_err(io_err(format!("create network {name}")))?;
        fs::write(
            hosts_path(root, name),
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        )
        .map_err(io_err("write the network's hosts file"))?;
        write_json(&dir.join("network.json"), &info)
    })();
    if let Err(e) = setup {
        teardown_bridge(&bridge, &info.subnet());
        return Err(e);
    }
    Ok(info)
}

fn nat_rule<'a>(op: &'a str, subnet: &'a str, bridge: &'a str) -> [&'a str; 12] {
    [
        "-t",
        "nat",
        op,
        "POSTROUTING",
        "-s",
        subnet,
        "!",
        "-o",
        bridge,
        "-j",
        "MASQUERADE",
        "-w",
    ]
}

fn teardown_bridge(bridge: &str, subnet: &str) {
    let _ = run("iptables", &nat_rule("-D", subnet, bridge));
    let _ = run(
        "iptables",
        &["-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
    );
    let _ = run(
        "iptables",
        &["-D", "FORWARD", "-i", bridge, "-o", "kb+", "-j", "DROP"],
    );
    let _ = run("ip", &["link", "del", bridge]);
}

/// Removes a network no container uses.
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

/// Picks the lowest free address of the network for a new container.
pub(crate) fn allocate_ip(root: &Path, info: &NetworkInfo) -> Result<Ipv4Addr, RuntimeError> {
    let used: Vec<String> = store::list(root)?
        .into_iter()
        .filter(|c| c.config.network_name.as_deref() == Some(info.name.as_str()))
        .filter_map(|c| c.config.ip)
        .collect();
    (2..=254u8)
        .map(|n| Ipv4Addr::new(10, 89, info.subnet_index, n))
        .find(|ip| !used.contains(&ip.to_string()))
        .ok_or_else(|| RuntimeError::Invalid(format!("network {} is full", info.name)))
}

/// Rewrites the network's hosts file in place (members bind-mount this inode, so it must not
/// be replaced by a rename): localhost plus every container of the network.
pub(crate) fn refresh_hosts(root: &Path, name: &str) -> Result<(), RuntimeError> {
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

/// The network namespace of one running container, torn down on drop.
#[derive(Debug)]
pub(crate) struct Attachment {
    netns: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // The veth pair goes with the namespace once its last process is gone.
        let _ = run("ip", &["netns", "del", &self.netns]);
    }
}

/// Creates a namespace `kiln-<id>` with `eth0` at `ip` on the network's bridge.
pub(crate) fn attach(info: &NetworkInfo, id: &str, ip: &str) -> Result<Attachment, RuntimeError> {
    let netns = format!("kiln-{}", &id[..12]);
    // A namespace left by a killed owner.
    let _ = run("ip", &["netns", "del", &netns]);
    run("ip", &["netns", "add", &netns])?;
    let att = Attachment {
        netns: netns.clone(),
    };
    let host_if = format!("vk{}", &id[..10]);
    let peer = format!("vc{}", &id[..10]);
    let _ = run("ip", &["link", "del", &host_if]);
    run(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
        ],
    )?;
    let (addr, gw) = (format!("{ip}/24"), info.gateway().to_string());
    let steps: [&[&str]; 8] = [
        &["link", "set", &peer, "netns", &netns],
        &["-n", &netns, "link", "set", &peer, "name", "eth0"],
        &["-n", &netns, "addr", "add", &addr, "dev", "eth0"],
        &["-n", &netns, "link", "set", "eth0", "up"],
        &["-n", &netns, "link", "set", "lo", "up"],
        &["-n", &netns, "route", "add", "default", "via", &gw],
        &["link", "set", &host_if, "master", &info.bridge],
        &["link", "set", &host_if, "up"],
    ];
    for s in steps {
        if let Err(e) = run("ip", s) {
            let _ = run("ip", &["link", "del", &host_if]);
            return Err(e);
        }
    }
    Ok(att)
}

/// Deletes the named namespace of container `id` if one was left behind.
pub(crate) fn forget_namespace(id: &str) {
    let netns = format!("kiln-{}", &id[..12.min(id.len())]);
    if Path::new("/run/netns").join(&netns).exists() {
        let _ = run("ip", &["netns", "del", &netns]);
    }
}
