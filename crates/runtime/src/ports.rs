//! Published ports (`-p IP:HOST:CTR`) as a userspace proxy run by the container's owner: it
//! listens on the host and, per connection, dials `127.0.0.1:CTR` from a thread that joined the
//! container's network namespace (a socket belongs to the namespace it was created in). No
//! bridge, NAT or iptables is needed, so it works for containers with only `lo`.

use std::fs::File;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use nix::sched::{CloneFlags, setns};

use crate::error::RuntimeError;
use crate::store::PortMapping;

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
}

/// Binds every mapping now (so a port in use fails the start) and serves each on its own thread
/// for the life of the process.
pub(crate) fn publish(ports: &[PortMapping], target: &Target) -> Result<(), RuntimeError> {
    let mut listeners = Vec::new();
    for p in ports {
        let addr: SocketAddr = format!("{}:{}", p.host_ip, p.host_port)
            .parse()
            .or_else(|_| format!("[{}]:{}", p.host_ip, p.host_port).parse())
            .map_err(|_| RuntimeError::Invalid(format!("invalid host address {}", p.host_ip)))?;
        let l = TcpListener::bind(addr).map_err(|e| RuntimeError::Io {
            what: format!("publish port {addr} (bind)"),
            source: e,
        })?;
        listeners.push((l, p.container_port));
    }
    for (listener, port) in listeners {
        let target = target.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let target = target.clone();
                std::thread::spawn(move || {
                    if let Err(e) = forward(client, &target, port) {
                        tracing::debug!(error = %e, port, "published connection failed");
                    }
                });
            }
        });
    }
    Ok(())
}

fn forward(client: TcpStream, target: &Target, port: u16) -> std::io::Result<()> {
    let netns = target
        .get()
        .ok_or_else(|| std::io::Error::other("container is not running"))?;
    // setns(CLONE_NEWNET) affects only the calling thread, which then dials and ends.
    let server = std::thread::spawn(move || {
        setns(&*netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        TcpStream::connect(("127.0.0.1", port))
    })
    .join()
    .map_err(|_| std::io::Error::other("dialer thread panicked"))??;
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
