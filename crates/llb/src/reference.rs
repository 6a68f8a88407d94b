//! Image references as Docker reads them: `busybox` is `docker.io/library/busybox:latest`.
//!
//! One type for the whole workspace (the frontend's `FROM`, the store's names, the registry
//! client, `kiln tag`), so that every place accepts and refuses the same strings with the same
//! messages. The grammar and the normalization follow Docker's `distribution/reference`
//! package (`ParseNormalizedNamed`): a first path component is a registry only if it contains a
//! `.` or a `:`, is `localhost`, or has an upper-case letter; Docker Hub names get `library/`
//! when they have one component; a reference without tag or digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The longest repository name (registry and path) Docker accepts.
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("repository name must have at least one component")]
    Empty,
    #[error("repository name must not be more than {NAME_MAX} characters")]
    TooLong,
    #[error("invalid tag format")]
    InvalidTag,
    #[error("invalid digest format: {0}")]
    InvalidDigest(String),
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
}

impl Reference {
    /// Parses and normalizes a reference as `docker pull` and `FROM` do.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName(input.to_owned()));
        }
        let (registry, remainder) = split_registry(input);
        let remote = remainder.split(':').next().unwrap_or(&remainder);
        let remote = remote.split('@').next().unwrap_or(remote);
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_owned()));
        }
        parse_parts(&registry, &remainder)
    }

    /// A reference from already separate parts (a registry's name for what it serves).
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut text = format!("{registry}/{repository}");
        if let Some(tag) = tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &digest {
            text.push('@');
            text.push_str(&digest.to_string());
        }
        Reference::parse(&text)
    }

    /// `docker.io`, `127.0.0.1:5000`, `ghcr.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `library/busybox`, `org/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag: `latest` when the input had neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask a registry for: the digest if there is one, else the tag.
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository pinned to a digest (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository at another tag (a digest is dropped).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::InvalidTag);
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The short form Docker shows: `busybox:latest`, `org/app:1`, `127.0.0.1:5000/app:1`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        match full.strip_prefix("docker.io/") {
            Some(rest) => match rest.strip_prefix("library/") {
                Some(short) if !self.repository["library/".len()..].contains('/') => {
                    short.to_owned()
                }
                _ => rest.to_owned(),
            },
            None => full,
        }
    }

    /// The familiar repository without tag or digest (the REPOSITORY column of `images`).
    pub fn familiar_name(&self) -> String {
        let name = self.name();
        match name.strip_prefix("docker.io/") {
            Some(rest) => match rest.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_owned(),
                _ => rest.to_owned(),
            },
            None => name,
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Docker's `splitDockerDomain`: the registry and the rest, with Docker Hub's defaults.
fn split_registry(name: &str) -> (String, String) {
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let registry = match registry.as_str() {
        "index.docker.io" => DOCKER_HUB.to_owned(),
        _ => registry,
    };
    let remainder = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder
    };
    (registry, remainder)
}

/// Checks `remainder` (`path[:tag][@digest]`) against Docker's grammar.
fn parse_parts(registry: &str, remainder: &str) -> Result<Reference, ReferenceError> {
    let (rest, digest) = match remainder.split_once('@') {
        Some((rest, d)) => (rest, Some(parse_digest(d)?)),
        None => (remainder, None),
    };
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    };
    if !valid_registry(registry) || !path.split('/').all(valid_path_component) {
        return Err(ReferenceError::InvalidFormat);
    }
    if registry.len() + 1 + path.len() > NAME_MAX {
        return Err(ReferenceError::TooLong);
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(ReferenceError::InvalidFormat);
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_owned()),
        (tag, _) => tag.map(str::to_owned),
    };
    Ok(Reference {
        registry: registry.to_owned(),
        repository: path.to_owned(),
        tag,
        digest,
    })
}

fn parse_digest(text: &str) -> Result<Digest, ReferenceError> {
    let (algorithm, hex) = text
        .split_once(':')
        .ok_or_else(|| ReferenceError::InvalidDigest(text.to_owned()))?;
    if algorithm != "sha256" {
        let known = ["sha384", "sha512"].contains(&algorithm);
        let why = if known {
            format!("not supported yet: {algorithm} digests")
        } else {
            format!("unsupported digest algorithm {algorithm:?}")
        };
        return Err(ReferenceError::InvalidDigest(why));
    }
    Digest::from_hex(hex).map_err(|_| ReferenceError::InvalidDigest(text.to_owned()))
}

/// `host[:port]`: dot-separated components of letters, digits and inner hyphens, or a
/// bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (h, Some(p)),
        _ => (registry, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[') {
        return v6.strip_suffix(']').is_some_and(|a| {
            !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        });
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= TAG_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    fn err(s: &str) -> String {
        Reference::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("org/app"), "docker.io/org/app:latest");
        assert_eq!(norm("index.docker.io/org/app:2"), "docker.io/org/app:2");
        assert_eq!(
            norm("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(norm("localhost/x:y"), "localhost/x:y");
        assert_eq!(norm("[::1]:5000/a/b"), "[::1]:5000/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        assert_eq!(
            norm("a__b/c-d/e---f.g_h"),
            "docker.io/a__b/c-d/e---f.g_h:latest"
        );
    }

    #[test]
    fn parts_and_targets() {
        let r = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        assert_eq!(r.target(), "v1");
        assert_eq!(r.name(), "127.0.0.1:5000/a/b");
        let d: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        assert_eq!(r.with_digest(d).target(), d.to_string());
        assert_eq!(
            r.with_tag("v2").unwrap().to_string(),
            "127.0.0.1:5000/a/b:v2"
        );
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(f("org/app:1"), "org/app:1");
        assert_eq!(f("docker.io/library/a/b:1"), "library/a/b:1");
        assert_eq!(f("quay.io/x/y:1"), "quay.io/x/y:1");
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar_name(),
            "busybox"
        );
    }

    #[test]
    fn refuses_like_docker() {
        assert_eq!(
            err("MyApp"),
            "invalid reference format: repository name (library/MyApp) must be lowercase"
        );
        assert_eq!(
            err("org/MyApp:1"),
            "invalid reference format: repository name (org/MyApp) must be lowercase"
        );
        // An upper-case first component is a registry name, as in Docker.
        assert_eq!(norm("Registry/app"), "Registry/app:latest");
        assert_eq!(err(""), "repository name must have at least one component");
        assert_eq!(err("a b"), "invalid reference format");
        assert_eq!(err("busybox:"), "invalid reference format");
        assert_eq!(err("busybox:-x"), "invalid reference format");
        assert_eq!(err("-busybox"), "invalid reference format");
        assert_eq!(err("a..b"), "invalid reference format");
        assert_eq!(err("a/"), "invalid reference format");
        assert_eq!(err("host:port/a"), "invalid reference format");
        assert!(err("busybox@sha256:12").starts_with("invalid digest format"));
        assert!(err(&format!("busybox@sha512:{}", "a".repeat(128))).contains("not supported yet"));
        assert!(err(&"a".repeat(64)).contains("64-byte hexadecimal"));
        assert_eq!(
            err(&format!("x/{}", "a".repeat(300))),
            format!("repository name must not be more than {NAME_MAX} characters")
        );
        assert_eq!(
            err(&format!("busybox:{}", "t".repeat(129))),
            "invalid reference format"
        );
    }

    #[test]
    fn serde_round_trip() {
        let r = Reference::parse("busybox:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:1\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
