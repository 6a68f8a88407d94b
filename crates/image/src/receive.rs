//! An image whose blobs come from elsewhere — a remote worker's result for `kiln build
//! --builder ... --load` — put into the store: only the blobs the store lacks are fetched, each
//! verified against its digest and size while written, under a lease until the image is named.

use std::io::Write;

use kiln_cache::{ImageRef, LeaseOptions, Timestamp};
use kiln_llb::Digest;

use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;

/// One blob of an image to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// What [`ImageStore::receive_image`] did.
#[derive(Debug)]
pub struct Received {
    pub image: Image,
    /// Canonical names given (or the `sha256:ID` name of an unnamed image).
    pub names: Vec<String>,
    /// Bytes fetched (blobs the store already had cost nothing).
    pub fetched_bytes: u64,
}

impl ImageStore {
    /// Whether the content store has blob `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs().exists(digest)
    }

    /// Stores the image whose manifest is `manifest`, config `config_digest` and whose other
    /// blobs (config, layers) are `blobs`, fetching each blob the store lacks with `fetch` (which writes the blob's
    /// bytes), then names it `names` (none: by its ID, as an unnamed `kiln load` does).
    pub fn receive_image(
        &self,
        manifest: &ReceivedBlob,
        config_digest: &Digest,
        blobs: &[ReceivedBlob],
        names: &[String],
        fetch: &mut dyn FnMut(&ReceivedBlob, &mut dyn Write) -> Result<(), String>,
    ) -> Result<Received, ImageError> {
        let lease = self.store().create_lease(&LeaseOptions::default())?;
        let result = self.receive_leased(&lease.id, manifest, config_digest, blobs, names, fetch);
        let released = self.store().delete_lease(&lease.id);
        let received = result?;
        released?;
        Ok(received)
    }

    fn receive_leased(
        &self,
        lease: &str,
        manifest: &ReceivedBlob,
        config_digest: &Digest,
        blobs: &[ReceivedBlob],
        names: &[String],
        fetch: &mut dyn FnMut(&ReceivedBlob, &mut dyn Write) -> Result<(), String>,
    ) -> Result<Received, ImageError> {
        let mut fetched_bytes = 0;
        // The manifest last: once it is there, everything it names is.
        for blob in blobs.iter().chain(std::iter::once(manifest)) {
            if self.blobs().exists(&blob.digest) {
                // Already here: make sure the lease keeps it until the name does.
                self.store().lease_blob(lease, blob.digest)?;
                continue;
            }
            let mut writer = self
                .blobs()
                .writer(Some(blob.digest))?
                .expect_size(blob.size);
            fetch(blob, &mut writer).map_err(|reason| {
                ImageError::format(
                    format!("fetch blob {}", blob.digest),
                    std::io::Error::other(reason),
                )
            })?;
            fetched_bytes += writer.written();
            writer.commit_leased(lease)?;
        }
        let target = ImageRef {
            target: manifest.digest,
            media_type: manifest.media_type.clone(),
            size: manifest.size,
            created: Timestamp::now(),
        };
        let mut canonical = names
            .iter()
            .map(|n| crate::name::store_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        if canonical.is_empty() {
            canonical.push(format!("sha256:{}", config_digest.hex()));
        }
        for name in &canonical {
            self.store().set_image_ref(name, &target)?;
        }
        let image = self.image(&canonical[0])?;
        Ok(Received {
            image,
            names: canonical,
            fetched_bytes,
        })
    }
}
