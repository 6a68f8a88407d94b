//! The client's side of context sync: walk the context (leaving out what `.dockerignore`
//! excludes), hash each file's content with sha256 behind a stat cache, and build the Merkle
//! tree the worker is asked about.
//!
//! The stat cache trusts a file's earlier digest only when its inode, size, mtime *and* ctime
//! are unchanged. Restoring an old mtime (`touch -r`, `cp -p`, an unpacking tool) still moves
//! ctime, which no user call can set back, so an edit is never missed however its mtime looks
//! (the failure of metadata-only detection in moby/buildkit#4817). A file changed within the
//! clock tick before the cache is saved is left out of it ("racily clean", as git says), so a
//! second edit in the same tick is not hidden either.
//!
//! (The engine's own stat cache hashes with blake3 for its COPY keys; the tree needs the
//! store's sha256, so the client keeps its own, in the same spirit.)

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kiln_frontend::dockerignore::PatternMatcher;
use kiln_llb::Digest;
use kiln_proto::tree::{Input, InputKind, Metadata, Tree};

/// What the stat cache remembers of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// What identifies a walked context without its tree: the root digest and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub root: Digest,
    pub files: u64,
    pub bytes: u64,
}

/// The tree of a walk and where each file content can be read.
#[derive(Debug)]
pub struct Full {
    pub tree: Tree,
    /// Each file content's first path, absolute.
    pub paths: HashMap<Digest, PathBuf>,
}

/// A walked context. When every path and stat is as the previous walk saw them (one
/// fingerprint over all of them), the root comes from the stat cache and the tree is built
/// only if a worker asks for it: a no-op rebuild costs the listing and nothing else.
#[derive(Debug)]
pub struct Walked {
    context: PathBuf,
    entries: Vec<Entry>,
    cache: Cache,
    cache_file: PathBuf,
    pub summary: Summary,
    full: std::sync::OnceLock<Full>,
    /// Things the tree cannot carry (sockets, fifos, devices), relative paths.
    pub skipped: Vec<String>,
    /// Files whose content was read (stat cache misses).
    pub hashed: std::sync::atomic::AtomicUsize,
}

impl Walked {
    /// The tree, built now if this walk took the fast path.
    pub fn full(&self) -> anyhow::Result<&Full> {
        if let Some(full) = self.full.get() {
            return Ok(full);
        }
        let (full, _) = complete(self)?;
        Ok(self.full.get_or_init(|| full))
    }
}

/// Walks `context`; `dockerfile` picks the `.dockerignore` (`<name>.dockerignore` first).
/// `cache_dir` holds the stat cache across builds.
pub fn walk(context: &Path, dockerfile: Option<&Path>, cache_dir: &Path) -> anyhow::Result<Walked> {
    let dockerfile = dockerfile
        .map(Path::to_path_buf)
        .unwrap_or_else(|| context.join("Dockerfile"));
    let ignore = match kiln_frontend::dockerignore::read_for_dockerfile(context, &dockerfile)
        .with_context(|| format!("failed to read the .dockerignore of {}", context.display()))?
    {
        Some(text) => Some(
            PatternMatcher::parse(&text)
                .map_err(|e| anyhow::anyhow!("invalid .dockerignore: {e}"))?,
        ),
        None => None,
    };
    let cache_file = cache_dir.join(format!(
        "{}.bin",
        hex::encode(&Digest::of(context.as_os_str().as_encoded_bytes()).as_bytes()[..12])
    ));
    let (header, cache) = load_cache(&cache_file);
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    list_parallel(context, ignore.as_ref(), &mut entries, &mut skipped)?;
    entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    let print = fingerprint(&entries);
    let mut walked = Walked {
        context: context.to_path_buf(),
        entries,
        cache,
        cache_file,
        summary: Summary {
            root: Digest::of(b""),
            files: 0,
            bytes: 0,
        },
        full: std::sync::OnceLock::new(),
        skipped,
        hashed: std::sync::atomic::AtomicUsize::new(0),
    };
    match header {
        Some(h) if h.fingerprint == print => walked.summary = h.summary,
        _ => {
            let (full, racy) = complete(&walked)?;
            walked.summary = Summary {
                root: full.tree.root(),
                files: full.tree.file_count(),
                bytes: full.tree.total_bytes(),
            };
            // With a racily clean file the stats cannot vouch for the content next time.
            let fingerprint = if racy { [0; 32] } else { *print.as_bytes() };
            let _ = save_cache(
                &walked.cache_file,
                &Header {
                    fingerprint: Digest::from_bytes(fingerprint),
                    summary: walked.summary,
                },
                &full,
                &walked.entries,
            );
            let _ = walked.full.set(full);
        }
    }
    Ok(walked)
}

/// One digest over every path with its metadata and stat, in path order.
fn fingerprint(entries: &[Entry]) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for e in entries {
        h.update((e.rel.len() as u32).to_le_bytes());
        h.update(e.rel.as_bytes());
        let m = &e.meta;
        h.update(m.mode.to_le_bytes());
        h.update(m.uid.to_le_bytes());
        h.update(m.gid.to_le_bytes());
        h.update(m.mtime_secs.to_le_bytes());
        h.update(m.mtime_nanos.to_le_bytes());
        match &e.kind {
            Found::Dir => h.update([1]),
            Found::Symlink(t) => {
                h.update([2]);
                h.update((t.len() as u32).to_le_bytes());
                h.update(t.as_bytes());
            }
            Found::File { stat } => {
                h.update([3]);
                for v in [
                    stat.ino,
                    stat.size,
                    stat.mtime_ns as u64,
                    stat.ctime_ns as u64,
                ] {
                    h.update(v.to_le_bytes());
                }
            }
        }
    }
    Digest::from_bytes(h.finalize().into())
}

/// Digests for every file (from the stat cache, or read now on a few threads) and the tree.
/// Also says whether a file changed too recently for its stat to be trusted next time.
fn complete(w: &Walked) -> anyhow::Result<(Full, bool)> {
    let (context, found, old) = (&w.context, &w.entries, &w.cache);
    let mut digests: Vec<Option<Digest>> = vec![None; found.len()];
    let mut todo = Vec::new();
    for (i, f) in found.iter().enumerate() {
        if let Found::File { stat, .. } = &f.kind {
            match old.get(f.rel.as_str()) {
                Some((s, d)) if s == stat => digests[i] = Some(*d),
                _ => todo.push(i),
            }
        }
    }
    w.hashed
        .fetch_add(todo.len(), std::sync::atomic::Ordering::Relaxed);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(todo.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<(usize, Digest)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (todo, next) = (&todo, &next);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = todo.get(k) else { break };
                        let path = context.join(&found[i].rel);
                        out.push((i, hash_file(&path)?));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a hashing thread panicked")))
            })
            .collect()
    });
    for r in results {
        for (i, d) in r? {
            digests[i] = Some(d);
        }
    }
    let mut inputs = Vec::with_capacity(found.len());
    let mut paths = HashMap::new();
    let racy_after = racy_threshold();
    let mut racy = false;
    for (f, digest) in found.iter().zip(digests) {
        let kind = match &f.kind {
            Found::Dir => InputKind::Dir,
            Found::Symlink(target) => InputKind::Symlink {
                target: target.clone(),
            },
            Found::File { stat } => {
                let digest = digest.ok_or_else(|| {
                    anyhow::anyhow!("this is a bug in kiln: {} was not hashed", f.rel)
                })?;
                paths.entry(digest).or_insert_with(|| context.join(&f.rel));
                racy |= stat.ctime_ns >= racy_after || stat.mtime_ns >= racy_after;
                InputKind::File {
                    size: stat.size,
                    digest,
                }
            }
        };
        inputs.push(Input {
            path: f.rel.clone(),
            meta: f.meta,
            kind,
        });
    }
    let tree = Tree::build(inputs).context("failed to build the context tree")?;
    Ok((Full { tree, paths }, racy))
}

/// Entries changed after this (ns since the epoch) are not cached: two edits within the file
/// system's timestamp granularity could otherwise leave equal stats for different content.
fn racy_threshold() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as i64 - 2_000_000_000
}

#[derive(Debug)]
enum Found {
    Dir,
    Symlink(String),
    File { stat: Stat },
}

#[derive(Debug)]
struct Entry {
    rel: String,
    meta: Metadata,
    kind: Found,
}

/// Lists the context on a few threads, one directory at a time from a shared queue (a big
/// context is mostly `fstatat` calls, which parallelize well).
fn list_parallel(
    root: &Path,
    ignore: Option<&PatternMatcher>,
    out: &mut Vec<Entry>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<()> {
    use std::sync::{Condvar, Mutex};
    struct Queue {
        dirs: Vec<String>,
        busy: usize,
        failed: bool,
    }
    let queue = Mutex::new(Queue {
        dirs: vec![String::new()],
        busy: 0,
        failed: false,
    });
    let wake = Condvar::new();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let results: Vec<anyhow::Result<(Vec<Entry>, Vec<String>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (queue, wake) = (&queue, &wake);
                scope.spawn(move || {
                    let mut found = Vec::new();
                    let mut skipped = Vec::new();
                    loop {
                        let dir = {
                            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                            loop {
                                if q.failed {
                                    return Ok((found, skipped));
                                }
                                if let Some(d) = q.dirs.pop() {
                                    q.busy += 1;
                                    break d;
                                }
                                if q.busy == 0 {
                                    return Ok((found, skipped));
                                }
                                q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        let listed = list(root, &dir, ignore, &mut found, &mut skipped);
                        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                        q.busy -= 1;
                        match listed {
                            Ok(subdirs) => q.dirs.extend(subdirs),
                            Err(e) => {
                                q.failed = true;
                                wake.notify_all();
                                return Err(e);
                            }
                        }
                        wake.notify_all();
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a walking thread panicked")))
            })
            .collect()
    });
    for r in results {
        let (found, skip) = r?;
        out.extend(found);
        skipped.extend(skip);
    }
    skipped.sort();
    Ok(())
}

/// Lists one directory into `out`; returns its subdirectories to list next.
fn list(
    root: &Path,
    rel_dir: &str,
    ignore: Option<&PatternMatcher>,
    out: &mut Vec<Entry>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let mut subdirs = Vec::new();
    let dir = if rel_dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel_dir)
    };
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("failed to read {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            anyhow::bail!(
                "{}: file names that are not UTF-8 cannot be sent to a remote builder yet",
                dir.join(&name).display()
            );
        };
        let rel = if rel_dir.is_empty() {
            name.to_string()
        } else {
            format!("{rel_dir}/{name}")
        };
        let path = root.join(&rel);
        // fstatat relative to the directory being read: no path walk per entry.
        let meta = entry
            .metadata()
            .with_context(|| format!("failed to stat {}", path.display()))?;
        let excluded = ignore.is_some_and(|m| m.is_excluded(&rel));
        let ft = meta.file_type();
        let m = Metadata {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_secs: meta.mtime(),
            mtime_nanos: meta.mtime_nsec() as u32,
        };
        if ft.is_dir() {
            if excluded && ignore.is_some_and(|m| m.can_skip_dir(&rel)) {
                continue;
            }
            if !excluded {
                out.push(Entry {
                    rel: rel.clone(),
                    meta: m,
                    kind: Found::Dir,
                });
            }
            subdirs.push(rel);
        } else if excluded {
            continue;
        } else if ft.is_file() {
            out.push(Entry {
                rel,
                meta: m,
                kind: Found::File {
                    stat: Stat::of(&meta),
                },
            });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("failed to read the link {}", path.display()))?;
            let target = target.to_str().ok_or_else(|| {
                anyhow::anyhow!("{}: a link target that is not UTF-8", path.display())
            })?;
            out.push(Entry {
                rel,
                meta: m,
                kind: Found::Symlink(target.to_string()),
            });
        } else {
            skipped.push(rel);
        }
    }
    Ok(subdirs)
}

fn hash_file(path: &Path) -> anyhow::Result<Digest> {
    use sha2::Digest as _;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest::from_bytes(h.finalize().into()))
}

/// The cache file: `MAGIC`, the fingerprint of the walk it describes (zero: none that can be
/// trusted), the root digest, file count and bytes, then per file the path length (u32), the
/// path, ino, size, mtime and ctime (u64/i64 each) and the 32-byte digest; last, the sha256 of
/// everything before. A file that does not check out is ignored whole. Files changed in the
/// last two seconds are left out ("racily clean").
const MAGIC: &[u8; 16] = b"kiln-ctxstat-v2\n";

type Cache = HashMap<String, (Stat, Digest)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fingerprint: Digest,
    summary: Summary,
}

fn load_cache(path: &Path) -> (Option<Header>, Cache) {
    let Ok(bytes) = std::fs::read(path) else {
        return (None, Cache::new());
    };
    match decode(&bytes) {
        Some((h, c)) => (Some(h), c),
        None => (None, Cache::new()),
    }
}

fn decode(bytes: &[u8]) -> Option<(Header, Cache)> {
    let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Digest::of(body).as_bytes() != check {
        return None;
    }
    let mut r = body.strip_prefix(MAGIC.as_slice())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = r.split_at_checked(n)?;
        r = rest;
        Some(head)
    };
    let digest = |b: &[u8]| -> Option<Digest> { Some(Digest::from_bytes(b.try_into().ok()?)) };
    let fingerprint = digest(take(32)?)?;
    let root = digest(take(32)?)?;
    let files = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let total = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let header = Header {
        fingerprint,
        summary: Summary {
            root,
            files,
            bytes: total,
        },
    };
    let mut cache = Cache::new();
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(len)?).ok()?.to_string();
        let mut u = || Some(u64::from_le_bytes(take(8)?.try_into().ok()?));
        let stat = Stat {
            ino: u()?,
            size: u()?,
            mtime_ns: u()? as i64,
            ctime_ns: u()? as i64,
        };
        let d = digest(take(32)?)?;
        cache.insert(name, (stat, d));
    }
    Some((header, cache))
}

/// Writes the cache for a full walk: every file's stat and digest, racy ones left out.
fn save_cache(path: &Path, header: &Header, full: &Full, entries: &[Entry]) -> std::io::Result<()> {
    let racy_after = racy_threshold();
    let mut cache = Cache::new();
    let by_path: HashMap<String, Digest> = full
        .tree
        .walk()
        .into_iter()
        .filter_map(|(p, e)| match e.kind {
            kiln_proto::tree::EntryKind::File { digest, .. } => Some((p, digest)),
            _ => None,
        })
        .collect();
    for e in entries {
        if let Found::File { stat } = &e.kind
            && stat.ctime_ns < racy_after
            && stat.mtime_ns < racy_after
            && let Some(d) = by_path.get(&e.rel)
        {
            cache.insert(e.rel.clone(), (*stat, *d));
        }
    }
    write_cache(path, header, &cache)
}

fn write_cache(path: &Path, header: &Header, cache: &Cache) -> std::io::Result<()> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(header.fingerprint.as_bytes());
    out.extend_from_slice(header.summary.root.as_bytes());
    out.extend_from_slice(&header.summary.files.to_le_bytes());
    out.extend_from_slice(&header.summary.bytes.to_le_bytes());
    for (name, (s, d)) in cache {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        for v in [s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(d.as_bytes());
    }
    let check = Digest::of(&out);
    out.extend_from_slice(check.as_bytes());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, &out)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_of(dir: &Path, cache: &Path) -> (Digest, usize) {
        let w = walk(dir, None, cache).expect("walk");
        // The lazily built tree agrees with the summary.
        assert_eq!(w.full().unwrap().tree.root(), w.summary.root);
        (
            w.summary.root,
            w.hashed.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    #[test]
    fn an_edit_with_its_mtime_and_size_restored_is_seen() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let file = ctx.path().join("a.txt");
        std::fs::write(&file, "hello").unwrap();
        // An old mtime, so the entry is not racily clean and gets cached.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let (first, hashed) = root_of(ctx.path(), cache.path());
        assert_eq!(hashed, 1);
        let (again, hashed) = root_of(ctx.path(), cache.path());
        assert_eq!(
            (again, hashed),
            (first, 0),
            "an unchanged file is not read again"
        );

        std::fs::write(&file, "jello").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (edited, hashed) = root_of(ctx.path(), cache.path());
        assert_eq!(
            hashed, 1,
            "the ctime change sends the file to be hashed again"
        );
        assert_ne!(
            edited, first,
            "same size, same mtime, new content: a new tree"
        );
    }

    #[test]
    fn dockerignore_leaves_paths_out() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        std::fs::create_dir(ctx.path().join("build")).unwrap();
        std::fs::write(ctx.path().join("build/out.o"), "x").unwrap();
        std::fs::write(ctx.path().join("main.c"), "int main;").unwrap();
        std::fs::write(ctx.path().join(".dockerignore"), "build\n").unwrap();
        let w = walk(ctx.path(), None, cache.path()).unwrap();
        let paths: Vec<String> = w
            .full()
            .unwrap()
            .tree
            .walk()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(paths, vec![".dockerignore", "main.c"]);
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let mut cache = Cache::new();
        cache.insert(
            "a".into(),
            (
                Stat {
                    ino: 1,
                    size: 2,
                    mtime_ns: 3,
                    ctime_ns: 4,
                },
                Digest::of(b"x"),
            ),
        );
        let header = Header {
            fingerprint: Digest::of(b"f"),
            summary: Summary {
                root: Digest::of(b"r"),
                files: 1,
                bytes: 2,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        write_cache(&path, &header, &cache).unwrap();
        assert_eq!(load_cache(&path), (Some(header), cache));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        assert!(decode(&bytes).is_none());
    }
}
