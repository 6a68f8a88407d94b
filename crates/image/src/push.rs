//! `kiln push`: an image from the store (its manifest or index and every blob) to a registry,
//! mounting blobs from other repositories of the same registry that the store knows hold them.

use kiln_llb::Reference;
use kiln_registry::{Client, PushEvent, PushOptions, Pushed};

use crate::error::ImageError;
use crate::pull::registry_error;
use crate::store::ImageStore;

/// Blobs uploaded at once.
const PUSH_CONCURRENCY: usize = 4;

impl ImageStore {
    /// Pushes the image named `name` (or found by ID) to `dest`, or to `name` itself.
    pub fn push(
        &self,
        client: &Client,
        name: &str,
        dest: Option<&str>,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<Pushed, ImageError> {
        let dest_name = dest.unwrap_or(name);
        let dest_ref =
            Reference::parse(dest_name).map_err(|source| ImageError::InvalidReference {
                name: dest_name.to_owned(),
                source,
            })?;
        let stored = match crate::name::store_name(name) {
            Ok(canonical) => self.store().image_ref(&canonical)?,
            Err(_) => None,
        };
        let top = match stored {
            Some(r) => kiln_oci::Descriptor::new(r.media_type, r.target, r.size),
            None => {
                let image = self.image(name)?;
                let media_type = if image.manifest.media_type.is_empty() {
                    kiln_oci::media_type::OCI_MANIFEST.to_owned()
                } else {
                    image.manifest.media_type.clone()
                };
                let size = kiln_oci::BlobSource::size(self.blobs(), &image.manifest_digest)
                    .map_err(|e| ImageError::format("read the manifest", e))?
                    .unwrap_or(0);
                kiln_oci::Descriptor::new(media_type, image.manifest_digest, size)
            }
        };
        // Other names of the same image on the destination registry hold its blobs: let the
        // registry link them instead of receiving them again.
        let mut mount_from = Vec::new();
        for (other, r) in self.store().image_refs()? {
            if r.target != top.digest {
                continue;
            }
            if let Ok(o) = Reference::parse(&other)
                && o.registry() == dest_ref.registry()
                && o.repository() != dest_ref.repository()
                && !mount_from.iter().any(|m| m == o.repository())
            {
                mount_from.push(o.repository().to_owned());
            }
        }
        let opts = PushOptions {
            concurrency: PUSH_CONCURRENCY,
            chunk_size: kiln_registry::push::DEFAULT_CHUNK_SIZE,
            mount_from,
            progress,
        };
        let blobs = self.blobs();
        kiln_registry::push(client, blobs, &top, &dest_ref, &opts)
            .map_err(|e| registry_error("push", &dest_ref.to_string(), e))
    }
}

/// One line per push event.
pub fn describe(event: &PushEvent) -> String {
    let short = |d: &kiln_oci::Digest| d.hex().chars().take(12).collect::<String>();
    match event {
        PushEvent::BlobExists { digest, .. } => format!("{}: layer already exists", short(digest)),
        PushEvent::BlobMounted { digest, from } => {
            format!("{}: mounted from {from}", short(digest))
        }
        PushEvent::BlobStarted { digest, size } => {
            format!("{}: pushing {size} bytes", short(digest))
        }
        PushEvent::BlobDone { digest, .. } => format!("{}: pushed", short(digest)),
        PushEvent::BlobRetry {
            digest,
            attempt,
            reason,
        } => format!("{}: retrying (attempt {attempt}): {reason}", short(digest)),
        PushEvent::ManifestPushed { digest, target } => format!("{target}: digest: {digest}"),
    }
}
