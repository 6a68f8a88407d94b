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
    /// Finds an image by name (normalized as Docker does), by image ID or by manifest digest.
    pub fn image(&self, name: &str) -> Result<Image, ImageError> {
        // A string that is not a reference may still be an ID; either way a bad name is
        // "not found", as `docker inspect` says.
        if let Ok(canonical) = crate::name::store_name(name)
            && let Some(r) = self.store().image_ref(&canonical)?
        {
            return self.image_from_ref(Some(canonical), &r);
        }
        if name.starts_with("sha256:")
            && let Some(r) = self.store().image_ref(name)?
        {
            return self.image_from_ref(Some(name.to_owned()), &r);
        }
        // An ID (config digest) or a unique prefix of one, as `docker inspect` accepts.
        let wanted = name.trim_start_matches("sha256:");
        if wanted.len() >= 6 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (ref_name, r) in self.store().image_refs()? {
                let image = self.image_from_ref(Some(ref_name), &r)?;
                if image.config_digest.hex().starts_with(wanted)
                    || image.manifest_digest.hex().starts_with(wanted)
                {
                    return Ok(image);
                }
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    fn image_from_ref(&self, name: Option<String>, r: &ImageRef) -> Result<Image, ImageError> {
        self.read_image(r)
            .map_err(|source| ImageError::InvalidImage {
                name: name.clone().unwrap_or_else(|| r.target.to_string()),
                source: Box::new(source),
            })
            .map(|(manifest_digest, manifest, config)| Image {
                name,
                manifest_digest,
                config_digest: manifest.config.digest,
                manifest,
                config,
            })
    }

    /// The manifest (for an index: this host's platform's, or the first) and config `r` points
    /// at.
    fn read_image(&self, r: &ImageRef) -> Result<(Digest, Manifest, ImageConfig), kiln_oci::Error> {
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
                    let host = kiln_llb::Platform::host();
                    let chosen = index
                        .manifests
                        .iter()
                        .find(|d| {
                            d.platform.as_ref().is_some_and(|p| {
                                p.os == host.os && p.architecture == host.architecture
                            })
                        })
                        .or_else(|| index.manifests.first())
                        .ok_or_else(|| kiln_oci::Error::NoPlatform {
                            index: digest,
                            wanted: format!("{}/{}", host.os, host.architecture),
                            available: "none".to_owned(),
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
