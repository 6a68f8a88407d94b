//! Credentials in Docker's format: `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`)
//! with `auths` entries holding base64 `user:password`, and credential helpers
//! (`credHelpers` per registry, `credsStore` for all) run as `docker-credential-NAME get`.
//! `kiln login`/`logout` edit the same file, keeping every field they do not own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::error::{Cause, RegistryError};
use crate::reference::DOCKER_HUB;

/// Docker keys Docker Hub's credentials by its old index URL.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in debug logs.
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// The docker config file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub path: PathBuf,
}

fn cred_err(what: String) -> impl Fn(Cause) -> RegistryError {
    move |source| RegistryError::Credentials {
        what: what.clone(),
        source,
    }
}

/// An `auth` entry that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("auth is not base64")]
struct NotBase64(#[source] base64::DecodeError);

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> DockerConfig {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/root/.docker"));
        DockerConfig {
            path: dir.join("config.json"),
        }
    }

    pub fn at(path: &Path) -> DockerConfig {
        DockerConfig {
            path: path.to_path_buf(),
        }
    }

    fn read(&self) -> Result<Map<String, Value>, RegistryError> {
        let err = cred_err(format!("read {}", self.path.display()));
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(err(e.into())),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&text).map_err(|e| err(e.into()))? {
            Value::Object(m) => Ok(m),
            _ => Err(err("not a JSON object".into())),
        }
    }

    fn write(&self, map: &Map<String, Value>) -> Result<(), RegistryError> {
        let err = cred_err(format!("write {}", self.path.display()));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| err(e.into()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(e.into()))?;
        // The file holds secrets: owner-only, as Docker writes it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(e.into()))?;
        }
        let text =
            serde_json::to_vec_pretty(&Value::Object(map.clone())).map_err(|e| err(e.into()))?;
        tmp.write_all(&text)
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| err(e.into()))?;
        tmp.persist(&self.path).map_err(|e| err(e.into()))?;
        Ok(())
    }

    /// The keys an `auths` entry for `registry` may have.
    fn keys(registry: &str) -> Vec<String> {
        if registry == DOCKER_HUB {
            vec![
                DOCKER_HUB_KEY.to_owned(),
                "docker.io".into(),
                "index.docker.io".into(),
                "registry-1.docker.io".into(),
            ]
        } else {
            vec![
                registry.to_owned(),
                format!("https://{registry}"),
                format!("http://{registry}"),
            ]
        }
    }

    /// The credential for `registry`, if any: its credential helper, else `auths`, else the
    /// global credential store.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let map = self.read()?;
        let keys = DockerConfig::keys(registry);
        if let Some(Value::Object(helpers)) = map.get("credHelpers") {
            for key in &keys {
                if let Some(Value::String(helper)) = helpers.get(key) {
                    return run_helper(helper, &keys[0]);
                }
            }
        }
        if let Some(Value::Object(auths)) = map.get("auths") {
            for key in &keys {
                if let Some(Value::Object(entry)) = auths.get(key)
                    && let Some(c) = parse_entry(entry, &self.path, key)?
                {
                    return Ok(Some(c));
                }
            }
        }
        if let Some(Value::String(store)) = map.get("credsStore") {
            return run_helper(store, &keys[0]);
        }
        Ok(None)
    }

    /// Saves a credential for `registry` in `auths` (base64 `user:password`, Docker's format).
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<(), RegistryError> {
        let mut map = self.read()?;
        let key = DockerConfig::keys(registry).remove(0);
        let auths = map
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auth = BASE64.encode(format!("{}:{}", cred.username, cred.password));
        if let Value::Object(auths) = auths {
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(auth));
            auths.insert(key, Value::Object(entry));
        }
        self.write(&map)
    }

    /// Removes every `auths` entry for `registry`; returns whether there was one.
    pub fn remove(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut map = self.read()?;
        let mut removed = false;
        if let Some(Value::Object(auths)) = map.get_mut("auths") {
            for key in DockerConfig::keys(registry) {
                removed |= auths.shift_remove(&key).is_some();
            }
        }
        if removed {
            self.write(&map)?;
        }
        Ok(removed)
    }
}

fn parse_entry(
    entry: &Map<String, Value>,
    path: &Path,
    key: &str,
) -> Result<Option<Credential>, RegistryError> {
    let err = cred_err(format!(
        "read the credential for {key} in {}",
        path.display()
    ));
    if let Some(Value::String(auth)) = entry.get("auth").filter(|a| a.as_str() != Some("")) {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|e| err(Box::new(NotBase64(e))))?;
        let decoded = String::from_utf8(decoded).map_err(|_| err("auth is not UTF-8".into()))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| err("auth is not user:password".into()))?;
        return Ok(Some(Credential {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    if let (Some(Value::String(u)), Some(Value::String(p))) =
        (entry.get("username"), entry.get("password"))
    {
        return Ok(Some(Credential {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    Ok(None)
}

/// Runs `docker-credential-NAME get` with the server URL on stdin, as Docker's helper
/// protocol says; "credentials not found" is no credential, not an error.
fn run_helper(name: &str, server: &str) -> Result<Option<Credential>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let err = cred_err(format!("run the credential helper {program}"));
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.into()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| err(e.into()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.into()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "{}: {}",
            out.status,
            format!("{stdout} {stderr}").trim()
        )
        .into()));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout).map_err(|e| err(e.into()))?;
    Ok(Some(Credential {
        username: a.username,
        password: a.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_get_remove_round_trip_keeps_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"other:1":{"auth":"eDp5"}},"psFormat":"x"}"#,
        )
        .unwrap();
        let cfg = DockerConfig::at(&path);
        let cred = Credential {
            username: "u".into(),
            password: "p:w".into(),
        };
        cfg.store("docker.io", &cred).unwrap();
        cfg.store("127.0.0.1:5000", &cred).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert!(text.contains("\"psFormat\""), "{text}");
        assert!(text.contains(&BASE64.encode("u:p:w")), "{text}");
        assert_eq!(cfg.get("docker.io").unwrap(), Some(cred.clone()));
        assert_eq!(cfg.get("127.0.0.1:5000").unwrap(), Some(cred));
        assert_eq!(
            cfg.get("other:1").unwrap().map(|c| c.username),
            Some("x".to_owned())
        );
        assert!(cfg.remove("127.0.0.1:5000").unwrap());
        assert_eq!(cfg.get("127.0.0.1:5000").unwrap(), None);
        assert!(!cfg.remove("127.0.0.1:5000").unwrap());
    }

    #[test]
    fn a_missing_helper_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore":"kiln-test-missing"}"#).unwrap();
        let e = DockerConfig::at(&path).get("ghcr.io").unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-kiln-test-missing"),
            "{e}"
        );
    }
}
