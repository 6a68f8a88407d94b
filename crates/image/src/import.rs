//! `kiln import`: a root filesystem tar (optionally compressed) becomes a one-layer image.

use std::io::{BufReader, Read};

use kiln_cache::{ImageRef, Timestamp};
use kiln_llb::image::{History, ImageConfig};
use kiln_oci::compress::{self, Compression};
use kiln_oci::{ImageLayer, ImageOptions};

use crate::commit::now_rfc3339;
use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;

impl ImageStore {
    /// `kiln import`: a rootfs tar (optionally compressed) becomes a one-layer image.
    pub fn import_rootfs(
        &self,
        mut input: impl Read,
        name: Option<&str>,
        config: ImageConfig,
        source: &str,
    ) -> Result<Image, ImageError> {
        // Under a lease until named, so a concurrent prune cannot take the new blobs.
        self.with_lease(|lease| self.import_leased(&mut input, name, config, source, lease))
    }

    fn import_leased(
        &self,
        mut input: impl Read,
        name: Option<&str>,
        mut config: ImageConfig,
        source: &str,
        lease: &str,
    ) -> Result<Image, ImageError> {
        let mut blob = self.store().content().writer(None)?;
        // Store the layer compressed; the diff ID is taken from the decompressed stream.
        let mut buffered = BufReader::new(&mut input);
        let kind = compress::detect(&mut buffered).map_err(|source| ImageError::Io {
            what: "read the rootfs tar".into(),
            source,
        })?;
        let tar = compress::decompress(buffered, kind).map_err(|source| ImageError::Io {
            what: "decompress the rootfs tar".into(),
            source,
        })?;
        let (desc, _) = compress::compress_layer(tar, Compression::Gzip { level: 6 }, &mut blob)
            .map_err(|e| ImageError::format("compress the rootfs tar", e))?;
        blob.commit_leased(lease)?;
        let now = now_rfc3339();
        config.rootfs.diff_ids = vec![desc.diff_id];
        config.created.get_or_insert_with(|| now.clone());
        if config.os.is_empty() {
            let host = kiln_llb::Platform::host();
            config.os = host.os;
            config.architecture = host.architecture;
            config.variant = host.variant;
        }
        config.history = vec![History {
            created: Some(now),
            created_by: format!("kiln import {source}"),
            comment: "Imported from a rootfs tar".into(),
            ..History::default()
        }];
        let layer = ImageLayer::from(&desc);
        let assembled = kiln_oci::assemble(&config, &[layer], &ImageOptions::default())
            .map_err(|e| ImageError::format("assemble the image", e))?;
        assembled
            .store(&kiln_oci::store::LeasedStore {
                store: self.store(),
                lease,
            })
            .map_err(|e| ImageError::format("store the image", e))?;
        let target = ImageRef {
            target: assembled.manifest_descriptor.digest,
            media_type: assembled.manifest_descriptor.media_type.clone(),
            size: assembled.manifest_descriptor.size,
            created: Timestamp::now(),
        };
        let key = match name {
            Some(n) => crate::name::store_name(n)?,
            None => format!("sha256:{}", assembled.config_descriptor.digest.hex()),
        };
        self.store().set_image_ref(&key, &target)?;
        self.image(&key)
    }
}
