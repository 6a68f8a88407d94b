//! The few rtnetlink requests kiln's networks need (a bridge with its alias and gateway address;
//! per container a veth pair with one end in its namespace, an address, links up, a default
//! route; deleting a link; listing the links), sent from this process: wiring a container costs a handful of syscalls
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
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
// Attributes (linux/if_link.h, linux/veth.h, linux/if_addr.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
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

    /// A dump request: the kernel answers with messages until `NLMSG_DONE`, not an ACK.
    fn dump(kind: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
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

impl Socket {
    /// Sends the dump request `msg` and returns the payload (after the 16-byte header) of every
    /// message of type `kind` in the answer.
    fn dump(&mut self, msg: &mut Msg, kind: u16) -> io::Result<Vec<Vec<u8>>> {
        self.seq += 1;
        let seq = self.seq;
        send(self.fd.as_raw_fd(), msg.finish(seq), MsgFlags::empty())?;
        // The kernel fills at most 32 KiB per read of a dump.
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut at = 0;
            while at + 16 <= n {
                let word =
                    |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
                let len = word(at) as usize;
                let t = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if len < 16 || at + len > n {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                if word(at + 8) == seq {
                    match t {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR if len >= 20 => {
                            let code = word(at + 16) as i32;
                            if code != 0 {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                        }
                        _ if t == kind => out.push(buf[at + 16..at + len].to_vec()),
                        _ => {}
                    }
                }
                at += (len + 3) & !3;
            }
        }
    }
}

/// The attributes in `data` as (type, payload), in order; the nested flag is masked off.
fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    out
}

/// A string attribute without its terminating NUL.
fn attr_string(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A link of this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    /// The interface alias (`ip link set X alias ...`), empty when none is set.
    pub(crate) alias: String,
    /// The link kind (`bridge`, `veth`, ...); empty for a physical device.
    pub(crate) kind: String,
}

/// Parses one `RTM_NEWLINK` message of a dump: `struct ifinfomsg`, then attributes.
fn parse_link(payload: &[u8]) -> Option<Link> {
    let index = u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?);
    let mut link = Link {
        index,
        name: String::new(),
        alias: String::new(),
        kind: String::new(),
    };
    for (kind, data) in attrs(payload.get(16..)?) {
        match kind {
            IFLA_IFNAME => link.name = attr_string(data),
            IFLA_IFALIAS => link.alias = attr_string(data),
            IFLA_LINKINFO => {
                if let Some((_, k)) = attrs(data).into_iter().find(|(k, _)| *k == IFLA_INFO_KIND) {
                    link.kind = attr_string(k);
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// Every link of the calling thread's network namespace. (Unlike `/sys/class/net`, which
/// shows the namespace sysfs was mounted in, a netlink socket belongs to the namespace of the
/// thread that opened it.)
pub(crate) fn links() -> io::Result<Vec<Link>> {
    let mut sock = Socket::open()?;
    let mut m = Msg::dump(RTM_GETLINK);
    m.ifinfo(0, 0, 0);
    Ok(sock
        .dump(&mut m, RTM_NEWLINK)?
        .iter()
        .filter_map(|p| parse_link(p))
        .collect())
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

/// Creates the bridge `name`, up, with the interface alias `alias` and the address
/// `gateway`/`prefix`.
pub(crate) fn add_bridge(name: &str, alias: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut sock = Socket::open()?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, IFF_UP, IFF_UP)
        .attr_str(IFLA_IFNAME, name)
        .begin(IFLA_LINKINFO)
        .attr_str(IFLA_INFO_KIND, "bridge")
        .end();
    sock.request(&mut m)?;
    let index = nix::net::if_::if_nametoindex(name)?;
    // The kernel ignores an alias in the request that creates a link: it is set afterwards.
    let mut set = Msg::new(RTM_NEWLINK, 0);
    set.ifinfo(index as i32, 0, 0).attr_str(IFLA_IFALIAS, alias);
    sock.request(&mut set)?;
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
pub(crate) fn add_veth(host_if: &str, master: &str, netns: &File, peer: &str) -> io::Result<()> {
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
        .attr_str(IFLA_IFNAME, peer)
        .attr(IFLA_NET_NS_FD, &(netns.as_raw_fd() as u32).to_ne_bytes())
        .end()
        .end()
        .end();
    sock.request(&mut m)
}

/// A locally administered unicast MAC address for `ip` (Docker's `02:42:a:b:c:d`).
pub(crate) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// Inside the namespace `netns`: `lo` up, the MAC address from `ip`, `ifname` up at `ip`/`prefix`, and with a
/// `gateway` the default route through it. Runs on a thread that joins the namespace (its
/// sockets and the interface's index belong to the namespace the thread is in).
pub(crate) fn configure_inside(
    netns: File,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> io::Result<()> {
    let ifname = ifname.to_string();
    std::thread::spawn(move || -> io::Result<()> {
        setns(&netns, CloneFlags::CLONE_NEWNET)?;
        let mut sock = Socket::open()?;
        let lo = nix::net::if_::if_nametoindex("lo")? as i32;
        let eth0 = nix::net::if_::if_nametoindex(ifname.as_str())? as i32;
        sock.request(Msg::new(RTM_NEWLINK, 0).ifinfo(lo, IFF_UP, IFF_UP))?;
        // The MAC address follows from the IP address, as Docker makes it (02:42 and the four
        // octets): an address given back and leased again (a recreated compose container)
        // keeps its MAC, so the other members' ARP caches stay right.
        sock.request(
            Msg::new(RTM_NEWLINK, 0)
                .ifinfo(eth0, 0, 0)
                .attr(IFLA_ADDRESS, &mac_for(ip)),
        )?;
        add_address(&mut sock, eth0 as u32, ip, prefix)?;
        sock.request(Msg::new(RTM_NEWLINK, 0).ifinfo(eth0, IFF_UP, IFF_UP))?;
        let Some(gateway) = gateway else {
            return Ok(());
        };
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
    fn a_dumped_link_reads_back_with_its_name_alias_and_kind() {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(7, 0, 0)
            .attr_str(IFLA_IFNAME, "kb1")
            .attr_str(IFLA_IFALIAS, "kiln-network x")
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        let bytes = m.finish(1).to_vec();
        assert_eq!(
            parse_link(&bytes[16..]),
            Some(Link {
                index: 7,
                name: "kb1".into(),
                alias: "kiln-network x".into(),
                kind: "bridge".into(),
            })
        );
    }

    #[test]
    fn links_lists_this_threads_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: a network namespace of its own needs root");
            return;
        }
        let links = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
            let before = links().expect("links");
            add_bridge(
                "kbtest0",
                "kiln-network test",
                Ipv4Addr::new(10, 89, 9, 1),
                24,
            )
            .expect("bridge");
            (before, links().expect("links"))
        })
        .join()
        .expect("thread");
        let names = |l: &[Link]| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&links.0), ["lo"]);
        let bridge = links
            .1
            .iter()
            .find(|l| l.name == "kbtest0")
            .expect("bridge");
        assert_eq!(
            (bridge.kind.as_str(), bridge.alias.as_str()),
            ("bridge", "kiln-network test")
        );
    }

    #[test]
    fn the_mac_address_follows_the_ip_address_as_dockers() {
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 89, 1, 2)),
            [0x02, 0x42, 10, 89, 1, 2]
        );
    }

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
