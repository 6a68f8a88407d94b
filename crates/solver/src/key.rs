//! Cache keys: 32-byte sha256 digests derived bottom-up from explicit canonical bytes.
//!
//! The encoding is pinned by golden tests; changing it invalidates every stored cache record,
//! so bump the version tag when you do.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Domain tag of the cheap key (base key material and input keys).
const VERTEX_KEY_TAG: &[u8] = b"kiln-solver/vertex-key/v1\0";
/// Domain tag of the content key, so it can never collide with a cheap key.
const CONTENT_KEY_TAG: &[u8] = b"kiln-solver/content-key/v1\0";

/// The cache key of a vertex: sha256 over canonical bytes, printed as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Wraps raw digest bytes (for stores that persist keys).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the digest, without the `sha256:` prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The cheap key of a vertex:
    /// `sha256(tag ‖ len(base) ‖ base ‖ count(inputs) ‖ input key…)`, lengths as u64 big endian.
    ///
    /// Needs no I/O: only the op's own key material and the keys of its inputs, in input order.
    pub fn for_vertex(base: &[u8], inputs: &[CacheKey]) -> Self {
        let mut h = Sha256::new();
        h.update(VERTEX_KEY_TAG);
        put_bytes(&mut h, base);
        h.update((inputs.len() as u64).to_be_bytes());
        for input in inputs {
            h.update(input.0);
        }
        Self(h.finalize().into())
    }

    /// The content key of a vertex:
    /// `sha256(tag ‖ len(base) ‖ base ‖ len(material) ‖ material ‖ count(inputs) ‖ per input:
    /// 0x00 if covered by the material, else 0x01 ‖ input key)`.
    ///
    /// Inputs the material covers leave their key out, so an input whose own key changes every
    /// build (a local context) does not defeat the content key of what is selected from it.
    pub fn for_content(
        base: &[u8],
        content: &ContentKey,
        inputs: &[CacheKey],
    ) -> Result<Self, InvalidContentKey> {
        if let Some(&index) = content.covered_inputs.iter().find(|&&i| i >= inputs.len()) {
            return Err(InvalidContentKey {
                index,
                inputs: inputs.len(),
            });
        }
        let mut h = Sha256::new();
        h.update(CONTENT_KEY_TAG);
        put_bytes(&mut h, base);
        put_bytes(&mut h, &content.material);
        h.update((inputs.len() as u64).to_be_bytes());
        for (i, input) in inputs.iter().enumerate() {
            if content.covered_inputs.contains(&i) {
                h.update([0u8]);
            } else {
                h.update([1u8]);
                h.update(input.0);
            }
        }
        Ok(Self(h.finalize().into()))
    }
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// A string that is not `sha256:` followed by 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache key {0:?}: expected sha256:<64 lower-case hex digits>")]
pub struct ParseCacheKeyError(String);

impl FromStr for CacheKey {
    type Err = ParseCacheKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCacheKeyError(s.to_owned());
        let hex_part = s.strip_prefix("sha256:").ok_or_else(err)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

/// Content-based key material an op offers when its cheap key missed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentKey {
    /// Canonical bytes describing exactly the content the op reads, e.g. the digest of the files
    /// a COPY selects together with their relative paths and modes.
    pub material: Vec<u8>,
    /// Indexes of inputs fully described by `material`: their cache keys are left out of the
    /// content key. An input the op reads more of than `material` describes must not be listed.
    pub covered_inputs: Vec<usize>,
}

/// A [`ContentKey`] that names an input the vertex does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "content key covers input {index} but the vertex has {inputs} inputs (this is a bug in the operation)"
)]
pub struct InvalidContentKey {
    /// The out-of-range index.
    pub index: usize,
    /// How many inputs the vertex has.
    pub inputs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8) -> CacheKey {
        CacheKey::from_bytes([b; 32])
    }

    // Golden digests (cross-checked with Python's hashlib): if these change, every stored record is invalidated; bump the tags.
    #[test]
    fn vertex_key_golden() {
        assert_eq!(
            CacheKey::for_vertex(b"op", &[]).to_string(),
            "sha256:b2ec028325281ecafeb67a2537bf44fe69a0108583de6b76c158444befe1f5f6"
        );
        assert_eq!(
            CacheKey::for_vertex(b"op", &[k(1), k(2)]).to_string(),
            "sha256:84dd1d12dfc4d9eef7fda5e54155741a301e8f9aa52d476dbf6d2c18628daae1"
        );
    }

    #[test]
    fn content_key_golden() {
        let content = ContentKey {
            material: b"files".to_vec(),
            covered_inputs: vec![0],
        };
        assert_eq!(
            CacheKey::for_content(b"op", &content, &[k(1), k(2)])
                .unwrap()
                .to_string(),
            "sha256:b3f70347c16df576cc8c591b03febb757faa35230579aaf08bf8c0a7142e0268"
        );
    }

    #[test]
    fn input_order_and_boundaries_matter() {
        assert_ne!(
            CacheKey::for_vertex(b"op", &[k(1), k(2)]),
            CacheKey::for_vertex(b"op", &[k(2), k(1)])
        );
        // Length prefixes keep "ab"+[] and "a"+... apart, and the tags keep the two kinds apart.
        assert_ne!(
            CacheKey::for_vertex(b"ab", &[]),
            CacheKey::for_vertex(b"a", &[])
        );
        let empty = ContentKey::default();
        assert_ne!(
            CacheKey::for_vertex(b"op", &[]),
            CacheKey::for_content(b"op", &empty, &[]).unwrap()
        );
    }

    #[test]
    fn covered_inputs_leave_their_key_out() {
        let content = ContentKey {
            material: b"files".to_vec(),
            covered_inputs: vec![1],
        };
        let a = CacheKey::for_content(b"op", &content, &[k(1), k(2)]).unwrap();
        let b = CacheKey::for_content(b"op", &content, &[k(1), k(9)]).unwrap();
        let c = CacheKey::for_content(b"op", &content, &[k(3), k(2)]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn covered_index_out_of_range_is_an_error() {
        let content = ContentKey {
            material: vec![],
            covered_inputs: vec![2],
        };
        let err = CacheKey::for_content(b"op", &content, &[k(1)]).unwrap_err();
        assert_eq!(
            err,
            InvalidContentKey {
                index: 2,
                inputs: 1
            }
        );
    }

    #[test]
    fn display_parse_round_trip() {
        let key = CacheKey::for_vertex(b"x", &[]);
        assert_eq!(key.to_string().parse::<CacheKey>().unwrap(), key);
        assert!("sha256:zz".parse::<CacheKey>().is_err());
        assert!(key.to_hex().parse::<CacheKey>().is_err());
        assert!(
            format!("sha256:{}", key.to_hex().to_uppercase())
                .parse::<CacheKey>()
                .is_err()
        );
    }
}
