//! What went into each step's key the last time a Dockerfile was built, kept under the store
//! root for `kiln build --explain`: one JSON file per build definition (context, Dockerfile,
//! target) under `explain/`, and the context listings of COPY steps content-addressed under
//! `explain/files/` (a listing that did not change is written once). Writes are temp + rename;
//! a file that cannot be read is treated as absent (the next build writes a good one).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when the meaning of a record changes; older files are ignored.
const VERSION: u32 = 1;

/// The records of one build definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Records {
    pub version: u32,
    /// The build arguments given last time (names tell build arguments from other env).
    pub build_args: BTreeMap<String, String>,
    /// By step identity (see `step_identity`).
    pub steps: BTreeMap<String, StepRecord>,
}

/// What went into one step's key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// The progress name, for messages.
    pub name: String,
    /// The step's output key (`sha256:...`) when the build reached it.
    pub key: Option<String>,
    /// Its own key material, by name: `command`, `env NAME`, `image`, `copy 1`, `definition`
    /// (a hash of the whole op without its inputs, the catch-all).
    pub facts: BTreeMap<String, String>,
    /// What it builds on, by input position.
    pub inputs: Vec<InputRecord>,
    /// The context listing it copies (a name under `explain/files/`), when it copies from the
    /// context.
    pub listing: Option<String>,
}

/// One input of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputRecord {
    /// Another step of the build, by identity, with its output key.
    Step {
        id: String,
        name: String,
        key: Option<String>,
    },
    /// Something that is not a step of its own (the build context, scratch): its facts are
    /// part of the step's.
    Internal,
}

/// Where the records of one build definition live.
pub fn records_path(root: &Path, definition_id: &str) -> PathBuf {
    root.join("explain").join(format!("{definition_id}.json"))
}

fn listing_path(root: &Path, id: &str) -> PathBuf {
    root.join("explain")
        .join("files")
        .join(format!("{id}.json"))
}

/// The last build's records, or empty ones.
pub fn load(path: &Path) -> Records {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Records>(&bytes).ok())
        .filter(|r| r.version == VERSION)
        .unwrap_or_default()
}

pub fn save(path: &Path, records: &Records) -> std::io::Result<()> {
    let mut records = records.clone();
    records.version = VERSION;
    let bytes = serde_json::to_vec(&records).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Stores a listing under its own hash; returns that name.
pub fn save_listing(root: &Path, listing: &[(String, String)]) -> std::io::Result<String> {
    let bytes = serde_json::to_vec(listing).map_err(std::io::Error::other)?;
    let id = blake3::hash(&bytes).to_hex().to_string();
    let path = listing_path(root, &id);
    if !path.exists() {
        write_atomic(&path, &bytes)?;
    }
    Ok(id)
}

pub fn load_listing(root: &Path, id: &str) -> Option<Vec<(String, String)>> {
    let bytes = std::fs::read(listing_path(root, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = records_path(dir.path(), "abc");
        let mut records = Records::default();
        records.steps.insert(
            "#2 COPY".into(),
            StepRecord {
                name: "[2/2] COPY a /".into(),
                key: Some("sha256:00".into()),
                facts: BTreeMap::from([("copy 1".into(), "/a -> /".into())]),
                inputs: vec![InputRecord::Internal],
                listing: Some("x".into()),
            },
        );
        save(&path, &records).unwrap();
        assert_eq!(load(&path).steps, records.steps);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).steps.is_empty());
        let listing = vec![("a".to_string(), "file 0644 blake3:00".to_string())];
        let id = save_listing(dir.path(), &listing).unwrap();
        assert_eq!(save_listing(dir.path(), &listing).unwrap(), id);
        assert_eq!(load_listing(dir.path(), &id), Some(listing));
    }
}
