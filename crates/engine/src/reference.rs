//! Image references with Docker's normalization: `busybox` is `docker.io/library/busybox:latest`.

/// The canonical form of an image reference: a registry host, `library/` for official images on
/// Docker Hub, and `:latest` when neither a tag nor a digest is given.
pub fn normalize(reference: &str) -> String {
    let (name, suffix) = split_suffix(reference);
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    let remainder = if domain == "docker.io" && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder
    };
    let suffix = if suffix.is_empty() {
        ":latest".to_string()
    } else {
        suffix.to_string()
    };
    format!("{domain}/{}{suffix}", remainder.to_lowercase())
}

/// The short form Docker shows: `busybox:latest`, `org/app:1`, `127.0.0.1:5000/app:1`.
pub fn familiar(reference: &str) -> String {
    let full = normalize(reference);
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(&full)
        .to_string()
}

/// Splits `name:tag` / `name@sha256:...` into the name and the `:tag` or `@digest` suffix.
fn split_suffix(reference: &str) -> (&str, &str) {
    if let Some(at) = reference.find('@') {
        return (&reference[..at], &reference[at..]);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => reference.split_at(last_slash + colon),
        None => (reference, ""),
    }
}

/// Whether a string can be an image reference (so a build does not try to resolve garbage).
pub fn is_valid(reference: &str) -> bool {
    !reference.is_empty()
        && !reference.starts_with(['-', '/', ':', '@'])
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("org/app"), "docker.io/org/app:latest");
        assert_eq!(
            normalize("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(normalize("localhost/x:y"), "localhost/x:y");
        assert_eq!(
            normalize("busybox@sha256:abcd"),
            "docker.io/library/busybox@sha256:abcd"
        );
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("org/app:1"), "org/app:1");
        assert!(!is_valid("a b"));
    }
}
