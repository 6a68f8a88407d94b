//! Small helpers for image names as they appear in `index.json` annotations and `RepoTags`.
//!
//! Full normalization (`app` → `docker.io/library/app:latest`) belongs to the registry code;
//! these only split and shorten names that callers already normalized.

/// The tag of `name` (`docker.io/library/app:1` → `1`), or `None` without one. A `:` before the
/// last `/` is a registry port, not a tag.
pub fn tag(name: &str) -> Option<&str> {
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.rsplit_once(':').map(|(_, t)| t)
}

/// The repository part of `name` (`docker.io/library/app:1` → `docker.io/library/app`).
pub fn repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match tag(name) {
        Some(t) => &name[..name.len() - t.len() - 1],
        None => name,
    }
}

/// The short form Docker shows and writes into `RepoTags`: `docker.io/library/app:1` → `app:1`,
/// `docker.io/me/app:1` → `me/app:1`; other registries are kept.
pub fn familiar(name: &str) -> &str {
    if let Some(rest) = name.strip_prefix("docker.io/") {
        rest.strip_prefix("library/")
            .filter(|r| !r.contains('/'))
            .unwrap_or(rest)
    } else {
        name
    }
}

/// `RepoTags` entry for `name`: familiar, with `:latest` added when there is no tag; `None` for
/// names pinned only by digest, which Docker cannot tag.
pub fn repo_tag(name: &str) -> Option<String> {
    if name.contains('@') {
        return None;
    }
    let short = familiar(name);
    Some(if tag(short).is_some() {
        short.to_owned()
    } else {
        format!("{short}:latest")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_shorten() {
        assert_eq!(tag("docker.io/library/app:1"), Some("1"));
        assert_eq!(tag("localhost:5000/app"), None);
        assert_eq!(tag("localhost:5000/app:v2"), Some("v2"));
        assert_eq!(repository("localhost:5000/app:v2"), "localhost:5000/app");
        assert_eq!(repository("app"), "app");
        assert_eq!(familiar("docker.io/library/app:1"), "app:1");
        assert_eq!(familiar("docker.io/me/app:1"), "me/app:1");
        assert_eq!(familiar("quay.io/x/y:1"), "quay.io/x/y:1");
        assert_eq!(
            repo_tag("docker.io/library/app").as_deref(),
            Some("app:latest")
        );
        assert_eq!(repo_tag("app@sha256:00"), None);
    }
}
