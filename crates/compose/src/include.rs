//! `include`: other compose projects pulled into this one. Each entry loads as a project of its
//! own (its own directory, its own `.env`, the shell environment still winning), and this
//! file's definitions are merged over what it brings (as compose-go does on a conflict).

use std::path::{Path, PathBuf};

use crate::convert::join;
use crate::error::Problem;
use crate::load::{Env, Loader};
use crate::merge::merge_files;
use crate::yaml::{Node, Value};

/// Loads every entry of an `include` list; returns the included trees in order.
pub(crate) fn load_includes(
    loader: &mut Loader,
    node: &Node,
    base: &Path,
    _env: &Env,
) -> Vec<Node> {
    let Value::Seq(items) = &node.value else {
        loader.problems.push(Problem::new(
            node.loc,
            "include",
            format!("expected a list, found {}", node.describe()),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("include[{i}]");
        let Some(entry) = entry(loader, item, &path, base) else {
            continue;
        };
        if let Some(tree) = load_one(loader, item, &path, entry) {
            out.push(tree);
        }
    }
    out
}

struct Entry {
    files: Vec<PathBuf>,
    project_directory: Option<PathBuf>,
    env_files: Vec<PathBuf>,
}

fn entry(loader: &mut Loader, item: &Node, path: &str, base: &Path) -> Option<Entry> {
    let home = loader.home.clone();
    let abs = move |s: &str| PathBuf::from(crate::paths::join(base, s, home.as_deref()));
    let list = |loader: &mut Loader, n: &Node, p: &str| -> Option<Vec<PathBuf>> {
        match &n.value {
            Value::Scalar(_) if n.as_str().is_some() => Some(vec![abs(n.as_str()?)]),
            Value::Seq(items) if items.iter().all(|i| i.as_str().is_some()) => {
                Some(items.iter().filter_map(Node::as_str).map(&abs).collect())
            }
            _ => {
                loader.problems.push(Problem::new(
                    n.loc,
                    p,
                    format!("expected a path or a list of paths, found {}", n.describe()),
                ));
                None
            }
        }
    };
    match &item.value {
        Value::Scalar(_) => Some(Entry {
            files: list(loader, item, path)?,
            project_directory: None,
            env_files: Vec::new(),
        }),
        Value::Map(m) => {
            let mut e = Entry {
                files: Vec::new(),
                project_directory: None,
                env_files: Vec::new(),
            };
            for f in &m.entries {
                let fp = join(path, &f.key);
                match f.key.as_str() {
                    "path" => e.files = list(loader, &f.value, &fp)?,
                    "project_directory" => {
                        e.project_directory = list(loader, &f.value, &fp)?.into_iter().next()
                    }
                    "env_file" => e.env_files = list(loader, &f.value, &fp)?,
                    _ => {
                        let mut p =
                            Problem::new(f.key_loc, path, format!("unknown key `{}`", f.key));
                        let known = ["path", "project_directory", "env_file"];
                        if let Some(best) = crate::convert::did_you_mean(&f.key, known.iter()) {
                            p = p.with_help(format!("did you mean `{best}`?"));
                        }
                        loader.problems.push(p);
                    }
                }
            }
            if e.files.is_empty() {
                loader
                    .problems
                    .push(Problem::new(item.loc, path, "missing `path`"));
                return None;
            }
            Some(e)
        }
        Value::Seq(_) => {
            loader.problems.push(Problem::new(
                item.loc,
                path,
                "expected a path or a mapping with `path`",
            ));
            None
        }
    }
}

fn load_one(loader: &mut Loader, item: &Node, path: &str, entry: Entry) -> Option<Node> {
    let dir = entry.project_directory.clone().unwrap_or_else(|| {
        entry.files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    let (env_files, required) = if entry.env_files.is_empty() {
        (vec![dir.join(".env")], false)
    } else {
        (entry.env_files.clone(), true)
    };
    let shell = loader.shell.clone();
    let env = match loader.env_from_files(&env_files, &shell, required) {
        Ok(env) => env,
        Err(e) => {
            loader
                .problems
                .push(Problem::new(item.loc, path, e.to_string()));
            return None;
        }
    };
    let mut merged: Option<Node> = None;
    for file in &entry.files {
        if loader.is_including(file) {
            loader.problems.push(Problem::new(
                item.loc,
                path,
                format!("include cycle: {} includes itself", file.display()),
            ));
            return None;
        }
        let tree = loader.load_project_file(file, &dir, &env)?;
        merged = Some(match merged {
            None => tree,
            Some(base) => merge_files(base, tree),
        });
    }
    let mut tree = merged?;
    // The including project names itself.
    if let Some(m) = tree.as_map_mut() {
        m.remove("name");
    }
    Some(tree)
}
