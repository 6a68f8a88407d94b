//! Ports and volumes of a service (short and long syntax) and file modes.

use std::path::Path;

use super::syntax::{parse_port, parse_volume, port_range};
use super::{Cx, join};
use crate::model::{
    BindOptions, ByteSize, Port, ServiceVolume, TmpfsOptions, VolumeKind, VolumeOptions,
};
use crate::yaml::{Kind, Map, Node, Value};

pub(super) fn ports(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<Port> {
    let Some(items) = cx.seq(v, p) else {
        return Vec::new();
    };
    let mut out: Vec<Port> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        let parsed = match &item.value {
            Value::Map(m) => long_port(cx, m, &ip),
            _ => {
                let Some(text) = cx.text(item, &ip) else {
                    continue;
                };
                parse_port(&text).map_err(|m| format!("invalid port {text:?}: {m}"))
            }
        };
        match parsed {
            Ok(ports) => {
                for port in ports {
                    if !out.contains(&port) {
                        out.push(port);
                    }
                }
            }
            Err(m) => cx.error(item.loc, &ip, m),
        }
    }
    out
}

fn long_port(cx: &mut Cx<'_>, m: &Map, p: &str) -> Result<Vec<Port>, String> {
    let mut port = Port {
        mode: "ingress".into(),
        host_ip: None,
        target: 0,
        published: None,
        protocol: "tcp".into(),
    };
    for e in &m.entries {
        let ep = join(p, &e.key);
        let n = &e.value;
        match e.key.as_str() {
            "target" => {
                let t = cx.int(n, &ep).unwrap_or_default();
                port.target = u16::try_from(t)
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or_else(|| format!("invalid target port {t}"))?;
            }
            "published" => {
                let text = cx.text(n, &ep).unwrap_or_default();
                port_range(&text)?;
                port.published = Some(text);
            }
            "host_ip" => {
                let text = cx.string(n, &ep).unwrap_or_default();
                if text.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("invalid host IP {text:?}"));
                }
                port.host_ip = Some(text);
            }
            "protocol" => {
                let text = cx.string(n, &ep).unwrap_or_default();
                if !matches!(text.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(format!("invalid protocol {text:?} (tcp, udp or sctp)"));
                }
                port.protocol = text;
            }
            "mode" => {
                if cx.string(n, &ep).as_deref() != Some("ingress") {
                    cx.error(
                        n.loc,
                        &ep,
                        "not supported yet: port mode other than ingress",
                    );
                }
            }
            _ => cx.other_key(
                e,
                p,
                &["target", "published", "host_ip", "protocol", "mode"],
                &["name", "app_protocol"],
                None,
            ),
        }
    }
    if port.target == 0 {
        return Err("missing `target`".into());
    }
    Ok(vec![port])
}

pub(super) fn volumes(cx: &mut Cx<'_>, v: &Node, p: &str) -> Vec<ServiceVolume> {
    let Some(items) = cx.seq(v, p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        cx.locations.insert(ip.clone(), item.loc);
        let parsed = match &item.value {
            Value::Map(m) => long_volume(cx, m, &ip),
            _ => {
                let Some(text) = cx.string(item, &ip) else {
                    continue;
                };
                parse_volume(&text).map_err(|m| format!("invalid volume {text:?}: {m}"))
            }
        };
        match parsed {
            Ok(vol) => out.push(vol),
            Err(m) => cx.error(item.loc, &ip, m),
        }
    }
    out
}

fn long_volume(cx: &mut Cx<'_>, m: &Map, p: &str) -> Result<ServiceVolume, String> {
    let mut vol = ServiceVolume {
        kind: VolumeKind::Volume,
        source: None,
        target: String::new(),
        read_only: false,
        bind: None,
        volume: None,
        tmpfs: None,
    };
    for e in &m.entries {
        let ep = join(p, &e.key);
        let n = &e.value;
        match e.key.as_str() {
            "type" => {
                vol.kind = match cx.string(n, &ep).as_deref() {
                    Some("volume") => VolumeKind::Volume,
                    Some("bind") => VolumeKind::Bind,
                    Some("tmpfs") => VolumeKind::Tmpfs,
                    Some(other @ ("npipe" | "cluster" | "image")) => {
                        return Err(format!("not supported yet: volume type {other}"));
                    }
                    Some(other) => return Err(format!("invalid volume type {other:?}")),
                    None => return Err("invalid volume type".into()),
                }
            }
            "source" => vol.source = cx.string(n, &ep),
            "target" => vol.target = cx.string(n, &ep).unwrap_or_default(),
            "read_only" => vol.read_only = cx.bool(n, &ep).unwrap_or_default(),
            "bind" => {
                let Some(b) = cx.map(n, &ep) else { continue };
                // Only the short syntax implies `create_host_path` (the spec keeps it for
                // compatibility); in the long syntax it is off unless asked for.
                let mut o = BindOptions::default();
                for f in &b.entries {
                    let fp = join(&ep, &f.key);
                    match f.key.as_str() {
                        "propagation" => o.propagation = cx.string(&f.value, &fp),
                        "create_host_path" => {
                            o.create_host_path = cx.bool(&f.value, &fp).unwrap_or_default()
                        }
                        "selinux" => o.selinux = cx.string(&f.value, &fp),
                        _ => cx.other_key(
                            f,
                            &ep,
                            &["propagation", "create_host_path", "selinux"],
                            &["recursive"],
                            None,
                        ),
                    }
                }
                vol.bind = Some(o);
            }
            "volume" => {
                let Some(b) = cx.map(n, &ep) else { continue };
                let mut o = VolumeOptions::default();
                for f in &b.entries {
                    let fp = join(&ep, &f.key);
                    match f.key.as_str() {
                        "nocopy" => o.nocopy = cx.bool(&f.value, &fp).unwrap_or_default(),
                        "subpath" => o.subpath = cx.string(&f.value, &fp),
                        _ => cx.other_key(f, &ep, &["nocopy", "subpath"], &[], None),
                    }
                }
                vol.volume = Some(o);
            }
            "tmpfs" => {
                let Some(b) = cx.map(n, &ep) else { continue };
                let mut o = TmpfsOptions::default();
                for f in &b.entries {
                    let fp = join(&ep, &f.key);
                    match f.key.as_str() {
                        "size" => o.size = cx.bytes(&f.value, &fp).map(ByteSize),
                        "mode" => o.mode = mode(cx, &f.value, &fp),
                        _ => cx.other_key(f, &ep, &["size", "mode"], &[], None),
                    }
                }
                vol.tmpfs = Some(o);
            }
            "consistency" => {}
            _ => cx.other_key(
                e,
                p,
                &[
                    "type",
                    "source",
                    "target",
                    "read_only",
                    "bind",
                    "volume",
                    "tmpfs",
                    "consistency",
                ],
                &[],
                None,
            ),
        }
    }
    if vol.target.is_empty() || !vol.target.starts_with('/') {
        return Err("`target` must be an absolute path".into());
    }
    match vol.kind {
        VolumeKind::Bind => {
            let Some(src) = &vol.source else {
                return Err("a bind mount needs a `source`".into());
            };
            if !Path::new(src).is_absolute() {
                return Err(format!("bind source {src:?} must be a path"));
            }
        }
        VolumeKind::Tmpfs => {
            if vol.source.is_some() {
                return Err("a tmpfs mount has no `source`".into());
            }
        }
        VolumeKind::Volume => {}
    }
    Ok(vol)
}

pub(super) fn mode(cx: &mut Cx<'_>, v: &Node, p: &str) -> Option<u32> {
    let text = cx.text(v, p)?;
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match v.as_scalar().map(|s| s.kind) {
        Some(Kind::Int(n)) if !text.starts_with('0') => u32::try_from(n).ok(),
        _ => u32::from_str_radix(digits, 8).ok(),
    }
    .or_else(|| {
        cx.error(v.loc, p, format!("invalid file mode {text:?}"));
        None
    })
}
