//! Verifying an OCI image layout: `oci-layout`, `index.json`, and every manifest, index,
//! config and layer they reach against its digest and size, and layers against their configs'
//! diff IDs.

use std::collections::BTreeSet;

use rayon::prelude::*;
use serde::Deserialize;

use super::{Import, LoadError, LoadOptions, LoadedImage};
use crate::digest::Digest;
use crate::error::Error;
use crate::export::MAX_INDEX_DEPTH;
use crate::manifest::{self, ConfigRootfs, Descriptor, Parsed};
use crate::media_type::{self, Kind, LayerCompression};

/// A layer whose diff ID is still to check: its path, digest, compression, the diff ID its
/// config lists, and that config's digest.
type PendingLayer = (String, Digest, LayerCompression, Digest, Digest);

impl Import {
    /// Verifies an OCI layout and notes its images with the names `index.json` gives them.
    pub(super) fn verify_oci(&mut self, options: &LoadOptions) -> Result<(), LoadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Layout {
            image_layout_version: String,
        }
        let (_, bytes) = self.json("oci-layout", options)?;
        let layout: Layout = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
            what: "oci-layout".to_owned(),
            source,
        })?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(LoadError::LayoutVersion(layout.image_layout_version));
        }
        let (_, bytes) = self.json("index.json", options)?;
        let index = match manifest::parse(&bytes, "", "index.json")? {
            Parsed::Index(i) => i,
            Parsed::Manifest(_) => {
                return Err(manifest::ParseError::NotAManifest {
                    what: "index.json".to_owned(),
                    media_type: "an image manifest where an index belongs".to_owned(),
                }
                .into());
            }
        };
        let mut layers = Vec::new();
        for desc in &index.manifests {
            self.verify_descriptor(desc, "index.json", 0, options, &mut layers)?;
            let ref_name = desc.annotations.get(manifest::ANNOTATION_REF_NAME).cloned();
            let names = desc
                .annotations
                .get(manifest::ANNOTATION_CONTAINERD_NAME)
                .or(ref_name.as_ref())
                .map(|n| vec![n.clone()])
                .unwrap_or_default();
            let mut descriptor = desc.clone();
            descriptor
                .annotations
                .remove(manifest::ANNOTATION_CONTAINERD_NAME);
            descriptor.annotations.remove(manifest::ANNOTATION_REF_NAME);
            self.images.push(LoadedImage {
                names,
                ref_name,
                descriptor,
            });
        }
        if options.verify_diff_ids {
            self.verify_diff_ids(layers)?;
        }
        Ok(())
    }

    /// Checks the blob `desc` points at and, for manifests and indexes, everything below it.
    /// Layers whose diff IDs still need checking are pushed onto `layers`.
    fn verify_descriptor(
        &mut self,
        desc: &Descriptor,
        referenced_by: &str,
        depth: usize,
        options: &LoadOptions,
        layers: &mut Vec<PendingLayer>,
    ) -> Result<(), LoadError> {
        if depth > MAX_INDEX_DEPTH {
            return Err(Error::TooDeep(desc.digest).into());
        }
        let kind = media_type::kind(&desc.media_type);
        let already = self.blobs.contains_key(&desc.digest);
        let path = format!("blobs/sha256/{}", desc.digest.hex());
        let f = self
            .files
            .lookup(&path)?
            .ok_or_else(|| LoadError::MissingBlob {
                digest: desc.digest,
                referenced_by: referenced_by.to_owned(),
            })?;
        if f.size != desc.size {
            return Err(LoadError::SizeMismatch {
                what: format!("blob {}", desc.digest),
                expected: desc.size,
                actual: f.size,
            });
        }
        if !already {
            let actual = self.files.digest(&path, &f)?;
            if actual != desc.digest {
                return Err(LoadError::DigestMismatch {
                    what: path,
                    expected: desc.digest,
                    actual,
                });
            }
            self.blobs.insert(desc.digest, (path.clone(), f.size));
        }
        if !matches!(kind, Kind::Manifest | Kind::Index) || already {
            return Ok(());
        }
        let bytes = self.files.read_json(&path, &f, options.max_json_size)?;
        let what = format!("manifest {}", desc.digest);
        match manifest::parse(&bytes, &desc.media_type, &what)? {
            Parsed::Index(i) => {
                for d in &i.manifests {
                    self.verify_descriptor(d, &what, depth + 1, options, layers)?;
                }
            }
            Parsed::Manifest(m) => {
                self.verify_descriptor(&m.config, &what, depth + 1, options, layers)?;
                for l in &m.layers {
                    self.verify_descriptor(l, &what, depth + 1, options, layers)?;
                }
                // Artifacts (non-image configs) have no diff IDs to check.
                if media_type::kind(&m.config.media_type) == Kind::Config {
                    let config_path = format!("blobs/sha256/{}", m.config.digest.hex());
                    let (_, cfg) = self.json(&config_path, options)?;
                    let rootfs: ConfigRootfs =
                        serde_json::from_slice(&cfg).map_err(|source| Error::Config {
                            digest: m.config.digest,
                            source,
                        })?;
                    let diff_ids = rootfs.rootfs.diff_ids;
                    if diff_ids.len() != m.layers.len() {
                        return Err(Error::LayerCount {
                            image: what,
                            config: m.config.digest,
                            diff_ids: diff_ids.len(),
                            layers: m.layers.len(),
                        }
                        .into());
                    }
                    for (l, diff_id) in m.layers.iter().zip(diff_ids) {
                        let compression = match media_type::kind(&l.media_type) {
                            Kind::Layer(c) => c,
                            _ => continue,
                        };
                        let lp = format!("blobs/sha256/{}", l.digest.hex());
                        layers.push((lp, l.digest, compression, diff_id, m.config.digest));
                    }
                }
            }
        }
        Ok(())
    }

    /// Decompresses layers (in parallel) and compares them with their configs' diff IDs.
    fn verify_diff_ids(&self, mut layers: Vec<PendingLayer>) -> Result<(), LoadError> {
        let mut seen = BTreeSet::new();
        layers.retain(|(_, digest, _, diff_id, _)| seen.insert((*digest, *diff_id)));
        layers
            .par_iter()
            .try_for_each(|(path, digest, compression, expected, config)| {
                let actual = if *compression == LayerCompression::None {
                    *digest
                } else {
                    self.diff_id(path, *compression)?.0
                };
                if actual != *expected {
                    return Err(Error::DiffId {
                        layer: digest.to_string(),
                        listed_by: format!("image config {config}"),
                        expected: *expected,
                        actual,
                    }
                    .into());
                }
                Ok(())
            })
    }
}
