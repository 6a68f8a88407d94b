//! The host-side machinery of bridge networks: the bridges' life under the host lock
//! (`bridge`), named network namespaces and veth pairs made in process (rtnetlink), the
//! firewall rules in kiln's own iptables chains, IPv4 forwarding, and address leases.

pub(crate) mod bridge;
pub(crate) mod firewall;
pub(crate) mod forwarding;
pub(crate) mod lease;
pub(crate) mod netlink;
pub(crate) mod netns;
