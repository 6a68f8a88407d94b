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

/// A walked context: its tree, where each file content can be read, and what was skipped.
#[derive(Debug)]
pub struct Walked {
    pub tree: Tree,
    /// Each file content's first path, absolute.
    pub paths: HashMap<Digest, PathBuf>,
    /// Things the tree cannot carry (sockets, fifos, devices), relative paths.
    pub skipped: Vec<String>,
    /// Files whose content was read this time (stat cache misses).
    pub hashed: usize,
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
    let old = load_cache(&cache_file);
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    list(context, "", ignore.as_ref(), &mut found, &mut skipped)?;

    // Hash what the cache cannot vouch for, on a few threads.
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
    let hashed = todo.len();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<(usize, Digest)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (found, todo, next) = (&found, &todo, &next);
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
    let mut new_cache = HashMap::new();
    let racy_after = racy_threshold();
    for (f, digest) in found.into_iter().zip(digests) {
        let kind = match f.kind {
            Found::Dir => InputKind::Dir,
            Found::Symlink(target) => InputKind::Symlink { target },
            Found::File { stat } => {
                let digest = digest.ok_or_else(|| {
                    anyhow::anyhow!("this is a bug in kiln: {} was not hashed", f.rel)
                })?;
                paths.entry(digest).or_insert_with(|| context.join(&f.rel));
                if stat.ctime_ns < racy_after && stat.mtime_ns < racy_after {
                    new_cache.insert(f.rel.clone(), (stat, digest));
                }
                InputKind::File {
                    size: stat.size,
                    digest,
                }
            }
        };
        inputs.push(Input {
            path: f.rel,
            meta: f.meta,
            kind,
        });
    }
    let tree = Tree::build(inputs).context("failed to build the context tree")?;
    if new_cache != old || hashed > 0 {
        // A cache that cannot be saved only costs time next build.
        let _ = save_cache(&cache_file, &new_cache);
    }
    Ok(Walked {
        tree,
        paths,
        skipped,
        hashed,
    })
}

/// Entries changed after this (ns since the epoch) are not cached: two edits within the file
/// system's timestamp granularity could otherwise leave equal stats for different content.
fn racy_threshold() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as i64 - 2_000_000_000
}

enum Found {
    Dir,
    Symlink(String),
    File { stat: Stat },
}

struct Entry {
    rel: String,
    meta: Metadata,
    kind: Found,
}

fn list(
    root: &Path,
    rel_dir: &str,
    ignore: Option<&PatternMatcher>,
    out: &mut Vec<Entry>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<()> {
    let dir = if rel_dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel_dir)
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("failed to read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("failed to read {}", dir.display()))?;
    names.sort();
    for name in names {
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
        let meta = std::fs::symlink_metadata(&path)
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
            list(root, &rel, ignore, out, skipped)?;
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
    Ok(())
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

/// The cache file: `MAGIC`, then per entry the path length (u32), the path, ino, size, mtime
/// and ctime (u64/i64 each), the 32-byte digest; last, the sha256 of everything before. A file
/// that does not check out is ignored whole.
const MAGIC: &[u8; 16] = b"kiln-ctxstat-v1\n";

type Cache = HashMap<String, (Stat, Digest)>;

fn load_cache(path: &Path) -> Cache {
    let Ok(bytes) = std::fs::read(path) else {
        return Cache::new();
    };
    decode(&bytes).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<Cache> {
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
        let digest = Digest::from_bytes(take(32)?.try_into().ok()?);
        cache.insert(name, (stat, digest));
    }
    Some(cache)
}

fn save_cache(path: &Path, cache: &Cache) -> std::io::Result<()> {
    let mut out = MAGIC.to_vec();
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
        (w.tree.root(), w.hashed)
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
        let paths: Vec<String> = w.tree.walk().into_iter().map(|(p, _)| p).collect();
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        save_cache(&path, &cache).unwrap();
        assert_eq!(load_cache(&path), cache);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        assert!(decode(&bytes).is_none());
    }
}
