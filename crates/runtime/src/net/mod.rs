//! The host-side machinery of bridge networks: named network namespaces and veth pairs made in
//! process (rtnetlink), the firewall rules in kiln's own iptables chains, and address leases.

pub(crate) mod firewall;
pub(crate) mod lease;
pub(crate) mod netlink;
pub(crate) mod netns;
