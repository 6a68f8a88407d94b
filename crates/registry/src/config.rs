//! kiln's registry settings: which registries speak plain HTTP and which mirrors serve a
//! registry's pulls. Read from `$KILN_CONFIG` if set, else `~/.config/kiln/config.toml`, else
//! `/etc/kiln/config.toml`:
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["http://127.0.0.1:5000"]
//! [registry."myhost:5000"]
//! insecure = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::RegistryError;
use crate::reference::{api_host, is_loopback};

/// The settings of one registry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryHost {
    /// Plain HTTP (and no certificate checks) for this registry.
    #[serde(default)]
    pub insecure: bool,
    /// Endpoints tried in order before the registry itself when pulling: `http://host:port`,
    /// `https://host`, or a bare `host:port` (HTTPS unless loopback or marked insecure).
    #[serde(default)]
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
struct File {
    #[serde(default)]
    registry: BTreeMap<String, RegistryHost>,
}

/// All registry settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    pub registries: BTreeMap<String, RegistryHost>,
    /// The file they came from, if any.
    pub path: Option<PathBuf>,
}

/// Where a request goes: a base URL (`https://host[:port]`) and the registry's name for
/// messages, auth and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base: String,
    /// The registry host this endpoint answers for (a mirror's own host, for credentials).
    pub host: String,
    pub mirror: bool,
}

impl RegistryConfig {
    /// The config file kiln reads: `$KILN_CONFIG`, else the user's, else the system's.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("KILN_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("kiln/config.toml"));
        if let Some(user) = user.filter(|p| p.exists()) {
            return Some(user);
        }
        Some(PathBuf::from("/etc/kiln/config.toml")).filter(|p| p.exists())
    }

    /// Loads the default config; no file means no settings.
    pub fn load_default() -> Result<RegistryConfig, RegistryError> {
        match RegistryConfig::default_path() {
            Some(p) => RegistryConfig::load(&p),
            None => Ok(RegistryConfig::default()),
        }
    }

    /// Loads `path`; a missing file is an empty config, a malformed one an error.
    pub fn load(path: &Path) -> Result<RegistryConfig, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistryConfig::default());
            }
            Err(source) => {
                return Err(RegistryError::Io {
                    what: format!("read {}", path.display()),
                    source,
                });
            }
        };
        RegistryConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<RegistryConfig, RegistryError> {
        let file: File = toml::from_str(text).map_err(|e| RegistryError::Config {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        Ok(RegistryConfig {
            registries: file.registry,
            path: Some(path.to_path_buf()),
        })
    }

    fn host(&self, registry: &str) -> Option<&RegistryHost> {
        self.registries.get(registry)
    }

    pub fn is_insecure(&self, registry: &str) -> bool {
        is_loopback(registry) || self.host(registry).is_some_and(|h| h.insecure)
    }

    /// The registry's own endpoint.
    pub fn endpoint(&self, registry: &str) -> Endpoint {
        let host = api_host(registry);
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        Endpoint {
            base: format!("{scheme}://{host}"),
            host: registry.to_owned(),
            mirror: false,
        }
    }

    /// Where to pull from, in order: the mirrors, then the registry.
    pub fn pull_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for mirror in self
            .host(registry)
            .map(|h| h.mirrors.as_slice())
            .unwrap_or(&[])
        {
            let mirror = mirror.trim_end_matches('/');
            let (base, host) = if let Some(h) = mirror.strip_prefix("http://") {
                (mirror.to_owned(), h)
            } else if let Some(h) = mirror.strip_prefix("https://") {
                (mirror.to_owned(), h)
            } else {
                let scheme = if self.is_insecure(mirror) {
                    "http"
                } else {
                    "https"
                };
                (format!("{scheme}://{mirror}"), mirror)
            };
            let host = host.split('/').next().unwrap_or(host).to_owned();
            out.push(Endpoint {
                base,
                host,
                mirror: true,
            });
        }
        out.push(self.endpoint(registry));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_and_loopback_is_plain_http() {
        let c = RegistryConfig::parse(
            "[registry.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:5000/\", \"m.example\"]\n[registry.\"r.example:5000\"]\ninsecure = true\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let e = c.pull_endpoints("docker.io");
        assert_eq!(e[0].base, "http://127.0.0.1:5000");
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert_eq!(e[1].base, "https://m.example");
        assert_eq!(e[2].base, "https://registry-1.docker.io");
        assert!(!e[2].mirror);
        assert_eq!(c.endpoint("r.example:5000").base, "http://r.example:5000");
        assert_eq!(c.endpoint("localhost:5000").base, "http://localhost:5000");
        assert_eq!(c.endpoint("ghcr.io").base, "https://ghcr.io");
        let err = RegistryConfig::parse("[registry.x]\nbogus = 1\n", Path::new("t.toml"));
        assert!(err.unwrap_err().to_string().contains("t.toml"));
    }
}
