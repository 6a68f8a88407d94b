//! Path resolution inside a root directory: symlinks are followed as if the root were `/`, so a
//! link can never lead outside it (the "secure join" that every file op builds on).

use std::io;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow before it is treated as a loop (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute or relative to the root; `..` clamps at the root) under `root`,
/// following every symlink, including the last component when `follow_last` is set. The result
/// is always inside `root`; components that do not exist are appended as they are.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut followed = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&part);
        let is_last = pending.is_empty();
        match candidate.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() && (!is_last || follow_last) => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {path}"
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for c in components(&target).into_iter().rev() {
                    pending.push(c);
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(join(root, &resolved))
}

/// The path relative to `root` of a resolved path, with a leading `/`.
pub fn display_in_root(root: &Path, resolved: &Path) -> String {
    match resolved.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.to_string_lossy()),
        Err(_) => resolved.to_string_lossy().into_owned(),
    }
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

/// Lexically cleans a path the way Go's `path.Clean` does for absolute paths: `.` and empty
/// components removed, `..` applied, never above `/`.
pub fn clean_abs(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_never_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("real/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/abs/sub", true).unwrap(),
            root.join("real/sub")
        );
        assert_eq!(
            resolve_in_root(root, "real/up/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/abs", false).unwrap(),
            root.join("abs")
        );
        assert!(resolve_in_root(root, "/loop/x", true).is_err());
        assert_eq!(
            resolve_in_root(root, "../../x", true).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn clean_matches_go_path_clean() {
        assert_eq!(clean_abs("a/./b/../c//d/"), "/a/c/d");
        assert_eq!(clean_abs("/../.."), "/");
        assert_eq!(clean_abs(""), "/");
    }
}
