//! Content keys for what a COPY reads from the build context: exactly the selected files (path,
//! type, mode, size, content, link target), so an unrelated edit never misses the cache and a
//! rename always does. File contents are hashed with blake3 behind a stat cache (inode, size,
//! mtime, ctime), kept per context directory under the root, so unchanged files are not re-read.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use kiln_llb::{Digest, FileAction, FileOp};
use kiln_solver::ContentKey;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::fileop::copy::expand_source;
use crate::value::{LocalDir, Value};

/// What the stat cache remembers of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StatEntry {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    hash: [u8; 32],
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StatCache {
    files: HashMap<PathBuf, StatEntry>,
    #[serde(skip)]
    dirty: bool,
}

/// Process-wide stat caches, one per context directory, and where each is persisted.
type Caches = Mutex<HashMap<PathBuf, (Arc<Mutex<StatCache>>, Option<PathBuf>)>>;

fn caches() -> &'static Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    CACHES.get_or_init(Default::default)
}

/// Loads the persisted stat cache of `context` from `state_dir` (if any) for this process.
pub fn load_stat_cache(context: &Path, state_dir: Option<&Path>) {
    let file = state_dir.map(|dir| {
        dir.join(format!(
            "{}.json",
            blake3::hash(context.as_os_str().as_encoded_bytes()).to_hex()
        ))
    });
    let cache: StatCache = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    caches()
        .lock()
        .expect("stat cache lock")
        .insert(context.to_path_buf(), (Arc::new(Mutex::new(cache)), file));
}

/// Writes back every stat cache that learned something (temp file + rename).
pub fn save_stat_caches() {
    let all = caches().lock().expect("stat cache lock");
    for (cache, file) in all.values() {
        let mut cache = cache.lock().expect("stat cache lock");
        let Some(file) = file else { continue };
        if !cache.dirty {
            continue;
        }
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = file.with_extension("tmp");
        if let Ok(bytes) = serde_json::to_vec(&*cache)
            && std::fs::write(&tmp, bytes).is_ok()
        {
            let _ = std::fs::rename(&tmp, file);
            cache.dirty = false;
        }
    }
}

fn cache_for(context: &Path) -> Arc<Mutex<StatCache>> {
    let mut all = caches().lock().expect("stat cache lock");
    all.entry(context.to_path_buf())
        .or_insert_with(|| (Arc::new(Mutex::new(StatCache::default())), None))
        .0
        .clone()
}

/// The blake3 hash of a file's content, from the stat cache when its identity is unchanged.
fn file_hash(
    cache: &Mutex<StatCache>,
    path: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<[u8; 32]> {
    let probe = StatEntry {
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        hash: [0; 32],
    };
    if let Some(hit) = cache.lock().expect("stat cache lock").files.get(path)
        && (StatEntry {
            hash: [0; 32],
            ..*hit
        }) == probe
    {
        return Ok(hit.hash);
    }
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hash: [u8; 32] = hasher.finalize().into();
    let mut guard = cache.lock().expect("stat cache lock");
    guard
        .files
        .insert(path.to_path_buf(), StatEntry { hash, ..probe });
    guard.dirty = true;
    Ok(hash)
}

/// Content key material for the copies of `file` that read local sources. Inputs that only
/// such copies read are covered, so their per-build keys do not enter the content key.
pub fn copy_content_key(
    file: &FileOp,
    index: &[Digest],
    inputs: &[Value],
) -> Result<Option<ContentKey>, EngineError> {
    let mut material = b"kiln-engine/copy-content/v1\0".to_vec();
    let mut covered = Vec::new();
    for action in &file.actions {
        let FileAction::Copy(copy) = action else {
            continue;
        };
        let Some(i) = index.iter().position(|d| *d == copy.source.vertex) else {
            continue;
        };
        let Some(Value::Local(local)) = inputs.get(i) else {
            continue;
        };
        if !covered.contains(&i) {
            covered.push(i);
        }
        material.extend_from_slice(&(i as u64).to_be_bytes());
        put(&mut material, copy.src.as_bytes());
        hash_selection(local, &copy.src, &copy.exclude_patterns, &mut material)?;
    }
    if covered.is_empty() {
        return Ok(None);
    }
    Ok(Some(ContentKey {
        material,
        covered_inputs: covered,
    }))
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a canonical description of everything `pattern` selects in the context.
fn hash_selection(
    local: &LocalDir,
    pattern: &str,
    excludes: &[String],
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    let cache = cache_for(&local.path);
    let matches = match expand_source(&local.path, pattern) {
        Ok(m) => m,
        // A missing source fails the copy itself, with its own message; key it as "missing".
        Err(_) => {
            put(out, b"<missing>");
            return Ok(());
        }
    };
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for m in matches {
        if local.is_ignored(&m.rel) {
            continue;
        }
        let base = m.abs.clone();
        entries.push((m.rel.clone(), base.clone()));
        if base.is_dir() {
            for entry in walkdir::WalkDir::new(&base)
                .min_depth(1)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    let rel = e.path().strip_prefix(&local.path).unwrap_or(e.path());
                    !local.is_ignored(&rel.to_string_lossy())
                })
            {
                let entry = entry.map_err(|e| EngineError::Io {
                    what: "walk the build context".into(),
                    source: e.into(),
                })?;
                let rel = entry
                    .path()
                    .strip_prefix(&base)
                    .unwrap_or(entry.path())
                    .to_string_lossy()
                    .into_owned();
                entries.push((format!("{}/{}", m.rel, rel), entry.path().to_path_buf()));
            }
        }
    }
    let _ = excludes; // excluded paths are in the op digest; including them in the key is harmless
    for (rel, path) in entries {
        let meta = std::fs::symlink_metadata(&path).map_err(|source| EngineError::Io {
            what: format!("stat {rel} in the build context"),
            source,
        })?;
        put(out, rel.as_bytes());
        out.extend_from_slice(&(meta.mode()).to_be_bytes());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            put(out, target.as_os_str().as_encoded_bytes());
            // Top-level links are followed by the copy: their target's content matters too.
            if let Ok(target_meta) = std::fs::metadata(&path)
                && target_meta.is_file()
            {
                let hash =
                    file_hash(&cache, &path, &target_meta).map_err(|source| EngineError::Io {
                        what: format!("read {rel} in the build context"),
                        source,
                    })?;
                out.extend_from_slice(&hash);
            }
        } else if meta.is_file() {
            out.extend_from_slice(&meta.size().to_be_bytes());
            let hash = file_hash(&cache, &path, &meta).map_err(|source| EngineError::Io {
                what: format!("read {rel} in the build context"),
                source,
            })?;
            out.extend_from_slice(&hash);
        }
    }
    Ok(())
}
