//! The top level of the merged tree → a [`Project`]: services, networks, volumes, secrets,
//! configs and extensions. Resource names get the project prefix here (`PROJECT_KEY`), and the
//! implicit `default` network is added for services that name no network.

use std::collections::BTreeMap;

use super::service::service;
use super::{Cx, join};
use crate::model::{FileObject, Ipam, IpamPool, Network, Project, Service, ServiceNetwork, Volume};
use crate::yaml::{Map, Node};

const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs", "include",
];

/// Converts the merged top-level mapping. The project `name` is decided by the loader.
pub(crate) fn convert_project(cx: &mut Cx<'_>, root: &Map, name: &str) -> Project {
    let mut p = Project {
        name: name.to_string(),
        ..Project::default()
    };
    for e in &root.entries {
        let v = &e.value;
        match e.key.as_str() {
            // `version` is obsolete (the loader warns); `name` and `include` are the loader's.
            "version" | "name" | "include" => {}
            "services" => {
                let Some(m) = cx.map(v, "services") else {
                    continue;
                };
                for s in &m.entries {
                    cx.locations.insert(join("services", &s.key), s.key_loc);
                    if let Some(svc) = service(cx, &s.key, &s.value) {
                        p.services.insert(s.key.clone(), svc);
                    }
                }
            }
            "networks" => each(cx, v, "networks", |cx, key, node, path| {
                let n = network(cx, node, path, name, key);
                p.networks.insert(key.to_string(), n);
            }),
            "volumes" => each(cx, v, "volumes", |cx, key, node, path| {
                let vol = volume(cx, node, path, name, key);
                p.volumes.insert(key.to_string(), vol);
            }),
            "secrets" => each(cx, v, "secrets", |cx, key, node, path| {
                let o = file_object(cx, node, path, name, key, false);
                p.secrets.insert(key.to_string(), o);
            }),
            "configs" => each(cx, v, "configs", |cx, key, node, path| {
                let o = file_object(cx, node, path, name, key, true);
                p.configs.insert(key.to_string(), o);
            }),
            _ => cx.other_key(e, "", TOP_KEYS, &["models"], Some(&mut p.extensions)),
        }
    }
    add_default_network(&mut p.services, &mut p.networks, name);
    p
}

/// Calls `f` for each entry of a top-level resource mapping (a `null` definition is empty).
fn each(
    cx: &mut Cx<'_>,
    v: &Node,
    section: &str,
    mut f: impl FnMut(&mut Cx<'_>, &str, &Node, &str),
) {
    if v.is_null() {
        return;
    }
    let Some(m) = cx.map(v, section) else { return };
    for e in &m.entries {
        let path = join(section, &e.key);
        cx.locations.insert(path.clone(), e.key_loc);
        f(cx, &e.key, &e.value, &path);
    }
}

/// Services without `networks` and `network_mode` join `default`, which then exists.
fn add_default_network(
    services: &mut BTreeMap<String, Service>,
    networks: &mut BTreeMap<String, Network>,
    project: &str,
) {
    let mut used = false;
    for s in services.values_mut() {
        if s.networks.is_empty() && s.network_mode.is_none() {
            s.networks.insert("default".into(), None::<ServiceNetwork>);
            used = true;
        }
    }
    if used && !networks.contains_key("default") {
        networks.insert(
            "default".into(),
            Network {
                name: format!("{project}_default"),
                ..Network::default()
            },
        );
    }
}

fn resource_name(explicit: Option<String>, external: bool, project: &str, key: &str) -> String {
    match explicit {
        Some(n) => n,
        None if external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

fn network(cx: &mut Cx<'_>, v: &Node, path: &str, project: &str, key: &str) -> Network {
    const KEYS: &[&str] = &[
        "name",
        "driver",
        "driver_opts",
        "ipam",
        "external",
        "internal",
        "attachable",
        "labels",
        "enable_ipv6",
    ];
    let mut n = Network::default();
    let mut explicit = None;
    if let Some(m) = (!v.is_null()).then(|| cx.map(v, path)).flatten() {
        for e in &m.entries {
            let ep = join(path, &e.key);
            let x = &e.value;
            match e.key.as_str() {
                "name" => explicit = cx.string(x, &ep),
                "driver" => n.driver = cx.string(x, &ep),
                "driver_opts" => n.driver_opts = cx.labels(x, &ep),
                "ipam" => n.ipam = ipam(cx, x, &ep),
                "external" => n.external = cx.bool(x, &ep).unwrap_or_default(),
                "internal" => n.internal = cx.bool(x, &ep).unwrap_or_default(),
                "attachable" => n.attachable = cx.bool(x, &ep).unwrap_or_default(),
                "labels" => n.labels = cx.labels(x, &ep),
                "enable_ipv6" => n.enable_ipv6 = cx.bool(x, &ep).unwrap_or_default(),
                _ => cx.other_key(e, path, KEYS, &["enable_ipv4"], Some(&mut n.extensions)),
            }
        }
    }
    n.name = resource_name(explicit, n.external, project, key);
    n
}

fn ipam(cx: &mut Cx<'_>, v: &Node, path: &str) -> Option<Ipam> {
    let m = cx.map(v, path)?;
    let mut out = Ipam::default();
    for e in &m.entries {
        let ep = join(path, &e.key);
        match e.key.as_str() {
            "driver" => out.driver = cx.string(&e.value, &ep),
            "config" => {
                let Some(items) = cx.seq(&e.value, &ep) else {
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{ep}[{i}]");
                    let Some(pm) = cx.map(item, &ip) else {
                        continue;
                    };
                    let mut pool = IpamPool::default();
                    for f in &pm.entries {
                        let fp = join(&ip, &f.key);
                        match f.key.as_str() {
                            "subnet" => pool.subnet = subnet(cx, &f.value, &fp),
                            "ip_range" => pool.ip_range = subnet(cx, &f.value, &fp),
                            "gateway" => pool.gateway = cx.string(&f.value, &fp),
                            _ => cx.other_key(
                                f,
                                &ip,
                                &["subnet", "ip_range", "gateway"],
                                &["aux_addresses"],
                                None,
                            ),
                        }
                    }
                    out.config.push(pool);
                }
            }
            _ => cx.other_key(e, path, &["driver", "config"], &["options"], None),
        }
    }
    Some(out)
}

/// A CIDR such as `172.28.0.0/16`.
fn subnet(cx: &mut Cx<'_>, v: &Node, path: &str) -> Option<String> {
    let text = cx.string(v, path)?;
    let ok = text.split_once('/').is_some_and(|(ip, len)| {
        let bits = if ip.contains(':') { 128 } else { 32 };
        ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= bits)
    });
    if !ok {
        cx.error(
            v.loc,
            path,
            format!("invalid subnet {text:?}, expected e.g. 172.28.0.0/16"),
        );
        return None;
    }
    Some(text)
}

fn volume(cx: &mut Cx<'_>, v: &Node, path: &str, project: &str, key: &str) -> Volume {
    let mut vol = Volume::default();
    let mut explicit = None;
    if let Some(m) = (!v.is_null()).then(|| cx.map(v, path)).flatten() {
        for e in &m.entries {
            let ep = join(path, &e.key);
            let x = &e.value;
            match e.key.as_str() {
                "name" => explicit = cx.string(x, &ep),
                "driver" => vol.driver = cx.string(x, &ep),
                "driver_opts" => vol.driver_opts = cx.labels(x, &ep),
                "external" => vol.external = cx.bool(x, &ep).unwrap_or_default(),
                "labels" => vol.labels = cx.labels(x, &ep),
                _ => cx.other_key(
                    e,
                    path,
                    &["name", "driver", "driver_opts", "external", "labels"],
                    &[],
                    Some(&mut vol.extensions),
                ),
            }
        }
    }
    vol.name = resource_name(explicit, vol.external, project, key);
    vol
}

fn file_object(
    cx: &mut Cx<'_>,
    v: &Node,
    path: &str,
    project: &str,
    key: &str,
    is_config: bool,
) -> FileObject {
    let mut o = FileObject::default();
    let mut explicit = None;
    if let Some(m) = cx.map(v, path) {
        for e in &m.entries {
            let ep = join(path, &e.key);
            let x = &e.value;
            match e.key.as_str() {
                "name" => explicit = cx.string(x, &ep),
                "file" => o.file = cx.string(x, &ep),
                "environment" => o.environment = cx.string(x, &ep),
                "content" if is_config => o.content = cx.string(x, &ep),
                "external" => o.external = cx.bool(x, &ep).unwrap_or_default(),
                "labels" => o.labels = cx.labels(x, &ep),
                _ => {
                    let known: &[&str] = if is_config {
                        &[
                            "name",
                            "file",
                            "environment",
                            "content",
                            "external",
                            "labels",
                        ]
                    } else {
                        &["name", "file", "environment", "external", "labels"]
                    };
                    cx.other_key(
                        e,
                        path,
                        known,
                        &["driver", "driver_opts", "template_driver"],
                        Some(&mut o.extensions),
                    )
                }
            }
        }
        let sources = [
            o.file.is_some(),
            o.environment.is_some(),
            o.content.is_some(),
            o.external,
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if sources != 1 {
            let what = if is_config {
                "`file`, `environment`, `content` or `external`"
            } else {
                "`file`, `environment` or `external`"
            };
            cx.error(v.loc, path, format!("needs exactly one of {what}"));
        }
    }
    o.name = resource_name(explicit, o.external, project, key);
    o
}
