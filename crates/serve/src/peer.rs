//! Keeps the worker's own RUN steps away from its API.
//!
//! A RUN step on the default (host) network shares the host's loopback, so it could connect to
//! a worker listening on 127.0.0.1 and, without TLS, drive it. The unix socket is out of reach
//! already (a step sees only its own root filesystem and its declared mounts, never the
//! socket's directory), but a TCP port is not. So every loopback connection is traced to the
//! process that owns the client's socket (`/proc/net/tcp*` gives the socket's inode, the
//! `/proc/PID/fd` links the process), and a process that descends from this worker — which is
//! what every RUN step is, whatever pid namespace it lives in — is refused (the worker's own
//! process is not). A connection whose
//! owner cannot be found (it is gone already, or lives outside this pid namespace) is allowed:
//! RUN steps are always visible from the worker.

use std::net::{IpAddr, SocketAddr};

use kiln_proto::tls::{Address, PeerInfo};

/// Why this connection is refused, or `None` to serve it.
pub(crate) fn refuse(listening: &Address, peer: &PeerInfo) -> Option<String> {
    let Address::Tcp { .. } = listening else {
        return None;
    };
    let addr: SocketAddr = peer.addr.parse().ok()?;
    if !addr.ip().is_loopback() {
        return None;
    }
    let inode = socket_inode(&addr)?;
    let pid = owner_of(inode)?;
    let me = std::process::id();
    // The worker itself (a test that serves and connects in one process) is not a build step.
    (pid != me && descends_from(pid, me)).then(|| {
        format!("process {pid} is one of this worker's own build steps, which may not use its API")
    })
}

/// `/proc/net/tcp` writes an IPv4 address as the hex of its bytes in host (little-endian) order,
/// an IPv6 one as four such words; the port in big-endian hex.
fn proc_net_addr(addr: &SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", addr.port())
}

/// The inode of the socket whose local address is `addr` (the client's end).
fn socket_inode(addr: &SocketAddr) -> Option<u64> {
    let wanted = proc_net_addr(addr);
    let files: &[&str] = match addr {
        SocketAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        SocketAddr::V6(_) => &["/proc/net/tcp6"],
    };
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[1].eq_ignore_ascii_case(&wanted) {
                return fields[9].parse().ok().filter(|i| *i != 0);
            }
        }
    }
    None
}

/// A process with a descriptor on socket `inode`.
fn owner_of(inode: u64) -> Option<u32> {
    let link = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == link.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..4096 {
        if pid == ancestor {
            return true;
        }
        match parent_of(pid) {
            Some(0) | None => return false,
            Some(parent) if parent == pid => return false,
            Some(parent) => pid = parent,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_written_as_proc_net_does() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(proc_net_addr(&v4), "0100007F:1F90");
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(proc_net_addr(&v6), "00000000000000000000000001000000:01BB");
    }

    #[test]
    fn this_process_descends_from_itself_and_not_from_a_child() {
        let me = std::process::id();
        assert!(descends_from(me, me));
        assert!(!descends_from(1, me) || me == 1);
    }

    #[test]
    fn a_connection_from_this_process_is_traced_to_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let local = client.local_addr().unwrap();
        let inode = socket_inode(&local).expect("the client socket is listed");
        assert_eq!(owner_of(inode), Some(std::process::id()));
    }
}
