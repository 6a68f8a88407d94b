//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` for the sandbox, and the removal of
//! stub files and mount-point directories the sandbox had to create in the rootfs.
//!
//! The three files live in the sandbox's state directory (outside the rootfs) and are
//! bind-mounted over the rootfs' own. Where the rootfs lacks a target, the child creates an
//! empty stub to mount on and reports it; once the sandbox is gone the stub is removed again,
//! so it never shows up in the step's snapshot.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::spec::{Network, SandboxSpec};

/// The generated files: (path inside the sandbox, file name in the state dir, content).
pub(crate) fn files(spec: &SandboxSpec) -> Vec<(&'static str, &'static str, String)> {
    let mut files = vec![
        ("/etc/hosts", "hosts", hosts(spec)),
        ("/etc/resolv.conf", "resolv.conf", resolv_conf(spec)),
    ];
    if spec.etc_hostname {
        files.push(("/etc/hostname", "hostname", format!("{}\n", spec.hostname)));
    }
    files
}

fn hosts(spec: &SandboxSpec) -> String {
    if let Some(h) = &spec.hosts {
        return h.clone();
    }
    // The hostname goes on the IPv4 line only, as BuildKit and Docker write it.
    let mut s = format!(
        "127.0.0.1\tlocalhost {}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        spec.hostname
    );
    for (name, ip) in &spec.extra_hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

/// The host's resolver for host networking. In a separate network namespace loopback name
/// servers (systemd-resolved's 127.0.0.53 and the like) are unreachable, so they are dropped.
/// With no network at all there is nothing to resolve through: a file saying so.
fn resolv_conf(spec: &SandboxSpec) -> String {
    if let Some(s) = &spec.resolv_conf {
        return s.clone();
    }
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    match &spec.network {
        Network::Host => host,
        Network::Namespace(_) => host
            .lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                !(w.next() == Some("nameserver")
                    && w.next()
                        .is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
        Network::None => "# network disabled: no name servers\n".to_string(),
    }
}

/// Removes what the sandbox created in its rootfs to mount on, newest first: empty regular
/// files and empty directories only, never following a symlink. `root` is the upper dir of an
/// overlay rootfs or the rootfs directory. `upper_had` lists the ancestors of the created
/// paths that existed in `root` before the run; others (made by overlayfs' copy-up when the
/// stub was created) are removed too when empty.
pub(crate) fn remove_stubs(
    root: &Path,
    created: &[PathBuf],
    upper_had: &[PathBuf],
) -> Vec<io::Error> {
    let mut errors = Vec::new();
    for rel in created.iter().rev() {
        let Some(path) = safe_join(root, rel) else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let res = if meta.is_dir() {
            match fs::remove_dir(&path) {
                // Something the command put there: keep it (and the directory).
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
                other => other,
            }
        } else if meta.is_file() && meta.len() == 0 {
            fs::remove_file(&path)
        } else {
            Ok(())
        };
        if let Err(e) = res {
            errors.push(io::Error::new(
                e.kind(),
                format!("failed to remove stub {}: {e}", path.display()),
            ));
        }
        let mut anc = rel.parent();
        while let Some(a) = anc {
            if a.as_os_str().is_empty() || a == Path::new("/") || upper_had.iter().any(|h| h == a) {
                break;
            }
            if let Some(p) = safe_join(root, a)
                && fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
                && fs::remove_dir(&p).is_err()
            {
                break;
            }
            anc = a.parent();
        }
    }
    errors
}

/// `root` joined with the relative form of `rel`, or `None` when a component on the way is a
/// symlink or `..` (the stub then lies elsewhere and is left alone rather than risk leaving
/// the tree).
pub(crate) fn safe_join(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => p.push(n),
            _ => return None,
        }
        if i + 1 < comps.len() && fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
        {
            return None;
        }
    }
    Some(p)
}

/// Every ancestor directory of `paths` that exists in `root` now (before the run).
pub(crate) fn existing_ancestors(root: &Path, paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in paths {
        let mut anc = path.parent();
        while let Some(a) = anc {
            if a.as_os_str().is_empty() || a == Path::new("/") {
                break;
            }
            if !out.iter().any(|o| o == a) && safe_join(root, a).is_some_and(|p| p.exists()) {
                out.push(a.to_path_buf());
            }
            anc = a.parent();
        }
    }
    out
}
