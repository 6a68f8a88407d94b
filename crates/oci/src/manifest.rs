//! Descriptors, image manifests and image indexes (OCI and Docker schema 2) with deterministic JSON.
//!
//! Fields are declared in the order the OCI Go types declare them and maps are `BTreeMap`s, so
//! serialization is a pure function of the value: the same image always gets the same digest.
//! Go's `encoding/json` sorts map keys too, so annotations come out as Docker and BuildKit write
//! them. Digests are always taken over the bytes as read, never over a re-serialization.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, Kind};

/// Annotation: when the image was created (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation on `index.json` entries: the reference name (kiln writes the tag, as BuildKit and
/// Docker do).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation on `index.json` entries: the full image name, as containerd and Docker write it.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Annotation BuildKit puts on attestation manifests inside an index.
pub const ANNOTATION_DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// Points at a blob: what it is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of `bytes` as a blob of `media_type`.
    pub fn of_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }
}

/// The platform an image in an index runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest: OCI (`application/vnd.oci.image.manifest.v1+json`) or Docker schema 2
/// (`application/vnd.docker.distribution.manifest.v2+json`), which share one shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    /// Optional in OCI, required by Docker; kiln always writes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    /// Required by both specs; a missing list is read as empty and then rejected by validation.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An empty OCI index, as the root `index.json` of a layout starts.
    pub fn new_oci() -> Index {
        Index {
            schema_version: 2,
            media_type: media_type::OCI_INDEX.to_owned(),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The entries that are images (manifests or nested indexes), leaving out the attestation
    /// manifests BuildKit attaches (`vnd.docker.reference.type`).
    pub fn images(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| {
            !d.annotations.contains_key(ANNOTATION_DOCKER_REFERENCE_TYPE)
                && matches!(
                    media_type::kind(&d.media_type),
                    media_type::Kind::Manifest | media_type::Kind::Index
                )
        })
    }
}

/// Compact, deterministic JSON, as Docker and BuildKit hash it.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, BTreeMaps) cannot fail.
    serde_json::to_vec(value)
        .unwrap_or_else(|e| panic!("this is a bug in kiln: json of a manifest type failed: {e}"))
}

/// Why a manifest or index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid json in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} has schemaVersion {found}, expected 2")]
    SchemaVersion { what: String, found: u32 },
    #[error("not supported yet: docker schema 1 manifests ({what})")]
    SchemaV1 { what: String },
    #[error("{what} says mediaType {inner:?} but its descriptor says {outer:?}")]
    MediaTypeMismatch {
        what: String,
        inner: String,
        outer: String,
    },
    #[error("{what} is not a manifest or an index (media type {media_type:?})")]
    NotAManifest { what: String, media_type: String },
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// Parses `bytes` as a manifest or an index. `outer_media_type` is what the referring descriptor
/// said; the document's own `mediaType` must agree with it when both are present, so a blob
/// cannot be reinterpreted as a different kind than its parent declared.
pub fn parse(bytes: &[u8], outer_media_type: &str, what: &str) -> Result<Parsed, ParseError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        config: Option<serde::de::IgnoredAny>,
    }
    let json_err = |source| ParseError::Json {
        what: what.to_owned(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json_err)?;
    for mt in [probe.media_type.as_str(), outer_media_type] {
        if mt == media_type::DOCKER_MANIFEST_V1 || mt == media_type::DOCKER_MANIFEST_V1_SIGNED {
            return Err(ParseError::SchemaV1 {
                what: what.to_owned(),
            });
        }
    }
    if probe.schema_version == 1 {
        return Err(ParseError::SchemaV1 {
            what: what.to_owned(),
        });
    }
    if probe.schema_version != 2 {
        return Err(ParseError::SchemaVersion {
            what: what.to_owned(),
            found: probe.schema_version,
        });
    }
    if !probe.media_type.is_empty()
        && !outer_media_type.is_empty()
        && probe.media_type != outer_media_type
    {
        return Err(ParseError::MediaTypeMismatch {
            what: what.to_owned(),
            inner: probe.media_type,
            outer: outer_media_type.to_owned(),
        });
    }
    let declared = if probe.media_type.is_empty() {
        outer_media_type
    } else {
        &probe.media_type
    };
    let kind = match media_type::kind(declared) {
        k @ (Kind::Manifest | Kind::Index) => k,
        // An OCI document may omit its media type and be referenced by a generic descriptor:
        // fall back to its shape, as containerd does.
        _ if declared.is_empty() && probe.manifests.is_some() => Kind::Index,
        _ if declared.is_empty() && probe.config.is_some() => Kind::Manifest,
        _ => {
            return Err(ParseError::NotAManifest {
                what: what.to_owned(),
                media_type: declared.to_owned(),
            });
        }
    };
    Ok(match kind {
        Kind::Index => Parsed::Index(serde_json::from_slice(bytes).map_err(json_err)?),
        _ => Parsed::Manifest(serde_json::from_slice(bytes).map_err(json_err)?),
    })
}

/// The part of an image config that loading and assembly check: the layer diff IDs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConfigRootfs {
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn manifest_json_is_compact_ordered_and_round_trips() {
        let mut m = Manifest {
            schema_version: 2,
            media_type: media_type::OCI_MANIFEST.into(),
            artifact_type: None,
            config: Descriptor::new(media_type::OCI_CONFIG, d("c"), 3),
            layers: vec![Descriptor::new(media_type::OCI_LAYER_GZIP, d("l"), 10)],
            subject: None,
            annotations: BTreeMap::new(),
        };
        m.annotations.insert("z".into(), "1".into());
        m.annotations.insert("a".into(), "2".into());
        let json = String::from_utf8(to_json(&m)).unwrap();
        let expected = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":3}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10}}],"#,
                r#""annotations":{{"a":"2","z":"1"}}}}"#
            ),
            d("c"),
            d("l")
        );
        assert_eq!(json, expected);
        assert_eq!(
            parse(json.as_bytes(), media_type::OCI_MANIFEST, "m").unwrap(),
            Parsed::Manifest(m)
        );
    }

    #[test]
    fn parse_accepts_docker_types_and_untyped_oci_documents() {
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
            d("x")
        );
        let Parsed::Index(i) = parse(list.as_bytes(), "", "list").unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            i.manifests[0].platform.as_ref().unwrap().architecture,
            "amd64"
        );

        let untyped = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d("c")
        );
        assert!(matches!(
            parse(untyped.as_bytes(), "", "m").unwrap(),
            Parsed::Manifest(_)
        ));
    }

    #[test]
    fn parse_rejects_mismatches_schema1_and_garbage() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media_type::OCI_INDEX
        );
        let err = parse(m.as_bytes(), media_type::OCI_MANIFEST, "blob").unwrap_err();
        assert!(err.to_string().contains("says mediaType"), "{err}");
        let v1 = r#"{"schemaVersion":1,"name":"x"}"#;
        assert!(
            parse(v1.as_bytes(), "", "old")
                .unwrap_err()
                .to_string()
                .contains("schema 1")
        );
        assert!(
            parse(b"{", "", "junk")
                .unwrap_err()
                .to_string()
                .starts_with("invalid json in junk")
        );
        let cfg = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
            media_type::OCI_CONFIG
        );
        assert!(matches!(
            parse(cfg.as_bytes(), "", "c"),
            Err(ParseError::NotAManifest { .. })
        ));
    }
}
