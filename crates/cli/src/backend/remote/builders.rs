//! Which workers a `--builder` value names, and in which order to try them.
//!
//! A value is a comma-separated list of addresses (`tcp://HOST:PORT`, `unix:///PATH`) or the
//! name of a builder in `~/.config/kiln/config.toml` (`$XDG_CONFIG_HOME/kiln/config.toml`):
//!
//! ```toml
//! [builders.ci]
//! addresses = ["tcp://w1.example:7000", "tcp://w2.example:7000"]
//! tls-dir = "/etc/kiln/client"
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kiln_llb::Digest;
use kiln_proto::tls::Address;

/// What `--builder` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderSpec {
    pub addresses: Vec<Address>,
    /// A named builder's `tls-dir`.
    pub tls_dir: Option<PathBuf>,
}

fn config_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("kiln").join("config.toml"))
}

/// Resolves a `--builder` value.
pub fn resolve(value: &str) -> anyhow::Result<BuilderSpec> {
    if value.contains("://") {
        let addresses = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Address>()
                    .map_err(|e| anyhow::anyhow!("invalid --builder address {s:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if addresses.is_empty() {
            anyhow::bail!("--builder names no address");
        }
        return Ok(BuilderSpec {
            addresses,
            tls_dir: None,
        });
    }
    let path = config_path().ok_or_else(|| {
        anyhow::anyhow!(
            "--builder {value:?} is not an address and there is no home directory for config.toml"
        )
    })?;
    from_config(&path, value)
}

fn from_config(path: &Path, name: &str) -> anyhow::Result<BuilderSpec> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "--builder {name:?} is not an address (tcp://HOST:PORT or unix:///PATH), and {} cannot be read",
            path.display()
        )
    })?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("{}: invalid TOML", path.display()))?;
    let entry = doc
        .get("builders")
        .and_then(|b| b.get(name))
        .ok_or_else(|| anyhow::anyhow!("{}: no [builders.{name}]", path.display()))?;
    let addresses = entry
        .get("addresses")
        .and_then(|a| a.as_array())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: builders.{name}.addresses must be a list of addresses",
                path.display()
            )
        })?
        .iter()
        .map(|a| {
            let s = a.as_str().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: builders.{name}.addresses must hold strings",
                    path.display()
                )
            })?;
            s.parse::<Address>()
                .map_err(|e| anyhow::anyhow!("{}: builders.{name}.addresses: {e}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if addresses.is_empty() {
        anyhow::bail!("{}: builders.{name}.addresses is empty", path.display());
    }
    let tls_dir = match entry.get("tls-dir") {
        None => None,
        Some(v) => Some(PathBuf::from(v.as_str().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: builders.{name}.tls-dir must be a string",
                path.display()
            )
        })?)),
    };
    Ok(BuilderSpec { addresses, tls_dir })
}

/// The addresses in rendezvous (highest random weight) order for `key`: each address scores
/// sha256(key, address) and the highest goes first. The same key always gets the same order,
/// and removing one worker moves only the keys that were on it.
pub fn rendezvous(addresses: &[Address], key: &[u8]) -> Vec<Address> {
    let mut scored: Vec<(Digest, Address)> = addresses
        .iter()
        .map(|a| {
            let mut bytes = key.to_vec();
            bytes.push(0);
            bytes.extend_from_slice(a.to_string().as_bytes());
            (Digest::of(&bytes), a.clone())
        })
        .collect();
    scored.sort_by(|a, b| b.0.as_bytes().cmp(a.0.as_bytes()));
    scored.into_iter().map(|(_, a)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<Address> {
        (0..n)
            .map(|i| format!("tcp://127.0.0.1:{}", 7000 + i).parse().unwrap())
            .collect()
    }

    #[test]
    fn rendezvous_is_stable_and_moves_only_the_lost_workers_keys() {
        let all = addrs(3);
        let mut moved = 0;
        for k in 0..200u32 {
            let key = k.to_le_bytes();
            let first = rendezvous(&all, &key);
            assert_eq!(first, rendezvous(&all, &key));
            let without: Vec<Address> = all.iter().filter(|a| **a != all[1]).cloned().collect();
            let second = rendezvous(&without, &key);
            if first[0] != all[1] {
                assert_eq!(
                    second[0], first[0],
                    "a key not on the lost worker stays put"
                );
            } else {
                moved += 1;
                assert_eq!(
                    second[0], first[1],
                    "a lost worker's key goes to its next choice"
                );
            }
        }
        assert!(
            moved > 30 && moved < 110,
            "about a third of the keys were on it: {moved}"
        );
    }

    #[test]
    fn named_builders_come_from_config_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[builders.ci]\naddresses = [\"tcp://127.0.0.1:7000\", \"unix:///run/k.sock\"]\ntls-dir = \"/etc/k\"\n",
        )
        .unwrap();
        let spec = from_config(&path, "ci").unwrap();
        assert_eq!(spec.addresses.len(), 2);
        assert_eq!(spec.tls_dir.as_deref(), Some(Path::new("/etc/k")));
        let err = from_config(&path, "nope").unwrap_err().to_string();
        assert!(err.contains("no [builders.nope]"), "{err}");
    }
}
