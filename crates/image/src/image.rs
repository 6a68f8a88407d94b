//! Images in the local store: names → manifests → configs, found by name, ID or digest,
//! listed, tagged and untagged.

use kiln_cache::ImageRef;
use kiln_llb::image::ImageConfig;
use kiln_oci::export::MAX_INDEX_DEPTH;
use kiln_oci::manifest::{self, Manifest, Parsed};
use kiln_oci::{BlobSource, Digest};

use crate::error::ImageError;
use crate::store::ImageStore;

/// Largest manifest or config blob we read into memory.
const MAX_JSON_BLOB: u64 = 8 << 20;

/// An image found in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The canonical name it was found by, if any.
    pub name: Option<String>,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
}

impl Image {
    /// Docker's image ID: the config digest.
    pub fn id(&self) -> Digest {
        self.config_digest
    }

    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

/// The platform an image config names.
pub fn platform_of_config(config: &ImageConfig) -> kiln_llb::Platform {
    kiln_llb::Platform::new(&config.os, &config.architecture, config.variant.as_deref())
}

/// A single-manifest image found for `wanted` must be for it: building an arm64 image on an
/// amd64 base would run the wrong programs without a word. A config without a platform
/// (some hand-made images) is taken as it is.
fn check_platform(image: Image, wanted: &kiln_llb::Platform) -> Result<Image, ImageError> {
    if image.config.architecture.is_empty() {
        return Ok(image);
    }
    let have = platform_of_config(&image.config);
    if have.matches(wanted) {
        Ok(image)
    } else {
        Err(ImageError::NoPlatform {
            name: image
                .name
                .clone()
                .unwrap_or_else(|| image.manifest_digest.to_string()),
            wanted: wanted.to_string(),
            available: have.to_string(),
        })
    }
}

/// The chain ID of layers (OCI image spec): the identity of a stack of diff IDs.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => *diff_id,
            Some(prev) => Digest::of(format!("{prev} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl ImageStore {
    /// Finds an image by name (normalized as Docker does), by image ID or by manifest digest;
    /// for an index, the manifest of this host's platform (or the first).
    pub fn image(&self, name: &str) -> Result<Image, ImageError> {
        self.image_for(name, None)
    }

    /// [`ImageStore::image`] for `platform`: an index resolves to the manifest for it (as
    /// containerd's matcher decides, see [`kiln_llb::Platform::matches`]) and a single
    /// manifest must be for it; otherwise the error lists the platforms there are.
    pub fn image_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
    ) -> Result<Image, ImageError> {
        // A string that is not a reference may still be an ID; either way a bad name is
        // "not found", as `docker inspect` says.
        if let Ok(canonical) = crate::name::store_name(name)
            && let Some(r) = self.store().image_ref(&canonical)?
        {
            return self.image_from_ref_for(Some(canonical), &r, platform);
        }
        if name.starts_with("sha256:")
            && let Some(r) = self.store().image_ref(name)?
        {
            return self.image_from_ref_for(Some(name.to_owned()), &r, platform);
        }
        // An ID (config digest) or a unique prefix of one, as `docker inspect` accepts.
        let wanted = name.trim_start_matches("sha256:");
        if wanted.len() >= 6 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (ref_name, r) in self.store().image_refs()? {
                let image = self.image_from_ref(Some(ref_name.clone()), &r)?;
                if image.config_digest.hex().starts_with(wanted)
                    || image.manifest_digest.hex().starts_with(wanted)
                {
                    return match platform {
                        // An index's own digest names all its platforms: pick one.
                        Some(_) if r.target.hex().starts_with(wanted) => {
                            self.image_from_ref_for(Some(ref_name), &r, platform)
                        }
                        Some(p) => check_platform(image, p),
                        None => Ok(image),
                    };
                }
            }
        }
        // A platform manifest inside an index (what a multi-platform base resolved to): read
        // it directly from the content store.
        if let Ok(digest) = name.parse::<Digest>()
            && let Some(image) = self.manifest_image(&digest)
        {
            return match platform {
                Some(p) => check_platform(image, p),
                None => Ok(image),
            };
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// The image whose manifest blob is `digest`, when the store holds it.
    fn manifest_image(&self, digest: &Digest) -> Option<Image> {
        let r = ImageRef {
            target: *digest,
            media_type: String::new(),
            size: 0,
            created: kiln_cache::Timestamp::now(),
        };
        let bytes = self.blobs().read_verified(digest, MAX_JSON_BLOB).ok()?;
        match manifest::parse(&bytes, "", "manifest").ok()? {
            Parsed::Manifest(_) => self.image_from_ref(None, &r).ok(),
            Parsed::Index(_) => None,
        }
    }

    fn image_from_ref(&self, name: Option<String>, r: &ImageRef) -> Result<Image, ImageError> {
        self.image_from_ref_for(name, r, None)
    }

    fn image_from_ref_for(
        &self,
        name: Option<String>,
        r: &ImageRef,
        platform: Option<&kiln_llb::Platform>,
    ) -> Result<Image, ImageError> {
        let label = || name.clone().unwrap_or_else(|| r.target.to_string());
        let image = self
            .read_image(r, platform)
            .map_err(|source| match source {
                kiln_oci::Error::NoPlatform {
                    wanted, available, ..
                } => ImageError::NoPlatform {
                    name: label(),
                    wanted,
                    available,
                },
                source => ImageError::InvalidImage {
                    name: label(),
                    source: Box::new(source),
                },
            })
            .map(|(manifest_digest, manifest, config)| Image {
                name: name.clone(),
                manifest_digest,
                config_digest: manifest.config.digest,
                manifest,
                config,
            })?;
        match platform {
            Some(p) => check_platform(image, p),
            None => Ok(image),
        }
    }

    /// The platforms of the image `r` points at: one per manifest of an index, or the one of
    /// a single manifest (from its config).
    pub fn platforms_of(&self, name: &str) -> Result<Vec<kiln_llb::Platform>, ImageError> {
        let canonical = crate::name::store_name(name).unwrap_or_else(|_| name.to_owned());
        let Some(r) = self.store().image_ref(&canonical)? else {
            return Ok(vec![platform_of_config(&self.image(name)?.config)]);
        };
        let bytes = self
            .blobs()
            .read_verified(&r.target, MAX_JSON_BLOB)
            .map_err(|e| ImageError::InvalidImage {
                name: canonical.clone(),
                source: Box::new(e.into()),
            })?;
        match manifest::parse(&bytes, &r.media_type, &format!("manifest {}", r.target)) {
            Ok(Parsed::Index(index)) => Ok(index
                .images()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| kiln_llb::Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
                .collect()),
            _ => Ok(vec![platform_of_config(&self.image(name)?.config)]),
        }
    }

    /// The manifest (for an index: `platform`'s, or without one this host's platform's, or the
    /// first) and config `r` points at.
    fn read_image(
        &self,
        r: &ImageRef,
        platform: Option<&kiln_llb::Platform>,
    ) -> Result<(Digest, Manifest, ImageConfig), kiln_oci::Error> {
        let blobs = self.blobs();
        let mut digest = r.target;
        let mut media_type = r.media_type.clone();
        for _ in 0..=MAX_INDEX_DEPTH {
            let bytes = blobs.read_verified(&digest, MAX_JSON_BLOB)?;
            match manifest::parse(&bytes, &media_type, &format!("manifest {digest}"))? {
                Parsed::Manifest(manifest) => {
                    let config_digest = manifest.config.digest;
                    let config_bytes = blobs.read_verified(&config_digest, MAX_JSON_BLOB)?;
                    let config: ImageConfig =
                        serde_json::from_slice(&config_bytes).map_err(|source| {
                            kiln_oci::Error::Config {
                                digest: config_digest,
                                source,
                            }
                        })?;
                    return Ok((digest, manifest, config));
                }
                Parsed::Index(index) => {
                    let of = |d: &kiln_oci::Descriptor| {
                        d.platform.as_ref().map(|p| {
                            kiln_llb::Platform::new(&p.os, &p.architecture, p.variant.as_deref())
                        })
                    };
                    let chosen = match platform {
                        Some(want) => index
                            .images()
                            .find(|d| of(d).is_some_and(|p| p.matches(want))),
                        None => {
                            let host = kiln_llb::Platform::host();
                            index
                                .images()
                                .find(|d| {
                                    of(d).is_some_and(|p| {
                                        p.os == host.os && p.architecture == host.architecture
                                    })
                                })
                                .or_else(|| index.images().next())
                        }
                    };
                    let chosen = chosen.ok_or_else(|| {
                        let available: Vec<String> = index
                            .images()
                            .map(|d| of(d).map_or("unknown".to_owned(), |p| p.to_string()))
                            .collect();
                        kiln_oci::Error::NoPlatform {
                            index: digest,
                            wanted: platform.map_or_else(|| "any".to_owned(), ToString::to_string),
                            available: if available.is_empty() {
                                "none".to_owned()
                            } else {
                                available.join(", ")
                            },
                        }
                    })?;
                    digest = chosen.digest;
                    media_type = chosen.media_type.clone();
                }
            }
        }
        Err(kiln_oci::Error::TooDeep(digest))
    }

    /// Every named image: (canonical name, image).
    pub fn images(&self) -> Result<Vec<(String, Image)>, ImageError> {
        let mut out = Vec::new();
        for (name, r) in self.store().image_refs()? {
            out.push((name.clone(), self.image_from_ref(Some(name), &r)?));
        }
        Ok(out)
    }

    /// Points `new_name` at the image `existing` names.
    pub fn tag(&self, existing: &str, new_name: &str) -> Result<(), ImageError> {
        let new_name = crate::name::store_name(new_name)?;
        let stored = match crate::name::store_name(existing) {
            Ok(canonical) => self.store().image_ref(&canonical)?,
            Err(_) => None,
        };
        let target = match stored {
            Some(r) => r,
            None => {
                let image = self.image(existing)?;
                let name = image.name.ok_or(ImageError::NotFound(existing.into()))?;
                self.store()
                    .image_ref(&name)?
                    .ok_or(ImageError::NotFound(existing.into()))?
            }
        };
        self.store().set_image_ref(&new_name, &target)?;
        Ok(())
    }

    /// Removes a name; the blobs go at the next prune.
    pub fn untag(&self, name: &str) -> Result<(), ImageError> {
        let key = match crate::name::store_name(name) {
            Ok(key) => key,
            Err(_) if name.starts_with("sha256:") => name.to_owned(),
            Err(_) => return Err(ImageError::NotFound(name.into())),
        };
        match self.store().delete_image_ref(&key)? {
            Some(_) => Ok(()),
            None => Err(ImageError::NotFound(name.into())),
        }
    }

    /// `kiln rmi NAME`: a name is untagged; an ID untags every name of that image, which must be
    /// forced when there are several (as Docker refuses). Blobs and snapshots go at the next
    /// prune.
    pub fn remove(&self, name: &str, force: bool) -> Result<Removed, ImageError> {
        if let Ok(canonical) = crate::name::store_name(name)
            && self.store().image_ref(&canonical)?.is_some()
        {
            self.untag(&canonical)?;
            return Ok(Removed {
                untagged: vec![canonical],
                deleted: None,
            });
        }
        let image = self.image(name)?;
        let names: Vec<String> = self
            .images()?
            .into_iter()
            .filter(|(_, i)| i.id() == image.id())
            .map(|(n, _)| n)
            .collect();
        if names.len() > 1 && !force {
            return Err(ImageError::Conflict(format!(
                "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                &image.id().hex()[..12]
            )));
        }
        for n in &names {
            self.untag(n)?;
        }
        Ok(Removed {
            untagged: names,
            deleted: Some(image.id()),
        })
    }
}

/// What [`ImageStore::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The names taken away (canonical).
    pub untagged: Vec<String>,
    /// The image ID, when the image itself was removed (by ID).
    pub deleted: Option<Digest>,
}
