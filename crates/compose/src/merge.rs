//! Merging compose files (and `extends` bases, and `include`d projects) as the specification's
//! merge rules say, on the located YAML tree so that every value keeps its file and position.
//!
//! Before merging, [`normalize_service`] turns the short forms whose merge depends on their
//! shape into one form: `environment`, `labels`, `build.args` lists → maps; `depends_on` and
//! `networks` lists → maps; `build: DIR` → `build: {context: DIR}`; a string `env_file` → a list.
//!
//! Rules (later file = `over`): mappings merge recursively, scalars are replaced; `command`,
//! `entrypoint` and `healthcheck.test` are replaced; `ports` are appended without duplicates;
//! `volumes`, `secrets` and `configs` are keyed by their target (a later entry replaces the
//! earlier one in place); other lists are appended, and `dns`, `cap_add`, `cap_drop`, `expose`,
//! `extra_hosts`, `env_file`, `profiles` drop duplicates. A value tagged `!reset` removes the key;
//! `!override` replaces it without merging.

use crate::yaml::{Entry, Kind, Map, Node, Scalar, Value};

/// Merges two whole files (top-level mappings).
pub(crate) fn merge_files(base: Node, over: Node) -> Node {
    merge_node(base, over, Ctx::Top)
}

/// Merges a service definition over a base one (for `extends` and for files).
pub(crate) fn merge_service(base: Node, over: Node) -> Node {
    merge_node(base, over, Ctx::Service)
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    Services,
    Service,
    Healthcheck,
    Other,
}

fn child_ctx(ctx: Ctx, key: &str) -> Ctx {
    match (ctx, key) {
        (Ctx::Top, "services") => Ctx::Services,
        (Ctx::Services, _) => Ctx::Service,
        (Ctx::Service, "healthcheck") => Ctx::Healthcheck,
        _ => Ctx::Other,
    }
}

fn merge_node(base: Node, over: Node, ctx: Ctx) -> Node {
    if over.tag.as_deref() == Some("!override") {
        return over;
    }
    match (base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut out = b;
            for e in o.entries {
                let child = child_ctx(ctx, &e.key);
                if e.value.tag.as_deref() == Some("!reset") {
                    out.remove(&e.key);
                    continue;
                }
                match out.remove_keep_index(&e.key) {
                    Some((i, prev)) => {
                        let merged = merge_child(ctx, &e.key, prev.value, e.value, child);
                        out.entries.insert(
                            i,
                            Entry {
                                key: e.key,
                                key_loc: e.key_loc,
                                value: merged,
                            },
                        );
                    }
                    None => out.entries.push(e),
                }
            }
            Node {
                value: Value::Map(out),
                loc: over.loc,
                tag: over.tag,
            }
        }
        (_, value) => Node {
            value,
            loc: over.loc,
            tag: over.tag,
        },
    }
}

fn merge_child(ctx: Ctx, key: &str, base: Node, over: Node, child: Ctx) -> Node {
    if over.tag.as_deref() == Some("!override") {
        return over;
    }
    let replaced = match ctx {
        Ctx::Service => matches!(key, "command" | "entrypoint"),
        Ctx::Healthcheck => key == "test",
        _ => false,
    };
    if replaced {
        return over;
    }
    match (&base.value, &over.value) {
        (Value::Seq(_), Value::Seq(_)) => {
            let (Value::Seq(b), Value::Seq(o)) = (base.value, over.value) else {
                unreachable!("matched above")
            };
            let items = if ctx != Ctx::Service {
                append(b, o, false)
            } else {
                match key {
                    "ports" => append(b, o, true),
                    "volumes" | "secrets" | "configs" | "devices" => by_target(b, o, key),
                    "dns" | "cap_add" | "cap_drop" | "expose" | "extra_hosts" | "env_file"
                    | "profiles" | "dns_search" | "tmpfs" => append(b, o, true),
                    _ => append(b, o, false),
                }
            };
            Node {
                value: Value::Seq(items),
                loc: over.loc,
                tag: over.tag,
            }
        }
        (Value::Map(_), Value::Map(_)) => merge_node(base, over, child),
        _ => over,
    }
}

impl Map {
    fn remove_keep_index(&mut self, key: &str) -> Option<(usize, Entry)> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some((i, self.entries.remove(i)))
    }
}

fn append(mut base: Vec<Node>, over: Vec<Node>, dedupe: bool) -> Vec<Node> {
    for n in over {
        if dedupe && base.iter().any(|b| same(b, &n)) {
            continue;
        }
        base.push(n);
    }
    base
}

/// Structural equality ignoring locations.
fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar(x), Value::Scalar(y)) => x.text == y.text,
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .all(|e| y.get(&e.key).is_some_and(|v| same(&e.value, v)))
        }
        _ => false,
    }
}

/// Entries keyed by their mount target; a later entry replaces an earlier one in its place.
fn by_target(mut base: Vec<Node>, over: Vec<Node>, key: &str) -> Vec<Node> {
    for n in over {
        let target = mount_target(&n, key);
        match base
            .iter()
            .position(|b| target.is_some() && mount_target(b, key) == target)
        {
            Some(i) => base[i] = n,
            None => base.push(n),
        }
    }
    base
}

/// The target a `volumes`, `secrets`, `configs` or `devices` entry mounts at.
fn mount_target(n: &Node, key: &str) -> Option<String> {
    match &n.value {
        Value::Scalar(s) => {
            let parts: Vec<&str> = s.text.split(':').collect();
            Some(match (key, parts.as_slice()) {
                ("secrets", _) => format!("/run/secrets/{}", s.text),
                ("configs", _) => format!("/{}", s.text),
                (_, [one]) => one.to_string(),
                (_, [_, target, ..]) => target.to_string(),
                _ => return None,
            })
        }
        Value::Map(m) => {
            let text = |k: &str| m.get(k).and_then(Node::as_str).map(str::to_string);
            match key {
                "secrets" => {
                    text("target").or_else(|| text("source").map(|s| format!("/run/secrets/{s}")))
                }
                "configs" => text("target").or_else(|| text("source").map(|s| format!("/{s}"))),
                "devices" => text("target").or_else(|| text("source")),
                _ => text("target"),
            }
        }
        Value::Seq(_) => None,
    }
}

/// Removes every `!reset` value left in a tree (a reset in the first file just drops the key).
pub(crate) fn drop_resets(node: &mut Node) {
    match &mut node.value {
        Value::Map(m) => {
            m.entries
                .retain(|e| e.value.tag.as_deref() != Some("!reset"));
            for e in &mut m.entries {
                drop_resets(&mut e.value);
            }
        }
        Value::Seq(items) => {
            items.retain(|n| n.tag.as_deref() != Some("!reset"));
            for n in items {
                drop_resets(n);
            }
        }
        Value::Scalar(_) => {}
    }
}

/// Puts the short forms of one service that matter for merging into their long form.
pub(crate) fn normalize_service(service: &mut Node) {
    let Some(map) = service.as_map_mut() else {
        return;
    };
    for e in &mut map.entries {
        match e.key.as_str() {
            "environment" | "labels" | "annotations" | "sysctls" => key_values_to_map(&mut e.value),
            "depends_on" => list_to_map(&mut e.value, true),
            "networks" => list_to_map(&mut e.value, false),
            "env_file" => scalar_to_list(&mut e.value),
            "build" => {
                if let Value::Scalar(s) = &e.value.value
                    && s.kind != Kind::Null
                {
                    let loc = e.value.loc;
                    let context = Node::string(s.text.clone(), loc);
                    let mut m = Map::default();
                    m.entries.push(Entry {
                        key: "context".into(),
                        key_loc: loc,
                        value: context,
                    });
                    e.value = Node::map(m, loc);
                }
                if let Some(build) = e.value.as_map_mut() {
                    for b in &mut build.entries {
                        if b.key == "args" || b.key == "labels" {
                            key_values_to_map(&mut b.value);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `["K=V", "K"]` → `{K: V, K: null}`; anything but a list of scalars is left for the type check.
fn key_values_to_map(node: &mut Node) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    if !items.iter().all(|n| matches!(n.value, Value::Scalar(_))) {
        return;
    }
    let mut map = Map::default();
    for item in items {
        let Value::Scalar(s) = &item.value else {
            continue;
        };
        let (key, value) = match s.text.split_once('=') {
            Some((k, v)) => (k.to_string(), Node::string(v, item.loc)),
            None => (s.text.clone(), Node::null(item.loc)),
        };
        map.insert(Entry {
            key,
            key_loc: item.loc,
            value,
        });
    }
    node.value = Value::Map(map);
}

/// `[a, b]` → `{a: null, b: null}` (or `{condition: service_started}` for `depends_on`).
fn list_to_map(node: &mut Node, depends_on: bool) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    if !items.iter().all(|n| n.as_str().is_some()) {
        return;
    }
    let mut map = Map::default();
    for item in items {
        let name = item.as_str().unwrap_or_default().to_string();
        let value = if depends_on {
            let mut m = Map::default();
            m.entries.push(Entry {
                key: "condition".into(),
                key_loc: item.loc,
                value: Node::string("service_started", item.loc),
            });
            Node::map(m, item.loc)
        } else {
            Node::null(item.loc)
        };
        map.insert(Entry {
            key: name,
            key_loc: item.loc,
            value,
        });
    }
    node.value = Value::Map(map);
}

fn scalar_to_list(node: &mut Node) {
    if let Value::Scalar(Scalar {
        kind: Kind::Str, ..
    }) = &node.value
    {
        let item = node.clone();
        node.value = Value::Seq(vec![Node { tag: None, ..item }]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::FileId;
    use crate::yaml::parse;

    fn doc(text: &str) -> Node {
        let mut n = parse(text, FileId(0)).unwrap().remove(0);
        if let Some(services) = n.as_map_mut().and_then(|m| m.get_mut("services")) {
            for e in &mut services.as_map_mut().unwrap().entries {
                normalize_service(&mut e.value);
            }
        }
        n
    }

    /// The merged tree as compact text, for comparisons.
    fn show(n: &Node) -> String {
        match &n.value {
            Value::Scalar(s) if s.kind == Kind::Null => "~".into(),
            Value::Scalar(s) => s.text.clone(),
            Value::Seq(items) => format!(
                "[{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Value::Map(m) => format!(
                "{{{}}}",
                m.entries
                    .iter()
                    .map(|e| format!("{}: {}", e.key, show(&e.value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn web(base: &str, over: &str) -> String {
        let mut merged = merge_files(doc(base), doc(over));
        drop_resets(&mut merged);
        let services = merged.as_map().unwrap().get("services").unwrap();
        show(services.as_map().unwrap().get("web").unwrap())
    }

    #[test]
    fn scalars_replace_and_maps_merge() {
        assert_eq!(
            web(
                "services: {web: {image: a, environment: [A=1, B=2], labels: {x: y}}}",
                "services: {web: {image: b, environment: {B: 3, C: 4}}}"
            ),
            "{image: b, environment: {A: 1, B: 3, C: 4}, labels: {x: y}}"
        );
    }

    #[test]
    fn command_and_healthcheck_test_are_replaced() {
        assert_eq!(
            web(
                "services: {web: {command: [a, b], healthcheck: {test: [CMD, x], interval: 1s}}}",
                "services: {web: {command: [c], healthcheck: {test: [CMD, y]}}}"
            ),
            "{command: [c], healthcheck: {test: [CMD, y], interval: 1s}}"
        );
    }

    #[test]
    fn ports_append_without_duplicates_and_volumes_key_by_target() {
        assert_eq!(
            web(
                "services: {web: {ports: ['80:80'], volumes: ['a:/data', './x:/x:ro']}}",
                "services: {web: {ports: ['80:80', '443:443'], volumes: ['b:/data', {type: volume, source: c, target: /c}]}}"
            ),
            "{ports: [80:80, 443:443], volumes: [b:/data, ./x:/x:ro, {type: volume, source: c, target: /c}]}"
        );
    }

    #[test]
    fn depends_on_and_networks_lists_become_maps() {
        assert_eq!(
            web(
                "services: {web: {depends_on: [db], networks: [front]}}",
                "services: {web: {depends_on: {cache: {condition: service_healthy}}, networks: {back: {aliases: [w]}}}}"
            ),
            "{depends_on: {db: {condition: service_started}, cache: {condition: service_healthy}}, networks: {front: ~, back: {aliases: [w]}}}"
        );
    }

    #[test]
    fn reset_and_override_tags() {
        assert_eq!(
            web(
                "services: {web: {ports: ['80:80'], environment: {A: 1}, cap_add: [X]}}",
                "services: {web: {ports: !reset [], environment: !override {B: 2}, cap_add: [X, Y]}}"
            ),
            "{environment: {B: 2}, cap_add: [X, Y]}"
        );
    }

    #[test]
    fn build_string_becomes_context() {
        assert_eq!(
            web(
                "services: {web: {build: ./app}}",
                "services: {web: {build: {target: prod, args: [V=1]}}}"
            ),
            "{build: {context: ./app, target: prod, args: {V: 1}}}"
        );
    }
}
