//! The few rtnetlink requests kiln's networks need (a bridge with its gateway address; per
//! container a veth pair with one end in its namespace, an address, links up, a default route;
//! deleting a link), sent from this process: wiring a container costs a handful of syscalls
//! instead of `ip` processes, and kiln needs no iproute2 on the host. Messages are built by
//! hand (the layouts are the kernel's uapi: `nlmsghdr`, `ifinfomsg`, `ifaddrmsg`, `rtmsg` and
//! 4-byte aligned attributes); every request asks for an ACK and a non-zero error is returned
//! as the `io::Error` it names.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

// Message types and flags (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
// Attributes (linux/if_link.h, linux/veth.h, linux/if_addr.h).
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const AF_INET: u8 = 2;

/// One request being built: the 16-byte `nlmsghdr` (length and sequence filled in by
/// `finish`), then the family header and attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// `struct ifinfomsg`: family, type, index, flags, change mask.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Msg {
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Msg {
        let len = 4 + data.len() as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Msg {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    /// Opens a nested attribute; its length is written by `end`.
    fn begin(&mut self, kind: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Msg {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// A route netlink socket of the network namespace it was opened in.
struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    fn open() -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Socket { fd, seq: 0 })
    }

    /// Sends `msg` and waits for the kernel's ACK.
    fn request(&mut self, msg: &mut Msg) -> io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        send(self.fd.as_raw_fd(), msg.finish(seq), MsgFlags::empty())?;
        let mut buf = [0u8; 4096];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut at = 0;
            while at + 16 <= n {
                let word =
                    |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
                let len = word(at) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if len < 16 || at + len > n {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                if kind == NLMSG_ERROR && word(at + 8) == seq && len >= 20 {
                    let code = word(at + 16) as i32;
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                at += (len + 3) & !3;
            }
        }
    }
}

/// `struct ifaddrmsg` for `ip`/`prefix` on link `index`, with the address as both local and
/// peer address (what `ip addr add` sends).
fn add_address(sock: &mut Socket, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut addr = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    addr.buf
        .extend_from_slice(&[AF_INET, prefix, 0, RT_SCOPE_UNIVERSE]);
    addr.buf.extend_from_slice(&index.to_ne_bytes());
    addr.attr(IFA_LOCAL, &ip.octets())
        .attr(IFA_ADDRESS, &ip.octets());
    sock.request(&mut addr)
}

/// Creates the bridge `name`, up, with the address `gateway`/`prefix`.
pub(crate) fn add_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut sock = Socket::open()?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, IFF_UP, IFF_UP)
        .attr_str(IFLA_IFNAME, name)
        .begin(IFLA_LINKINFO)
        .attr_str(IFLA_INFO_KIND, "bridge")
        .end();
    sock.request(&mut m)?;
    let index = nix::net::if_::if_nametoindex(name)? as u32;
    add_address(&mut sock, index, gateway, prefix)
}

/// Deletes the link `name` of this namespace (a veth takes its peer with it); a link that is
/// not there is no error.
pub(crate) fn delete_link(name: &str) -> io::Result<()> {
    let Ok(index) = nix::net::if_::if_nametoindex(name) else {
        return Ok(());
    };
    let mut sock = Socket::open()?;
    match sock.request(Msg::new(RTM_DELLINK, 0).ifinfo(index as i32, 0, 0)) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// Creates the veth pair `host_if` (in this namespace, on bridge `master`, up) and `eth0` (in
/// the namespace `netns`), in one request.
pub(crate) fn add_veth(host_if: &str, master: &str, netns: &File) -> io::Result<()> {
    let master = nix::net::if_::if_nametoindex(master)? as u32;
    let mut sock = Socket::open()?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, IFF_UP, IFF_UP)
        .attr_str(IFLA_IFNAME, host_if)
        .attr(IFLA_MASTER, &master.to_ne_bytes())
        .begin(IFLA_LINKINFO)
        .attr_str(IFLA_INFO_KIND, "veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER)
        .ifinfo(0, 0, 0)
        .attr_str(IFLA_IFNAME, "eth0")
        .attr(IFLA_NET_NS_FD, &(netns.as_raw_fd() as u32).to_ne_bytes())
        .end()
        .end()
        .end();
    sock.request(&mut m)
}

/// Inside the namespace `netns`: `lo` up, `eth0` up at `ip`/`prefix`, default route via
/// `gateway`. Runs on a thread that joins the namespace (its sockets and `eth0`'s index
/// belong to the namespace the thread is in).
pub(crate) fn configure_inside(
    netns: File,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> io::Result<()> {
    std::thread::spawn(move || -> io::Result<()> {
        setns(&netns, CloneFlags::CLONE_NEWNET)?;
        let mut sock = Socket::open()?;
        let lo = nix::net::if_::if_nametoindex("lo")? as i32;
        let eth0 = nix::net::if_::if_nametoindex("eth0")? as i32;
        sock.request(Msg::new(RTM_NEWLINK, 0).ifinfo(lo, IFF_UP, IFF_UP))?;
        add_address(&mut sock, eth0 as u32, ip, prefix)?;
        sock.request(Msg::new(RTM_NEWLINK, 0).ifinfo(eth0, IFF_UP, IFF_UP))?;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut route = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        route.buf.extend_from_slice(&[
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        route.buf.extend_from_slice(&0u32.to_ne_bytes());
        route
            .attr(RTA_GATEWAY, &gateway.octets())
            .attr(RTA_OIF, &(eth0 as u32).to_ne_bytes());
        sock.request(&mut route)
    })
    .join()
    .map_err(|_| io::Error::other("the network setup thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length_and_stay_aligned() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE);
        m.ifinfo(0, 0, 0)
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let bytes = m.finish(7).to_vec();
        // 16 header + 16 ifinfomsg + 4 nest header + (4 + "veth\0" padded to 8).
        assert_eq!(bytes.len(), 16 + 16 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 48);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(bytes[32..34].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(bytes[36..38].try_into().unwrap()), 9);
        assert_eq!(&bytes[40..45], b"veth\0");
    }
}
