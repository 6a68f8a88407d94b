//! `RUN --mount=...` values: CSV fields parsed into typed mounts with BuildKit's defaults,
//! validations and messages.

use crate::lower::util::{clean, csv_fields};

/// The mount kinds `--mount=type=` accepts.
const TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARING: &[&str] = &["shared", "private", "locked"];
const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// A parsed `--mount`, values expanded, defaults not yet applied where they depend on the
/// step (target relative to WORKDIR, cache id from target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedMount {
    pub kind: String,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub size: Option<u64>,
    pub id: Option<String>,
    pub sharing: Option<String>,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A mount error with an optional "did you mean" suggestion.
#[derive(Debug)]
pub(crate) struct MountError {
    pub message: String,
    pub help: Option<String>,
}

fn err(message: impl Into<String>) -> MountError {
    MountError {
        message: message.into(),
        help: None,
    }
}

fn suggest(message: String, value: &str, options: &[&str]) -> MountError {
    let value = value.to_ascii_lowercase();
    let best = options
        .iter()
        .map(|o| (strsim::levenshtein(&value, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3) && *d > 0)
        .min();
    MountError {
        message,
        help: best.map(|(_, o)| format!("did you mean {o}?")),
    }
}

/// The `from=` value of a mount without expanding anything, for finding stage dependencies
/// before variables are known. Rejects variables as BuildKit does.
pub(crate) fn mount_from(value: &str) -> Result<Option<String>, MountError> {
    let fields = csv_fields(value).map_err(|e| err(format!("failed to parse csv mounts: {e}")))?;
    let mut from = None;
    for field in fields {
        if let Some((key, v)) = field.split_once('=')
            && key.eq_ignore_ascii_case("from")
        {
            if v.find('$').is_some_and(|i| i != v.len() - 1) {
                return Err(err(
                    "'from' doesn't support variable expansion, define alias stage instead",
                ));
            }
            from = Some(v.to_owned());
        }
    }
    Ok(from)
}

/// Parses one `--mount` value; `expand` expands each value (not keys).
pub(crate) fn parse_mount(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, MountError>,
) -> Result<ParsedMount, MountError> {
    let fields = csv_fields(value).map_err(|e| err(format!("failed to parse csv mounts: {e}")))?;
    let mut m = ParsedMount {
        kind: "bind".to_owned(),
        from: None,
        source: None,
        target: None,
        readonly: false,
        size: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    for field in fields {
        let Some((key, raw)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if m.kind == "secret" || m.kind == "ssh" => m.required = true,
                "required" => {
                    return Err(err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind
                    )));
                }
                _ => {
                    return Err(err(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        if key == "from" && raw.find('$').is_some_and(|i| i != raw.len() - 1) {
            return Err(err(
                "'from' doesn't support variable expansion, define alias stage instead",
            ));
        }
        let v = if key == "from" {
            raw.to_owned()
        } else {
            expand(raw)?
        };
        let bool_value =
            |v: &str| parse_go_bool(v).ok_or_else(|| err(format!("invalid value for {key}: {v}")));
        match key.as_str() {
            "type" => {
                let t = v.to_ascii_lowercase();
                if !TYPES.contains(&t.as_str()) {
                    return Err(suggest(format!("unsupported mount type {v:?}"), &v, TYPES));
                }
                m.kind = t;
            }
            "from" => m.from = Some(v),
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = Some(v),
            "readonly" | "ro" => {
                m.readonly = bool_value(&v)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !bool_value(&v)?;
                ro_auto = false;
            }
            "required" if m.kind == "secret" || m.kind == "ssh" => m.required = bool_value(&v)?,
            "required" => {
                return Err(err(format!(
                    "unexpected key 'required' for mount type '{}'",
                    m.kind
                )));
            }
            "size" if m.kind == "tmpfs" => {
                m.size = Some(
                    parse_ram_bytes(&v)
                        .ok_or_else(|| err(format!("invalid value for size: {v}")))?,
                );
            }
            "size" => {
                return Err(err(format!(
                    "unexpected key 'size' for mount type '{}'",
                    m.kind
                )));
            }
            "id" => m.id = Some(v),
            "sharing" => {
                let s = v.to_ascii_lowercase();
                if !SHARING.contains(&s.as_str()) {
                    return Err(suggest(
                        format!("unsupported sharing value {v:?}"),
                        &v,
                        SHARING,
                    ));
                }
                m.sharing = Some(s);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| err(format!("invalid value {v} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    v.parse()
                        .map_err(|_| err(format!("invalid value {v} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    v.parse()
                        .map_err(|_| err(format!("invalid value {v} for gid")))?,
                )
            }
            "env" => m.env = Some(v),
            _ => {
                return Err(suggest(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    KEYS,
                ));
            }
        }
    }
    let file_info_allowed = matches!(m.kind.as_str(), "secret" | "ssh" | "cache");
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind
                )));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind.as_str(), "cache" | "tmpfs");
    }
    if m.kind == "secret" {
        if m.from.is_some() {
            return Err(err("secret mount should not have a from"));
        }
        if m.sharing.is_some() {
            return Err(err("secret mount should not define sharing"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(err("invalid secret mount. one of source, target required"));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(err("both source and id can't be set"));
        }
    }
    if m.sharing.is_some() && m.kind != "cache" {
        return Err(err(format!(
            "invalid cache sharing set for {} mount",
            m.kind
        )));
    }
    if m.kind == "ssh" && m.source.is_some() {
        return Err(err("ssh does not support source"));
    }
    Ok(m)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `128m`, `1g`, `512k`, `1024` (binary multiples).
fn parse_ram_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let number: f64 = v[..digits].parse().ok()?;
    let unit = v[digits..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = number * mult;
    (bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The default cache id: the cleaned target path.
pub(crate) fn default_cache_id(target: &str) -> String {
    clean(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<ParsedMount, MountError> {
        parse_mount(v, &mut |s| Ok(s.to_owned()))
    }

    #[test]
    fn defaults_per_type() {
        let m = parse("target=/context").unwrap();
        assert_eq!((m.kind.as_str(), m.readonly), ("bind", true));
        let m = parse("type=cache,target=/c,uid=1001,gid=1002,mode=0751").unwrap();
        assert_eq!(
            (m.readonly, m.uid, m.gid, m.mode),
            (false, Some(1001), Some(1002), Some(0o751))
        );
        let m = parse("type=tmpfs,target=/dev/shm,size=128m").unwrap();
        assert_eq!(m.size, Some(128 * 1024 * 1024));
        let m = parse("type=secret,required,id=s").unwrap();
        assert!(m.required);
        let m = parse("type=bind,source=.,target=/x,rw").unwrap();
        assert!(!m.readonly);
    }

    #[test]
    fn errors_match_buildkit() {
        let e = parse("typ=tmpfs").unwrap_err();
        assert_eq!(e.message, "unexpected key 'typ' in 'typ=tmpfs'");
        assert_eq!(e.help.as_deref(), Some("did you mean type?"));
        let e = parse("type=tmp").unwrap_err();
        assert_eq!(e.message, "unsupported mount type \"tmp\"");
        assert_eq!(e.help.as_deref(), Some("did you mean tmpfs?"));
        assert_eq!(
            parse("from=$ttt,type=cache,target=/tmp")
                .unwrap_err()
                .message,
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(
            parse("type=bind,mode=0700,target=/x").unwrap_err().message,
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            parse("type=secret").unwrap_err().message,
            "invalid secret mount. one of source, target required"
        );
        assert!(mount_from("from=$x").is_err());
        assert_eq!(
            mount_from("type=bind,from=build,target=/x")
                .unwrap()
                .as_deref(),
            Some("build")
        );
    }
}
