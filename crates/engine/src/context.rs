//! Content keys for what a COPY reads from the build context: exactly the selected files (path,
//! type, mode, size, content, link target), so an unrelated edit never misses the cache and a
//! rename always does. File contents are hashed with blake3 behind a stat cache (inode, size,
//! mtime, ctime), kept per context directory under the root, so unchanged files are not re-read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, fstatat};

use kiln_llb::{Digest, FileAction, FileOp};
use kiln_solver::ContentKey;

use crate::error::EngineError;
use crate::fileop::copy::{CopyOptions, Ownership, SourceFilter, resolve_source};
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

/// What a key needs of one path's `lstat` (or, for a followed link, `stat`).
#[derive(Debug, Clone, Copy)]
struct Stat {
    mode: u32,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    fn of_meta(meta: &std::fs::Metadata) -> Stat {
        Stat {
            mode: meta.mode(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }

    fn of_file_stat(st: &FileStat) -> Stat {
        Stat {
            mode: st.st_mode,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
        }
    }

    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// The blake3 hash of a file's content, from the stat cache when its identity is unchanged.
/// `key` is the file's path relative to the context directory `context`.
fn file_hash(
    cache: &Mutex<StatCache>,
    context: &Path,
    key: &[u8],
    stat: &Stat,
) -> std::io::Result<[u8; 32]> {
    let probe = StatEntry {
        ino: stat.ino,
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        ctime_ns: stat.ctime_ns,
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
    let mut file = std::fs::File::open(context.join(OsStr::from_bytes(key)))?;
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
        hash_selection(local, copy, &mut material)?;
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

/// One path a selection covers.
struct Found {
    /// Its name in the key: the match's relative path, then the `/`-joined names below it.
    rel: String,
    /// Its path relative to the context directory: the stat cache's key, and what is opened
    /// (joined to the context) when the content must be read.
    key: Vec<u8>,
    stat: Stat,
}

/// Every path one copy from the context selects, as the copy resolves its sources (the
/// `.dockerignore` included), directories walked; `None` when a source is missing (the copy
/// itself fails then, with its own message).
fn select(
    local: &Arc<LocalDir>,
    copy: &kiln_llb::CopyAction,
) -> Result<Option<Vec<Found>>, EngineError> {
    let visible = local.clone();
    let filter = SourceFilter(Arc::new(move |rel: &str| visible.is_ignored(rel)));
    let opts = CopyOptions::from_action(copy, Ownership::Keep, Some(filter));
    let Ok(matches) = resolve_source(&local.path, &copy.src, &opts) else {
        return Ok(None);
    };
    let mut found: Vec<Found> = Vec::new();
    for m in matches {
        if local.is_ignored(&m.rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&m.abs).map_err(|source| EngineError::Io {
            what: format!("stat {} in the build context", m.rel),
            source,
        })?;
        let key = m
            .abs
            .strip_prefix(&local.path)
            .unwrap_or(&m.abs)
            .as_os_str()
            .as_encoded_bytes()
            .to_vec();
        found.push(Found {
            rel: m.rel.clone(),
            key: key.clone(),
            stat: Stat::of_meta(&meta),
        });
        // A directory given directly (or through a link) is walked; links below it are not
        // followed.
        if m.abs.is_dir() {
            let root = nix::fcntl::open(
                &m.abs,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(walk_error)?;
            walk(local, &root, &m.rel, &key, &mut found)?;
        }
    }
    Ok(Some(found))
}

/// What one copy from the context reads, path by path (for `kiln build --explain`): a regular
/// file as `file MODE blake3:HASH`, a link as `symlink -> TARGET`, a directory as `dir MODE`.
/// The hashes come from the stat cache the content key filled.
pub(crate) fn listing(
    local: &Arc<LocalDir>,
    copy: &kiln_llb::CopyAction,
) -> Result<Vec<(String, String)>, EngineError> {
    let Some(found) = select(local, copy)? else {
        return Ok(Vec::new());
    };
    let cache = cache_for(&local.path);
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let mode = f.stat.mode & 0o7777;
        let what = match f.stat.kind() {
            libc::S_IFREG => {
                let hash = file_hash(&cache, &local.path, &f.key, &f.stat).map_err(|source| {
                    EngineError::Io {
                        what: format!("read {} in the build context", f.rel),
                        source,
                    }
                })?;
                format!("file {mode:04o} blake3:{}", hex::encode(hash))
            }
            libc::S_IFLNK => {
                let target = std::fs::read_link(local.path.join(OsStr::from_bytes(&f.key)))
                    .unwrap_or_default();
                format!("symlink -> {}", target.display())
            }
            libc::S_IFDIR => format!("dir {mode:04o}"),
            other => format!("special {other:o} {mode:04o}"),
        };
        out.push((f.rel, what));
    }
    Ok(out)
}

/// Appends a canonical description of everything one copy selects in the context.
fn hash_selection(
    local: &Arc<LocalDir>,
    copy: &kiln_llb::CopyAction,
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    let cache = cache_for(&local.path);
    let Some(found) = select(local, copy)? else {
        put(out, b"<missing>");
        return Ok(());
    };
    // Excluded paths (`--exclude`) are in the op digest; keying them too is harmless.
    // Look up (and on a cold cache, read) the files on several threads: each thread describes a
    // contiguous run of them into its own buffer, and the buffers are appended in order, so the
    // key is the same as from one thread.
    let threads = if found.len() < PARALLEL_MIN_ENTRIES {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    };
    if threads == 1 {
        return describe(&local.path, &cache, &found, out);
    }
    let per_thread = found.len().div_ceil(threads);
    let parts: Vec<Result<Vec<u8>, EngineError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = found
            .chunks(per_thread)
            .map(|part| {
                let cache = &cache;
                scope.spawn(move || {
                    let mut buf = Vec::with_capacity(part.len() * 96);
                    describe(&local.path, cache, part, &mut buf).map(|()| buf)
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

fn walk_error(errno: nix::errno::Errno) -> EngineError {
    EngineError::Io {
        what: "walk the build context".into(),
        source: errno.into(),
    }
}

/// A directory to list: its path below the walk's root, its name in the key and its key.
struct DirJob {
    id: usize,
    below_root: Vec<u8>,
    rel: String,
    key: Vec<u8>,
}

/// A directory's entries in name order, each with the job id of its own listing if it is a
/// directory.
type Listing = Vec<(Found, Option<usize>)>;

/// What the threads of one walk share.
#[derive(Default)]
struct WalkState {
    jobs: Vec<DirJob>,
    /// Jobs taken and not finished: while any is, more jobs may come.
    busy: usize,
    next_id: usize,
    listings: HashMap<usize, Listing>,
    error: Option<EngineError>,
}

/// Appends what is below the open directory `root` (named `rel` in the key, `key` relative to
/// the context) in name order, depth first, leaving out `.dockerignore`d paths.
///
/// Directories are listed on several threads, each entry stat'ed relative to its directory's
/// descriptor (a no-op rebuild of a 20,000-file context is mostly these stats, and a full path
/// would be looked up component by component each time); the listings are then put together in
/// walk order, so the result does not depend on the threads.
fn walk(
    local: &LocalDir,
    root: &std::os::fd::OwnedFd,
    rel: &str,
    key: &[u8],
    out: &mut Vec<Found>,
) -> Result<(), EngineError> {
    let state = Mutex::new(WalkState {
        jobs: vec![DirJob {
            id: 0,
            below_root: b".".to_vec(),
            rel: rel.to_owned(),
            key: key.to_vec(),
        }],
        next_id: 1,
        ..WalkState::default()
    });
    let wake = std::sync::Condvar::new();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    let work = || walk_worker(local, root, &state, &wake);
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    let mut state = state.into_inner().expect("walk state lock");
    if let Some(e) = state.error.take() {
        return Err(e);
    }
    assemble(&mut state.listings, 0, out);
    Ok(())
}

/// Takes directories to list until none are left (or one failed).
fn walk_worker(
    local: &LocalDir,
    root: &std::os::fd::OwnedFd,
    state: &Mutex<WalkState>,
    wake: &std::sync::Condvar,
) {
    loop {
        let job = {
            let mut st = state.lock().expect("walk state lock");
            loop {
                if st.error.is_some() {
                    return;
                }
                if let Some(job) = st.jobs.pop() {
                    st.busy += 1;
                    break job;
                }
                if st.busy == 0 {
                    return;
                }
                st = wake.wait(st).expect("walk state lock");
            }
        };
        let listed = list_dir(local, root, &job);
        let mut st = state.lock().expect("walk state lock");
        st.busy -= 1;
        match listed {
            Ok(mut listing) => {
                for (found, sub) in listing.iter_mut().rev() {
                    if sub.is_some() {
                        let id = st.next_id;
                        st.next_id += 1;
                        *sub = Some(id);
                        let mut below_root = job.below_root.clone();
                        below_root.push(b'/');
                        below_root.extend_from_slice(
                            &found.key[found.key.len() - file_name_len(&found.key)..],
                        );
                        st.jobs.push(DirJob {
                            id,
                            below_root,
                            rel: found.rel.clone(),
                            key: found.key.clone(),
                        });
                    }
                }
                st.listings.insert(job.id, listing);
            }
            Err(e) => st.error = Some(e),
        }
        wake.notify_all();
    }
}

/// The length of the last `/`-separated component of `key`.
fn file_name_len(key: &[u8]) -> usize {
    key.iter()
        .rev()
        .position(|&b| b == b'/')
        .unwrap_or(key.len())
}

/// Lists one directory: its entries in name order, stat'ed, directories marked for listing.
fn list_dir(
    local: &LocalDir,
    root: &std::os::fd::OwnedFd,
    job: &DirJob,
) -> Result<Listing, EngineError> {
    let mut dir = Dir::openat(
        root,
        job.below_root.as_slice(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(walk_error)?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(walk_error)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    let mut listing = Vec::with_capacity(names.len());
    for name in names {
        let mut key = Vec::with_capacity(job.key.len() + 1 + name.len());
        if !job.key.is_empty() {
            key.extend_from_slice(&job.key);
            key.push(b'/');
        }
        key.extend_from_slice(&name);
        if local.ignore.is_some() && local.is_ignored(&String::from_utf8_lossy(&key)) {
            continue;
        }
        let rel = format!("{}/{}", job.rel, String::from_utf8_lossy(&name));
        let st = fstatat(&dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| {
            EngineError::Io {
                what: format!("stat {rel} in the build context"),
                source: e.into(),
            }
        })?;
        let stat = Stat::of_file_stat(&st);
        let sub = (stat.kind() == libc::S_IFDIR).then_some(0);
        listing.push((Found { rel, key, stat }, sub));
    }
    Ok(listing)
}

/// Appends listing `id` and, after each directory in it, that directory's own listing.
fn assemble(listings: &mut HashMap<usize, Listing>, id: usize, out: &mut Vec<Found>) {
    let Some(listing) = listings.remove(&id) else {
        return;
    };
    for (found, sub) in listing {
        out.push(found);
        if let Some(sub) = sub {
            assemble(listings, sub, out);
        }
    }
}

/// Below this many selected paths the key is computed on the calling thread.
const PARALLEL_MIN_ENTRIES: usize = 512;
/// At most this many threads look up and hash one selection.
const MAX_THREADS: usize = 4;

/// Appends each path's name, mode and (for files and followed links) size and content hash.
fn describe(
    context: &Path,
    cache: &Mutex<StatCache>,
    found: &[Found],
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    for f in found {
        put(out, f.rel.as_bytes());
        out.extend_from_slice(&f.stat.mode.to_be_bytes());
        let read_error = |source| EngineError::Io {
            what: format!("read {} in the build context", f.rel),
            source,
        };
        match f.stat.kind() {
            libc::S_IFLNK => {
                let path = context.join(OsStr::from_bytes(&f.key));
                let target = std::fs::read_link(&path).unwrap_or_default();
                put(out, target.as_os_str().as_encoded_bytes());
                // Top-level links are followed by the copy: their target's content matters too.
                if let Ok(target_meta) = std::fs::metadata(&path)
                    && target_meta.is_file()
                {
                    let hash = file_hash(cache, context, &f.key, &Stat::of_meta(&target_meta))
                        .map_err(read_error)?;
                    out.extend_from_slice(&hash);
                }
            }
            libc::S_IFREG => {
                out.extend_from_slice(&f.stat.size.to_be_bytes());
                let hash = file_hash(cache, context, &f.key, &f.stat).map_err(read_error)?;
                out.extend_from_slice(&hash);
            }
            _ => {}
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
        let inputs = [Value::Local(Arc::new(LocalDir::new(
            ctx.to_path_buf(),
            None,
        )))];
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

    /// The threaded walk must list exactly what a plain sorted depth-first walk lists, in the
    /// same order, however deep and wide the tree.
    #[test]
    fn walk_lists_like_a_sorted_depth_first_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        let mut n = 0u32;
        for a in 0..6 {
            for b in 0..(a * 3) {
                for c in 0..(b % 4) {
                    let dir = ctx.join(format!("a{a}/b{b:02}/c{c}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    for f in 0..(a + b + c) % 5 {
                        n += 1;
                        std::fs::write(dir.join(format!("f{f}")), n.to_string()).unwrap();
                    }
                }
                std::fs::create_dir_all(ctx.join(format!("a{a}/b{b:02}"))).unwrap();
                std::fs::write(ctx.join(format!("a{a}/b{b:02}/z")), "z").unwrap();
            }
        }
        std::fs::create_dir_all(ctx.join("empty")).unwrap();
        std::os::unix::fs::symlink("a1", ctx.join("link")).unwrap();
        let local = LocalDir::new(ctx.clone(), None);
        let root =
            nix::fcntl::open(&ctx, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let mut found = Vec::new();
        walk(&local, &root, "", b"", &mut found).unwrap();
        let listed: Vec<(String, u32)> =
            found.iter().map(|f| (f.rel.clone(), f.stat.mode)).collect();
        let expected: Vec<(String, u32)> = walkdir::WalkDir::new(&ctx)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(&ctx).unwrap().to_string_lossy();
                (format!("/{rel}"), e.metadata().unwrap().mode())
            })
            .collect();
        assert!(
            expected.len() > 150,
            "a big enough tree: {}",
            expected.len()
        );
        assert_eq!(listed, expected);
        assert!(found.iter().all(
            |f| ctx.join(OsStr::from_bytes(&f.key)) == ctx.join(f.rel.trim_start_matches('/'))
        ));
    }

    #[test]
    fn ignored_paths_do_not_count_and_link_targets_do() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        std::fs::create_dir_all(ctx.join("build/deep")).unwrap();
        std::fs::create_dir_all(ctx.join("src")).unwrap();
        std::fs::write(ctx.join("build/deep/out.o"), "object").unwrap();
        std::fs::write(ctx.join("src/main.c"), "int main;").unwrap();
        std::os::unix::fs::symlink("main.c", ctx.join("src/link")).unwrap();
        let (file, index, _) = copy_all(&ctx);
        let inputs = [Value::Local(Arc::new(LocalDir::new(
            ctx.clone(),
            Some(kiln_frontend::dockerignore::PatternMatcher::new(&["build"]).unwrap()),
        )))];
        let key = || {
            copy_content_key(&file, &index, &inputs)
                .unwrap()
                .unwrap()
                .material
        };
        load_stat_cache(&ctx, None);
        let first = key();
        assert!(
            !first.windows(5).any(|w| w == b"build"),
            "ignored paths are not listed"
        );
        std::fs::write(ctx.join("build/deep/out.o"), "object 2").unwrap();
        assert_eq!(key(), first, "an ignored file's edit keeps the key");
        std::fs::write(ctx.join("src/main.c"), "int main2;").unwrap();
        let edited = key();
        assert_ne!(edited, first);
        // A copy of the link alone still depends on what it points to.
        let (mut link_only, _, _) = copy_all(&ctx);
        if let FileAction::Copy(copy) = &mut link_only.actions[0] {
            copy.src = "/src/link".into();
        }
        let link_key = || {
            copy_content_key(&link_only, &index, &inputs)
                .unwrap()
                .unwrap()
                .material
        };
        let before = link_key();
        std::fs::write(ctx.join("src/main.c"), "int main3;").unwrap();
        assert_ne!(link_key(), before, "the link's target changed");
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
