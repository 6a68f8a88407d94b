//! Named volumes: `<root>/volumes/<name>/_data` plus `volume.json`; they outlive containers, are
//! filled from the image's content at their first mount (as Docker does) and removed only when
//! no container uses them.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::store::{self, MountConfig, now_rfc3339, read_json, write_json};

/// A volume's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: String,
    /// Made for one container (`-v /path` or an image VOLUME); `rm -v` removes it.
    pub anonymous: bool,
    /// Whether it was already filled from an image (only the first mount copies).
    pub initialized: bool,
}

pub(crate) fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Creates a volume, or returns the existing one of that name.
pub fn create(root: &Path, name: &str, anonymous: bool) -> Result<Volume, RuntimeError> {
    if !valid_name(name) {
        return Err(RuntimeError::Invalid(format!(
            "invalid volume name {name:?}: use 2 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit"
        )));
    }
    let dir = volumes_dir(root).join(name);
    if dir.join("volume.json").exists() {
        return inspect(root, name);
    }
    let data = dir.join("_data");
    fs::create_dir_all(&data).map_err(io_err(format!("create volume {name}")))?;
    let v = Volume {
        name: name.to_string(),
        driver: "local".into(),
        mountpoint: data,
        created_at: now_rfc3339(),
        anonymous,
        initialized: false,
    };
    write_json(&dir.join("volume.json"), &v)?;
    crate::events::record(
        root,
        crate::events::new(
            "volume",
            "create",
            name,
            [("driver".to_string(), "local".to_string())].into(),
        ),
    );
    Ok(v)
}

/// `volume create` without a name: a new volume named by 64 random hex digits, as Docker
/// names one.
pub fn create_unnamed(root: &Path) -> Result<Volume, RuntimeError> {
    create(root, &store::new_id()?, false)
}

pub fn inspect(root: &Path, name: &str) -> Result<Volume, RuntimeError> {
    let path = volumes_dir(root).join(name).join("volume.json");
    if !valid_name(name) || !path.exists() {
        return Err(RuntimeError::NoSuchVolume(name.to_string()));
    }
    read_json(&path)
}

pub fn list(root: &Path) -> Result<Vec<Volume>, RuntimeError> {
    let dir = volumes_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("list {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        if let Some(name) = e.file_name().to_str()
            && let Ok(v) = inspect(root, name)
        {
            out.push(v);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Names of the containers whose mounts name `volume`.
pub(crate) fn users(root: &Path, volume: &str) -> Result<Vec<String>, RuntimeError> {
    Ok(store::list(root)?
        .into_iter()
        .filter(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| matches!(m, MountConfig::Volume { name, .. } if name == volume))
        })
        .map(|c| c.config.name)
        .collect())
}

/// Removes a volume no container uses (`force` skips that check, as `docker volume rm -f`
/// does not; it is for `rm -v` of the last user).
pub fn remove(root: &Path, name: &str, force: bool) -> Result<(), RuntimeError> {
    inspect(root, name)?;
    if !force && let Some(c) = users(root, name)?.into_iter().next() {
        return Err(RuntimeError::VolumeInUse {
            name: name.to_string(),
            container: c,
        });
    }
    let dir = volumes_dir(root).join(name);
    // Rename first, so a half-deleted volume never looks like a valid one.
    let trash = volumes_dir(root).join(format!(".trash-{name}-{}", std::process::id()));
    fs::rename(&dir, &trash).map_err(io_err(format!("remove volume {name}")))?;
    fs::remove_dir_all(&trash).map_err(io_err(format!("remove volume {name}")))?;
    crate::events::record(
        root,
        crate::events::new(
            "volume",
            "destroy",
            name,
            [("driver".to_string(), "local".to_string())].into(),
        ),
    );
    Ok(())
}

/// Removes every volume no container uses (only anonymous ones unless `all`); returns the
/// names and the bytes their data took.
pub fn prune(root: &Path, all: bool) -> Result<(Vec<String>, u64), RuntimeError> {
    let mut removed = Vec::new();
    let mut reclaimed = 0;
    for v in list(root)? {
        if (all || v.anonymous) && users(root, &v.name)?.is_empty() {
            let size = crate::system::dir_size(&v.mountpoint);
            remove(root, &v.name, false)?;
            reclaimed += size;
            removed.push(v.name);
        }
    }
    Ok((removed, reclaimed))
}

/// Marks a volume as filled.
pub(crate) fn mark_initialized(root: &Path, mut v: Volume) -> Result<(), RuntimeError> {
    v.initialized = true;
    write_json(&volumes_dir(root).join(&v.name).join("volume.json"), &v)
}
