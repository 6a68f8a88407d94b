//! `kiln build -o` values in BuildKit's `--output` syntax: where a build's image goes (the
//! store, an OCI or docker archive, a directory, a tar) and with which compression.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use kiln_oci::compress::Compression;
use kiln_oci::media_type::Flavor;

use crate::commit::CommitOptions;

/// What an `--output` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Names in the local store (the default).
    Image,
    /// An OCI archive, or with `tar=false` an OCI layout directory.
    Oci,
    /// A docker archive as `docker save` writes it.
    Docker,
    /// The final filesystem, into a directory.
    Local,
    /// The final filesystem as one tar.
    Tar,
}

/// One parsed `--output` value, e.g. `type=oci,dest=out.tar,compression=zstd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputKind,
    /// A file or directory; `-` is stdout. Required by every kind but `image`.
    pub dest: Option<PathBuf>,
    /// `name=` values: names for `image`, the names recorded in archives.
    pub names: Vec<String>,
    /// For `oci`: an archive (the default) or, with `tar=false`, a layout directory.
    pub tar: bool,
    /// `compression=` with `compression-level=` folded in.
    pub compression: Option<Compression>,
    /// `oci-mediatypes=`; `None` leaves the exporter's default (OCI, but Docker schema 2 for
    /// `type=docker`, as BuildKit does).
    pub oci_mediatypes: Option<bool>,
    /// `push=true` (or `type=registry`): push the named image after storing it.
    pub push: bool,
}

/// Why an `--output` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputParseError {
    #[error("invalid output {0:?}: expected KEY=VALUE pairs separated by commas")]
    Syntax(String),
    #[error("unknown output type {0:?}: expected image, oci, docker, local or tar")]
    UnknownType(String),
    #[error("not supported yet: output option {0}")]
    NotSupported(String),
    #[error("unknown output option {key:?} for type={kind}")]
    UnknownOption { key: String, kind: String },
    #[error("invalid value {value:?} for output option {key}: {reason}")]
    Value {
        key: String,
        value: String,
        reason: String,
    },
    #[error("invalid value {value:?} for output option compression: {source}")]
    Compression {
        value: String,
        #[source]
        source: kiln_oci::compress::CompressionParseError,
    },
    #[error("output type={0} needs dest=PATH (or dest=- for stdout)")]
    MissingDest(String),
    #[error("output type={0} cannot write a directory to stdout: give dest=DIR")]
    DirToStdout(String),
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Image => "image",
        OutputKind::Oci => "oci",
        OutputKind::Docker => "docker",
        OutputKind::Local => "local",
        OutputKind::Tar => "tar",
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, OutputParseError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(OutputParseError::Value {
            key: key.into(),
            value: value.into(),
            reason: "expected true or false".into(),
        }),
    }
}

impl FromStr for Output {
    type Err = OutputParseError;

    /// Parses BuildKit's syntax. As with `docker buildx build`, a value without `=` is a short
    /// form: `-` is `type=tar,dest=-` and anything else `type=local,dest=VALUE`.
    fn from_str(s: &str) -> Result<Output, OutputParseError> {
        if !s.contains('=') {
            let (kind, dest) = if s == "-" {
                (OutputKind::Tar, "-")
            } else if s.is_empty() {
                return Err(OutputParseError::Syntax(s.into()));
            } else {
                (OutputKind::Local, s)
            };
            return Ok(Output {
                kind,
                dest: Some(PathBuf::from(dest)),
                names: Vec::new(),
                tar: true,
                compression: None,
                oci_mediatypes: None,
                push: false,
            });
        }
        let mut pairs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match part.split_once('=') {
                Some((k, v)) if !k.is_empty() => pairs.push((k.trim(), v.trim())),
                _ => return Err(OutputParseError::Syntax(s.into())),
            }
        }
        let kind = match pairs.iter().rev().find(|(k, _)| *k == "type") {
            None => OutputKind::Image,
            Some((_, "image")) => OutputKind::Image,
            Some((_, "oci")) => OutputKind::Oci,
            Some((_, "docker")) => OutputKind::Docker,
            Some((_, "local")) => OutputKind::Local,
            Some((_, "tar")) => OutputKind::Tar,
            // BuildKit's shorthand for `type=image,push=true`.
            Some((_, "registry")) => OutputKind::Image,
            Some((_, other)) => return Err(OutputParseError::UnknownType((*other).into())),
        };
        let mut out = Output {
            kind,
            dest: None,
            names: Vec::new(),
            tar: true,
            compression: None,
            oci_mediatypes: None,
            push: pairs.iter().any(|(k, v)| *k == "type" && *v == "registry"),
        };
        let mut algorithm: Option<&str> = None;
        let mut level: Option<&str> = None;
        let image_like = matches!(
            kind,
            OutputKind::Image | OutputKind::Oci | OutputKind::Docker
        );
        for (key, value) in pairs {
            match key {
                "type" => {}
                "dest" if kind != OutputKind::Image => out.dest = Some(PathBuf::from(value)),
                "name" if image_like => out.names.extend(
                    value
                        .split(';')
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                ),
                "tar" if kind == OutputKind::Oci => out.tar = parse_bool(key, value)?,
                "compression" if image_like => algorithm = Some(value),
                "compression-level" if image_like => level = Some(value),
                "oci-mediatypes" if image_like => {
                    out.oci_mediatypes = Some(parse_bool(key, value)?)
                }
                // Accepted because it is what kiln always does: every layer is recompressed or
                // reused as the compression option says.
                "force-compression" if image_like => {
                    parse_bool(key, value)?;
                }
                "push" if kind == OutputKind::Image => out.push = parse_bool(key, value)?,
                "push"
                | "push-by-digest"
                | "registry.insecure"
                | "unpack"
                | "store"
                | "annotation"
                | "rewrite-timestamp"
                | "buildinfo"
                | "attestation-prefix"
                | "dangling-name-prefix"
                | "name-canonical"
                | "platform-split" => {
                    // `push=false` and friends asking for the default are harmless.
                    if value == "false" && !key.starts_with("annotation") {
                        continue;
                    }
                    return Err(OutputParseError::NotSupported(format!("{key}={value}")));
                }
                _ if key.starts_with("annotation") => {
                    return Err(OutputParseError::NotSupported(key.into()));
                }
                _ => {
                    return Err(OutputParseError::UnknownOption {
                        key: key.into(),
                        kind: kind_name(kind).into(),
                    });
                }
            }
        }
        if let Some(algorithm) = algorithm.or(level.map(|_| "gzip")) {
            let text = match level {
                Some(l) => format!("{algorithm},level={l}"),
                None => algorithm.to_string(),
            };
            out.compression =
                Some(
                    text.parse()
                        .map_err(|source| OutputParseError::Compression {
                            value: text.clone(),
                            source,
                        })?,
                );
        }
        match (kind, &out.dest) {
            (OutputKind::Image, _) => {}
            (_, None) => return Err(OutputParseError::MissingDest(kind_name(kind).into())),
            (OutputKind::Local, Some(d)) | (OutputKind::Oci, Some(d))
                if d == Path::new("-") && (kind == OutputKind::Local || !out.tar) =>
            {
                return Err(OutputParseError::DirToStdout(kind_name(kind).into()));
            }
            _ => {}
        }
        Ok(out)
    }
}

impl Output {
    /// The store output with the `-t` names.
    pub fn image() -> Output {
        Output {
            kind: OutputKind::Image,
            dest: None,
            names: Vec::new(),
            tar: true,
            compression: None,
            oci_mediatypes: None,
            push: false,
        }
    }

    /// Manifest media types this output asks for.
    pub fn flavor(&self) -> Flavor {
        let oci = self
            .oci_mediatypes
            .unwrap_or(self.kind != OutputKind::Docker);
        if oci { Flavor::Oci } else { Flavor::Docker }
    }

    /// `base` with this output's compression and media types: how the build should commit the
    /// image so the exporter can write the stored blobs as they are.
    pub fn commit_options(&self, base: &CommitOptions) -> CommitOptions {
        CommitOptions {
            compression: self.compression.unwrap_or(base.compression),
            flavor: self.flavor(),
            source_date_epoch: base.source_date_epoch,
        }
    }

    /// The names the store should give the image: `name=` and the `-t` tags for `type=image`,
    /// none for the other kinds (as BuildKit's oci, docker and local exporters do).
    pub fn store_names(&self, tags: &[String]) -> Vec<String> {
        match self.kind {
            OutputKind::Image => tags.iter().chain(&self.names).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Names recorded inside an archive: `name=`, else the `-t` tags.
    pub fn archive_names(&self, tags: &[String]) -> Vec<String> {
        if self.names.is_empty() {
            tags.to_vec()
        } else {
            self.names.clone()
        }
    }
}

/// Checks that a build's outputs can share one committed image: at most one writes to stdout,
/// and they agree on the compression.
pub fn validate_outputs(outputs: &[Output]) -> Result<(), String> {
    let to_stdout = outputs
        .iter()
        .filter(|o| o.dest.as_deref() == Some(Path::new("-")))
        .count();
    if to_stdout > 1 {
        return Err("only one --output can write to stdout (dest=-)".into());
    }
    let mut compressions = outputs.iter().filter_map(|o| o.compression);
    if let Some(first) = compressions.next()
        && compressions.any(|c| c != first)
    {
        return Err("not supported yet: outputs with different compression in one build".into());
    }
    Ok(())
}

/// Every name the store gives a build's image, over all its outputs, without repeats.
pub fn store_names(outputs: &[Output], tags: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in outputs.iter().flat_map(|o| o.store_names(tags)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// How a build with these outputs commits its image: with the options of the first output that
/// sets a compression, else of the first output (`type=image` when there is none).
pub fn commit_options(outputs: &[Output], base: &CommitOptions) -> CommitOptions {
    match outputs
        .iter()
        .find(|o| o.compression.is_some())
        .or(outputs.first())
    {
        Some(o) => o.commit_options(base),
        None => Output::image().commit_options(base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_outputs() {
        let o: Output = "type=oci,dest=out.tar,compression=zstd,compression-level=9"
            .parse()
            .unwrap();
        assert_eq!(o.kind, OutputKind::Oci);
        assert!(o.tar);
        assert_eq!(o.dest.as_deref(), Some(Path::new("out.tar")));
        assert_eq!(o.compression, Some(Compression::Zstd { level: 9 }));
        assert_eq!(o.flavor(), Flavor::Oci);

        let o: Output = "type=oci,dest=dir,tar=false".parse().unwrap();
        assert!(!o.tar);
        let o: Output = "type=docker,dest=-,name=app:1".parse().unwrap();
        assert_eq!(o.flavor(), Flavor::Docker);
        assert_eq!(o.names, ["app:1"]);
        let o: Output = "type=docker,dest=x,oci-mediatypes=true".parse().unwrap();
        assert_eq!(o.flavor(), Flavor::Oci);
        let o: Output = "type=image,name=a,name=b,push=false".parse().unwrap();
        assert_eq!(o.store_names(&["t".into()]), ["t", "a", "b"]);
        assert!(!o.push);
        let o: Output = "type=image,name=r/a,push=true".parse().unwrap();
        assert!(o.push);
        let o: Output = "type=registry,name=r/a".parse().unwrap();
        assert!(o.push && o.kind == OutputKind::Image);
        let o: Output = "out".parse().unwrap();
        assert_eq!(o.kind, OutputKind::Local);
        let o: Output = "-".parse().unwrap();
        assert_eq!(o.kind, OutputKind::Tar);
        let o: Output = "type=oci,dest=x,compression=uncompressed".parse().unwrap();
        assert_eq!(o.compression, Some(Compression::None));
    }

    #[test]
    fn rejects_bad_outputs() {
        for (bad, needle) in [
            ("type=oci", "needs dest"),
            ("type=local,dest=-", "stdout"),
            ("type=oci,dest=-,tar=false", "stdout"),
            ("type=zip,dest=x", "unknown output type"),
            ("type=oci,dest=x,compression=lz4", "lz4"),
            (
                "type=oci,dest=x,compression=gzip,compression-level=99",
                "level",
            ),
            (
                "type=local,dest=x,compression=gzip",
                "unknown output option",
            ),
            ("type=image,push=maybe", "true or false"),
            ("type=image,push-by-digest=true", "not supported yet"),
            ("type=oci,dest=x,tar=maybe", "true or false"),
            ("type=oci,=x", "invalid output"),
        ] {
            let err = bad.parse::<Output>().unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
