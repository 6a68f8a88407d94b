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

use crate::error::EngineError;
use crate::fileop::copy::expand_source;
use crate::value::{LocalDir, Value};

/// What the stat cache remembers of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatEntry {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    hash: [u8; 32],
}

/// Content hashes of a context's files, keyed by their path relative to the context directory.
#[derive(Debug, Default)]
struct StatCache {
    files: HashMap<Box<[u8]>, StatEntry>,
    dirty: bool,
}

/// The persisted stat cache: a flat binary file, because a no-op rebuild of a big context loads
/// it before anything else (the JSON it replaces took a fifth of a 20,000-file no-op build).
///
/// Layout, integers little-endian: `MAGIC`, the entry count (u64), then per entry the key length
/// (u32), the key, ino (u64), size (u64), mtime and ctime in nanoseconds (i128 each) and the
/// content hash (32 bytes); last, the blake3 hash of everything before it. A file that does not
/// check out is ignored as a whole (the context is then hashed from scratch): a damaged entry
/// must never vouch for content it did not see.
mod disk {
    use super::{StatCache, StatEntry};

    pub(super) const MAGIC: &[u8; 16] = b"kiln-statcache-1";
    const FIXED: usize = 8 + 8 + 16 + 16 + 32;

    pub(super) fn encode(cache: &StatCache) -> Vec<u8> {
        let keys: usize = cache.files.keys().map(|k| k.len()).sum();
        let mut out =
            Vec::with_capacity(MAGIC.len() + 8 + keys + cache.files.len() * (4 + FIXED) + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(cache.files.len() as u64).to_le_bytes());
        for (key, e) in &cache.files {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&e.ino.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.ctime_ns.to_le_bytes());
            out.extend_from_slice(&e.hash);
        }
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<StatCache> {
        let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if blake3::hash(body).as_bytes() != check {
            return None;
        }
        let mut r = Reader(body.strip_prefix(MAGIC.as_slice())?);
        let count = r.u64()?;
        // Each entry takes at least FIXED bytes: a count beyond that is damage, not a reason to
        // reserve memory.
        if count > (r.0.len() / FIXED) as u64 {
            return None;
        }
        let mut files = std::collections::HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let len = u32::from_le_bytes(r.take()?) as usize;
            let key: Box<[u8]> = r.bytes(len)?.into();
            let entry = StatEntry {
                ino: r.u64()?,
                size: r.u64()?,
                mtime_ns: i128::from_le_bytes(r.take()?),
                ctime_ns: i128::from_le_bytes(r.take()?),
                hash: r.take()?,
            };
            files.insert(key, entry);
        }
        r.0.is_empty().then_some(StatCache {
            files,
            dirty: false,
        })
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.bytes(N)?.try_into().ok()
        }
        fn u64(&mut self) -> Option<u64> {
            self.take().map(u64::from_le_bytes)
        }
    }
}

/// Process-wide stat caches, one per context directory, and where each is persisted.
type Caches = Mutex<HashMap<PathBuf, (Arc<Mutex<StatCache>>, Option<PathBuf>)>>;

fn caches() -> &'static Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    CACHES.get_or_init(Default::default)
}

/// Loads the persisted stat cache of `context` from `state_dir` (if any) for this process.
pub fn load_stat_cache(context: &Path, state_dir: Option<&Path>) {
    let stem = state_dir.map(|dir| {
        dir.join(
            blake3::hash(context.as_os_str().as_encoded_bytes())
                .to_hex()
                .as_str(),
        )
    });
    let file = stem.as_ref().map(|stem| stem.with_extension("bin"));
    if let Some(stem) = &stem {
        // The JSON stat cache of earlier versions is not read any more; do not leave megabytes
        // of it behind.
        let _ = std::fs::remove_file(stem.with_extension("json"));
    }
    let cache = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| disk::decode(&bytes))
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
        if std::fs::write(&tmp, disk::encode(&cache)).is_ok() {
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
/// `key` is the file's path relative to the context.
fn file_hash(
    cache: &Mutex<StatCache>,
    key: &[u8],
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
    if let Some(hit) = cache.lock().expect("stat cache lock").files.get(key)
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
    guard.files.insert(key.into(), StatEntry { hash, ..probe });
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
                    local.ignore.is_none() || {
                        let rel = e.path().strip_prefix(&local.path).unwrap_or(e.path());
                        !local.is_ignored(&rel.to_string_lossy())
                    }
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
                    .to_string_lossy();
                let rel = format!("{}/{}", m.rel, rel);
                entries.push((rel, entry.into_path()));
            }
        }
    }
    let _ = excludes; // excluded paths are in the op digest; including them in the key is harmless
    // Stat (and on a cold cache, read) the entries on several threads: each thread describes a
    // contiguous run of them into its own buffer, and the buffers are appended in order, so the
    // key is the same as from one thread.
    let threads = if entries.len() < PARALLEL_MIN_ENTRIES {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    };
    if threads == 1 {
        return describe_entries(local, &cache, &entries, out);
    }
    let per_thread = entries.len().div_ceil(threads);
    let parts: Vec<Result<Vec<u8>, EngineError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(per_thread)
            .map(|part| {
                let cache = &cache;
                scope.spawn(move || {
                    let mut buf = Vec::with_capacity(part.len() * 96);
                    describe_entries(local, cache, part, &mut buf).map(|()| buf)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(EngineError::Bug("a context hashing thread panicked".into()))
                })
            })
            .collect()
    });
    for part in parts {
        out.extend_from_slice(&part?);
    }
    Ok(())
}

/// Below this many selected paths the key is computed on the calling thread.
const PARALLEL_MIN_ENTRIES: usize = 512;
/// At most this many threads stat and hash one selection.
const MAX_THREADS: usize = 4;

/// Appends each entry's name, mode and (for files and followed links) size and content hash.
fn describe_entries(
    local: &LocalDir,
    cache: &Mutex<StatCache>,
    entries: &[(String, PathBuf)],
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    for (rel, path) in entries {
        let meta = std::fs::symlink_metadata(path).map_err(|source| EngineError::Io {
            what: format!("stat {rel} in the build context"),
            source,
        })?;
        let key = path
            .strip_prefix(&local.path)
            .unwrap_or(path)
            .as_os_str()
            .as_encoded_bytes();
        put(out, rel.as_bytes());
        out.extend_from_slice(&(meta.mode()).to_be_bytes());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).unwrap_or_default();
            put(out, target.as_os_str().as_encoded_bytes());
            // Top-level links are followed by the copy: their target's content matters too.
            if let Ok(target_meta) = std::fs::metadata(path)
                && target_meta.is_file()
            {
                let hash = file_hash(cache, key, path, &target_meta).map_err(|source| {
                    EngineError::Io {
                        what: format!("read {rel} in the build context"),
                        source,
                    }
                })?;
                out.extend_from_slice(&hash);
            }
        } else if meta.is_file() {
            out.extend_from_slice(&meta.size().to_be_bytes());
            let hash = file_hash(cache, key, path, &meta).map_err(|source| EngineError::Io {
                what: format!("read {rel} in the build context"),
                source,
            })?;
            out.extend_from_slice(&hash);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_all(ctx: &Path) -> (FileOp, [Digest; 1], [Value; 1]) {
        let local = Digest::of(ctx.as_os_str().as_encoded_bytes());
        let file = FileOp {
            base: kiln_llb::Input::new(Digest::of(b"base")),
            actions: vec![FileAction::Copy(kiln_llb::CopyAction::new(
                kiln_llb::Input::new(local),
                "/",
                "/src/",
            ))],
        };
        let inputs = [Value::Local(Arc::new(LocalDir {
            path: ctx.to_path_buf(),
            ignore: None,
        }))];
        (file, [local], inputs)
    }

    fn key_of(ctx: &Path) -> Vec<u8> {
        let (file, index, inputs) = copy_all(ctx);
        copy_content_key(&file, &index, &inputs)
            .expect("hash the context")
            .expect("the copy reads the context")
            .material
    }

    #[test]
    fn stat_cache_file_round_trips_and_rejects_damage() {
        let mut cache = StatCache::default();
        for i in 0..50u8 {
            cache.files.insert(
                format!("dir/file{i}").into_bytes().into(),
                StatEntry {
                    ino: i as u64,
                    size: 1000 + i as u64,
                    mtime_ns: -5 + i as i128,
                    ctime_ns: 1_700_000_000_000_000_000 + i as i128,
                    hash: [i; 32],
                },
            );
        }
        let bytes = disk::encode(&cache);
        assert_eq!(disk::decode(&bytes).expect("decodes").files, cache.files);
        for at in [0, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(disk::decode(&damaged).is_none(), "byte {at} flipped");
        }
        assert!(disk::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(disk::decode(b"{\"files\":{}}").is_none());
        assert!(disk::decode(&[]).is_none());
    }

    /// The key of a selection large enough to be described on several threads must be the
    /// entries in walk order, exactly as one thread writes them.
    #[test]
    fn parallel_key_is_the_ordered_description() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        let mut expected_files = Vec::new();
        for i in 0..(PARALLEL_MIN_ENTRIES + 100) {
            let dir = format!("d{}", i % 7);
            std::fs::create_dir_all(ctx.join(&dir)).unwrap();
            let rel = format!("{dir}/f{i:04}");
            let body = format!("file {i}\n").repeat(i % 13);
            std::fs::write(ctx.join(&rel), &body).unwrap();
            expected_files.push((rel, body));
        }
        expected_files.sort();
        load_stat_cache(&ctx, None);
        let key = key_of(&ctx);

        let mut expected = b"kiln-engine/copy-content/v1\0".to_vec();
        expected.extend_from_slice(&0u64.to_be_bytes());
        put(&mut expected, b"/");
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode();
        put(&mut expected, b"");
        expected.extend_from_slice(&mode(&ctx).to_be_bytes());
        let mut dirs_done = Vec::new();
        for (rel, body) in &expected_files {
            let dir = rel.split('/').next().unwrap().to_string();
            if !dirs_done.contains(&dir) {
                put(&mut expected, format!("/{dir}").as_bytes());
                expected.extend_from_slice(&mode(&ctx.join(&dir)).to_be_bytes());
                dirs_done.push(dir);
            }
            put(&mut expected, format!("/{rel}").as_bytes());
            expected.extend_from_slice(&mode(&ctx.join(rel)).to_be_bytes());
            expected.extend_from_slice(&(body.len() as u64).to_be_bytes());
            expected.extend_from_slice(blake3::hash(body.as_bytes()).as_bytes());
        }
        assert!(key == expected, "the key lists the context in walk order");
    }

    #[test]
    fn persisted_cache_survives_a_reload_and_an_edit_changes_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        let state = tmp.path().join("state");
        std::fs::create_dir_all(ctx.join("src")).unwrap();
        std::fs::write(ctx.join("src/a.txt"), "alpha").unwrap();
        std::fs::write(ctx.join("b.txt"), "beta").unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let stem = state.join(
            blake3::hash(ctx.as_os_str().as_encoded_bytes())
                .to_hex()
                .as_str(),
        );
        std::fs::write(stem.with_extension("json"), "{}").unwrap();

        load_stat_cache(&ctx, Some(&state));
        assert!(
            !stem.with_extension("json").exists(),
            "the old JSON cache is removed"
        );
        let first = key_of(&ctx);
        save_stat_caches();
        let saved = std::fs::read(stem.with_extension("bin")).expect("the cache is saved");
        assert_eq!(disk::decode(&saved).expect("it decodes").files.len(), 2);

        load_stat_cache(&ctx, Some(&state));
        assert_eq!(key_of(&ctx), first, "an unchanged context keeps its key");

        std::fs::write(ctx.join("src/a.txt"), "alphA").unwrap();
        let edited = key_of(&ctx);
        assert_ne!(edited, first, "an edit of the same size changes the key");
        save_stat_caches();
        load_stat_cache(&ctx, Some(&state));
        assert_eq!(key_of(&ctx), edited);
    }
}
