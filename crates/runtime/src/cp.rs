//! `kiln cp` without trusting the container's symlinks: the container side of a copy runs in a
//! helper process chrooted into the container's root (`kiln container-cp`), so every path it
//! resolves, absolute symlinks included, stays inside the container; the two sides exchange a
//! tar stream. The host side is resolved normally, and an unpack on the host never writes
//! through a symlink the stream itself created.
//!
//! Semantics follow `docker cp`: a file or directory is copied under its own name into an
//! existing destination directory, a directory's contents when the source ends in `/.`, to the
//! destination path itself when it does not exist; symlinks are copied as symlinks.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{RuntimeError, io_err};

/// The name of the copied entry inside the stream; its children are `TOP/…`.
const TOP: &str = "kiln-cp";

/// What to copy: a path, and whether only a directory's contents are meant (`SRC/.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// The name the entry gets in a destination directory.
    pub name: String,
    pub contents_only: bool,
}

impl Source {
    /// Parses a source path as `docker cp` reads it.
    pub(crate) fn parse(path: &str) -> Source {
        let contents_only = path.ends_with("/.") || path == ".";
        let trimmed = path.trim_end_matches("/.").trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let name = Path::new(trimmed)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        Source {
            path: PathBuf::from(trimmed),
            name,
            contents_only,
        }
    }
}

/// Writes `source` (not following a final symlink) to `out` as a tar stream.
pub(crate) fn pack(source: &Path, out: impl Write) -> Result<(), RuntimeError> {
    let meta = fs::symlink_metadata(source).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            RuntimeError::Invalid(format!("no such file or directory: {}", source.display()))
        }
        _ => RuntimeError::Io {
            what: format!("stat {}", source.display()),
            source: e,
        },
    })?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let what = || format!("pack {}", source.display());
    if meta.is_dir() {
        tar.append_dir_all(TOP, source).map_err(io_err(what()))?;
    } else {
        tar.append_path_with_name(source, TOP)
            .map_err(io_err(what()))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err(what()))
}

/// Where the stream's top entry lands for `dest`, by `docker cp`'s rules.
fn target_of(
    dest: &Path,
    dest_text: &str,
    source: &Source,
    top_is_dir: bool,
) -> Result<PathBuf, RuntimeError> {
    let existing = fs::metadata(dest).ok();
    match (top_is_dir, existing) {
        (_, Some(m)) if m.is_dir() => {
            if top_is_dir && source.contents_only {
                Ok(dest.to_path_buf())
            } else {
                Ok(dest.join(&source.name))
            }
        }
        (true, Some(_)) => Err(RuntimeError::Invalid(format!(
            "cannot copy a directory to the non-directory {dest_text}"
        ))),
        (false, Some(_)) => Ok(dest.to_path_buf()),
        (_, None) => {
            if dest_text.ends_with('/') {
                return Err(RuntimeError::Invalid(format!(
                    "destination directory {dest_text} does not exist"
                )));
            }
            match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => Err(RuntimeError::Invalid(
                    format!("the parent directory of {dest_text} does not exist"),
                )),
                _ => Ok(dest.to_path_buf()),
            }
        }
    }
}

/// Unpacks a stream made by [`pack`] at `dest` (as the user wrote it: a trailing slash
/// matters). Ownership is not restored (files belong to the caller, as with `docker cp`);
/// modes and times are.
pub(crate) fn unpack(
    input: impl Read,
    dest_text: &str,
    source: &Source,
) -> Result<(), RuntimeError> {
    let dest = Path::new(dest_text);
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    let mut target: Option<PathBuf> = None;
    // Symlinks this stream created: nothing may be written beneath them.
    let mut links: HashSet<PathBuf> = HashSet::new();
    let entries = archive.entries().map_err(io_err("read the copy stream"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("read the copy stream"))?;
        let kind = entry.header().entry_type();
        let name = entry
            .path()
            .map_err(io_err("read an entry name"))?
            .into_owned();
        let rel = name.strip_prefix(TOP).map_err(|_| {
            RuntimeError::Invalid(format!(
                "unexpected entry {} in the copy stream",
                name.display()
            ))
        })?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(RuntimeError::Invalid(format!(
                "unsafe entry {} in the copy stream",
                name.display()
            )));
        }
        let base = match &target {
            Some(t) => t.clone(),
            None => {
                let t = target_of(dest, dest_text, source, kind.is_dir())?;
                target = Some(t.clone());
                t
            }
        };
        let path = if rel.as_os_str().is_empty() {
            base.clone()
        } else {
            base.join(rel)
        };
        if path.ancestors().skip(1).any(|a| links.contains(a)) {
            return Err(RuntimeError::Invalid(format!(
                "refusing to write {} through a copied symlink",
                path.display()
            )));
        }
        if kind.is_hard_link() {
            return Err(RuntimeError::NotSupported(format!(
                "hard links in a copy ({})",
                name.display()
            )));
        }
        // A file replaces what is there (never writing through a symlink at its place).
        if !kind.is_dir()
            && let Ok(m) = fs::symlink_metadata(&path)
            && !m.is_dir()
        {
            fs::remove_file(&path).map_err(io_err(format!("replace {}", path.display())))?;
        }
        entry
            .unpack(&path)
            .map_err(io_err(format!("write {}", path.display())))?;
        if kind.is_symlink() {
            links.insert(path);
        }
    }
    if target.is_none() {
        return Err(RuntimeError::Invalid("the copy stream was empty".into()));
    }
    Ok(())
}

/// Writes the whole filesystem at `/` (the helper's chroot) to `out` as a tar stream, as
/// `docker export` does: entries named relative to the root, symlinks as symlinks, and what
/// is mounted over the rootfs (`/proc`, `/sys`, `/dev`, volumes, the /etc files) only as its
/// empty mount point.
pub(crate) fn pack_root(out: impl Write) -> Result<(), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let root_dev = fs::symlink_metadata("/").map_err(io_err("stat /"))?.dev();
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io_err(format!("list {}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        // Depth first in name order: push in reverse.
        let mut subdirs = Vec::new();
        for path in names {
            let meta =
                fs::symlink_metadata(&path).map_err(io_err(format!("stat {}", path.display())))?;
            let name = path.strip_prefix("/").unwrap_or(&path).to_path_buf();
            let what = || format!("pack {}", path.display());
            if meta.dev() != root_dev {
                // A mount point: only itself, empty.
                let mut h = tar::Header::new_gnu();
                h.set_metadata(&meta);
                h.set_size(0);
                let mut name = name.into_os_string();
                if meta.is_dir() {
                    h.set_entry_type(tar::EntryType::Directory);
                    name.push("/");
                } else {
                    h.set_entry_type(tar::EntryType::Regular);
                }
                tar.append_data(&mut h, &name, io::empty())
                    .map_err(io_err(what()))?;
                continue;
            }
            if meta.is_dir() {
                // Directories end in `/`, as `docker export` writes them.
                let mut dir_name = name.into_os_string();
                dir_name.push("/");
                tar.append_path_with_name(&path, &dir_name)
                    .map_err(io_err(what()))?;
                subdirs.push(path);
            } else {
                tar.append_path_with_name(&path, &name)
                    .map_err(io_err(what()))?;
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("finish the export"))
}

/// What the hidden `kiln container-cp` helper does, chrooted into a container's root.
#[derive(Debug, Clone)]
pub enum HelperAction {
    /// Write `path` to stdout as a tar stream.
    Pack { path: String },
    /// Write the whole root to stdout as a tar stream (`kiln export`).
    Export,
    /// Read a tar stream from stdin and unpack it at `dest`.
    Unpack { dest: String, source: Source },
}

/// The body of `kiln container-cp`: enter `root` (a container's rootfs, or
/// `/proc/PID/root`) with chroot, then pack or unpack there.
pub fn helper_main(root: &Path, action: &HelperAction) -> Result<(), RuntimeError> {
    nix::unistd::chroot(root).map_err(|e| RuntimeError::Io {
        what: format!("enter the container's root {}", root.display()),
        source: e.into(),
    })?;
    std::env::set_current_dir("/").map_err(io_err("enter /"))?;
    match action {
        HelperAction::Pack { path } => {
            pack(Path::new(path), io::BufWriter::new(io::stdout().lock()))
        }
        HelperAction::Unpack { dest, source } => {
            unpack(io::BufReader::new(io::stdin().lock()), dest, source)
        }
        HelperAction::Export => pack_root(io::BufWriter::new(io::stdout().lock())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_docker_cp_reads_them() {
        let s = Source::parse("/etc/");
        assert_eq!(
            (s.path.as_path(), s.name.as_str(), s.contents_only),
            (Path::new("/etc"), "etc", false)
        );
        let s = Source::parse("/data/.");
        assert_eq!(
            (s.path.as_path(), s.contents_only),
            (Path::new("/data"), true)
        );
        assert_eq!(Source::parse("/").path, Path::new("/"));
    }

    #[test]
    fn files_and_directories_land_where_docker_cp_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tree");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let copy = |from: &Path, to: &str| {
            let mut stream = Vec::new();
            pack(from, &mut stream).unwrap();
            unpack(&stream[..], to, &Source::parse(from.to_str().unwrap()))
        };
        // Into a missing path: the directory becomes it.
        let new = dir.path().join("new");
        copy(&src, new.to_str().unwrap()).unwrap();
        assert_eq!(fs::read_to_string(new.join("sub/f")).unwrap(), "x");
        // Symlinks stay symlinks.
        assert_eq!(
            fs::read_link(new.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // Into an existing directory: under its own name.
        copy(&src, new.to_str().unwrap()).unwrap();
        assert!(new.join("tree/sub/f").is_file());
        // A file into a missing directory path with a trailing slash fails.
        let err = copy(
            &src.join("sub/f"),
            &format!("{}/nope/", dir.path().display()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        // A directory onto a file fails.
        let err = copy(&src, new.join("sub/f").to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("non-directory"), "{err}");
    }

    #[test]
    fn a_stream_cannot_write_through_a_symlink_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // A hand-made stream: TOP/, TOP/l -> outside, TOP/l/evil.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, TOP, io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, format!("{TOP}/l"), &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(4);
        b.append_data(&mut h, format!("{TOP}/l/evil"), &b"evil"[..])
            .unwrap();
        let stream = b.into_inner().unwrap();
        let dest = dir.path().join("dest");
        let err = unpack(&stream[..], dest.to_str().unwrap(), &Source::parse("/x")).unwrap_err();
        assert!(
            err.to_string().contains("through a copied symlink"),
            "{err}"
        );
        assert!(!outside.join("evil").exists());
    }
}
