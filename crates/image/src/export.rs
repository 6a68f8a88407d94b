//! Exporters over the local store: `kiln save` and the build's `-o` write an image as an OCI
//! archive or layout, a docker archive, its final filesystem as a directory, or that filesystem
//! as one tar.
//!
//! The image is always committed to the store first (with the compression and media types the
//! output asks for), so every exporter reads verified blobs from one place and a later `kiln
//! save` of the same image gives the same bytes.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_executor::snapshot::{ApplyOptions, DiffOptions, DiffSource, WhiteoutMode};
use kiln_oci::compress;
use kiln_oci::export::{DockerArchiveOptions, DockerLayers, NamedImage};
use kiln_oci::media_type::Flavor;
use kiln_oci::{BlobSource, Descriptor};

use crate::error::ImageError;
use crate::image::Image;
use crate::output::{Output, OutputKind};
use crate::store::ImageStore;

/// The descriptor of `image`'s manifest, as an index or archive lists it.
pub fn image_descriptor(store: &ImageStore, image: &Image) -> Result<Descriptor, ImageError> {
    let size = store
        .blobs()
        .size(&image.manifest_digest)
        .map_err(|e| ImageError::format("read the manifest", e))?
        .ok_or_else(|| ImageError::InvalidImage {
            name: image.name.clone().unwrap_or_default(),
            source: Box::new(kiln_oci::BlobError::NotFound(image.manifest_digest).into()),
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
pub fn named_images(store: &ImageStore, names: &[String]) -> Result<Vec<NamedImage>, ImageError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let canonical = crate::name::store_name(name).ok();
        if let Some(canonical) = canonical
            && let Some(r) = store.store().image_ref(&canonical)?
        {
            out.push(NamedImage {
                name: Some(canonical).filter(|n| !n.starts_with("sha256:")),
                descriptor: Descriptor::new(r.media_type.clone(), r.target, r.size),
            });
            continue;
        }
        let image = store.image(name)?;
        out.push(NamedImage {
            name: None,
            descriptor: image_descriptor(store, &image)?,
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
    store: &ImageStore,
    images: &[NamedImage],
    format: SaveFormat,
    out: impl Write,
) -> Result<(), ImageError> {
    let blobs = store.blobs();
    let oci_err = |e: kiln_oci::Error| ImageError::format("write the archive", e);
    let mut out = match format {
        SaveFormat::Oci => kiln_oci::write_oci_archive(out, blobs, images).map_err(oci_err)?,
        SaveFormat::Docker => {
            let tmp = store.tempdir("save-")?;
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
    out.flush().map_err(|source| ImageError::Io {
        what: "flush the archive".into(),
        source,
    })
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// Writes a built (already committed) image where `output` says. `tags` are the `-t` names;
/// `source_date_epoch` clamps mtimes in `type=tar` output.
pub fn export(
    store: &ImageStore,
    image: &Image,
    output: &Output,
    tags: &[String],
    source_date_epoch: Option<u64>,
) -> Result<(), ImageError> {
    export_top(store, image, None, output, tags, source_date_epoch)
}

/// [`export`] with the descriptor archives and layouts list for the image: `top` is an index
/// holding the image and its attestations (else the image manifest is listed).
pub fn export_top(
    store: &ImageStore,
    image: &Image,
    top: Option<&Descriptor>,
    output: &Output,
    tags: &[String],
    source_date_epoch: Option<u64>,
) -> Result<(), ImageError> {
    let dest = || {
        output
            .dest
            .clone()
            .ok_or_else(|| ImageError::Bug("an output without dest passed parsing".into()))
    };
    let named = || -> Result<Vec<NamedImage>, ImageError> {
        let descriptor = match top {
            Some(top) => top.clone(),
            None => image_descriptor(store, image)?,
        };
        let names = output.archive_names(tags);
        if names.is_empty() {
            return Ok(vec![NamedImage {
                name: None,
                descriptor,
            }]);
        }
        names
            .iter()
            .map(|n| {
                Ok(NamedImage {
                    name: Some(crate::name::store_name(n)?),
                    descriptor: descriptor.clone(),
                })
            })
            .collect()
    };
    match output.kind {
        // The build named it when committing.
        OutputKind::Image => Ok(()),
        OutputKind::Oci if !output.tar => {
            let dir = dest()?;
            into_dir(&dir, |staged| {
                kiln_oci::write_oci_layout(staged, store.blobs(), &named()?)
                    .map(drop)
                    .map_err(|e| ImageError::format(format!("write {}", dir.display()), e))
            })
        }
        OutputKind::Oci => {
            let dest = dest()?;
            into_file(&dest, |out| save(store, &named()?, SaveFormat::Oci, out))
        }
        OutputKind::Docker => {
            let dest = dest()?;
            into_file(&dest, |out| save(store, &named()?, SaveFormat::Docker, out))
        }
        OutputKind::Local => {
            let dir = dest()?;
            into_dir(&dir, |staged| apply_layers(store, image, staged))
        }
        OutputKind::Tar => {
            let dest = dest()?;
            let tree = store.tempdir("export-tar-")?;
            apply_layers(store, image, tree.path())?;
            into_file(&dest, |out| {
                write_tree_tar(tree.path(), out, source_date_epoch)
            })
        }
    }
}

/// Writes a file output whole or not at all: into a temp file beside `dest`, renamed onto it
/// when `write` succeeds (`-` is stdout, written as it comes). A write error names `dest`, so
/// a full disk says which one.
pub fn into_file(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    if dest == Path::new("-") {
        let mut out = kiln_oci::export::open_dest(dest).map_err(io_err("open stdout"))?;
        return write(&mut out);
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-output-")
        .tempfile_in(dir)
        .map_err(io_err(format!("create a file in {}", dir.display())))?;
    {
        let mut out = NamedWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
            path: dest,
        };
        write(&mut out)?;
        out.flush()
            .map_err(io_err(format!("write {}", dest.display())))?;
    }
    let file = tmp.as_file();
    // tempfile creates 0600; an output is an ordinary file, as `File::create` makes it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("write {}", dest.display())))?;
    tmp.persist(dest)
        .map_err(|e| io_err(format!("write {}", dest.display()))(e.error))?;
    Ok(())
}

/// Writes a directory output: when `dir` does not exist yet, into a temp directory beside it
/// that is renamed to `dir` on success and removed on failure; an existing directory is
/// written in place (as BuildKit's local exporter does), so a failure can leave part of it.
fn into_dir(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    if dir.exists() {
        return write(dir);
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    let staged = tempfile::Builder::new()
        .prefix(".kiln-output-")
        .tempdir_in(parent)
        .map_err(io_err(format!(
            "create a directory in {}",
            parent.display()
        )))?;
    std::fs::set_permissions(staged.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("create {}", dir.display())))?;
    write(staged.path())?;
    let staged = staged.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        io_err(format!("rename {} to {}", staged.display(), dir.display()))(e)
    })
}

/// A writer whose errors name the file it writes.
struct NamedWriter<'a, W: Write> {
    inner: W,
    path: &'a Path,
}

impl<W: Write> Write for NamedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.named(e))
    }
}

impl<W: Write> NamedWriter<'_, W> {
    fn named(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!("failed to write {}: {e}", self.path.display()),
        )
    }
}

/// Applies every layer of `image`, bottom first, onto `dir`: whiteouts delete, so `dir` ends up
/// holding the image's final filesystem.
pub fn apply_layers(store: &ImageStore, image: &Image, dir: &Path) -> Result<(), ImageError> {
    let options = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        // What a build made (or a base image held) is what the user asked to export.
        allow_devices: true,
        ..ApplyOptions::default()
    };
    for desc in &image.manifest.layers {
        let blob = store.store().content().open_verified(&desc.digest)?;
        let mut reader = BufReader::with_capacity(1 << 20, blob);
        let kind =
            compress::detect(&mut reader).map_err(io_err(format!("read layer {}", desc.digest)))?;
        let tar = compress::decompress(reader, kind)
            .map_err(io_err(format!("decompress layer {}", desc.digest)))?;
        kiln_executor::snapshot::apply_layer(tar, dir, &options).map_err(|e| {
            ImageError::format(
                format!("apply layer {} to {}", desc.digest, dir.display()),
                e,
            )
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
) -> Result<(), ImageError> {
    kiln_executor::snapshot::write_layer(
        DiffSource::Trees {
            lower: None,
            upper: dir,
        },
        &mut out,
        &DiffOptions { source_date_epoch },
    )
    .map_err(|e| ImageError::format("write the filesystem tar", e))?;
    out.flush().map_err(io_err("flush the filesystem tar"))
}
