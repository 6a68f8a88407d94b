//! One service's definition → [`Service`], every short syntax in its long form.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::mounts::{mode, ports, volumes};
use super::syntax::{port_range, split_command};
use super::{Cx, join};
use crate::dotenv;
use crate::model::ByteSize;
use crate::model::{
    Build, Condition, Dependency, Deploy, FileRef, Healthcheck, Limits, Resources, Service,
    ServiceNetwork,
};
use crate::yaml::{Kind, Node, Value};

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "command",
    "configs",
    "container_name",
    "cpus",
    "depends_on",
    "deploy",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "labels",
    "mem_limit",
    "network_mode",
    "networks",
    "pids_limit",
    "ports",
    "profiles",
    "read_only",
    "restart",
    "scale",
    "secrets",
    "stop_grace_period",
    "stop_signal",
    "tmpfs",
    "user",
    "volumes",
    "working_dir",
];

/// Keys of the Compose specification that kiln does not implement yet.
pub(crate) const SERVICE_UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "provider",
    "pull_policy",
    "runtime",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tty",
    "ulimits",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

pub(crate) fn service(cx: &mut Cx<'_>, name: &str, node: &Node) -> Option<Service> {
    let path = format!("services.{name}");
    let map = cx.map(node, &path)?;
    let mut s = Service::default();
    let mut env_files: Vec<(Node, String, bool)> = Vec::new();
    let mut environment = BTreeMap::new();
    for e in &map.entries {
        let p = join(&path, &e.key);
        let v = &e.value;
        match e.key.as_str() {
            "build" => s.build = build(cx, v, &p),
            "cap_add" => s.cap_add = cx.strings(v, &p),
            "cap_drop" => s.cap_drop = cx.strings(v, &p),
            "command" => s.command = command(cx, v, &p),
            "entrypoint" => s.entrypoint = command(cx, v, &p),
            "configs" => s.configs = file_refs(cx, v, &p),
            "secrets" => s.secrets = file_refs(cx, v, &p),
            "container_name" => {
                cx.locations.insert(p.clone(), v.loc);
                s.container_name = cx.string(v, &p);
            }
            "cpus" => s.cpus = cx.float(v, &p),
            "depends_on" => s.depends_on = depends_on(cx, v, &p),
            "deploy" => s.deploy = deploy(cx, v, &p),
            "env_file" => env_files = env_file_list(cx, v, &p),
            "environment" => environment = cx.key_values(v, &p),
            "expose" => {
                s.expose = cx.strings(v, &p);
                for (i, x) in s.expose.iter().enumerate() {
                    let port = x.split('/').next().unwrap_or_default();
                    if let Err(m) = port_range(port) {
                        let at = v.as_seq().and_then(|s| s.get(i)).map_or(v.loc, |n| n.loc);
                        cx.error(at, &format!("{p}[{i}]"), m);
                    }
                }
            }
            "extra_hosts" => s.extra_hosts = extra_hosts(cx, v, &p),
            "healthcheck" => s.healthcheck = healthcheck(cx, v, &p),
            "hostname" => s.hostname = cx.string(v, &p),
            "image" => s.image = cx.string(v, &p),
            "init" => s.init = cx.bool(v, &p),
            "labels" => s.labels = cx.labels(v, &p),
            "mem_limit" => s.mem_limit = cx.bytes(v, &p).map(ByteSize),
            "network_mode" => {
                cx.locations.insert(p.clone(), v.loc);
                s.network_mode = cx.string(v, &p);
            }
            "networks" => s.networks = networks(cx, v, &p),
            "pids_limit" => s.pids_limit = cx.int(v, &p),
            "ports" => s.ports = ports(cx, v, &p),
            "profiles" => s.profiles = cx.strings(v, &p),
            "read_only" => s.read_only = cx.bool(v, &p).unwrap_or_default(),
            "restart" => s.restart = restart(cx, v, &p),
            "scale" => s.scale = cx.u32(v, &p),
            "stop_grace_period" => s.stop_grace_period = cx.duration(v, &p),
            "stop_signal" => s.stop_signal = cx.string(v, &p),
            "tmpfs" => s.tmpfs = cx.string_or_list(v, &p),
            "user" => s.user = cx.string(v, &p),
            "volumes" => s.volumes = volumes(cx, v, &p),
            "working_dir" => s.working_dir = cx.string(v, &p),
            // Resolved by the loader before conversion.
            "extends" => {}
            _ => cx.other_key(
                e,
                &path,
                SERVICE_KEYS,
                SERVICE_UNSUPPORTED,
                Some(&mut s.extensions),
            ),
        }
    }
    s.environment = resolve_environment(cx, env_files, environment);
    Some(s)
}

/// `env_file` entries (files first, in order) under `environment`; a variable listed without a
/// value takes the project's value if there is one.
fn resolve_environment(
    cx: &mut Cx<'_>,
    files: Vec<(Node, String, bool)>,
    environment: BTreeMap<String, Option<String>>,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for (node, path, required) in files {
        let Some(file) = node.as_str() else { continue };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(e) => {
                cx.error(node.loc, &path, format!("cannot read env file {file}: {e}"));
                continue;
            }
        };
        let id = cx.sources.add(file.to_string(), Arc::from(text.as_str()));
        let env = cx.env;
        let lookup = |n: &str| env.get(n).cloned();
        match dotenv::parse(&text, id, &lookup) {
            Ok(vars) => out.extend(vars.into_iter().map(|(k, v)| (k, Some(v)))),
            Err(p) => cx.problems.push(p),
        }
    }
    for (k, v) in environment {
        let v = v.or_else(|| cx.env.get(&k).cloned());
        out.insert(k, v);
    }
    out
}

fn env_file_list(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<(Node, String, bool)> {
    let Some(items) = cx.seq(v, p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        match &item.value {
            Value::Scalar(_) => {
                if cx.string(item, &ip).is_some() {
                    out.push((item.clone(), ip, true));
                }
            }
            Value::Map(m) => {
                let mut path_node = None;
                let mut required = true;
                for e in &m.entries {
                    let ep = join(&ip, &e.key);
                    match e.key.as_str() {
                        "path" => path_node = cx.string(&e.value, &ep).map(|_| e.value.clone()),
                        "required" => required = cx.bool(&e.value, &ep).unwrap_or(true),
                        _ => cx.other_key(e, &ip, &["path", "required"], &["format"], None),
                    }
                }
                match path_node {
                    Some(n) => out.push((n, ip, required)),
                    None => cx.error(item.loc, &ip, "missing `path`"),
                }
            }
            Value::Seq(_) => {
                cx.error(item.loc, &ip, "expected a path or a mapping with `path`");
            }
        }
    }
    out
}

fn build(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<Build> {
    const KEYS: &[&str] = &[
        "context",
        "dockerfile",
        "dockerfile_inline",
        "args",
        "ssh",
        "labels",
        "cache_from",
        "cache_to",
        "no_cache",
        "network",
        "target",
        "secrets",
        "tags",
    ];
    const UNSUPPORTED: &[&str] = &[
        "additional_contexts",
        "entitlements",
        "extra_hosts",
        "isolation",
        "privileged",
        "pull",
        "platforms",
        "provenance",
        "sbom",
        "shm_size",
        "ulimits",
    ];
    let map = cx.map(v, p)?;
    let mut b = Build::default();
    for e in &map.entries {
        let ep = join(p, &e.key);
        let n = &e.value;
        match e.key.as_str() {
            "context" => b.context = cx.string(n, &ep).unwrap_or_default(),
            "dockerfile" => b.dockerfile = cx.string(n, &ep),
            "dockerfile_inline" => b.dockerfile_inline = cx.string(n, &ep),
            "args" => b.args = cx.key_values(n, &ep),
            "ssh" => b.ssh = ssh(cx, n, &ep),
            "labels" => b.labels = cx.labels(n, &ep),
            "cache_from" => b.cache_from = cx.strings(n, &ep),
            "cache_to" => b.cache_to = cx.strings(n, &ep),
            "no_cache" => b.no_cache = cx.bool(n, &ep).unwrap_or_default(),
            "network" => b.network = cx.string(n, &ep),
            "target" => b.target = cx.string(n, &ep),
            "secrets" => b.secrets = file_refs(cx, n, &ep),
            "tags" => b.tags = cx.strings(n, &ep),
            _ => cx.other_key(e, p, KEYS, UNSUPPORTED, None),
        }
    }
    if b.context.is_empty() {
        b.context = cx.project_dir.display().to_string();
    }
    if b.dockerfile.is_none() && b.dockerfile_inline.is_none() {
        b.dockerfile = Some("Dockerfile".into());
    }
    Some(b)
}

/// `ssh: [default, id=/path]` or `ssh: {id: /path}`, as `id[=path]` strings.
fn ssh(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<String> {
    match &v.value {
        Value::Map(_) => cx
            .key_values(v, p)
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect(),
        _ => cx.string_or_list(v, p),
    }
}

/// `command`/`entrypoint`: a string is split into words; `null` means unset.
fn command(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<Vec<String>> {
    match &v.value {
        Value::Scalar(s) if s.kind == Kind::Null => None,
        Value::Scalar(_) => {
            let text = cx.string(v, p)?;
            match split_command(&text) {
                Ok(words) => Some(words),
                Err(m) => {
                    cx.error(v.loc, p, m);
                    None
                }
            }
        }
        Value::Seq(_) => Some(cx.strings(v, p)),
        Value::Map(_) => {
            cx.error(v.loc, p, "expected a string or a list, found a mapping");
            None
        }
    }
}

fn file_refs(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<FileRef> {
    let Some(items) = cx.seq(v, p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        cx.locations.insert(ip.clone(), item.loc);
        match &item.value {
            Value::Map(m) => {
                let mut r = FileRef::default();
                for e in &m.entries {
                    let ep = join(&ip, &e.key);
                    let n = &e.value;
                    match e.key.as_str() {
                        "source" => r.source = cx.string(n, &ep).unwrap_or_default(),
                        "target" => r.target = cx.string(n, &ep),
                        "uid" => r.uid = cx.text(n, &ep),
                        "gid" => r.gid = cx.text(n, &ep),
                        "mode" => r.mode = mode(cx, n, &ep),
                        _ => cx.other_key(
                            e,
                            &ip,
                            &["source", "target", "uid", "gid", "mode"],
                            &[],
                            None,
                        ),
                    }
                }
                if r.source.is_empty() {
                    cx.error(item.loc, &ip, "missing `source`");
                } else {
                    out.push(r);
                }
            }
            _ => {
                if let Some(source) = cx.string(item, &ip) {
                    out.push(FileRef {
                        source,
                        ..FileRef::default()
                    });
                }
            }
        }
    }
    out
}

/// A file mode: an integer (YAML `0440` is decimal 440 in YAML 1.2, so an octal string or
/// `0o440` is what people mean) or a string of octal digits.
fn depends_on(cx: &mut Cx<'_>, v: &Node, p: &str) -> BTreeMap<String, Dependency> {
    let mut out = BTreeMap::new();
    let Some(map) = cx.map(v, p) else {
        return out;
    };
    for e in &map.entries {
        let ep = join(p, &e.key);
        cx.locations.insert(ep.clone(), e.key_loc);
        let mut dep = Dependency {
            condition: Condition::ServiceStarted,
            restart: false,
            required: true,
        };
        if let Some(m) = cx.map(&e.value, &ep) {
            for f in &m.entries {
                let fp = join(&ep, &f.key);
                match f.key.as_str() {
                    "condition" => match f.value.as_str() {
                        Some("service_started") => dep.condition = Condition::ServiceStarted,
                        Some("service_healthy") => dep.condition = Condition::ServiceHealthy,
                        Some("service_completed_successfully") => {
                            dep.condition = Condition::ServiceCompletedSuccessfully
                        }
                        _ => cx.error(
                            f.value.loc,
                            &fp,
                            "expected service_started, service_healthy or service_completed_successfully",
                        ),
                    },
                    "restart" => dep.restart = cx.bool(&f.value, &fp).unwrap_or_default(),
                    "required" => dep.required = cx.bool(&f.value, &fp).unwrap_or(true),
                    _ => cx.other_key(f, &ep, &["condition", "restart", "required"], &[], None),
                }
            }
        }
        out.insert(e.key.clone(), dep);
    }
    out
}

fn deploy(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<Deploy> {
    const UNSUPPORTED: &[&str] = &[
        "endpoint_mode",
        "labels",
        "mode",
        "placement",
        "restart_policy",
        "rollback_config",
        "update_config",
    ];
    let map = cx.map(v, p)?;
    let mut d = Deploy::default();
    for e in &map.entries {
        let ep = join(p, &e.key);
        match e.key.as_str() {
            "replicas" => d.replicas = cx.u32(&e.value, &ep),
            "resources" => d.resources = resources(cx, &e.value, &ep),
            _ => cx.other_key(e, p, &["replicas", "resources"], UNSUPPORTED, None),
        }
    }
    Some(d)
}

fn resources(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<Resources> {
    let map = cx.map(v, p)?;
    let mut r = Resources::default();
    for e in &map.entries {
        let ep = join(p, &e.key);
        match e.key.as_str() {
            "limits" => {
                let Some(m) = cx.map(&e.value, &ep) else {
                    continue;
                };
                let mut l = Limits::default();
                for f in &m.entries {
                    let fp = join(&ep, &f.key);
                    match f.key.as_str() {
                        "cpus" => l.cpus = cx.float(&f.value, &fp),
                        "memory" => l.memory = cx.bytes(&f.value, &fp).map(ByteSize),
                        "pids" => l.pids = cx.int(&f.value, &fp),
                        _ => cx.other_key(f, &ep, &["cpus", "memory", "pids"], &["devices"], None),
                    }
                }
                r.limits = Some(l);
            }
            _ => cx.other_key(e, p, &["limits"], &["reservations"], None),
        }
    }
    Some(r)
}

fn extra_hosts(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<String> {
    let entries: Vec<(String, crate::diagnostic::Loc)> = match &v.value {
        Value::Map(m) => m
            .entries
            .iter()
            .filter_map(|e| {
                let ip = cx.text(&e.value, &join(p, &e.key))?;
                Some((format!("{}={ip}", e.key), e.key_loc))
            })
            .collect(),
        _ => {
            let items: Vec<Node> = v.as_seq().map(<[Node]>::to_vec).unwrap_or_default();
            cx.strings(v, p)
                .into_iter()
                .zip(items.iter().map(|n| n.loc))
                .collect()
        }
    };
    let mut out = Vec::new();
    for (i, (entry, loc)) in entries.into_iter().enumerate() {
        // `host=ip` or `host:ip`; an IPv6 address has colons itself, so `=` is tried first.
        let split = entry.split_once('=').or_else(|| entry.split_once(':'));
        match split {
            Some((host, ip)) if !host.is_empty() && !ip.is_empty() => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                out.push(format!("{host}={ip}"));
            }
            _ => cx.error(
                loc,
                &format!("{p}[{i}]"),
                format!("invalid extra host {entry:?}, expected HOST=IP"),
            ),
        }
    }
    out
}

fn healthcheck(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<Healthcheck> {
    const KEYS: &[&str] = &[
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "start_interval",
        "disable",
    ];
    let map = cx.map(v, p)?;
    let mut h = Healthcheck::default();
    for e in &map.entries {
        let ep = join(p, &e.key);
        let n = &e.value;
        match e.key.as_str() {
            "test" => {
                h.test = match &n.value {
                    Value::Scalar(s) if s.kind == Kind::Str => {
                        vec!["CMD-SHELL".to_string(), s.text.clone()]
                    }
                    _ => cx.strings(n, &ep),
                };
                if let Some(first) = h.test.first()
                    && !matches!(first.as_str(), "NONE" | "CMD" | "CMD-SHELL")
                {
                    cx.error(
                        n.loc,
                        &ep,
                        format!("a test list starts with CMD, CMD-SHELL or NONE, not {first:?}"),
                    );
                }
            }
            "interval" => h.interval = cx.duration(n, &ep),
            "timeout" => h.timeout = cx.duration(n, &ep),
            "start_period" => h.start_period = cx.duration(n, &ep),
            "start_interval" => h.start_interval = cx.duration(n, &ep),
            "retries" => h.retries = cx.uint(n, &ep),
            "disable" => h.disable = cx.bool(n, &ep).unwrap_or_default(),
            _ => cx.other_key(e, p, KEYS, &[], None),
        }
    }
    Some(h)
}

fn networks(cx: &mut Cx<'_>, v: &Node, p: &str) -> BTreeMap<String, Option<ServiceNetwork>> {
    const UNSUPPORTED: &[&str] = &[
        "driver_opts",
        "gw_priority",
        "interface_name",
        "link_local_ips",
        "mac_address",
        "priority",
    ];
    let mut out = BTreeMap::new();
    let Some(map) = cx.map(v, p) else {
        return out;
    };
    for e in &map.entries {
        let ep = join(p, &e.key);
        cx.locations.insert(ep.clone(), e.key_loc);
        if e.value.is_null() {
            out.insert(e.key.clone(), None);
            continue;
        }
        let Some(m) = cx.map(&e.value, &ep) else {
            continue;
        };
        let mut n = ServiceNetwork::default();
        for f in &m.entries {
            let fp = join(&ep, &f.key);
            match f.key.as_str() {
                "aliases" => n.aliases = cx.strings(&f.value, &fp),
                "ipv4_address" => n.ipv4_address = ip(cx, &f.value, &fp, true),
                "ipv6_address" => n.ipv6_address = ip(cx, &f.value, &fp, false),
                _ => cx.other_key(
                    f,
                    &ep,
                    &["aliases", "ipv4_address", "ipv6_address"],
                    UNSUPPORTED,
                    None,
                ),
            }
        }
        out.insert(e.key.clone(), Some(n));
    }
    out
}

fn ip(cx: &mut Cx<'_>, v: &Node, p: &str, v4: bool) -> Option<String> {
    let text = cx.string(v, p)?;
    let ok = if v4 {
        text.parse::<std::net::Ipv4Addr>().is_ok()
    } else {
        text.parse::<std::net::Ipv6Addr>().is_ok()
    };
    if !ok {
        cx.error(v.loc, p, format!("invalid IP address {text:?}"));
        return None;
    }
    Some(text)
}

fn restart(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<String> {
    let text = cx.string(v, p)?;
    let ok = match text.split_once(':') {
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        Some(_) => false,
        None => matches!(
            text.as_str(),
            "no" | "always" | "on-failure" | "unless-stopped"
        ),
    };
    if !ok {
        cx.error(
            v.loc,
            p,
            format!("invalid restart policy {text:?}, expected no, always, on-failure[:N] or unless-stopped"),
        );
        return None;
    }
    Some(text)
}
