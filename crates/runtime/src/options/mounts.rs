//! `-v`, `--tmpfs` and `--mount` specs into the container's mounts, with Docker's syntax,
//! defaults and messages.

use std::path::PathBuf;

use crate::error::RuntimeError;
use crate::store::MountConfig;

/// A container path: absolute, normalised, not `/`.
fn container_path(p: &str, what: &str) -> Result<String, RuntimeError> {
    if !p.starts_with('/') {
        return Err(RuntimeError::Invalid(format!(
            "invalid {what} {p:?}: the container path must be absolute"
        )));
    }
    let mut out = String::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(RuntimeError::Invalid(format!(
                    "invalid {what} {p:?}: '..' is not allowed"
                )));
            }
            part => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() {
        return Err(RuntimeError::Invalid(format!(
            "invalid {what} {p:?}: cannot mount over /"
        )));
    }
    Ok(out)
}

/// Whether a `-v` source names a volume rather than a host path.
fn is_volume_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Bind propagation modes: the sandbox makes every mount private, so only the private ones
/// are what kiln does.
fn check_propagation(mode: &str, spec: &str) -> Result<(), RuntimeError> {
    match mode {
        "private" | "rprivate" => Ok(()),
        "shared" | "rshared" | "slave" | "rslave" => Err(RuntimeError::NotSupported(format!(
            "bind propagation {mode:?} ({spec}): kiln's mounts are private"
        ))),
        other => Err(RuntimeError::Invalid(format!(
            "invalid bind propagation {other:?} in {spec:?}"
        ))),
    }
}

/// `-v /host:/ctr[:ro|rw]`, `-v name:/ctr[:ro]` or `-v /ctr` (an anonymous volume). Volume
/// names in the result are filled in later; anonymous volumes get an empty name here. A
/// missing host directory is created when the container is (Docker's `-v` rule).
pub(crate) fn parse_volume(s: &str) -> Result<MountConfig, RuntimeError> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, mode] => (Some(*source), *target, Some(*mode)),
        _ => {
            return Err(RuntimeError::Invalid(format!(
                "invalid volume specification: '{s}'"
            )));
        }
    };
    let mut readonly = false;
    let mut nocopy = false;
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => nocopy = true,
            // SELinux relabelling changes nothing on a host without SELinux.
            "z" | "Z" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                check_propagation(opt, s)?
            }
            other => {
                return Err(RuntimeError::Invalid(format!(
                    "invalid mode: {other} (in volume specification '{s}')"
                )));
            }
        }
    }
    let target = container_path(target, "volume target")?;
    Ok(match source {
        None => MountConfig::Volume {
            name: String::new(),
            target,
            readonly,
            anonymous: true,
            nocopy,
        },
        Some(src) if src.starts_with('/') => MountConfig::Bind {
            source: PathBuf::from(src),
            target,
            readonly,
            create: true,
        },
        Some(src) if is_volume_name(src) => MountConfig::Volume {
            name: src.to_string(),
            target,
            readonly,
            anonymous: false,
            nocopy,
        },
        Some(src) => {
            return Err(RuntimeError::Invalid(format!(
                "invalid volume specification '{s}': {src:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use absolute path"
            )));
        }
    })
}

/// Options a tmpfs takes (`--tmpfs /p:OPTS`): size, mode, and the mount flags Docker passes.
struct TmpfsOpts {
    size: Option<u64>,
    mode: Option<u32>,
    readonly: bool,
    exec: bool,
}

fn tmpfs_opt(opts: &mut TmpfsOpts, opt: &str, spec: &str) -> Result<(), RuntimeError> {
    match opt.split_once('=') {
        Some(("size", v)) => opts.size = Some(super::parse_size(v)?),
        Some(("mode", v)) => {
            opts.mode = Some(u32::from_str_radix(v, 8).map_err(|_| {
                RuntimeError::Invalid(format!("invalid tmpfs mode {v:?} in {spec:?}"))
            })?)
        }
        None if opt == "ro" => opts.readonly = true,
        None if opt == "rw" => opts.readonly = false,
        None if opt == "exec" => opts.exec = true,
        None if opt == "noexec" => opts.exec = false,
        // Always on for a container's tmpfs, as Docker mounts it.
        None if matches!(opt, "nosuid" | "nodev") => {}
        _ => {
            return Err(RuntimeError::NotSupported(format!(
                "tmpfs option {opt:?} in {spec:?}"
            )));
        }
    }
    Ok(())
}

/// `--tmpfs /path[:size=64m,mode=1777,exec,ro]`: nosuid, nodev and (unless `exec`) noexec,
/// as Docker mounts it.
pub(crate) fn parse_tmpfs(s: &str) -> Result<MountConfig, RuntimeError> {
    let (target, list) = s.split_once(':').unwrap_or((s, ""));
    let target = container_path(target, "tmpfs")?;
    let mut opts = TmpfsOpts {
        size: None,
        mode: None,
        readonly: false,
        exec: false,
    };
    for opt in list.split(',').filter(|o| !o.is_empty()) {
        tmpfs_opt(&mut opts, opt, s)?;
    }
    Ok(MountConfig::Tmpfs {
        target,
        size: opts.size,
        mode: opts.mode,
        readonly: opts.readonly,
        exec: opts.exec,
    })
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,…]`: Docker's long syntax
/// and its keys (`bind-propagation`, `bind-nonrecursive`, `volume-nocopy`, `volume-driver`,
/// `volume-label`, `volume-opt`, `tmpfs-size`, `tmpfs-mode`, `consistency`).
pub(crate) fn parse_mount(s: &str) -> Result<MountConfig, RuntimeError> {
    let bad = |why: String| {
        RuntimeError::Invalid(format!(
            "invalid argument {s:?} for \"--mount\" flag: {why}"
        ))
    };
    let (mut kind, mut source, mut target, mut readonly) =
        ("volume".to_string(), None, None, false);
    let mut nocopy = false;
    let mut tmpfs = TmpfsOpts {
        size: None,
        mode: None,
        readonly: false,
        exec: false,
    };
    let flag = |v: &str| -> Result<bool, RuntimeError> {
        match v {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(bad(format!("invalid value {v:?}: expected true or false"))),
        }
    };
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v),
            None => (field.to_ascii_lowercase(), ""),
        };
        let needs_value = |v: &str| -> Result<(), RuntimeError> {
            if v.is_empty() && !field.contains('=') {
                Err(bad(format!(
                    "invalid field '{field}' must be a key=value pair"
                )))
            } else {
                Ok(())
            }
        };
        match k.as_str() {
            "type" => {
                needs_value(v)?;
                kind = v.to_string()
            }
            "source" | "src" => {
                needs_value(v)?;
                source = Some(v.to_string())
            }
            "target" | "destination" | "dst" => {
                needs_value(v)?;
                target = Some(v.to_string())
            }
            "readonly" | "ro" => readonly = flag(v)?,
            "bind-propagation" => check_propagation(v, s)?,
            "bind-nonrecursive" => {
                if flag(v)? {
                    return Err(RuntimeError::NotSupported(format!(
                        "bind-nonrecursive ({s}): kiln's binds are recursive"
                    )));
                }
            }
            // Only macOS's file sharing reads it; Docker on Linux ignores it too.
            "consistency" => {}
            "volume-nocopy" => nocopy = flag(v)?,
            "volume-driver" if v == "local" => {}
            "volume-driver" | "volume-label" | "volume-opt" => {
                return Err(RuntimeError::NotSupported(format!("--mount {k} ({s})")));
            }
            "tmpfs-size" => tmpfs.size = Some(super::parse_size(v)?),
            "tmpfs-mode" => {
                tmpfs.mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| bad(format!("invalid tmpfs-mode {v:?}")))?,
                )
            }
            _ => return Err(bad(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    let target = container_path(
        &target.ok_or_else(|| bad("target is required".into()))?,
        "--mount target",
    )?;
    Ok(match kind.as_str() {
        "bind" => {
            let source = source
                .ok_or_else(|| bad("source is required when specifying bind mounts".into()))?;
            if !source.starts_with('/') {
                return Err(bad(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            MountConfig::Bind {
                source: PathBuf::from(source),
                target,
                readonly,
                create: false,
            }
        }
        "volume" => MountConfig::Volume {
            anonymous: source.is_none(),
            name: source.unwrap_or_default(),
            target,
            readonly,
            nocopy,
        },
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("source is not allowed for tmpfs mounts".into()));
            }
            MountConfig::Tmpfs {
                target,
                size: tmpfs.size,
                mode: tmpfs.mode,
                readonly,
                exec: false,
            }
        }
        "npipe" | "cluster" => {
            return Err(RuntimeError::NotSupported(format!("--mount type {kind:?}")));
        }
        other => return Err(bad(format!("invalid mount type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_volume_specs() {
        assert_eq!(
            parse_volume("/h:/c/../d:ro").err().map(|e| e.to_string()),
            Some("invalid volume target \"/c/../d\": '..' is not allowed".into())
        );
        assert_eq!(
            parse_volume("/h:/c:ro").unwrap(),
            MountConfig::Bind {
                source: "/h".into(),
                target: "/c".into(),
                readonly: true,
                create: true,
            }
        );
        assert!(matches!(
            parse_volume("data:/d:nocopy").unwrap(),
            MountConfig::Volume { ref name, anonymous: false, nocopy: true, .. } if name == "data"
        ));
        assert!(matches!(
            parse_volume("/d").unwrap(),
            MountConfig::Volume {
                anonymous: true,
                ..
            }
        ));
        assert!(parse_volume("rel/x:/d").is_err());
        assert!(matches!(
            parse_volume("/h:/c:rshared"),
            Err(RuntimeError::NotSupported(_))
        ));
    }

    #[test]
    fn parses_tmpfs_and_long_mounts_as_docker() {
        assert!(matches!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap(),
            MountConfig::Tmpfs {
                size: Some(1048576),
                mode: Some(0o700),
                ..
            }
        ));
        assert!(matches!(
            parse_tmpfs("/t:size=1m,mode=700,exec").unwrap(),
            MountConfig::Tmpfs {
                mode: Some(0o700),
                exec: true,
                ..
            }
        ));
        assert!(matches!(
            parse_mount("type=bind,src=/h,dst=/c,readonly,bind-propagation=rprivate").unwrap(),
            MountConfig::Bind {
                readonly: true,
                create: false,
                ..
            }
        ));
        assert!(matches!(
            parse_mount("type=volume,dst=/v,volume-nocopy=true").unwrap(),
            MountConfig::Volume {
                anonymous: true,
                nocopy: true,
                ..
            }
        ));
        let err = |s: &str| parse_mount(s).unwrap_err().to_string();
        assert!(err("type=bind,src=/tmp").ends_with("target is required"));
        assert!(
            err("type=bind,src=/tmp,dst=/m,foo=bar").ends_with("unexpected key 'foo' in 'foo=bar'")
        );
        assert!(err("type=bind,dst=/m").contains("source is required"));
        assert!(err("type=tmpfs,src=/x,dst=/m").contains("not allowed"));
        assert!(matches!(
            parse_mount("type=volume,dst=/v,volume-driver=nfs"),
            Err(RuntimeError::NotSupported(_))
        ));
    }
}
