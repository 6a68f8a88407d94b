//! `kiln load`: an OCI archive or layout, or a docker archive, verified in full by the `oci`
//! crate, then committed to the store and named. A rejected input stores nothing and names
//! nothing.

use std::io::Read;
use std::path::Path;

use kiln_cache::{ImageRef, Timestamp};
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::{Import, LoadOptions, LoadedImage};

use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;

/// One image that was loaded: the store names it got and the image as the store now sees it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Canonical names; for an unnamed image the single key `sha256:<image ID>`.
    pub names: Vec<String>,
    pub image: Image,
}

fn options(store: &ImageStore) -> LoadOptions {
    LoadOptions {
        // Stage on the store's file system: layers can be larger than /tmp.
        staging_dir: Some(store.root().join("tmp")),
        ..LoadOptions::default()
    }
}

fn load_err(e: kiln_oci::LoadError) -> ImageError {
    ImageError::format("load", e)
}

impl ImageStore {
    /// Loads an archive (OCI or docker, plain, gzip or zstd) from `reader`.
    pub fn load_archive(&self, reader: impl Read) -> Result<Vec<Loaded>, ImageError> {
        let import = Import::from_archive(reader, &options(self)).map_err(load_err)?;
        self.finish_load(&import)
    }

    /// Loads an OCI layout directory (or an unpacked docker archive).
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<Loaded>, ImageError> {
        let import = Import::from_dir(dir, &options(self)).map_err(load_err)?;
        self.finish_load(&import)
    }

    /// One image of an OCI layout directory (the one whose manifest or index is `digest`, or
    /// the layout's only image) for a build's `oci-layout://` context. It is keyed by its ID
    /// only: the layout's own names must not re-point the store's.
    pub fn load_layout_image(
        &self,
        dir: &Path,
        digest: Option<&kiln_oci::Digest>,
    ) -> Result<Image, ImageError> {
        let import = Import::from_dir(dir, &options(self)).map_err(load_err)?;
        let lease = self
            .store()
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        let sink = kiln_oci::store::LeasedStore {
            store: self.store(),
            lease: &lease.id,
        };
        let chosen = import.commit(&sink).map_err(load_err).and_then(|images| {
            let found: Vec<&LoadedImage> = images
                .iter()
                .filter(|l| digest.is_none_or(|d| l.descriptor.digest == *d))
                .collect();
            match found.as_slice() {
                [one] => {
                    let d = &one.descriptor;
                    // Already stored under some name: use that, add no key.
                    if let Ok(image) = self.image(&d.digest.to_string())
                        && image.manifest_digest == d.digest
                    {
                        return Ok(image);
                    }
                    let name = format!("sha256:{}", self.config_digest_of(d)?.hex());
                    self.store().set_image_ref(
                        &name,
                        &ImageRef {
                            target: d.digest,
                            media_type: d.media_type.clone(),
                            size: d.size,
                            created: Timestamp::now(),
                        },
                    )?;
                    self.image(&name)
                }
                [] => Err(ImageError::NotFound(format!(
                    "{}@{}",
                    dir.display(),
                    digest.map(|d| d.to_string()).unwrap_or_default()
                ))),
                _ => Err(ImageError::Conflict(format!(
                    "the OCI layout {} holds {} images: name one with oci-layout://{}@sha256:...",
                    dir.display(),
                    found.len(),
                    dir.display()
                ))),
            }
        });
        let released = self.store().delete_lease(&lease.id);
        let chosen = chosen?;
        released?;
        Ok(chosen)
    }

    fn finish_load(&self, import: &Import) -> Result<Vec<Loaded>, ImageError> {
        // A lease keeps a concurrent prune from collecting the blobs between their commit and
        // the names that make them reachable; it ends with this call (or with the process).
        let lease = self
            .store()
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        let sink = kiln_oci::store::LeasedStore {
            store: self.store(),
            lease: &lease.id,
        };
        let named = import
            .commit(&sink)
            .map_err(load_err)
            .and_then(|images| images.iter().map(|l| self.name_loaded(l)).collect());
        let released = self.store().delete_lease(&lease.id);
        let named = named?;
        released?;
        Ok(named)
    }

    fn name_loaded(&self, loaded: &LoadedImage) -> Result<Loaded, ImageError> {
        let d = &loaded.descriptor;
        let target = ImageRef {
            target: d.digest,
            media_type: d.media_type.clone(),
            size: d.size,
            created: Timestamp::now(),
        };
        let mut names: Vec<String> = loaded
            .names
            .iter()
            .filter(|n| is_image_name(n, loaded.ref_name.as_deref()))
            .filter_map(|n| crate::name::store_name(n).ok())
            .collect();
        names.dedup();
        if names.is_empty() {
            // As `kiln import` does for unnamed images: keyed by image ID so `kiln images`
            // lists it and `kiln save`/`FROM` can use the ID.
            names.push(format!("sha256:{}", self.config_digest_of(d)?.hex()));
        }
        for name in &names {
            self.store().set_image_ref(name, &target)?;
        }
        // Read it back the way FROM will, so a loaded image that cannot be used fails here.
        let image = self.image(&names[0])?;
        Ok(Loaded { names, image })
    }

    /// The config digest of a manifest, or the index's own digest for an index.
    fn config_digest_of(&self, d: &kiln_oci::Descriptor) -> Result<kiln_oci::Digest, ImageError> {
        let bytes = kiln_oci::BlobSource::read_verified(
            self.blobs(),
            &d.digest,
            kiln_oci::export::MAX_JSON_SIZE,
        )
        .map_err(|e| ImageError::format("read the loaded manifest", e))?;
        match manifest::parse(&bytes, &d.media_type, "loaded manifest")
            .map_err(|e| ImageError::format("parse the loaded manifest", e))?
        {
            Parsed::Manifest(m) => Ok(m.config.digest),
            Parsed::Index(_) => Ok(d.digest),
        }
    }
}

/// Whether a name from an archive names an image: an OCI `ref.name` that is only a tag
/// (`latest`, `v1`, as `skopeo copy ... oci:dir:latest` writes) does not.
fn is_image_name(name: &str, ref_name: Option<&str>) -> bool {
    if ref_name == Some(name) && !name.contains([':', '/', '@']) {
        return false;
    }
    kiln_llb::Reference::parse(name).is_ok()
}
