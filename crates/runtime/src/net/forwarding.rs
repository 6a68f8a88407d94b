//! IPv4 forwarding (`net.ipv4.ip_forward`) of the network namespace kiln's bridges live in:
//! containers reach the outside only if the host routes between interfaces. Kiln turns it on
//! with its first bridge and, if it was kiln that turned it on, off again with its last one.
//!
//! Turning it off is only right if nothing else came to rely on it meanwhile: a Docker daemon
//! (or libvirt, LXD, Podman, a VPN) started while kiln's network existed finds forwarding on,
//! leaves it alone, and would lose its routing if kiln turned it off. So when kiln turns
//! forwarding on it records the namespace's interfaces (`/run/kiln/ip_forward-<netns>.json`);
//! when its last bridge goes it turns forwarding off only if forwarding is still on and no
//! interface has appeared since that is not a veth end or kiln's own (Docker's `docker0`, a
//! `virbr0`, a `wg0`, ... would have); otherwise forwarding stays on and the record goes: it
//! is no longer kiln's alone. The callers hold the host lock.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::netlink::Link;
use crate::error::{RuntimeError, io_err};

const KEY: &str = "/proc/sys/net/ipv4/ip_forward";

/// What kiln noted when it turned forwarding on: the interfaces then (by index and name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    interfaces: Vec<(u32, String)>,
}

/// The record of the calling thread's network namespace: `/run` is shared by every namespace,
/// so the file is named after the namespace's inode.
fn record_path() -> Result<PathBuf, RuntimeError> {
    let ns = fs::metadata("/proc/thread-self/ns/net")
        .map_err(io_err("read this thread's network namespace"))?;
    Ok(PathBuf::from(format!(
        "/run/kiln/ip_forward-{}.json",
        ns.ino()
    )))
}

fn is_on() -> Result<bool, RuntimeError> {
    let v = fs::read_to_string(KEY).map_err(io_err(format!("read {KEY}")))?;
    Ok(v.trim() != "0")
}

fn set(on: bool) -> Result<(), RuntimeError> {
    fs::write(KEY, if on { "1" } else { "0" }).map_err(io_err(format!(
        "{} IPv4 forwarding ({KEY})",
        if on { "enable" } else { "restore" }
    )))
}

/// The interfaces that count as someone else's: not a veth end (containers' plumbing, kiln's
/// and everyone's) and not a kiln bridge.
fn others<'a>(links: &'a [Link], is_kiln: &dyn Fn(&Link) -> bool) -> Vec<&'a Link> {
    links
        .iter()
        .filter(|l| l.kind != "veth" && !is_kiln(l))
        .collect()
}

/// Turns forwarding on before kiln sets up a bridge, recording that kiln did so. `links` are
/// the namespace's links now; `is_kiln` tells kiln's bridges.
pub(crate) fn enable(links: &[Link], is_kiln: &dyn Fn(&Link) -> bool) -> Result<(), RuntimeError> {
    let path = record_path()?;
    if is_on()? {
        if !links.iter().any(is_kiln) {
            // On before any kiln bridge existed: not kiln's doing. A record here is stale (a
            // namespace inode reused after its namespace was freed).
            let _ = fs::remove_file(&path);
        }
        return Ok(());
    }
    let record = Record {
        interfaces: others(links, is_kiln)
            .into_iter()
            .map(|l| (l.index, l.name.clone()))
            .collect(),
    };
    fs::create_dir_all("/run/kiln").map_err(io_err("create /run/kiln"))?;
    crate::store::write_json(&path, &record)?;
    set(true).inspect_err(|_| {
        let _ = fs::remove_file(&path);
    })
}

/// After kiln's last bridge in the namespace went: turns forwarding off if kiln turned it on
/// and nothing else appeared that may need it (see the module comment).
pub(crate) fn restore(links: &[Link], is_kiln: &dyn Fn(&Link) -> bool) -> Result<(), RuntimeError> {
    let path = record_path()?;
    let Ok(text) = fs::read(&path) else {
        return Ok(());
    };
    // The record is spent either way: kiln turns forwarding off now or leaves it to others.
    let _ = fs::remove_file(&path);
    let record: Record = serde_json::from_slice(&text).unwrap_or_default();
    if !is_on()? {
        return Ok(());
    }
    let newcomers = newcomers(&record, &others(links, is_kiln));
    if !newcomers.is_empty() {
        tracing::info!(
            interfaces = %newcomers.join(", "),
            "leaving IPv4 forwarding on: interfaces appeared since kiln turned it on"
        );
        return Ok(());
    }
    set(false)
}

/// The interfaces of `now` that were not there (same index and name) when `record` was made.
fn newcomers(record: &Record, now: &[&Link]) -> Vec<String> {
    now.iter()
        .filter(|l| !record.interfaces.contains(&(l.index, l.name.clone())))
        .map(|l| l.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: &str, alias: &str) -> Link {
        Link {
            index,
            name: name.into(),
            alias: alias.into(),
            kind: kind.into(),
        }
    }

    fn kiln(l: &Link) -> bool {
        l.alias.starts_with("kiln-network ")
    }

    #[test]
    fn only_interfaces_that_are_neither_veths_nor_kilns_count_as_newcomers() {
        let record = Record {
            interfaces: vec![(1, "lo".into()), (2, "eth0".into())],
        };
        let now = [
            link(1, "lo", "", ""),
            link(2, "eth0", "", ""),
            link(5, "kb123", "bridge", "kiln-network 10.89.1.0/24 /r"),
            link(6, "vk123", "veth", ""),
            link(7, "docker0", "bridge", ""),
            // Deleted and made again: another index, so someone made it anew.
            link(9, "eth0", "", ""),
        ];
        let others = others(&now, &kiln);
        assert_eq!(newcomers(&record, &others[..3]), ["docker0"]);
        assert_eq!(newcomers(&record, &others[..2]), Vec::<String>::new());
        assert_eq!(newcomers(&record, &others), ["docker0", "eth0"]);
    }

    /// Runs `f` in a new network namespace on a thread of its own: its `ip_forward` and its
    /// links are the namespace's, never the host's.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            f()
        })
        .join()
        .expect("test thread")
    }

    #[test]
    fn kiln_restores_forwarding_it_turned_on_unless_someone_else_came() {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: a network namespace of its own needs root");
            return;
        }
        let (restored, kept, left_alone) = in_private_netns(|| {
            let links = || super::super::netlink::links().expect("links");
            let bridge = |name: &str, alias: &str| {
                super::super::netlink::add_bridge(
                    name,
                    alias,
                    std::net::Ipv4Addr::new(10, 89, 9, 1),
                    24,
                )
                .expect("bridge")
            };
            // A new namespace may inherit the host's value: start from off.
            set(false).expect("off");
            enable(&links(), &kiln).expect("enable");
            assert!(is_on().expect("read"));
            bridge("kbt1", "kiln-network t");
            super::super::netlink::delete_link("kbt1").expect("delete");
            restore(&links(), &kiln).expect("restore");
            let restored = !is_on().expect("read") && !record_path().expect("path").exists();

            // Something else made a bridge while kiln's forwarding was on: it stays on.
            enable(&links(), &kiln).expect("enable");
            bridge("other0", "");
            restore(&links(), &kiln).expect("restore");
            let kept = is_on().expect("read") && !record_path().expect("path").exists();

            // On before kiln came: kiln never turns it off.
            super::super::netlink::delete_link("other0").expect("delete");
            enable(&links(), &kiln).expect("enable");
            restore(&links(), &kiln).expect("restore");
            (restored, kept, is_on().expect("read"))
        });
        assert!(restored, "kiln's forwarding was not turned off");
        assert!(kept, "forwarding someone else may need was turned off");
        assert!(left_alone, "forwarding kiln found on was turned off");
    }
}
