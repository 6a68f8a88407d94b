//! OCI and Docker manifests, indexes and image configs: parsed under every media type a
//! descriptor may give, and what parses must survive kiln's own serialization unchanged.

use kiln_llb::Platform;
use kiln_llb::image::ImageConfig;
use kiln_oci::ImageLayer;
use kiln_oci::manifest::{self, Parsed};
use kiln_oci::media_type;

const OUTER: &[&str] = &[
    "",
    media_type::OCI_MANIFEST,
    media_type::OCI_INDEX,
    media_type::DOCKER_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/octet-stream",
];

pub fn manifest(data: &[u8]) {
    for outer in OUTER {
        let Ok(parsed) = manifest::parse(data, outer, "fuzzed manifest") else {
            continue;
        };
        // What kiln writes back reads as the same document.
        let again = match &parsed {
            Parsed::Manifest(m) => manifest::parse(&manifest::to_json(m), outer, "again"),
            Parsed::Index(i) => manifest::parse(&manifest::to_json(i), outer, "again"),
        };
        assert_eq!(
            again.as_ref().ok(),
            Some(&parsed),
            "a parsed manifest did not survive serialization under {outer:?}: {again:?}"
        );
        match &parsed {
            Parsed::Manifest(m) => {
                for layer in &m.layers {
                    let _ = ImageLayer::from_descriptor(layer, layer.digest);
                    let _ = media_type::kind(&layer.media_type);
                }
            }
            Parsed::Index(i) => {
                let _ = i.images().count();
                for platform in [
                    Platform::host(),
                    Platform::new("linux", "arm", Some("v7")),
                    Platform::new("windows", "amd64", None),
                ] {
                    let _ = kiln_registry::pull::choose_platform(&i.manifests, &platform);
                }
            }
        }
    }
}

pub fn config(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<ImageConfig>(data) else {
        let _ = serde_json::from_slice::<manifest::ConfigRootfs>(data);
        return;
    };
    let bytes = serde_json::to_vec(&config).expect("an image config serializes");
    let again: ImageConfig =
        serde_json::from_slice(&bytes).expect("kiln's own config json reads back");
    assert_eq!(again, config, "a config did not survive serialization");
    let _ = kiln_oci::image::platform_of(&config);
    let _ = config.config.env_value("PATH");
}
