//! `--cache-to` and `--cache-from` values in BuildKit's syntax: `type=registry,ref=R,mode=max`,
//! `type=local,dest=DIR` / `type=local,src=DIR`, `type=inline`, and a bare `R` for a registry
//! import.

use std::path::PathBuf;

/// Which results an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the steps whose results are layers of the final image (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran.
    Max,
}

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheExport {
    Registry {
        reference: String,
        mode: CacheMode,
        ignore_error: bool,
    },
    Local {
        dir: PathBuf,
        tag: String,
        mode: CacheMode,
        ignore_error: bool,
    },
    /// The cache document goes into the image config itself (min mode only).
    Inline,
}

/// Where `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// A cache manifest, or an image with an inline cache.
    Registry {
        reference: String,
    },
    Local {
        dir: PathBuf,
        tag: String,
    },
}

/// Why a cache option was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheSpecError {
    #[error("invalid cache option {0:?}: expected KEY=VALUE pairs separated by commas")]
    Syntax(String),
    #[error("not supported yet: cache type {0:?} (kiln has registry, local and inline)")]
    UnsupportedType(String),
    #[error("unknown cache type {0:?}: expected registry, local or inline")]
    UnknownType(String),
    #[error("cache type={kind} needs {key}=")]
    Missing { kind: String, key: &'static str },
    #[error("unknown option {key:?} for cache type={kind}")]
    UnknownOption { key: String, kind: String },
    #[error("invalid value {value:?} for cache option {key}: {reason}")]
    Value {
        key: String,
        value: String,
        reason: String,
    },
    #[error("not supported yet: cache option {0}")]
    UnsupportedOption(String),
}

fn pairs(s: &str) -> Result<Vec<(&str, &str)>, CacheSpecError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push((k.trim(), v.trim())),
            _ => return Err(CacheSpecError::Syntax(s.into())),
        }
    }
    Ok(out)
}

fn kind_of<'a>(pairs: &[(&'a str, &'a str)]) -> Result<&'a str, CacheSpecError> {
    match pairs
        .iter()
        .rev()
        .find(|(k, _)| *k == "type")
        .map(|(_, v)| *v)
    {
        None | Some("registry") => Ok("registry"),
        Some(k @ ("local" | "inline")) => Ok(k),
        Some(k @ ("gha" | "s3" | "azblob")) => Err(CacheSpecError::UnsupportedType(k.into())),
        Some(other) => Err(CacheSpecError::UnknownType(other.into())),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, CacheSpecError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(CacheSpecError::Value {
            key: key.into(),
            value: value.into(),
            reason: "expected true or false".into(),
        }),
    }
}

fn unknown(key: &str, kind: &str) -> CacheSpecError {
    CacheSpecError::UnknownOption {
        key: key.into(),
        kind: kind.into(),
    }
}

impl std::str::FromStr for CacheExport {
    type Err = CacheSpecError;

    fn from_str(s: &str) -> Result<CacheExport, CacheSpecError> {
        if !s.contains('=') && !s.trim().is_empty() {
            return Ok(CacheExport::Registry {
                reference: s.trim().into(),
                mode: CacheMode::Min,
                ignore_error: false,
            });
        }
        let pairs = pairs(s)?;
        let kind = kind_of(&pairs)?;
        let (mut reference, mut dir, mut tag) = (None, None, "latest".to_string());
        let (mut mode, mut ignore_error) = (CacheMode::Min, false);
        for (key, value) in pairs {
            match (key, kind) {
                ("type", _) => {}
                ("ref", "registry") => reference = Some(value.to_string()),
                ("dest", "local") => dir = Some(PathBuf::from(value)),
                ("tag", "local") => tag = value.to_string(),
                ("mode", "registry" | "local") => {
                    mode = match value {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => {
                            return Err(CacheSpecError::Value {
                                key: key.into(),
                                value: value.into(),
                                reason: "expected min or max".into(),
                            });
                        }
                    }
                }
                ("ignore-error", "registry" | "local") => ignore_error = parse_bool(key, value)?,
                // What kiln always writes: an OCI image manifest with OCI media types.
                ("image-manifest" | "oci-mediatypes", "registry" | "local") => {
                    if !parse_bool(key, value)? {
                        return Err(CacheSpecError::UnsupportedOption(format!("{key}=false")));
                    }
                }
                ("compression", "registry" | "local") if value == "gzip" => {}
                ("compression" | "compression-level" | "force-compression", _) => {
                    return Err(CacheSpecError::UnsupportedOption(format!("{key}={value}")));
                }
                _ => return Err(unknown(key, kind)),
            }
        }
        match kind {
            "registry" => Ok(CacheExport::Registry {
                reference: reference.ok_or(CacheSpecError::Missing {
                    kind: kind.into(),
                    key: "ref",
                })?,
                mode,
                ignore_error,
            }),
            "local" => Ok(CacheExport::Local {
                dir: dir.ok_or(CacheSpecError::Missing {
                    kind: kind.into(),
                    key: "dest",
                })?,
                tag,
                mode,
                ignore_error,
            }),
            _ => Ok(CacheExport::Inline),
        }
    }
}

impl std::str::FromStr for CacheImport {
    type Err = CacheSpecError;

    fn from_str(s: &str) -> Result<CacheImport, CacheSpecError> {
        if !s.contains('=') && !s.trim().is_empty() {
            return Ok(CacheImport::Registry {
                reference: s.trim().into(),
            });
        }
        let pairs = pairs(s)?;
        let kind = kind_of(&pairs)?;
        let (mut reference, mut dir, mut tag) = (None, None, "latest".to_string());
        for (key, value) in pairs {
            match (key, kind) {
                ("type", _) => {}
                ("ref", "registry") => reference = Some(value.to_string()),
                ("src", "local") => dir = Some(PathBuf::from(value)),
                ("tag", "local") => tag = value.to_string(),
                ("digest", _) => {
                    return Err(CacheSpecError::UnsupportedOption(format!("{key}={value}")));
                }
                _ => return Err(unknown(key, kind)),
            }
        }
        match kind {
            "registry" => Ok(CacheImport::Registry {
                reference: reference.ok_or(CacheSpecError::Missing {
                    kind: kind.into(),
                    key: "ref",
                })?,
            }),
            "local" => Ok(CacheImport::Local {
                dir: dir.ok_or(CacheSpecError::Missing {
                    kind: kind.into(),
                    key: "src",
                })?,
                tag,
            }),
            // An inline cache is read from the image it was pushed with: name it as a registry
            // cache (`type=registry,ref=IMAGE`), as BuildKit users do.
            _ => Err(CacheSpecError::Value {
                key: "type".into(),
                value: "inline".into(),
                reason: "an inline cache is imported with type=registry,ref=IMAGE".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exports() {
        let e: CacheExport = "type=registry,ref=r/app:cache,mode=max".parse().unwrap();
        assert_eq!(
            e,
            CacheExport::Registry {
                reference: "r/app:cache".into(),
                mode: CacheMode::Max,
                ignore_error: false
            }
        );
        let e: CacheExport = "type=local,dest=/tmp/c".parse().unwrap();
        assert!(
            matches!(e, CacheExport::Local { ref tag, mode: CacheMode::Min, .. } if tag == "latest")
        );
        assert_eq!(
            "type=inline".parse::<CacheExport>().unwrap(),
            CacheExport::Inline
        );
        assert!(matches!(
            "r/app:cache".parse::<CacheExport>().unwrap(),
            CacheExport::Registry { .. }
        ));
    }

    #[test]
    fn rejects_bad_exports_with_the_reason() {
        let err = |s: &str| s.parse::<CacheExport>().unwrap_err().to_string();
        assert!(err("type=gha").contains("not supported yet"));
        assert!(err("type=nope,ref=x").contains("unknown cache type"));
        assert!(err("type=registry").contains("needs ref="));
        assert!(err("type=local,ref=x").contains("unknown option \"ref\""));
        assert!(err("type=registry,ref=x,mode=all").contains("expected min or max"));
        assert!(err("type=registry,ref=x,compression=zstd").contains("not supported yet"));
        assert!(err("type=registry,,ref").contains("KEY=VALUE"));
    }

    #[test]
    fn parses_imports() {
        assert_eq!(
            "r/app:cache".parse::<CacheImport>().unwrap(),
            CacheImport::Registry {
                reference: "r/app:cache".into()
            }
        );
        assert_eq!(
            "type=local,src=/c,tag=v1".parse::<CacheImport>().unwrap(),
            CacheImport::Local {
                dir: "/c".into(),
                tag: "v1".into()
            }
        );
        assert!("type=local".parse::<CacheImport>().is_err());
        assert!("type=inline".parse::<CacheImport>().is_err());
    }
}
