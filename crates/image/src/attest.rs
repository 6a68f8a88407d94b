//! Attestations attached to a stored image as BuildKit lays them out: an OCI index holding the
//! image manifest and, per image, one attestation manifest (platform `unknown/unknown`,
//! annotated `vnd.docker.reference.type: attestation-manifest` and
//! `vnd.docker.reference.digest: <image manifest>`) whose layers are in-toto statements.

use std::collections::BTreeMap;

use kiln_cache::{ImageRef, Timestamp};
use kiln_oci::manifest::{self, Descriptor, Index, Manifest, Platform};
use kiln_oci::{BlobSink, media_type};

use crate::error::ImageError;
use crate::image::Image;
use crate::store::ImageStore;

/// The media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The layer annotation naming the statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The index annotation pointing an attestation manifest at the image it describes.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of `vnd.docker.reference.type` on an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// One in-toto statement to attach.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The statement's `predicateType` (e.g. `https://slsa.dev/provenance/v1`).
    pub predicate_type: String,
    /// The statement as JSON.
    pub json: Vec<u8>,
}

fn unknown_platform() -> Platform {
    Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        os_version: None,
        os_features: Vec::new(),
        variant: None,
    }
}

impl ImageStore {
    /// Stores `statements` as an attestation manifest of `image`, and an index of the two;
    /// points every name in `names` at the index. Returns the index's descriptor.
    pub fn attach_attestations(
        &self,
        image: &Image,
        statements: &[Statement],
        names: &[String],
    ) -> Result<Descriptor, ImageError> {
        let put = |bytes: &[u8], media_type: &str| -> Result<Descriptor, ImageError> {
            let d = Descriptor::of_bytes(media_type, bytes);
            if !BlobSink::contains(self.blobs(), &d.digest)
                .map_err(|e| ImageError::format("store an attestation", e))?
            {
                BlobSink::put(self.blobs(), &d.digest, d.size, &mut &bytes[..])
                    .map_err(|e| ImageError::format("store an attestation", e))?;
            }
            Ok(d)
        };
        let mut layers = Vec::new();
        for s in statements {
            let mut d = put(&s.json, IN_TOTO_MEDIA_TYPE)?;
            d.annotations
                .insert(ANNOTATION_PREDICATE_TYPE.into(), s.predicate_type.clone());
            layers.push(d);
        }
        // The config BuildKit gives attestation manifests: no platform, the statements as
        // its "layers".
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = serde_json::json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = put(&manifest::to_json(&config), media_type::OCI_CONFIG)?;
        let attestation = Manifest {
            schema_version: 2,
            media_type: media_type::OCI_MANIFEST.into(),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let mut attestation_desc = put(&manifest::to_json(&attestation), media_type::OCI_MANIFEST)?;
        attestation_desc.platform = Some(unknown_platform());
        attestation_desc.annotations.insert(
            ANNOTATION_REFERENCE_DIGEST.into(),
            image.manifest_digest.to_string(),
        );
        attestation_desc.annotations.insert(
            manifest::ANNOTATION_DOCKER_REFERENCE_TYPE.into(),
            ATTESTATION_MANIFEST.into(),
        );
        let index_desc = self.index_with_attestations(image, vec![attestation_desc])?;
        let target = ImageRef {
            target: index_desc.digest,
            media_type: index_desc.media_type.clone(),
            size: index_desc.size,
            created: Timestamp::now(),
        };
        for name in names {
            self.store()
                .set_image_ref(&crate::name::store_name(name)?, &target)?;
        }
        Ok(index_desc)
    }

    /// Stores an index over `images` (one manifest per platform, in the order given, each
    /// with its platform) and points `names` at it: the result of a multi-platform build.
    pub fn store_index(
        &self,
        images: &[Image],
        names: &[String],
    ) -> Result<Descriptor, ImageError> {
        let mut index = Index::new_oci();
        for image in images {
            index
                .manifests
                .push(crate::export::image_descriptor(self, image)?);
        }
        let bytes = manifest::to_json(&index);
        let d = Descriptor::of_bytes(media_type::OCI_INDEX, &bytes);
        BlobSink::put(self.blobs(), &d.digest, d.size, &mut &bytes[..])
            .map_err(|e| ImageError::format("store an image index", e))?;
        let target = ImageRef {
            target: d.digest,
            media_type: d.media_type.clone(),
            size: d.size,
            created: Timestamp::now(),
        };
        for name in names {
            self.store()
                .set_image_ref(&crate::name::store_name(name)?, &target)?;
        }
        Ok(d)
    }

    /// Stores the index of `image` (its manifest, with its platform) and the attestation
    /// manifests `attestations` (already stored, descriptors as an index lists them).
    pub(crate) fn index_with_attestations(
        &self,
        image: &Image,
        attestations: Vec<Descriptor>,
    ) -> Result<Descriptor, ImageError> {
        let mut index = Index::new_oci();
        index.manifests = vec![crate::export::image_descriptor(self, image)?];
        index.manifests.extend(attestations);
        let bytes = manifest::to_json(&index);
        let d = Descriptor::of_bytes(media_type::OCI_INDEX, &bytes);
        BlobSink::put(self.blobs(), &d.digest, d.size, &mut &bytes[..])
            .map_err(|e| ImageError::format("store an image index", e))?;
        Ok(d)
    }
}
