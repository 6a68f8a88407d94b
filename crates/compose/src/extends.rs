//! `extends`: a service built on another one, from the same file or from `file:`. The base is
//! resolved first (it may extend too; cycles are refused), its paths against its own file's
//! directory, and the service is merged over it with the usual merge rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::convert::did_you_mean;
use crate::diagnostic::Loc;
use crate::error::Problem;
use crate::load::{Env, Loader};
use crate::merge::merge_service;
use crate::yaml::{Map, Node, Value};

/// The services of each file an `extends` read, by path (`None`: the file was unusable).
type Files = HashMap<PathBuf, Option<Map>>;

/// Resolves every `extends` in the services of `root` (a file at `file`).
pub(crate) fn apply_extends(loader: &mut Loader, root: &mut Node, file: &Path, env: &Env) {
    let Some(services) = root
        .as_map()
        .and_then(|m| m.get("services"))
        .and_then(Node::as_map)
        .cloned()
    else {
        return;
    };
    if !services
        .entries
        .iter()
        .any(|e| e.value.as_map().is_some_and(|m| m.get("extends").is_some()))
    {
        return;
    }
    let mut files: Files = HashMap::new();
    files.insert(file.to_path_buf(), Some(services.clone()));
    let mut resolved = Vec::new();
    for e in &services.entries {
        let mut stack = Vec::new();
        if let Some(node) = resolve(loader, &mut files, env, file, &e.key, &mut stack) {
            resolved.push((e.key.clone(), node));
        }
    }
    if let Some(m) = root
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::as_map_mut)
    {
        for (name, node) in resolved {
            if let Some(slot) = m.get_mut(&name) {
                *slot = node;
            }
        }
    }
}

/// The service `name` of `file` with its `extends` chain merged in.
fn resolve(
    loader: &mut Loader,
    files: &mut Files,
    env: &Env,
    file: &Path,
    name: &str,
    stack: &mut Vec<(PathBuf, String)>,
) -> Option<Node> {
    let services = files.get(file).cloned().flatten()?;
    let node = services.get(name)?.clone();
    let Some(map) = node.as_map() else {
        return Some(node);
    };
    let Some(ext) = map.entry("extends") else {
        return Some(node);
    };
    let path = format!("services.{name}.extends");
    let (base_name, base_file, at) = match &ext.value.value {
        Value::Scalar(_) if ext.value.as_str().is_some() => (
            ext.value.as_str()?.to_string(),
            file.to_path_buf(),
            ext.value.loc,
        ),
        Value::Map(m) => {
            let Some(service) = m.get("service").filter(|s| s.as_str().is_some()) else {
                loader
                    .problems
                    .push(Problem::new(ext.value.loc, &path, "missing `service`"));
                return None;
            };
            for k in &m.entries {
                if k.key != "service" && k.key != "file" {
                    loader.problems.push(Problem::new(
                        k.key_loc,
                        &path,
                        format!("unknown key `{}`", k.key),
                    ));
                }
            }
            let base_file = m
                .get("file")
                .and_then(Node::as_str)
                .map_or_else(|| file.to_path_buf(), PathBuf::from);
            (service.as_str()?.to_string(), base_file, service.loc)
        }
        _ => {
            loader.problems.push(Problem::new(
                ext.value.loc,
                &path,
                format!(
                    "expected a service name or a mapping, found {}",
                    ext.value.describe()
                ),
            ));
            return None;
        }
    };
    let key = (base_file.clone(), base_name.clone());
    stack.push((file.to_path_buf(), name.to_string()));
    if let Some(start) = stack.iter().position(|k| *k == key) {
        let mut members: Vec<(PathBuf, String)> = stack[start..].to_vec();
        members.sort();
        // Each service of a cycle meets it; report it once.
        if loader.reported_cycles.insert(members) {
            let cycle: Vec<&str> = stack[start..].iter().map(|(_, s)| s.as_str()).collect();
            loader.problems.push(Problem::new(
                at,
                &path,
                format!("extends cycle: {} -> {base_name}", cycle.join(" -> ")),
            ));
        }
        stack.pop();
        return None;
    }
    if !files.contains_key(&base_file) {
        let dir = base_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let tree = loader.read_tree(&base_file, &dir, env);
        let services = tree
            .as_ref()
            .and_then(Node::as_map)
            .and_then(|m| m.get("services"))
            .and_then(Node::as_map)
            .cloned()
            .or_else(|| tree.map(|_| Map::default()));
        files.insert(base_file.clone(), services);
    }
    let Some(base_services) = files.get(&base_file).cloned().flatten() else {
        stack.pop();
        return None;
    };
    if base_services.get(&base_name).is_none() {
        not_found(loader, at, &path, &base_name, &base_services, &base_file);
        stack.pop();
        return None;
    }
    let base = resolve(loader, files, env, &base_file, &base_name, stack);
    stack.pop();
    let base = base?;
    let mut local = node.clone();
    if let Some(m) = local.as_map_mut() {
        m.remove("extends");
    }
    Some(merge_service(base, local))
}

fn not_found(loader: &mut Loader, at: Loc, path: &str, name: &str, services: &Map, file: &Path) {
    let names: Vec<&str> = services.entries.iter().map(|e| e.key.as_str()).collect();
    let mut p = Problem::new(
        at,
        path,
        format!("service {name:?} not found in {}", loader.display(file)),
    );
    if let Some(best) = did_you_mean(name, names.iter()) {
        p = p.with_help(format!("did you mean `{best}`?"));
    }
    loader.problems.push(p);
}
