//! Published ports (`-p [IP:][HOST:]CTR[/tcp|udp]`, `-P`) as a userspace proxy run by the
//! container's owner: it listens on the host and reaches `127.0.0.1:CTR` inside the container
//! from sockets made by a thread that joined the container's network namespace (a socket
//! belongs to the namespace it was created in). No NAT rule is needed, so it works the same for
//! a container on a bridge and one with only `lo`. A mapping without a host port gets one from
//! the kernel; what was bound is written to `ports.json` in the container's directory, which
//! `ps`, `port` and `inspect` read.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use crate::error::RuntimeError;
use crate::store::{Container, PortMapping, read_json, write_json};

/// A UDP client that sends nothing and gets nothing for this long loses its socket (and its
/// thread), as a NAT table forgets a UDP flow.
const UDP_IDLE: Duration = Duration::from_secs(60);

const RECORD: &str = "ports.json";

/// The network namespace connections go to; replaced when a restarted container gets a new one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target(Arc<Mutex<Option<Arc<File>>>>);

impl Target {
    pub(crate) fn set(&self, netns: Option<File>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = netns.map(Arc::new);
    }

    fn get(&self) -> Option<Arc<File>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `make` on a thread inside the container's network namespace.
    fn inside<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let netns = self
            .get()
            .ok_or_else(|| std::io::Error::other("container is not running"))?;
        // setns(CLONE_NEWNET) affects only the calling thread, which then makes the socket
        // and ends.
        std::thread::spawn(move || {
            setns(&*netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            make()
        })
        .join()
        .map_err(|_| std::io::Error::other("dialer thread panicked"))?
    }
}

fn host_addr(p: &PortMapping) -> Result<SocketAddr, RuntimeError> {
    format!("{}:{}", p.host_ip, p.host_port)
        .parse()
        .or_else(|_| format!("[{}]:{}", p.host_ip, p.host_port).parse())
        .map_err(|_| RuntimeError::Invalid(format!("invalid host address {}", p.host_ip)))
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds every mapping of `c` now (so a port in use fails the start; host port 0 takes one the
/// kernel picks), records what was bound, and serves each on its own thread for the life of
/// the process.
pub(crate) fn publish(c: &Container, target: &Target) -> Result<(), RuntimeError> {
    let mut bound = Vec::new();
    let mut record = Vec::new();
    for p in &c.config.ports {
        let addr = host_addr(p)?;
        let bind_err = |e| RuntimeError::Io {
            what: format!("publish port {addr}/{} (bind)", p.protocol),
            source: e,
        };
        let (sock, local) = if p.protocol == "udp" {
            let s = UdpSocket::bind(addr).map_err(bind_err)?;
            let local = s.local_addr().map_err(bind_err)?;
            (Bound::Udp(s), local)
        } else {
            let l = TcpListener::bind(addr).map_err(bind_err)?;
            let local = l.local_addr().map_err(bind_err)?;
            (Bound::Tcp(l), local)
        };
        record.push(PortMapping {
            host_port: local.port(),
            ..p.clone()
        });
        bound.push((sock, p.container_port));
    }
    if !record.is_empty() {
        write_json(&c.dir.join(RECORD), &record)?;
    }
    for (sock, port) in bound {
        let target = target.clone();
        match sock {
            Bound::Tcp(l) => std::thread::spawn(move || serve_tcp(l, &target, port)),
            Bound::Udp(s) => std::thread::spawn(move || serve_udp(s, &target, port)),
        };
    }
    Ok(())
}

/// The mappings of `c` as bound now: those its owner recorded while it runs; otherwise the
/// configured ones that name a host port (a random port exists only while bound).
pub fn published(c: &Container) -> Vec<PortMapping> {
    if c.state.is_running()
        && let Ok(record) = read_json::<Vec<PortMapping>>(&c.dir.join(RECORD))
    {
        return record;
    }
    c.config
        .ports
        .iter()
        .filter(|p| p.host_port != 0)
        .cloned()
        .collect()
}

/// `80/tcp -> 0.0.0.0:8080`, as `docker port` prints a mapping.
pub fn describe(p: &PortMapping) -> String {
    format!("{}/{} -> {}", p.container_port, p.protocol, host_address(p))
}

/// The host side of a mapping as `docker port C PORT` prints it: `0.0.0.0:32768`, an IPv6
/// address in brackets.
pub fn host_address(p: &PortMapping) -> String {
    if p.host_ip.contains(':') {
        format!("[{}]:{}", p.host_ip, p.host_port)
    } else {
        format!("{}:{}", p.host_ip, p.host_port)
    }
}

/// Mappings as Docker's `inspect` shows them: `{"80/tcp": [{"HostIp": …, "HostPort": "8080"}]}`,
/// with an empty `HostPort` for one not bound yet.
pub(crate) fn docker_json(ports: &[PortMapping]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for p in ports {
        let host_port = if p.host_port == 0 {
            String::new()
        } else {
            p.host_port.to_string()
        };
        let entry = out
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = entry {
            list.push(serde_json::json!({"HostIp": p.host_ip, "HostPort": host_port}));
        }
    }
    out
}

fn serve_tcp(listener: TcpListener, target: &Target, port: u16) {
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let target = target.clone();
        std::thread::spawn(move || {
            if let Err(e) = forward_tcp(client, &target, port) {
                tracing::debug!(error = %e, port, "published connection failed");
            }
        });
    }
}

fn forward_tcp(client: TcpStream, target: &Target, port: u16) -> std::io::Result<()> {
    let server = target.inside(move || TcpStream::connect(("127.0.0.1", port)))?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = std::io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

/// One socket inside the container per client address, connected to the container port; a
/// thread per client carries the replies back until the client has been idle for
/// [`UDP_IDLE`].
fn serve_udp(listener: UdpSocket, target: &Target, port: u16) {
    let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = listener.recv_from(&mut buf) else {
            continue;
        };
        let existing = clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&from)
            .cloned();
        let upstream = match existing {
            Some(s) => s,
            None => {
                let made = target.inside(move || {
                    let s = UdpSocket::bind("127.0.0.1:0")?;
                    s.connect(("127.0.0.1", port))?;
                    s.set_read_timeout(Some(UDP_IDLE))?;
                    Ok(s)
                });
                let s = match made {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::debug!(error = %e, port, "published udp datagram dropped");
                        continue;
                    }
                };
                clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(from, s.clone());
                let (replies, back, table) = (s.clone(), listener.try_clone(), clients.clone());
                std::thread::spawn(move || {
                    if let Ok(back) = back {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = replies.recv(&mut buf) {
                            let _ = back.send_to(&buf[..n], from);
                        }
                    }
                    // Idle (or the container went away): forget the client.
                    table
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&from);
                });
                s
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_prints_mappings_as_docker_port_does() {
        let p = PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 32768,
            container_port: 53,
            protocol: "udp".into(),
        };
        assert_eq!(describe(&p), "53/udp -> 127.0.0.1:32768");
        let v6 = PortMapping {
            host_ip: "::1".into(),
            ..p
        };
        assert_eq!(describe(&v6), "53/udp -> [::1]:32768");
    }
}
