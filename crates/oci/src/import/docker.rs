//! Verifying a `docker save` archive read through its `manifest.json` (the layout before
//! docker 25): configs and layers by the digests their names carry and by the configs' diff
//! IDs, with an OCI manifest written for each image; and names for docker 25+ archives, whose
//! `index.json` may lack them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;

use rayon::prelude::*;

use super::stage::{Entry, FileRef, Files, normalize};
use super::{Import, LoadError, LoadOptions, LoadedImage};
use crate::compress;
use crate::digest::Digest;
use crate::error::Error;
use crate::export::DockerManifestEntry;
use crate::manifest::{self, ConfigRootfs, Descriptor, Manifest, Parsed};
use crate::media_type::{self, Kind, LayerCompression};

impl Import {
    /// The entries of `manifest.json`.
    fn docker_manifest(
        &self,
        f: &FileRef,
        options: &LoadOptions,
    ) -> Result<Vec<DockerManifestEntry>, LoadError> {
        let bytes = self
            .files
            .read_json("manifest.json", f, options.max_json_size)?;
        serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
            what: "manifest.json".to_owned(),
            source,
        })
    }

    /// Docker 25+ archives are OCI layouts whose `index.json` may lack names; take them from
    /// `manifest.json`'s `RepoTags` by matching configs.
    pub(super) fn name_from_docker_manifest(
        &mut self,
        f: &FileRef,
        options: &LoadOptions,
    ) -> Result<(), LoadError> {
        if self.images.iter().all(|i| !i.names.is_empty()) {
            return Ok(());
        }
        let entries = self.docker_manifest(f, options)?;
        for image in self.images.iter_mut().filter(|i| i.names.is_empty()) {
            if media_type::kind(&image.descriptor.media_type) != Kind::Manifest {
                continue;
            }
            let (path, _) = &self.blobs[&image.descriptor.digest];
            let Some(file) = self.files.lookup(path)? else {
                continue;
            };
            let bytes = self.files.read_json(path, &file, options.max_json_size)?;
            let Ok(Parsed::Manifest(m)) =
                manifest::parse(&bytes, &image.descriptor.media_type, path)
            else {
                continue;
            };
            let config_path = format!("blobs/sha256/{}", m.config.digest.hex());
            if let Some(e) = entries
                .iter()
                .find(|e| normalize(&e.config).ok().as_deref() == Some(config_path.as_str()))
            {
                image.names = e.repo_tags.clone().unwrap_or_default();
            }
        }
        Ok(())
    }

    /// Verifies a `docker save` archive through its `manifest.json` and writes an OCI manifest
    /// for each image.
    pub(super) fn verify_docker(
        &mut self,
        f: &FileRef,
        options: &LoadOptions,
    ) -> Result<(), LoadError> {
        let entries = self.docker_manifest(f, options)?;
        if entries.is_empty() {
            return Err(LoadError::Empty {
                what: "manifest.json".to_owned(),
            });
        }
        for entry in entries {
            let image = entry
                .repo_tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .unwrap_or_else(|| entry.config.clone());
            let config_file =
                self.files
                    .lookup(&entry.config)?
                    .ok_or_else(|| LoadError::MissingConfig {
                        image: image.clone(),
                        path: entry.config.clone(),
                    })?;
            let config =
                self.files
                    .read_json(&entry.config, &config_file, options.max_json_size)?;
            let config_digest = Digest::of(&config);
            check_named_digest(&entry.config, config_digest)?;
            let rootfs: ConfigRootfs =
                serde_json::from_slice(&config).map_err(|source| Error::Config {
                    digest: config_digest,
                    source,
                })?;
            let diff_ids = rootfs.rootfs.diff_ids;
            if diff_ids.len() != entry.layers.len() {
                return Err(Error::LayerCount {
                    image: format!("image {image}"),
                    config: config_digest,
                    diff_ids: diff_ids.len(),
                    layers: entry.layers.len(),
                }
                .into());
            }
            let checked: Vec<(FileRef, Digest, LayerCompression)> = entry
                .layers
                .par_iter()
                .zip(&diff_ids)
                .map(|(path, expected)| {
                    self.verify_docker_layer(&image, path, *expected, config_digest)
                })
                .collect::<Result<_, _>>()?;
            let mut layers = Vec::new();
            for ((f, digest, compression), path) in checked.into_iter().zip(&entry.layers) {
                let mt = media_type::Flavor::Oci
                    .layer(compression)
                    .unwrap_or(media_type::OCI_LAYER);
                layers.push(Descriptor::new(mt, digest, f.size));
                self.blobs.insert(digest, (normalize(path)?, f.size));
            }
            let mut config_path = normalize(&entry.config)?;
            // Follow links so the blob map points at the staged file itself.
            if let Files::Staged { entries, .. } = &self.files {
                while let Some(Entry::Link(t)) = entries.get(&config_path) {
                    config_path = t.clone();
                }
            }
            self.blobs
                .insert(config_digest, (config_path, config.len() as u64));
            let m = Manifest {
                schema_version: 2,
                media_type: media_type::OCI_MANIFEST.to_owned(),
                artifact_type: None,
                config: Descriptor::new(media_type::OCI_CONFIG, config_digest, config.len() as u64),
                layers,
                subject: None,
                annotations: BTreeMap::new(),
            };
            let bytes = manifest::to_json(&m);
            let descriptor = Descriptor::of_bytes(media_type::OCI_MANIFEST, &bytes);
            self.generated.insert(descriptor.digest, bytes);
            self.images.push(LoadedImage {
                names: entry.repo_tags.unwrap_or_default(),
                ref_name: None,
                descriptor,
            });
        }
        Ok(())
    }

    /// Checks one docker-archive layer: its name's digest if it has one, and its diff ID.
    fn verify_docker_layer(
        &self,
        image: &str,
        path: &str,
        expected: Digest,
        config: Digest,
    ) -> Result<(FileRef, Digest, LayerCompression), LoadError> {
        let f = self
            .files
            .lookup(path)?
            .ok_or_else(|| LoadError::MissingLayer {
                image: image.to_owned(),
                path: path.to_owned(),
            })?;
        let digest = self.files.digest(path, &f)?;
        check_named_digest(path, digest)?;
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let mut r = BufReader::new(File::open(&f.path).map_err(read_err)?);
        let compression = compress::detect(&mut r).map_err(read_err)?;
        let actual = if compression == LayerCompression::None {
            digest
        } else {
            self.diff_id(path, compression)?.0
        };
        if actual != expected {
            return Err(Error::DiffId {
                layer: path.to_owned(),
                listed_by: format!("image config {config}"),
                expected,
                actual,
            }
            .into());
        }
        Ok((f, digest, compression))
    }
}

/// Paths like `blobs/sha256/<hex>` or `<hex>.json` name their content's digest: hold them to it.
fn check_named_digest(path: &str, actual: Digest) -> Result<(), LoadError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".json").unwrap_or(name);
    if name.len() == 64
        && let Ok(expected) = format!("sha256:{name}").parse::<Digest>()
        && expected != actual
    {
        return Err(LoadError::DigestMismatch {
            what: path.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}
