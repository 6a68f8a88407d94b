//! Exporters over the local store: `kiln build -o` (BuildKit's `--output` syntax) and
//! `kiln save` write an image as an OCI archive or layout, a docker archive, its final
//! filesystem as a directory, or that filesystem as one tar.
//!
//! The image is always committed to the store first (with the compression and media types the
//! output asks for), so every exporter reads verified blobs from one place and a later `kiln
//! save` of the same image gives the same bytes.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kiln_executor::snapshot::{ApplyOptions, DiffOptions, DiffSource, WhiteoutMode};
use kiln_oci::compress::{self, Compression};
use kiln_oci::export::{DockerArchiveOptions, DockerLayers, NamedImage};
use kiln_oci::media_type::Flavor;
use kiln_oci::{BlobSource, Descriptor};

use crate::error::EngineError;
use crate::images::{CommitOptions, Image};
use crate::reference;
use crate::worker::Worker;

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
            out.compression = Some(text.parse().map_err(
                |e: kiln_oci::compress::CompressionParseError| OutputParseError::Value {
                    key: "compression".into(),
                    value: text.clone(),
                    reason: e.to_string(),
                },
            )?);
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

/// The descriptor of `image`'s manifest, as an index or archive lists it.
pub fn image_descriptor(worker: &Worker, image: &Image) -> Result<Descriptor, EngineError> {
    let size = worker
        .blobs()
        .size(&image.manifest_digest)
        .map_err(|e| EngineError::Oci(e.to_string()))?
        .ok_or_else(|| EngineError::InvalidImage {
            name: image.name.clone().unwrap_or_default(),
            reason: format!(
                "manifest {} is missing from the store",
                image.manifest_digest
            ),
        })?;
    let media_type = if image.manifest.media_type.is_empty() {
        Flavor::Oci.manifest().to_string()
    } else {
        image.manifest.media_type.clone()
    };
    let mut d = Descriptor::new(media_type, image.manifest_digest, size);
    d.platform = Some(kiln_oci::image::platform_of(&image.config));
    Ok(d)
}

/// The images `names` refer to, each with the descriptor its name points at (an index stays an
/// index) and its full name; an image given by ID gets no name.
pub fn named_images(worker: &Worker, names: &[String]) -> Result<Vec<NamedImage>, EngineError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let canonical = reference::normalize(name);
        if let Some(r) = worker.store().image_ref(&canonical)? {
            out.push(NamedImage {
                name: Some(canonical).filter(|n| !n.starts_with("sha256:")),
                descriptor: Descriptor::new(r.media_type.clone(), r.target, r.size),
            });
            continue;
        }
        let image = worker.image(name)?;
        out.push(NamedImage {
            name: None,
            descriptor: image_descriptor(worker, &image)?,
        });
    }
    Ok(out)
}

/// Archive formats of `kiln save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s format (docker 25+ layout, uncompressed layers).
    Docker,
    /// An OCI archive with the layers as stored.
    Oci,
}

/// Writes `images` as one archive to `out`.
pub fn save(
    worker: &Worker,
    images: &[NamedImage],
    format: SaveFormat,
    out: impl Write,
) -> Result<(), EngineError> {
    let blobs = worker.blobs();
    let oci_err = |e: kiln_oci::ExportError| EngineError::Oci(format_chain(&e));
    let mut out = match format {
        SaveFormat::Oci => kiln_oci::write_oci_archive(out, blobs, images).map_err(oci_err)?,
        SaveFormat::Docker => {
            let tmp = worker.tempdir("save-")?;
            kiln_oci::write_docker_archive(
                out,
                blobs,
                images,
                &DockerArchiveOptions {
                    layers: DockerLayers::Uncompressed,
                    temp_dir: Some(tmp.path().to_path_buf()),
                },
            )
            .map_err(oci_err)?
        }
    };
    out.flush().map_err(|source| EngineError::Io {
        what: "flush the archive".into(),
        source,
    })
}

/// An error and its causes on one line, for errors that cross into [`EngineError::Oci`].
pub(crate) fn format_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

/// Writes a built (already committed) image where `output` says. `tags` are the `-t` names;
/// `source_date_epoch` clamps mtimes in `type=tar` output.
pub fn export(
    worker: &Worker,
    image: &Image,
    output: &Output,
    tags: &[String],
    source_date_epoch: Option<u64>,
) -> Result<(), EngineError> {
    let dest = || {
        output
            .dest
            .clone()
            .ok_or_else(|| EngineError::Bug("an output without dest passed parsing".into()))
    };
    let named = || -> Result<Vec<NamedImage>, EngineError> {
        let descriptor = image_descriptor(worker, image)?;
        let names = output.archive_names(tags);
        if names.is_empty() {
            return Ok(vec![NamedImage {
                name: None,
                descriptor,
            }]);
        }
        Ok(names
            .iter()
            .map(|n| NamedImage {
                name: Some(reference::normalize(n)),
                descriptor: descriptor.clone(),
            })
            .collect())
    };
    match output.kind {
        // The build named it when committing.
        OutputKind::Image => Ok(()),
        OutputKind::Oci if !output.tar => {
            let dir = dest()?;
            kiln_oci::write_oci_layout(&dir, worker.blobs(), &named()?)
                .map_err(|e| EngineError::Oci(format_chain(&e)))?;
            Ok(())
        }
        OutputKind::Oci => {
            let dest = dest()?;
            let out = kiln_oci::export::open_dest(&dest)
                .map_err(io_err(format!("create {}", dest.display())))?;
            save(worker, &named()?, SaveFormat::Oci, out)
        }
        OutputKind::Docker => {
            let dest = dest()?;
            let out = kiln_oci::export::open_dest(&dest)
                .map_err(io_err(format!("create {}", dest.display())))?;
            save(worker, &named()?, SaveFormat::Docker, out)
        }
        OutputKind::Local => {
            let dir = dest()?;
            std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            apply_layers(worker, image, &dir)
        }
        OutputKind::Tar => {
            let dest = dest()?;
            let tree = worker.tempdir("export-tar-")?;
            apply_layers(worker, image, tree.path())?;
            let out = kiln_oci::export::open_dest(&dest)
                .map_err(io_err(format!("create {}", dest.display())))?;
            write_tree_tar(tree.path(), out, source_date_epoch)
        }
    }
}

/// Applies every layer of `image`, bottom first, onto `dir`: whiteouts delete, so `dir` ends up
/// holding the image's final filesystem.
pub fn apply_layers(worker: &Worker, image: &Image, dir: &Path) -> Result<(), EngineError> {
    let options = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        // What a build made (or a base image held) is what the user asked to export.
        allow_devices: true,
        ..ApplyOptions::default()
    };
    for desc in &image.manifest.layers {
        let blob = worker.store().content().open_verified(&desc.digest)?;
        let mut reader = BufReader::with_capacity(1 << 20, blob);
        let kind =
            compress::detect(&mut reader).map_err(io_err(format!("read layer {}", desc.digest)))?;
        let tar = compress::decompress(reader, kind)
            .map_err(io_err(format!("decompress layer {}", desc.digest)))?;
        kiln_executor::snapshot::apply_layer(tar, dir, &options).map_err(|e| {
            EngineError::Oci(format!(
                "failed to apply layer {} to {}: {}",
                desc.digest,
                dir.display(),
                format_chain(&e)
            ))
        })?;
    }
    Ok(())
}

/// Writes the tree at `dir` as one tar (sorted entries, numeric owners; mtimes clamped to
/// `source_date_epoch` when set).
pub fn write_tree_tar(
    dir: &Path,
    mut out: impl Write,
    source_date_epoch: Option<u64>,
) -> Result<(), EngineError> {
    kiln_executor::snapshot::write_layer(
        DiffSource::Trees {
            lower: None,
            upper: dir,
        },
        &mut out,
        &DiffOptions { source_date_epoch },
    )
    .map_err(|e| EngineError::Oci(format!("failed to write the filesystem tar: {e}")))?;
    out.flush().map_err(io_err("flush the filesystem tar"))
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
