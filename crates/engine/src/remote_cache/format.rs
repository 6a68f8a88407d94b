//! The build-cache document kiln exports and imports: which cache keys have which result, the
//! result given as a chain of layer blobs, and the creation times that keep rebuilt images'
//! digests stable. It travels as the config blob of an OCI manifest whose layers are the blobs,
//! so any registry or OCI layout can carry it.

use std::collections::BTreeMap;

use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

/// Media type of the cache document when it is a manifest's config blob.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// The document version this kiln writes and reads.
pub const CACHE_VERSION: u32 = 1;

/// Why a cache document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CacheDocError {
    #[error("invalid cache document")]
    Json(#[source] serde_json::Error),
    #[error("not supported yet: cache document version {0} (this kiln reads {CACHE_VERSION})")]
    Version(u32),
    #[error("invalid cache document: layer index {index} out of {available}")]
    LayerIndex { index: u32, available: usize },
    #[error("invalid cache document: bad key {0:?}")]
    BadKey(String),
}

/// The whole cache document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheConfig {
    pub version: u32,
    /// Layer blobs the records' chains point into (bottom-up order is per chain). Empty for an
    /// inline cache, whose chains index the image's own layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheLayer>,
    pub records: Vec<CacheEntry>,
    /// Image-creation keys (hex) → the RFC 3339 time the image was first built with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub created: BTreeMap<String, String>,
}

/// One layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheLayer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
}

/// One solved vertex: the keys it is found by, the key its dependents derive theirs from, and
/// its filesystem as indexes into the layers, bottom first (empty: an empty filesystem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// Cache keys as 64 hex digits.
    pub keys: Vec<String>,
    pub output_key: String,
    pub chain: Vec<u32>,
}

impl CacheConfig {
    /// Parses and checks a document: version, and every chain index within the layers.
    /// `layer_count` is the number of layers available (the document's own, or the image's for
    /// an inline cache).
    pub fn parse(bytes: &[u8], layer_count: Option<usize>) -> Result<CacheConfig, CacheDocError> {
        let config: CacheConfig = serde_json::from_slice(bytes).map_err(CacheDocError::Json)?;
        if config.version != CACHE_VERSION {
            return Err(CacheDocError::Version(config.version));
        }
        let available = layer_count.unwrap_or(config.layers.len());
        for entry in &config.records {
            if let Some(&index) = entry.chain.iter().find(|&&i| i as usize >= available) {
                return Err(CacheDocError::LayerIndex { index, available });
            }
            for key in entry.keys.iter().chain([&entry.output_key]) {
                if parse_key(key).is_none() {
                    return Err(CacheDocError::BadKey(key.clone()));
                }
            }
        }
        Ok(config)
    }

    /// Deterministic JSON bytes (field order fixed, maps sorted).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// 64 hex digits → the key's 32 bytes.
pub fn parse_key(hex_key: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> CacheConfig {
        CacheConfig {
            version: CACHE_VERSION,
            layers: vec![CacheLayer {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: Digest::of(b"blob"),
                size: 4,
                diff_id: Digest::of(b"tar"),
            }],
            records: vec![CacheEntry {
                keys: vec!["ab".repeat(32)],
                output_key: "cd".repeat(32),
                chain: vec![0],
            }],
            created: BTreeMap::from([("ef".repeat(32), "2026-01-01T00:00:00Z".into())]),
        }
    }

    #[test]
    fn round_trips() {
        let d = doc();
        assert_eq!(CacheConfig::parse(&d.to_bytes(), None).unwrap(), d);
    }

    #[test]
    fn rejects_out_of_range_chains_bad_keys_and_versions() {
        let mut d = doc();
        d.records[0].chain = vec![1];
        let e = CacheConfig::parse(&d.to_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("layer index 1 out of 1"), "{e}");
        let mut d = doc();
        d.records[0].keys = vec!["xyz".into()];
        assert!(CacheConfig::parse(&d.to_bytes(), None).is_err());
        let mut d = doc();
        d.version = 9;
        let e = CacheConfig::parse(&d.to_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(CacheConfig::parse(b"{", None).is_err());
    }
}
