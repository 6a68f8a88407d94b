//! Image assembly: an image config plus layers become a config blob and a manifest.

use std::collections::BTreeMap;

use kiln_llb::image::ImageConfig;

use crate::blob::{BlobError, BlobSink};
use crate::compress::LayerDescriptor;
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::{self, Descriptor, Index, Manifest, Platform};
use crate::media_type::{self, Flavor, Kind, LayerCompression};

/// One layer of an image being assembled: its blob and its diff ID. Layers built now come from
/// [`LayerDescriptor`]; base-image layers from [`ImageLayer::from_descriptor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
    pub compression: LayerCompression,
}

impl From<&LayerDescriptor> for ImageLayer {
    fn from(l: &LayerDescriptor) -> ImageLayer {
        ImageLayer {
            diff_id: l.diff_id,
            digest: l.digest,
            size: l.size,
            compression: l.compression,
        }
    }
}

impl ImageLayer {
    /// A layer of an existing image, from its manifest descriptor and the config's diff ID.
    pub fn from_descriptor(desc: &Descriptor, diff_id: Digest) -> Result<ImageLayer, Error> {
        match media_type::kind(&desc.media_type) {
            Kind::Layer(compression) => Ok(ImageLayer {
                diff_id,
                digest: desc.digest,
                size: desc.size,
                compression,
            }),
            _ => Err(Error::NotALayer {
                digest: desc.digest,
                media_type: desc.media_type.clone(),
            }),
        }
    }
}

/// Options for [`assemble`].
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// OCI media types (the default) or Docker schema 2.
    pub flavor: Flavor,
    /// Extra manifest annotations (for example `org.opencontainers.image.source`). OCI only:
    /// Docker schema 2 manifests have no annotations.
    pub annotations: BTreeMap<String, String>,
}

/// An assembled image: the config blob, the manifest blob and their descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledImage {
    pub config: Vec<u8>,
    pub config_descriptor: Descriptor,
    pub manifest: Vec<u8>,
    /// Carries the platform from the config, ready to go into an index.
    pub manifest_descriptor: Descriptor,
}

impl AssembledImage {
    /// Stores the config and manifest blobs (the layers are the caller's: they were written
    /// when compressed).
    pub fn store(&self, sink: &dyn BlobSink) -> Result<(), BlobError> {
        for (bytes, d) in [
            (&self.config, &self.config_descriptor),
            (&self.manifest, &self.manifest_descriptor),
        ] {
            // A rebuild assembles the very blobs it stored last time: writing them again
            // would only cost two fsyncs each.
            if sink.contains(&d.digest)? {
                continue;
            }
            sink.put(&d.digest, d.size, &mut &bytes[..])?;
        }
        Ok(())
    }
}

/// Builds the config blob (with `rootfs.diff_ids` set from `layers`, bottom first) and the
/// manifest. The manifest gets `org.opencontainers.image.created` from the config's `created`
/// when set (OCI only). Equal inputs give byte-identical blobs.
pub fn assemble(
    config: &ImageConfig,
    layers: &[ImageLayer],
    options: &ImageOptions,
) -> Result<AssembledImage, Error> {
    let flavor = options.flavor;
    let mut config = config.clone();
    config.rootfs.kind = "layers".to_owned();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id).collect();
    let config_bytes = serde_json::to_vec(&config).map_err(Error::SerializeConfig)?;
    let config_descriptor = Descriptor::of_bytes(flavor.config(), &config_bytes);

    let mut layer_descs = Vec::with_capacity(layers.len());
    for l in layers {
        let mt = flavor
            .layer(l.compression)
            .ok_or(Error::ZstdInDocker(l.digest))?;
        layer_descs.push(Descriptor::new(mt, l.digest, l.size));
    }
    let mut annotations = BTreeMap::new();
    if flavor == Flavor::Oci {
        if let Some(created) = &config.created {
            annotations.insert(manifest::ANNOTATION_CREATED.to_owned(), created.clone());
        }
        annotations.extend(options.annotations.clone());
    } else if !options.annotations.is_empty() {
        return Err(Error::DockerAnnotations);
    }
    let m = Manifest {
        schema_version: 2,
        media_type: flavor.manifest().to_owned(),
        artifact_type: None,
        config: config_descriptor.clone(),
        layers: layer_descs,
        subject: None,
        annotations,
    };
    let manifest_bytes = manifest::to_json(&m);
    let mut manifest_descriptor = Descriptor::of_bytes(flavor.manifest(), &manifest_bytes);
    manifest_descriptor.platform = Some(platform_of(&config));
    Ok(AssembledImage {
        config: config_bytes,
        config_descriptor,
        manifest: manifest_bytes,
        manifest_descriptor,
    })
}

/// The platform an image config describes.
pub fn platform_of(config: &ImageConfig) -> Platform {
    Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        os_version: config.os_version.clone(),
        os_features: config.os_features.clone(),
        variant: config.variant.clone(),
    }
}

/// An index (OCI) or manifest list (Docker) over several platform manifests, in the order given.
/// Returns its bytes and descriptor.
pub fn assemble_index(manifests: &[Descriptor], flavor: Flavor) -> (Vec<u8>, Descriptor) {
    let mut index = Index::new_oci();
    index.media_type = flavor.index().to_owned();
    index.manifests = manifests.to_vec();
    let bytes = manifest::to_json(&index);
    let d = Descriptor::of_bytes(flavor.index(), &bytes);
    (bytes, d)
}

/// An image read back from a store: what a build on top of it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The platform manifest (inside an index, if the image was one).
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The layers, bottom first, with their diff IDs from the config.
    pub layers: Vec<ImageLayer>,
}

fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether `have` satisfies `want`: same OS and architecture, and the variant when `want`
/// names one.
pub fn platform_matches(have: &Platform, want: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && (want.variant.is_none() || have.variant == want.variant)
}

/// Reads an image (a manifest, or an index resolved to `platform`) from `source`: manifest,
/// config and layers. With `platform: None`, an index must hold exactly one image.
pub fn resolve(
    source: &dyn crate::blob::BlobSource,
    descriptor: &Descriptor,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, Error> {
    use crate::export::{MAX_INDEX_DEPTH, MAX_JSON_SIZE};
    let mut desc = descriptor.clone();
    for _ in 0..=MAX_INDEX_DEPTH {
        let bytes = source.read_verified(&desc.digest, MAX_JSON_SIZE)?;
        match manifest::parse(&bytes, &desc.media_type, &desc.digest.to_string())? {
            manifest::Parsed::Index(index) => {
                let images: Vec<&Descriptor> = index.images().collect();
                let chosen = match platform {
                    Some(want) => images.iter().find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|p| platform_matches(p, want))
                    }),
                    None if images.len() == 1 => images.first(),
                    None => None,
                };
                let Some(chosen) = chosen else {
                    let available: Vec<String> = images
                        .iter()
                        .map(|d| {
                            d.platform
                                .as_ref()
                                .map_or("unknown".to_owned(), platform_string)
                        })
                        .collect();
                    return Err(Error::NoPlatform {
                        index: desc.digest,
                        wanted: platform.map_or("(none given)".to_owned(), platform_string),
                        available: available.join(", "),
                    });
                };
                desc = (*chosen).clone();
            }
            manifest::Parsed::Manifest(m) => {
                let cfg = source.read_verified(&m.config.digest, MAX_JSON_SIZE)?;
                let config: ImageConfig =
                    serde_json::from_slice(&cfg).map_err(|source| Error::Config {
                        digest: m.config.digest,
                        source,
                    })?;
                if config.rootfs.diff_ids.len() != m.layers.len() {
                    return Err(Error::LayerCount {
                        image: format!("manifest {}", desc.digest),
                        config: m.config.digest,
                        diff_ids: config.rootfs.diff_ids.len(),
                        layers: m.layers.len(),
                    });
                }
                let layers = m
                    .layers
                    .iter()
                    .zip(&config.rootfs.diff_ids)
                    .map(|(l, d)| ImageLayer::from_descriptor(l, *d))
                    .collect::<Result<_, _>>()?;
                return Ok(ResolvedImage {
                    manifest_descriptor: desc,
                    manifest: m,
                    config,
                    layers,
                });
            }
        }
    }
    Err(Error::TooDeep(desc.digest))
}
