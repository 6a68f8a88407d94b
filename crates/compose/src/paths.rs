//! Relative paths in one file's tree made absolute against that file's base directory: the
//! project directory for `-f` files, the file's own directory for an `extends` base, the
//! included project's directory for an `include`. Done per file, before merging, so each path
//! resolves against the directory its own file says.

use std::path::{Component, Path, PathBuf};

use crate::yaml::{Node, Value};

/// Resolves the paths of `root` (a whole file) against `base`; `home` expands `~`.
pub(crate) fn resolve_file(root: &mut Node, base: &Path, home: Option<&str>) {
    let Some(map) = root.as_map_mut() else { return };
    for e in &mut map.entries {
        match e.key.as_str() {
            "services" => {
                if let Some(services) = e.value.as_map_mut() {
                    for s in &mut services.entries {
                        resolve_service(&mut s.value, base, home);
                    }
                }
            }
            "secrets" | "configs" => {
                if let Some(objects) = e.value.as_map_mut() {
                    for o in &mut objects.entries {
                        if let Some(file) = o.value.as_map_mut().and_then(|m| m.get_mut("file")) {
                            absolute(file, base, home);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Resolves one service's paths (also used for services pulled in by `extends`).
pub(crate) fn resolve_service(service: &mut Node, base: &Path, home: Option<&str>) {
    let Some(map) = service.as_map_mut() else {
        return;
    };
    for e in &mut map.entries {
        match e.key.as_str() {
            "build" => {
                if let Some(ctx) = e.value.as_map_mut().and_then(|m| m.get_mut("context"))
                    && ctx.as_str().is_some_and(|c| !is_remote(c))
                {
                    absolute(ctx, base, home);
                }
            }
            "env_file" => {
                if let Value::Seq(items) = &mut e.value.value {
                    for item in items {
                        match item.as_map_mut() {
                            Some(m) => {
                                if let Some(p) = m.get_mut("path") {
                                    absolute(p, base, home);
                                }
                            }
                            None => absolute(item, base, home),
                        }
                    }
                }
            }
            "volumes" => {
                if let Value::Seq(items) = &mut e.value.value {
                    for item in items {
                        volume(item, base, home);
                    }
                }
            }
            "extends" => {
                if let Some(file) = e.value.as_map_mut().and_then(|m| m.get_mut("file")) {
                    absolute(file, base, home);
                }
            }
            _ => {}
        }
    }
}

/// A bind source: `./x`, `../x`, `~/x` and `.` in the short syntax; any relative `source` of a
/// long-syntax `type: bind`.
fn volume(item: &mut Node, base: &Path, home: Option<&str>) {
    match &mut item.value {
        Value::Scalar(s) => {
            let text = s.text.clone();
            let Some((source, rest)) = text.split_once(':') else {
                return;
            };
            if source.starts_with('.') || source.starts_with('~') {
                s.text = format!("{}:{rest}", join(base, source, home));
            }
        }
        Value::Map(m) => {
            let is_bind = m.get("type").and_then(Node::as_str) == Some("bind");
            if is_bind && let Some(src) = m.get_mut("source") {
                absolute(src, base, home);
            }
        }
        Value::Seq(_) => {}
    }
}

fn absolute(node: &mut Node, base: &Path, home: Option<&str>) {
    if let Value::Scalar(s) = &mut node.value
        && node.tag.is_none()
        && !s.text.is_empty()
    {
        s.text = join(base, &s.text, home);
    }
}

/// A URL or git reference build context, kept as written.
fn is_remote(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}

/// `base/path`, lexically cleaned (`.` and `..` folded), with `~` from `home`.
pub(crate) fn join(base: &Path, path: &str, home: Option<&str>) -> String {
    let expanded: PathBuf = match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => PathBuf::from(path),
    };
    let full = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    clean(&full).display().to_string()
}

/// Folds `.` and `..` without touching the file system.
pub(crate) fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_cleans() {
        let base = Path::new("/proj/app");
        assert_eq!(join(base, "./data", None), "/proj/app/data");
        assert_eq!(join(base, "../x", None), "/proj/x");
        assert_eq!(join(base, ".", None), "/proj/app");
        assert_eq!(join(base, "/abs", None), "/abs");
        assert_eq!(join(base, "~/x", Some("/root")), "/root/x");
    }
}
