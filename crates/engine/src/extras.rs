//! What a build may be given besides its Dockerfile, context and outputs: named contexts
//! (`--build-context`), ssh agents (`--ssh`), settings for RUN steps (`--add-host`, `--ulimit`,
//! `--shm-size`, `RUN --device`'s permission), provenance (`--provenance`) and where the
//! context came from. One field of [`BuildRequest`](crate::BuildRequest), default empty.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_llb::Digest;

use crate::ssh::{SshForward, SshSpec};

/// The extras of one build; every field defaults to "not asked for".
#[derive(Debug, Clone, Default)]
pub struct BuildExtras {
    /// `--build-context NAME=VALUE`, in the order given (a later NAME wins).
    pub contexts: Vec<(String, ContextSpec)>,
    /// `--ssh` agents for `RUN --mount=type=ssh`.
    pub ssh: Vec<SshSpec>,
    /// Set when the `ssh` agents live elsewhere (a remote client's): each spec's id is then
    /// reached through this, and its paths are not read.
    pub ssh_forward: Option<Arc<dyn SshForward>>,
    pub run: RunSettings,
    /// `--provenance`: attach a SLSA provenance attestation to the image.
    pub provenance: Option<ProvenanceMode>,
    /// Where the main context came from, for provenance (a git commit, a URL).
    pub origin: Option<ContextOrigin>,
}

/// A named context's source, as buildx's `--build-context` spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSpec {
    /// A local directory.
    Dir(PathBuf),
    /// `docker-image://REF`: an image from the store or a registry.
    Image(String),
    /// `oci-layout://PATH[@DIGEST]`: an image in an OCI layout directory (the only one there
    /// unless a digest picks one).
    OciLayout {
        path: PathBuf,
        digest: Option<Digest>,
    },
    /// A URL: a git repository (`https://host/repo.git#ref:dir`, `git://...`) or a file over
    /// HTTP(S).
    Url(String),
}

impl ContextSpec {
    /// Parses the value of `--build-context NAME=VALUE`.
    pub fn parse(value: &str) -> Result<ContextSpec, String> {
        if value.is_empty() {
            return Err("empty build context".into());
        }
        if let Some(reference) = value.strip_prefix("docker-image://") {
            kiln_llb::Reference::parse(reference)
                .map_err(|e| format!("invalid image {reference:?}: {e}"))?;
            return Ok(ContextSpec::Image(reference.to_owned()));
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (path, digest) = match rest.rsplit_once('@') {
                Some((p, d)) => (
                    p,
                    Some(
                        d.parse::<Digest>()
                            .map_err(|e| format!("invalid digest in {value:?}: {e}"))?,
                    ),
                ),
                None => (rest, None),
            };
            // buildx allows `PATH:TAG`; a tag names nothing in a layout kiln reads by digest.
            return Ok(ContextSpec::OciLayout {
                path: PathBuf::from(path),
                digest,
            });
        }
        if value.contains("://") || crate::git::GitUrl::parse(value).is_some() {
            let scheme = value.split("://").next().unwrap_or_default();
            if value.starts_with("git@")
                || matches!(scheme, "http" | "https" | "git" | "ssh" | "file")
            {
                return Ok(ContextSpec::Url(value.to_owned()));
            }
            return Err(format!(
                "unsupported build context {value:?}: expected a directory, docker-image://, oci-layout://, a git URL or an http(s) URL"
            ));
        }
        Ok(ContextSpec::Dir(PathBuf::from(value)))
    }
}

/// Settings every RUN step of the build gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `--add-host NAME:IP`: extra `/etc/hosts` lines.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`: the size of `/dev/shm` in bytes.
    pub shm_size: Option<u64>,
    /// `--allow device`: `RUN --device` may give steps host devices.
    pub allow_devices: bool,
}

/// One `--ulimit`: a resource by Docker's name (`nofile`, `nproc`, ...) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// How much the provenance attestation records (`--provenance=mode=min|max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// The build's inputs: base images, the context's source, the build arguments.
    Min,
    /// Also the Dockerfile itself and every step the build ran.
    Max,
}

impl ProvenanceMode {
    /// Parses `--provenance`: `true`/`1` and `mode=min` (min), `mode=max` (max), `false`/`0`
    /// (none).
    pub fn parse(value: &str) -> Result<Option<ProvenanceMode>, String> {
        let mut mode = Some(ProvenanceMode::Min);
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "true" | "1" => mode = Some(ProvenanceMode::Min),
                "false" | "0" => mode = None,
                "mode=min" => mode = Some(ProvenanceMode::Min),
                "mode=max" => mode = Some(ProvenanceMode::Max),
                other => {
                    return Err(format!(
                        "invalid --provenance option {other:?}: expected mode=min, mode=max, true or false"
                    ));
                }
            }
        }
        Ok(mode)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProvenanceMode::Min => "min",
            ProvenanceMode::Max => "max",
        }
    }
}

/// Where a build's main context came from, when it was not a plain directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextOrigin {
    /// A git repository at a commit.
    Git { url: String, commit: String },
    /// A tarball (or Dockerfile) downloaded from a URL, with the digest of what was fetched.
    Url { url: String, digest: Digest },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_specs_parse_like_buildx() {
        assert_eq!(
            ContextSpec::parse("./dir").unwrap(),
            ContextSpec::Dir("./dir".into())
        );
        assert_eq!(
            ContextSpec::parse("docker-image://busybox:1").unwrap(),
            ContextSpec::Image("busybox:1".into())
        );
        let d = Digest::of(b"x");
        assert_eq!(
            ContextSpec::parse(&format!("oci-layout:///l@{d}")).unwrap(),
            ContextSpec::OciLayout {
                path: "/l".into(),
                digest: Some(d)
            }
        );
        assert_eq!(
            ContextSpec::parse("https://h/r.git#main").unwrap(),
            ContextSpec::Url("https://h/r.git#main".into())
        );
        assert!(ContextSpec::parse("docker-image://Not Valid").is_err());
        assert!(ContextSpec::parse("ftp://h/x").is_err());
        assert!(ContextSpec::parse("").is_err());
    }

    #[test]
    fn provenance_values() {
        assert_eq!(
            ProvenanceMode::parse("mode=max"),
            Ok(Some(ProvenanceMode::Max))
        );
        assert_eq!(ProvenanceMode::parse("true"), Ok(Some(ProvenanceMode::Min)));
        assert_eq!(ProvenanceMode::parse("false"), Ok(None));
        assert!(ProvenanceMode::parse("mode=full").is_err());
    }
}
