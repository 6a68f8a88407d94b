//! COPY and ADD between two directory trees with BuildKit's semantics: wildcard sources, a
//! directory source copies its contents, the trailing-slash and existing-directory rules for the
//! destination, `--chown`/`--chmod`, `--parents`, `--exclude`, implicit parent directories.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use thiserror::Error;

use super::glob::{self, GlobError};
use kiln_image::rootfs::{clean_abs, resolve_in_root};
use kiln_llb::FileMode as Chmod;

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("{0} not found")]
    SourceNotFound(String),
    #[error("no source files were specified: {0} matched nothing")]
    NoMatch(String),
    #[error(transparent)]
    Glob(#[from] GlobError),
    #[error("failed to copy {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Who owns what a copy creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Keep the source's uid/gid (copies between stages).
    Keep,
    /// Every created entry gets these ids (`--chown`, and 0:0 for the build context).
    Set { uid: u32, gid: u32 },
}

/// A predicate over source-relative paths: true means the path is not part of the source
/// (the build context's `.dockerignore`).
#[derive(Clone)]
pub struct SourceFilter(pub std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for SourceFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceFilter")
    }
}

/// Everything a copy needs besides the two roots.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Source paths relative to the source root; may hold wildcards.
    pub sources: Vec<String>,
    /// Absolute destination inside the destination root; a trailing `/` means "into this dir".
    pub dest: String,
    pub ownership: Ownership,
    pub chmod: Option<Chmod>,
    pub allow_empty_wildcard: bool,
    /// `--parents`: keep each source's directories (after a `/./` pivot) under the destination.
    pub parents: bool,
    /// `--exclude` patterns, relative to the source root.
    pub exclude: Vec<String>,
    /// Files created get this mtime instead of the source's (SOURCE_DATE_EPOCH rewriting).
    pub mtime_override: Option<i64>,
    /// Paths of the source that do not exist for this copy (`.dockerignore`).
    pub filter: Option<SourceFilter>,
}

/// Statistics for progress lines and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// One resolved source: its path relative to the source root and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    pub rel: String,
    pub abs: PathBuf,
}

/// Expands one source pattern under `root`. Literal paths must exist; wildcards may match
/// nothing (the caller decides whether that is an error).
pub fn expand_source(root: &Path, pattern: &str) -> Result<Vec<SourceMatch>, CopyError> {
    let cleaned = clean_abs(pattern);
    if !glob::has_wildcard(&cleaned) {
        let literal = glob::unescape(&cleaned);
        let abs = resolve_in_root(root, &literal, true).map_err(io_err(root))?;
        if abs.symlink_metadata().is_err() {
            return Err(CopyError::SourceNotFound(literal));
        }
        return Ok(vec![SourceMatch {
            rel: literal.trim_start_matches('/').to_string(),
            abs,
        }]);
    }
    let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    let mut found = Vec::new();
    walk_pattern(root, root, String::new(), &parts, &mut found)?;
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    found.dedup_by(|a, b| a.rel == b.rel);
    Ok(found)
}

fn walk_pattern(
    root: &Path,
    dir: &Path,
    rel: String,
    parts: &[&str],
    out: &mut Vec<SourceMatch>,
) -> Result<(), CopyError> {
    let Some((first, rest)) = parts.split_first() else {
        out.push(SourceMatch {
            rel,
            abs: dir.to_path_buf(),
        });
        return Ok(());
    };
    let join = |name: &str| {
        if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        }
    };
    if *first == "**" {
        // Zero components, then one or more.
        walk_pattern(root, dir, rel.clone(), rest, out)?;
        for (name, path) in list_dir(dir) {
            if path.is_dir() {
                walk_pattern(root, &path, join(&name), parts, out)?;
            }
        }
        return Ok(());
    }
    if !glob::has_wildcard(first) {
        let name = glob::unescape(first);
        let path = resolve_in_root(root, &join(&name), true).map_err(io_err(dir))?;
        if path.symlink_metadata().is_ok() {
            walk_pattern(root, &path, join(&name), rest, out)?;
        }
        return Ok(());
    }
    for (name, _) in list_dir(dir) {
        if glob::match_component(first, &name)? {
            let path = resolve_in_root(root, &join(&name), true).map_err(io_err(dir))?;
            walk_pattern(root, &path, join(&name), rest, out)?;
        }
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

/// Copies `opts.sources` from `src_root` into `dest_root`.
pub fn copy(src_root: &Path, dest_root: &Path, opts: &CopyOptions) -> Result<CopyStats, CopyError> {
    let mut matches = Vec::new();
    for pattern in &opts.sources {
        let found = expand_source(src_root, pattern)?;
        if found.is_empty() && !opts.allow_empty_wildcard && opts.sources.len() == 1 {
            return Err(CopyError::NoMatch(pattern.clone()));
        }
        for m in found {
            matches.push((pattern.clone(), m));
        }
    }
    if matches.is_empty() && !opts.allow_empty_wildcard {
        return Err(CopyError::NoMatch(opts.sources.join(" ")));
    }
    let excludes = opts
        .exclude
        .iter()
        .map(|p| clean_abs(p).trim_start_matches('/').to_string())
        .collect::<Vec<_>>();
    let dest_wants_dir = opts.dest.ends_with('/') || matches.len() > 1;
    let dest_clean = clean_abs(&opts.dest);
    let mut ctx = Ctx {
        src_root,
        opts,
        excludes: &excludes,
        stats: CopyStats::default(),
        hardlinks: HashMap::new(),
    };
    for (pattern, m) in &matches {
        if ctx.excluded(&m.rel)? {
            continue;
        }
        let meta = m.abs.metadata().map_err(io_err(&m.abs))?;
        let mut dest = dest_clean.clone();
        if opts.parents {
            let kept = parents_part(pattern, &m.rel);
            dest = clean_abs(&format!("{dest}/{kept}"));
            if !meta.is_dir() {
                // --parents keeps the file's own directories; its name is appended below.
                dest = clean_abs(&format!("{dest}/.."));
            }
        }
        let dest_abs = resolve_in_root(dest_root, &dest, true).map_err(io_err(dest_root))?;
        if meta.is_dir() {
            ctx.ensure_dir(dest_root, &dest_abs)?;
            ctx.copy_dir_contents(&m.abs, &m.rel, &dest_abs)?;
        } else {
            let into_dir = dest_wants_dir || opts.parents || dest_abs.is_dir();
            let target = if into_dir {
                ctx.ensure_dir(dest_root, &dest_abs)?;
                let name = Path::new(&m.rel)
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                dest_abs.join(name)
            } else {
                if let Some(parent) = dest_abs.parent() {
                    ctx.ensure_dir(dest_root, parent)?;
                }
                dest_abs.clone()
            };
            ctx.copy_entry(&m.abs, &target, true)?;
        }
    }
    Ok(ctx.stats)
}

/// For `--parents`: the part of a matched path kept under the destination. With a `/./` pivot
/// in the pattern only what follows it is kept; otherwise the whole relative path.
fn parents_part(pattern: &str, rel: &str) -> String {
    match pattern
        .find("/./")
        .or(pattern.starts_with("./").then_some(0))
    {
        Some(idx) => {
            let before = clean_abs(&pattern[..idx]);
            let depth = before.split('/').filter(|s| !s.is_empty()).count();
            rel.split('/').skip(depth).collect::<Vec<_>>().join("/")
        }
        None => rel.to_string(),
    }
}

struct Ctx<'a> {
    src_root: &'a Path,
    opts: &'a CopyOptions,
    excludes: &'a [String],
    stats: CopyStats,
    /// (dev, ino) of a source file already copied → its copy, to keep hard links linked.
    hardlinks: HashMap<(u64, u64), PathBuf>,
}

impl Ctx<'_> {
    fn excluded(&self, rel: &str) -> Result<bool, CopyError> {
        if let Some(filter) = &self.opts.filter
            && (filter.0)(rel)
        {
            return Ok(true);
        }
        for pattern in self.excludes {
            if glob::match_path(pattern, rel)? {
                return Ok(true);
            }
            // A pattern naming a directory excludes what is below it.
            let mut prefix = String::new();
            for part in rel.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if prefix != rel && glob::match_path(pattern, &prefix)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn owner_of(&self, meta: &fs::Metadata) -> (u32, u32) {
        match self.opts.ownership {
            Ownership::Keep => (meta.uid(), meta.gid()),
            Ownership::Set { uid, gid } => (uid, gid),
        }
    }

    /// Creates `dir` and its missing parents (never following links out of `root`). New
    /// directories get the copy's owner and, as BuildKit does, the `--chmod` mode if given.
    fn ensure_dir(&mut self, root: &Path, dir: &Path) -> Result<(), CopyError> {
        if dir.is_dir() {
            return Ok(());
        }
        let rel = dir.strip_prefix(root).unwrap_or(dir);
        let mut current = root.to_path_buf();
        for part in rel.components() {
            current.push(part);
            match current.symlink_metadata() {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => {
                    let target = resolve_in_root(
                        root,
                        &format!(
                            "/{}",
                            current.strip_prefix(root).unwrap_or(&current).display()
                        ),
                        true,
                    )
                    .map_err(io_err(&current))?;
                    if target.is_dir() {
                        current = target;
                        continue;
                    }
                    return Err(CopyError::Io {
                        path: current.display().to_string(),
                        source: io::Error::from(io::ErrorKind::NotADirectory),
                    });
                }
                Ok(_) => {
                    return Err(CopyError::Io {
                        path: current.display().to_string(),
                        source: io::Error::from(io::ErrorKind::NotADirectory),
                    });
                }
                Err(_) => {
                    fs::create_dir(&current).map_err(io_err(&current))?;
                    let mode = match &self.opts.chmod {
                        Some(chmod) => chmod.apply(0o755, true),
                        None => 0o755,
                    };
                    fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&current))?;
                    let (uid, gid) = match self.opts.ownership {
                        Ownership::Set { uid, gid } => (uid, gid),
                        Ownership::Keep => (0, 0),
                    };
                    lchown(&current, Some(uid), Some(gid)).map_err(io_err(&current))?;
                    self.stats.dirs += 1;
                }
            }
        }
        Ok(())
    }

    fn copy_dir_contents(&mut self, src: &Path, rel: &str, dest: &Path) -> Result<(), CopyError> {
        for (name, path) in list_dir(src) {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if self.excluded(&child_rel)? {
                continue;
            }
            let target = dest.join(&name);
            let meta = path.symlink_metadata().map_err(io_err(&path))?;
            if meta.is_dir() {
                let existed = target
                    .symlink_metadata()
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !existed {
                    let _ = fs::remove_file(&target);
                    fs::create_dir(&target).map_err(io_err(&target))?;
                    self.stats.dirs += 1;
                }
                self.copy_dir_contents(&path, &child_rel, &target)?;
                if !existed {
                    self.apply_meta(&meta, &target, true)?;
                }
            } else {
                self.copy_entry(&path, &target, false)?;
            }
        }
        let _ = self.src_root;
        Ok(())
    }

    /// Copies one non-directory entry (or a top-level directory source's metadata).
    /// `follow` makes a symlink source copy what it points to (top-level sources).
    fn copy_entry(&mut self, src: &Path, dest: &Path, follow: bool) -> Result<(), CopyError> {
        let meta = if follow {
            src.metadata()
        } else {
            src.symlink_metadata()
        }
        .map_err(io_err(src))?;
        if let Ok(existing) = dest.symlink_metadata() {
            if existing.is_dir() && !meta.is_dir() {
                return Err(CopyError::Io {
                    path: dest.display().to_string(),
                    source: io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "cannot overwrite a directory with a non-directory",
                    ),
                });
            }
            if !existing.is_dir() {
                fs::remove_file(dest).map_err(io_err(dest))?;
            }
        }
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(io_err(src))?;
            symlink(&target, dest).map_err(io_err(dest))?;
        } else if ft.is_dir() {
            fs::create_dir_all(dest).map_err(io_err(dest))?;
            self.copy_dir_contents(src, "", dest)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1
                && let Some(first) = self.hardlinks.get(&key)
                && fs::hard_link(first, dest).is_ok()
            {
                return Ok(());
            }
            let bytes = fs::copy(src, dest).map_err(io_err(dest))?;
            self.stats.bytes += bytes;
            if meta.nlink() > 1 {
                self.hardlinks.insert(key, dest.to_path_buf());
            }
        } else if ft.is_socket() {
            // A socket cannot be carried in an image; BuildKit turns it into an empty file.
            fs::File::create(dest).map_err(io_err(dest))?;
        } else {
            // fifo, char or block device: recreate the node.
            nix::sys::stat::mknod(
                dest,
                nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT),
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| CopyError::Io {
                path: dest.display().to_string(),
                source: io::Error::from(e),
            })?;
        }
        self.stats.files += 1;
        self.apply_meta(&meta, dest, ft.is_dir())
    }

    fn apply_meta(
        &mut self,
        meta: &fs::Metadata,
        dest: &Path,
        is_dir: bool,
    ) -> Result<(), CopyError> {
        let (uid, gid) = self.owner_of(meta);
        lchown(dest, Some(uid), Some(gid)).map_err(io_err(dest))?;
        if !meta.file_type().is_symlink() {
            let mode = match &self.opts.chmod {
                Some(chmod) => chmod.apply(meta.mode() & 0o7777, is_dir),
                None => meta.mode() & 0o7777,
            };
            // chown clears setuid bits, so the mode is set after it.
            fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_err(dest))?;
        }
        let mtime = match self.opts.mtime_override {
            Some(secs) => FileTime::from_unix_time(secs, 0),
            None => FileTime::from_last_modification_time(meta),
        };
        filetime::set_symlink_file_times(dest, mtime, mtime).map_err(io_err(dest))?;
        Ok(())
    }
}
