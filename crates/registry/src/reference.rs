//! Where a reference's registry is served: Docker Hub's API host, and which registries speak
//! plain HTTP. The reference type itself is the workspace's one, `kiln_llb::Reference`.

pub use kiln_llb::Reference;
pub use kiln_llb::reference::DOCKER_HUB;

/// Where Docker Hub's API really lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// The host to talk HTTP to for a registry name (`docker.io` is served elsewhere).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Loopback registries speak plain HTTP without being marked insecure, as Docker allows.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_and_loopback_hosts() {
        assert_eq!(api_host(DOCKER_HUB), DOCKER_HUB_API);
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost"));
        assert!(!is_loopback("example.com:5000"));
    }
}
