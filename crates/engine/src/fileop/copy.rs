//! COPY and ADD between two directory trees with BuildKit's semantics (its copy backend and
//! fsutil's `copy` package, which BuildKit 0.24 runs): each source pattern is resolved to
//! matches, and each match is copied on its own onto the destination, so the trailing-slash,
//! existing-directory and "last match wins" rules fall out of one per-match routine. Directory
//! metadata follows the same rules: a directory created for the destination is 0755 (or the
//! octal `--chmod`) and takes the source's mtime; a copied subdirectory, new or existing, takes
//! the source's owner, mode and mtime. Include patterns (`--parents`) create parent directories
//! only when something below them is copied; exclude patterns are relative to each match.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use thiserror::Error;

use super::glob::{self, GlobError};
use kiln_frontend::dockerignore::{ParentMatches, PatternMatcher};
use kiln_image::rootfs::{clean_abs, resolve_in_root};
use kiln_llb::{CopyAction, FileMode as Chmod};

#[derive(Debug, Error)]
pub enum CopyError {
    #[error("{0} not found")]
    SourceNotFound(String),
    #[error("no source files were specified: {0} matched nothing")]
    NoMatch(String),
    #[error(transparent)]
    Glob(#[from] GlobError),
    #[error("invalid {what} pattern {pattern:?}: {reason}")]
    Pattern {
        what: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("cannot copy to non-directory: {0}")]
    NotADirectory(String),
    #[error("cannot replace to directory {0} with file")]
    ReplaceDirectory(String),
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
    /// Source paths relative to the source root; may hold wildcards. Each is copied as its
    /// own BuildKit copy action would be.
    pub sources: Vec<String>,
    /// Absolute destination inside the destination root; a trailing `/` means "into this dir".
    pub dest: String,
    pub ownership: Ownership,
    pub chmod: Option<Chmod>,
    /// Follow a symlink named by the source itself.
    pub follow_symlinks: bool,
    /// A directory source copies its contents (always, for Dockerfiles).
    pub dir_contents_only: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    /// Copy only what these patterns match below each source (`--parents`), creating the
    /// directories above a match as copies of the source's.
    pub include: Vec<String>,
    /// `--exclude` patterns, relative to each matched source.
    pub exclude: Vec<String>,
    /// Files created get this mtime instead of the source's (SOURCE_DATE_EPOCH rewriting).
    pub mtime_override: Option<i64>,
    /// Paths of the source that do not exist for this copy (`.dockerignore`).
    pub filter: Option<SourceFilter>,
    /// Replace a destination entry of another type instead of failing (merges).
    pub always_replace: bool,
}

impl CopyOptions {
    /// Dockerfile COPY defaults: wildcards, directory contents, symlinked sources followed.
    pub fn new(sources: Vec<String>, dest: impl Into<String>, ownership: Ownership) -> Self {
        CopyOptions {
            sources,
            dest: dest.into(),
            ownership,
            chmod: None,
            follow_symlinks: true,
            dir_contents_only: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            include: Vec::new(),
            exclude: Vec::new(),
            mtime_override: None,
            filter: None,
            always_replace: false,
        }
    }

    /// The options of one copy action of a file op.
    pub fn from_action(
        action: &CopyAction,
        ownership: Ownership,
        filter: Option<SourceFilter>,
    ) -> Self {
        CopyOptions {
            chmod: action.mode.clone(),
            follow_symlinks: action.follow_symlinks,
            dir_contents_only: action.dir_contents_only,
            allow_wildcard: action.allow_wildcard,
            allow_empty_wildcard: action.allow_empty_wildcard,
            include: action.include_patterns.clone(),
            exclude: action.exclude_patterns.clone(),
            mtime_override: action.timestamp,
            filter,
            ..CopyOptions::new(vec![action.src.clone()], action.dest.clone(), ownership)
        }
    }

    fn hidden(&self, rel: &str) -> bool {
        self.filter.as_ref().is_some_and(|f| (f.0)(rel))
    }
}

/// Statistics for progress lines and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// One resolved source: its path relative to the source root and on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    pub rel: String,
    pub abs: PathBuf,
}

/// Resolves one source pattern under `root` as BuildKit does: a path without wildcards is
/// taken as it is (and must exist); otherwise the part before the first wildcard component
/// is resolved and the rest is matched, as one Go `filepath.Match` pattern, against the paths
/// below it (so `*` and `**` alike match within one component, and a matched directory is
/// not searched further). Matches come in lexical walk order.
pub fn resolve_source(
    root: &Path,
    pattern: &str,
    opts: &CopyOptions,
) -> Result<Vec<SourceMatch>, CopyError> {
    let cleaned = clean_abs(pattern);
    let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    let first_wild = if opts.allow_wildcard {
        parts.iter().position(|p| glob::has_wildcard(p))
    } else {
        None
    };
    let Some(split) = first_wild else {
        let rel = parts.join("/");
        let abs = source_path(root, &rel, opts.follow_symlinks)?;
        if abs.symlink_metadata().is_err() || (!rel.is_empty() && opts.hidden(&rel)) {
            return Err(CopyError::SourceNotFound(cleaned));
        }
        return Ok(vec![SourceMatch { rel, abs }]);
    };
    let base_rel = parts[..split].join("/");
    let rest = parts[split..].join("/");
    let base = source_path(root, &base_rel, true)?;
    if !base.is_dir() {
        return if base.symlink_metadata().is_ok() {
            Ok(Vec::new())
        } else {
            Err(CopyError::SourceNotFound(format!("/{base_rel}")))
        };
    }
    let depth = parts.len() - split;
    let mut found = Vec::new();
    walk_matches(root, &base, &base_rel, "", &rest, depth, opts, &mut found)?;
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
fn walk_matches(
    root: &Path,
    dir: &Path,
    base_rel: &str,
    rel: &str,
    pattern: &str,
    depth: usize,
    opts: &CopyOptions,
    out: &mut Vec<SourceMatch>,
) -> Result<(), CopyError> {
    for (name, path) in list_dir(dir) {
        let below = join_rel(rel, &name);
        let full = join_rel(base_rel, &below);
        if opts.hidden(&full) {
            continue;
        }
        if glob::match_component(pattern, &below)? {
            let abs = source_path(root, &full, opts.follow_symlinks)?;
            out.push(SourceMatch { rel: full, abs });
            continue;
        }
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        if is_dir && below.split('/').count() < depth {
            walk_matches(root, &path, base_rel, &below, pattern, depth, opts, out)?;
        }
    }
    Ok(())
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// A source path on the host: every symlink resolved inside the root, the last one only when
/// `follow` is set.
fn source_path(root: &Path, rel: &str, follow: bool) -> Result<PathBuf, CopyError> {
    resolve_in_root(root, &format!("/{rel}"), follow).map_err(io_err(root))
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
    let mut copier = Copier::new(dest_root, opts)?;
    for pattern in &opts.sources {
        let found = resolve_source(src_root, pattern, opts)?;
        if found.is_empty() && !opts.allow_empty_wildcard {
            return Err(CopyError::NoMatch(pattern.clone()));
        }
        for m in &found {
            copier.copy_match(m)?;
        }
    }
    Ok(copier.stats)
}

/// Copies the matched sources of one copy action, one at a time.
pub struct Copier<'a> {
    dest_root: &'a Path,
    opts: &'a CopyOptions,
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    pub stats: CopyStats,
    /// (dev, ino) of a source file already copied → its copy, to keep hard links linked.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// Directories above the current entry not created yet (include patterns): source, dest,
    /// and whether they exist at the destination already.
    pending: Vec<(PathBuf, PathBuf, bool)>,
}

fn matcher(patterns: &[String], what: &'static str) -> Result<Option<PatternMatcher>, CopyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    PatternMatcher::new(patterns)
        .map(Some)
        .map_err(|e| CopyError::Pattern {
            what,
            pattern: patterns.join(" "),
            reason: e.to_string(),
        })
}

impl<'a> Copier<'a> {
    pub fn new(dest_root: &'a Path, opts: &'a CopyOptions) -> Result<Self, CopyError> {
        Ok(Copier {
            dest_root,
            opts,
            include: matcher(&opts.include, "include")?,
            exclude: matcher(&opts.exclude, "exclude")?,
            stats: CopyStats::default(),
            hardlinks: HashMap::new(),
            pending: Vec::new(),
        })
    }

    /// Copies one matched source onto `opts.dest`.
    pub fn copy_match(&mut self, m: &SourceMatch) -> Result<(), CopyError> {
        let dest = clean_dest(&self.opts.dest);
        // The directory that must exist first: the destination itself when it names a
        // directory (`/app/`, `/app/.`), else its parent.
        let ensure = if dest.ends_with('/') || dest.ends_with("/.") || dest == "/" {
            dest.clone()
        } else {
            parent_of(&dest)
        };
        let ensure_abs = self.resolve_dest(&ensure)?;
        self.mkdir_all(&ensure_abs)?;
        let mut target = self.resolve_dest(&clean_abs(&dest))?;

        let src_meta = m
            .abs
            .symlink_metadata()
            .map_err(|_| CopyError::SourceNotFound(format!("/{}", m.rel)))?;
        let dest_meta = fs::metadata(&target).ok();
        let src_is_dir = src_meta.is_dir();
        if let Some(d) = &dest_meta
            && ((!self.opts.dir_contents_only && src_is_dir) || (!src_is_dir && d.is_dir()))
        {
            let base = m.rel.rsplit('/').next().unwrap_or_default();
            target = target.join(base);
        }
        let parent = if (self.opts.dir_contents_only && src_is_dir && dest_meta.is_none())
            || target == self.dest_root
        {
            target.clone()
        } else {
            target.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        self.mkdir_all(&parent)?;
        self.copy_entry(&m.abs, &m.rel, "", &target, false, None, None)?;
        Ok(())
    }

    fn resolve_dest(&self, path: &str) -> Result<PathBuf, CopyError> {
        resolve_in_root(self.dest_root, path, true).map_err(io_err(self.dest_root))
    }

    /// The destination path as users see it, for error messages.
    fn shown(&self, path: &Path) -> String {
        format!(
            "/{}",
            path.strip_prefix(self.dest_root)
                .unwrap_or(path)
                .display()
                .to_string()
                .trim_start_matches('/')
        )
    }

    /// Creates `dir` and its missing parents (already resolved inside the destination root):
    /// mode 0755 or the octal `--chmod`, owned by `--chown` or root, the override mtime if any.
    fn mkdir_all(&mut self, dir: &Path) -> Result<(), CopyError> {
        if dir.is_dir() {
            return Ok(());
        }
        let rel = dir
            .strip_prefix(self.dest_root)
            .unwrap_or(dir)
            .to_path_buf();
        let mut current = self.dest_root.to_path_buf();
        for part in rel.components() {
            current.push(part);
            match fs::metadata(&current) {
                Ok(m) if m.is_dir() => {
                    // A symlink to a directory inside the root: continue from its target.
                    let shown = self.shown(&current);
                    current = self.resolve_dest(&shown)?;
                    continue;
                }
                Ok(_) => return Err(CopyError::NotADirectory(self.shown(&current))),
                Err(_) => {
                    fs::create_dir(&current).map_err(io_err(&current))?;
                    let mode = match &self.opts.chmod {
                        Some(Chmod::Octal(m)) => *m,
                        _ => 0o755,
                    };
                    fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&current))?;
                    if let Ownership::Set { uid, gid } = self.opts.ownership {
                        lchown(&current, Some(uid), Some(gid)).map_err(io_err(&current))?;
                    }
                    if let Some(secs) = self.opts.mtime_override {
                        let t = FileTime::from_unix_time(secs, 0);
                        filetime::set_symlink_file_times(&current, t, t)
                            .map_err(io_err(&current))?;
                    }
                    self.stats.dirs += 1;
                }
            }
        }
        Ok(())
    }

    fn matches(
        matcher: Option<&PatternMatcher>,
        comps: &str,
        parent: Option<&ParentMatches>,
    ) -> (Option<bool>, Option<ParentMatches>) {
        match matcher {
            None => (None, None),
            Some(m) => {
                let (hit, info) = m.matches_with_parent(comps, parent);
                (Some(hit), Some(info))
            }
        }
    }

    /// Copies `src` (whose path below the matched source is `comps`) to `target`.
    /// `overwrite` is false only for the matched source itself: an existing directory there
    /// keeps its owner and mode and only takes the source's mtime.
    #[allow(clippy::too_many_arguments)]
    fn copy_entry(
        &mut self,
        src: &Path,
        src_rel: &str,
        comps: &str,
        target: &Path,
        overwrite: bool,
        parent_include: Option<&ParentMatches>,
        parent_exclude: Option<&ParentMatches>,
    ) -> Result<(), CopyError> {
        if !comps.is_empty() && self.opts.hidden(src_rel) {
            return Ok(());
        }
        let meta = src.symlink_metadata().map_err(io_err(src))?;
        let target_existed = target.symlink_metadata().ok();
        let mut include = true;
        let (mut inc_info, mut exc_info) = (None, None);
        if !comps.is_empty() {
            let (hit, info) = Self::matches(self.include.as_ref(), comps, parent_include);
            inc_info = info;
            include = hit.unwrap_or(true);
            let (hit, info) = Self::matches(self.exclude.as_ref(), comps, parent_exclude);
            exc_info = info;
            if hit == Some(true) {
                include = false;
            }
        }
        if include {
            if self.opts.always_replace
                && let Some(existing) = &target_existed
                && !(existing.is_dir() && meta.is_dir())
            {
                remove_any(target)?;
            }
            self.create_pending_dirs(overwrite)?;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let created = self.copy_dir(
                src,
                src_rel,
                comps,
                target,
                &meta,
                overwrite,
                include,
                inc_info.as_ref(),
                exc_info.as_ref(),
            )?;
            if include && (overwrite || created) {
                self.apply_meta(&meta, target)?;
            } else if include && target_existed.is_some() {
                self.set_times(&meta, target)?;
            }
            return Ok(());
        }
        if !include {
            return Ok(());
        }
        match target.symlink_metadata() {
            Ok(m) if m.is_dir() => return Err(CopyError::ReplaceDirectory(self.shown(target))),
            Ok(_) => fs::remove_file(target).map_err(io_err(target))?,
            Err(_) => {}
        }
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            let link = fs::read_link(src).map_err(io_err(src))?;
            symlink(&link, target).map_err(io_err(target))?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1
                && let Some(first) = self.hardlinks.get(&key)
                && fs::hard_link(first, target).is_ok()
            {
                return Ok(());
            }
            self.stats.bytes += fs::copy(src, target).map_err(io_err(target))?;
            if meta.nlink() > 1 {
                self.hardlinks.insert(key, target.to_path_buf());
            }
        } else if ft.is_socket() {
            // A socket cannot be carried in an image; BuildKit's context transfer turns it
            // into an empty file.
            fs::File::create(target).map_err(io_err(target))?;
        } else {
            // fifo, char or block device: recreate the node.
            nix::sys::stat::mknod(
                target,
                nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT),
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| io_err(target)(io::Error::from(e)))?;
        }
        self.stats.files += 1;
        self.apply_meta(&meta, target)
    }

    /// Copies a directory's entries; returns whether the directory was created here.
    #[allow(clippy::too_many_arguments)]
    fn copy_dir(
        &mut self,
        src: &Path,
        src_rel: &str,
        comps: &str,
        target: &Path,
        meta: &fs::Metadata,
        overwrite: bool,
        include: bool,
        inc_info: Option<&ParentMatches>,
        exc_info: Option<&ParentMatches>,
    ) -> Result<bool, CopyError> {
        let mut created = false;
        if include {
            created = self.dir_only(target, meta, overwrite)?;
        }
        self.pending
            .push((src.to_path_buf(), target.to_path_buf(), include));
        let result = (|| {
            for (name, path) in list_dir(src) {
                self.copy_entry(
                    &path,
                    &join_rel(src_rel, &name),
                    &join_rel(comps, &name),
                    &target.join(&name),
                    true,
                    inc_info,
                    exc_info,
                )?;
            }
            Ok(())
        })();
        self.pending.pop();
        result.map(|()| created)
    }

    /// Makes `target` a directory: created with the source's mode, an error over a
    /// non-directory (a symlink too), or, with `overwrite`, an existing one takes the mode.
    fn dir_only(
        &mut self,
        target: &Path,
        meta: &fs::Metadata,
        overwrite: bool,
    ) -> Result<bool, CopyError> {
        match target.symlink_metadata() {
            Err(_) => {
                fs::create_dir(target).map_err(io_err(target))?;
                fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(io_err(target))?;
                self.stats.dirs += 1;
                Ok(true)
            }
            Ok(m) if !m.is_dir() => Err(CopyError::NotADirectory(self.shown(target))),
            Ok(_) => {
                if overwrite {
                    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))
                        .map_err(io_err(target))?;
                }
                Ok(false)
            }
        }
    }

    /// Creates the directories above an included entry that were passed over because nothing
    /// had matched in them yet; a new one is a copy of its source directory.
    fn create_pending_dirs(&mut self, overwrite: bool) -> Result<(), CopyError> {
        for i in 0..self.pending.len() {
            if self.pending[i].2 {
                continue;
            }
            let (src, dest) = (self.pending[i].0.clone(), self.pending[i].1.clone());
            let meta = fs::metadata(&src).map_err(io_err(&src))?;
            if self.dir_only(&dest, &meta, overwrite)? {
                self.apply_meta(&meta, &dest)?;
            }
            self.pending[i].2 = true;
        }
        Ok(())
    }

    /// The copy's owner, mode and times on `dest`, from the source entry `meta`.
    fn apply_meta(&mut self, meta: &fs::Metadata, dest: &Path) -> Result<(), CopyError> {
        let (uid, gid) = match self.opts.ownership {
            Ownership::Keep => (meta.uid(), meta.gid()),
            Ownership::Set { uid, gid } => (uid, gid),
        };
        lchown(dest, Some(uid), Some(gid)).map_err(io_err(dest))?;
        if !meta.file_type().is_symlink() {
            let mode = match &self.opts.chmod {
                Some(chmod) => chmod.apply(meta.mode() & 0o7777, meta.is_dir()),
                None => meta.mode() & 0o7777,
            };
            // chown clears setuid bits, so the mode is set after it.
            fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_err(dest))?;
        }
        self.set_times(meta, dest)
    }

    fn set_times(&self, meta: &fs::Metadata, dest: &Path) -> Result<(), CopyError> {
        let mtime = match self.opts.mtime_override {
            Some(secs) => FileTime::from_unix_time(secs, 0),
            None => FileTime::from_last_modification_time(meta),
        };
        filetime::set_symlink_file_times(dest, mtime, mtime).map_err(io_err(dest))
    }
}

fn remove_any(path: &Path) -> Result<(), CopyError> {
    let removed = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    removed.map_err(io_err(path))
}

/// The destination as BuildKit cleans it: absolute, `.`/`..` resolved, and a trailing `/` or
/// `/.` kept because it means "a directory".
fn clean_dest(dest: &str) -> String {
    let cleaned = clean_abs(dest);
    if cleaned == "/" {
        return cleaned;
    }
    if dest.ends_with("/.") {
        format!("{cleaned}/.")
    } else if dest.ends_with('/') {
        format!("{cleaned}/")
    } else {
        cleaned
    }
}

fn parent_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    }
}
