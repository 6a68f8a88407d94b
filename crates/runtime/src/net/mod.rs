//! The host-side machinery of bridge networks: named network namespaces made in process, the
//! firewall rules in kiln's own iptables chains, and address leases.

pub(crate) mod firewall;
pub(crate) mod lease;
pub(crate) mod netns;
