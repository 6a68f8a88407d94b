//! The host side of a bridge network's life: a subnet no route overlaps, the bridge made with
//! its alias, address, forwarding and firewall rules, and taken down again. Whatever kiln adds
//! to the namespace for its networks (bridges, kiln's iptables chains, forwarding turned on)
//! goes with its last bridge. All of it happens under one host-wide lock, so a `network rm`
//! that takes the last bridge's chains away never races a `network create` adding rules.
//!
//! A kiln bridge is known by its interface alias, `kiln-network <subnet> <record path>`: never
//! by a name pattern that a host interface could share.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

pub(crate) use super::firewall::Setup;
use super::netlink::{self, Link};
use super::{firewall, forwarding};
use crate::error::{RuntimeError, io_err};

/// What a kiln bridge's interface alias starts with; the rest is its subnet and the path of
/// its network record, so a bridge whose root is gone can be found and removed.
const ALIAS_PREFIX: &str = "kiln-network ";

/// The lock every change to kiln's bridges, chains and forwarding is made under, held until
/// dropped: `/run/kiln/network.lock`, shared by every kiln process (and root) on the host.
pub(crate) struct HostLock {
    _file: nix::fcntl::Flock<fs::File>,
}

impl HostLock {
    pub(crate) fn take() -> Result<HostLock, RuntimeError> {
        fs::create_dir_all("/run/kiln").map_err(io_err("create /run/kiln"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/kiln/network.lock")
            .map_err(io_err("open /run/kiln/network.lock"))?;
        let file =
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
                RuntimeError::Io {
                    what: "lock /run/kiln/network.lock".into(),
                    source: e.into(),
                }
            })?;
        Ok(HostLock { _file: file })
    }
}

/// Whether `link` is one of kiln's bridges (of any root).
fn is_kiln_bridge(link: &Link) -> bool {
    link.alias.starts_with(ALIAS_PREFIX)
}

fn links() -> Result<Vec<Link>, RuntimeError> {
    netlink::links().map_err(io_err("list the network interfaces"))
}

/// Whether the interface `name` exists in this thread's network namespace.
pub(crate) fn exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
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

/// Whether 10.89.`n`.0/24 overlaps no route of this namespace.
pub(crate) fn subnet_is_free(_lock: &HostLock, n: u8) -> Result<bool, RuntimeError> {
    Ok(subnet_free(&host_routes()?, n))
}

/// The lowest 10.89.N.0/24 no route of this host overlaps (other kiln bridges included).
pub(crate) fn free_subnet(_lock: &HostLock) -> Result<u8, RuntimeError> {
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

/// The alias that marks a bridge as kiln's: its subnet and, when it is known and fits the
/// kernel's 255 bytes, the absolute path of its network record (orphan collection needs it).
fn alias(subnet: &str, record: Option<&Path>) -> String {
    match record {
        Some(r)
            if r.is_absolute()
                && ALIAS_PREFIX.len() + subnet.len() + 1 + r.as_os_str().len() < 255 =>
        {
            format!("{ALIAS_PREFIX}{subnet} {}", r.display())
        }
        _ => format!("{ALIAS_PREFIX}{subnet}"),
    }
}

/// Makes the bridge `bridge` with the gateway address `gateway`/24 of `subnet`, IPv4
/// forwarding on, and its firewall rules. `record` is the absolute path of the network's
/// record, when known (for the alias). On failure nothing of the bridge is left; the caller
/// then calls [`release_if_unused`].
pub(crate) fn bring_up(
    _lock: &HostLock,
    bridge: &str,
    gateway: Ipv4Addr,
    subnet: &str,
    record: Option<&Path>,
) -> Result<Setup, RuntimeError> {
    forwarding::enable(&links()?, &is_kiln_bridge)?;
    netlink::add_bridge(bridge, &alias(subnet, record), gateway, 24).map_err(|e| {
        let _ = netlink::delete_link(bridge);
        io_err(format!("create bridge {bridge}"))(e)
    })?;
    firewall::add_network(bridge, subnet).inspect_err(|_| {
        let _ = netlink::delete_link(bridge);
    })
}

/// Removes the bridge and its firewall rules.
pub(crate) fn teardown(_lock: &HostLock, bridge: &str, subnet: &str) {
    firewall::remove_network(bridge, subnet);
    let _ = netlink::delete_link(bridge);
}

/// Gives back what no kiln network needs any more, after a bridge went: kiln's chains that
/// are empty, and once no kiln bridge is left in this namespace, all of kiln's chains and the
/// forwarding kiln turned on (`forwarding` says when it stays on).
pub(crate) fn release_if_unused(_lock: &HostLock) {
    let links = match links() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether kiln's networks are all gone");
            return;
        }
    };
    if links.iter().any(is_kiln_bridge) {
        firewall::remove_empty_chains();
        return;
    }
    firewall::remove_chains();
    if let Err(e) = forwarding::restore(&links, &is_kiln_bridge) {
        tracing::warn!(error = %e, "failed to restore IPv4 forwarding");
    }
}

/// Removes kiln bridges (and their rules) whose network record is gone: left by roots deleted
/// without `network rm`, they would otherwise hold a subnet until reboot. What they were the
/// last to need is given back as after a `network rm` (so forwarding kiln turned on for them
/// is not mistaken later for someone else's).
pub(crate) fn collect_orphans(lock: &HostLock) {
    let Ok(links) = links() else {
        return;
    };
    let mut collected = false;
    for link in links.iter().filter(|l| is_kiln_bridge(l)) {
        let Some((subnet, record)) = link.alias[ALIAS_PREFIX.len()..].split_once(' ') else {
            // Too long a path for the alias: whether it is orphaned cannot be told.
            continue;
        };
        if !Path::new(record).exists() {
            teardown(lock, &link.name, subnet);
            collected = true;
        }
    }
    if collected {
        release_if_unused(lock);
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

    #[test]
    fn a_record_path_too_long_for_the_alias_still_marks_the_bridge_as_kilns() {
        let short = alias(
            "10.89.1.0/24",
            Some(Path::new("/r/networks/x/network.json")),
        );
        assert_eq!(
            short,
            "kiln-network 10.89.1.0/24 /r/networks/x/network.json"
        );
        let long = alias("10.89.1.0/24", Some(&Path::new("/").join("d".repeat(300))));
        assert_eq!(long, "kiln-network 10.89.1.0/24");
        // A relative path would be read against whatever directory a later kiln runs in.
        let relative = alias("10.89.1.0/24", Some(Path::new("r/network.json")));
        assert_eq!(relative, "kiln-network 10.89.1.0/24");
        let link = |alias: String| Link {
            index: 3,
            name: "kb1".into(),
            alias,
            kind: "bridge".into(),
        };
        assert!(is_kiln_bridge(&link(long)));
        // A host bridge that merely shares kiln's name prefix is not kiln's.
        assert!(!is_kiln_bridge(&link(String::new())));
    }
}
