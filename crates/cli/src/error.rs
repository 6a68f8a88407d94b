//! Errors as the CLI prints them: the message and its causes on one line, each cause once.
//!
//! Library errors keep their causes as `source()`, and some also name the cause in their own
//! message (`failed to read X: permission denied`); a cause whose text the line already holds
//! is not repeated. An error that comes down to a full disk gets a second line saying which
//! file system is full and how much room it has left.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `outer: cause: root cause`, without repeats.
pub fn chain(e: &anyhow::Error) -> String {
    chain_of(e.as_ref())
}

/// [`chain`] for any error with sources.
pub fn chain_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        next = cause.source();
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Prints `error: MESSAGE`, and when the message comes down to a full disk (or a quota) a
/// second line naming the file system: the one holding the last path the message names (the
/// one nearest the operating system's error), else the one holding kiln's `root`.
pub fn print(message: &str, root: &Path) {
    eprintln!("error: {message}");
    if let Some(hint) = disk_full_hint(message, root) {
        eprintln!("error: {hint}");
    }
}

/// The second line [`print`] adds, if the message is about a full disk.
pub fn disk_full_hint(message: &str, root: &Path) -> Option<String> {
    const FULL: [&str; 3] = [
        "No space left on device",
        "Disk quota exceeded",
        "File too large",
    ];
    if !FULL.iter().any(|f| message.contains(f)) {
        return None;
    }
    // The last path named is the one nearest the operating system's error.
    let named = paths_in(message)
        .into_iter()
        .rev()
        .find_map(|p| existing_ancestor(&p).map(|a| (p, a)));
    let (path, existing) = match named {
        Some(found) => found,
        None => (root.to_path_buf(), existing_ancestor(root)?),
    };
    let mount = mount_point(&existing);
    let free = nix::sys::statvfs::statvfs(&existing)
        .map(|s| format_bytes(s.blocks_available() * s.fragment_size()))
        .unwrap_or_else(|_| "no".into());
    let kiln_data = if existing_ancestor(root).is_some_and(|r| mount_point(&r) == mount) {
        " (`kiln builder prune` and `kiln system prune` free kiln's own)"
    } else {
        ""
    };
    Some(format!(
        "the disk is full: the file system mounted at {} has {free} free, and {} needs more; free some space{kiln_data} and try again",
        mount.display(),
        path.display()
    ))
}

/// Absolute paths in an error message: words that start with `/`, without the punctuation
/// messages put after them.
fn paths_in(message: &str) -> Vec<PathBuf> {
    message
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')')
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .map(|w| PathBuf::from(w.trim_end_matches([':', ',', ';', '.'])))
        .collect()
}

/// `path` or its nearest ancestor that exists.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .map(Path::to_path_buf)
}

/// The top of the file system holding `path` (the last ancestor on the same device).
fn mount_point(path: &Path) -> PathBuf {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let own = dev(path);
    let mut top = path.to_path_buf();
    for a in path.ancestors().skip(1) {
        if dev(a) != own {
            break;
        }
        top = a.to_path_buf();
    }
    top
}

fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_appear_once() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("failed to write x: disk full");
        assert_eq!(chain(&e), "failed to write x: disk full");
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(chain(&e), "top: middle: root");
    }

    #[test]
    fn a_full_disk_is_named_with_the_file_system_holding_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("content/ingest/1.tmp");
        let message = format!(
            "failed to write ingest file {}: No space left on device (os error 28)",
            file.display()
        );
        let hint = disk_full_hint(&message, Path::new("/proc/no-kiln-root")).unwrap();
        assert!(
            hint.starts_with("the disk is full: the file system mounted at /"),
            "{hint}"
        );
        assert!(
            hint.contains(&format!("{} needs more", file.display())),
            "{hint}"
        );
        assert!(!hint.contains("kiln builder prune"), "{hint}");
        // No path in the message: the root's file system, with kiln's own cleanup named.
        let hint =
            disk_full_hint("commit: No space left on device (os error 28)", dir.path()).unwrap();
        assert!(hint.contains("kiln builder prune"), "{hint}");
        assert_eq!(disk_full_hint("permission denied", dir.path()), None);
        assert_eq!(format_bytes(8192), "8.0 KiB");
    }
}
