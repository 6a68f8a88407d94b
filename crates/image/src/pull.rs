//! `kiln pull` and `FROM` of an image the store does not have: the registry crate fetches
//! this platform's manifest and its blobs (verified) into the content store, then the name
//! is pointed at the manifest.

use kiln_cache::{ImageRef, Timestamp};
use kiln_llb::Reference;
use kiln_registry::{Client, PullEvent, PullOptions, RegistryError};

use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;

/// Blobs downloaded at once.
const PULL_CONCURRENCY: usize = 4;

/// A registry failure, naming the image.
pub(crate) fn registry_error(
    action: &'static str,
    name: &str,
    source: RegistryError,
) -> ImageError {
    ImageError::Registry {
        action,
        name: name.to_owned(),
        source: Box::new(source),
    }
}

impl ImageStore {
    /// Pulls `name` for this host's platform and names it in the store.
    pub fn pull(
        &self,
        client: &Client,
        name: &str,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        self.pull_for(client, name, None, progress)
    }

    /// Pulls `name` for `platform` (this host's when `None`) and names it in the store.
    pub fn pull_for(
        &self,
        client: &Client,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        let reference = Reference::parse(name).map_err(|source| ImageError::InvalidReference {
            name: name.to_owned(),
            source,
        })?;
        let opts = PullOptions {
            platform: platform.cloned().unwrap_or_else(kiln_llb::Platform::host),
            concurrency: PULL_CONCURRENCY,
            progress,
        };
        // A lease keeps a concurrent prune from collecting the blobs between their commit and
        // the name that makes them reachable. When the pull fails, the blobs it did store are
        // unreferenced once the lease goes, and the next prune removes them.
        let lease = self
            .store()
            .create_lease(&kiln_cache::LeaseOptions::default())?;
        let sink = kiln_oci::store::LeasedStore {
            store: self.store(),
            lease: &lease.id,
        };
        let result = kiln_registry::pull(client, &reference, &sink, &opts)
            .map_err(|e| registry_error("pull", &reference.to_string(), e))
            .and_then(|pulled| self.name_pulled(&reference, &pulled, platform));
        let released = self.store().delete_lease(&lease.id);
        let image = result?;
        released?;
        Ok(image)
    }

    fn name_pulled(
        &self,
        reference: &Reference,
        pulled: &kiln_registry::Pulled,
        platform: Option<&kiln_llb::Platform>,
    ) -> Result<Image, ImageError> {
        let target = ImageRef {
            target: pulled.manifest.digest,
            media_type: pulled.manifest.media_type.clone(),
            size: pulled.manifest.size,
            created: Timestamp::now(),
        };
        let canonical = reference.to_string();
        let previous = self.store().image_ref(&canonical)?;
        self.store().set_image_ref(&canonical, &target)?;
        let image = self.image_for(&canonical, platform)?;
        if let (Some(platform), Some(previous)) = (platform, previous) {
            // A pull for one platform keeps the others the name had: the name becomes an
            // index of them all, so a multi-platform build pulling its base per platform
            // finds every one.
            self.keep_other_platforms(&canonical, &previous, &image, platform)?;
            return self.image_for(&canonical, Some(platform));
        }
        if pulled.attestations.is_empty() {
            return Ok(image);
        }
        // The image came with attestations: name an index of the two, so they stay with it
        // (a push elsewhere carries them). The registry's index may list platforms this store
        // does not have; this one lists only what is here.
        let index = self.index_with_attestations(&image, pulled.attestations.clone())?;
        self.store().set_image_ref(
            &canonical,
            &ImageRef {
                target: index.digest,
                media_type: index.media_type,
                size: index.size,
                created: Timestamp::now(),
            },
        )?;
        self.image_for(&canonical, platform)
    }

    /// Points `name` at an index of `image` (for `platform`) and the images for other
    /// platforms `previous` held (a manifest, or an index's entries).
    fn keep_other_platforms(
        &self,
        name: &str,
        previous: &ImageRef,
        image: &Image,
        platform: &kiln_llb::Platform,
    ) -> Result<(), ImageError> {
        if previous.target == image.manifest_digest {
            return Ok(());
        }
        let mut others: Vec<Image> = Vec::new();
        let old = |e| ImageError::format("read the image the name had", e);
        let bytes = kiln_oci::BlobSource::read_verified(
            self.blobs(),
            &previous.target,
            kiln_oci::export::MAX_JSON_SIZE,
        )
        .map_err(old)?;
        match kiln_oci::manifest::parse(&bytes, &previous.media_type, "stored manifest") {
            Ok(kiln_oci::manifest::Parsed::Index(index)) => {
                for d in index.images() {
                    if let Some(p) = &d.platform {
                        let p =
                            kiln_llb::Platform::new(&p.os, &p.architecture, p.variant.as_deref());
                        if !p.matches(platform)
                            && let Ok(other) = self.image_for(&d.digest.to_string(), Some(&p))
                        {
                            others.push(other);
                        }
                    }
                }
            }
            Ok(kiln_oci::manifest::Parsed::Manifest(_)) => {
                if let Ok(other) = self.image(&previous.target.to_string()) {
                    let p = crate::image::platform_of_config(&other.config);
                    if !other.config.architecture.is_empty() && !p.matches(platform) {
                        others.push(other);
                    }
                }
            }
            Err(_) => {}
        }
        if others.is_empty() {
            return Ok(());
        }
        others.push(image.clone());
        self.store_index(&others, &[name.to_owned()])?;
        Ok(())
    }

    /// Pulls with the default config file and docker credentials.
    pub fn pull_default(
        &self,
        name: &str,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        self.pull_default_for(name, None, progress)
    }

    /// [`ImageStore::pull_default`] for `platform`.
    pub fn pull_default_for(
        &self,
        name: &str,
        platform: Option<&kiln_llb::Platform>,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        let client = Client::from_env().map_err(|e| registry_error("pull", name, e))?;
        self.pull_for(&client, name, platform, progress)
    }
}

/// One line per pull event, as `kiln pull` and builds print them.
pub fn describe(event: &PullEvent) -> String {
    let short = |d: &kiln_oci::Digest| d.hex().chars().take(12).collect::<String>();
    match event {
        PullEvent::Resolved { endpoint, digest } => format!("resolved {digest} from {endpoint}"),
        PullEvent::MirrorFailed { endpoint, reason } => {
            format!("mirror {endpoint} failed, trying the next: {reason}")
        }
        PullEvent::BlobExists { digest, .. } => format!("{}: already exists", short(digest)),
        PullEvent::BlobStarted { digest, size } => {
            format!("{}: downloading {size} bytes", short(digest))
        }
        PullEvent::BlobDone { digest, .. } => format!("{}: done", short(digest)),
        PullEvent::BlobRetry {
            digest,
            attempt,
            reason,
        } => format!("{}: retrying (attempt {attempt}): {reason}", short(digest)),
    }
}

impl ImageStore {
    /// The stored image `name`, or (when it is missing, or `always` asks to re-check as
    /// `--pull` does) a pull from its registry, reporting to `progress`. IDs are never pulled.
    pub fn resolve_or_pull(
        &self,
        name: &str,
        always: bool,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        self.resolve_or_pull_for(name, always, None, progress)
    }

    /// [`ImageStore::resolve_or_pull`] for `platform`: a stored index gives its manifest for
    /// the platform, and a stored image without it is an error listing what it has.
    pub fn resolve_or_pull_for(
        &self,
        name: &str,
        always: bool,
        platform: Option<&kiln_llb::Platform>,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, ImageError> {
        let mut missing_platform = None;
        if !always {
            match self.image_for(name, platform) {
                Err(ImageError::NotFound(_)) => {}
                // The stored image lacks the platform: its registry may have it (a pull for
                // it keeps the platforms the name has). If not, the store's answer stands.
                Err(e @ ImageError::NoPlatform { .. }) => missing_platform = Some(e),
                other => return other,
            }
        }
        let hex = name.trim_start_matches("sha256:");
        let is_id = name.starts_with("sha256:")
            || (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_id {
            return match missing_platform {
                Some(e) => Err(e),
                None => self.image_for(name, platform),
            };
        }
        if let Err(source) = Reference::parse(name) {
            return Err(ImageError::InvalidReference {
                name: name.to_owned(),
                source,
            });
        }
        match (
            self.pull_default_for(name, platform, progress),
            missing_platform,
        ) {
            (Err(_), Some(e)) => Err(e),
            (result, _) => result,
        }
    }
}
