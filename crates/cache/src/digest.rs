//! Content digests (`sha256:<hex>`) and cache keys, the two kinds of names the store files things under.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Content digests are the workspace's one digest type (`kiln_llb::Digest`), so a blob's name
/// is the same value in the store, the graph and the OCI documents.
pub use kiln_llb::{Digest, DigestParseError};

/// A build-cache key: 32 bytes the solver derives from an op and its inputs.
///
/// The store treats it as opaque; it only needs a fixed size to index records by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<Digest> for CacheKey {
    fn from(d: Digest) -> CacheKey {
        CacheKey(*d.as_bytes())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back_to_digests() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::from_hex(&d.hex()).unwrap(), d);
        assert!(Digest::from_hex(&"A".repeat(64)).is_err());
        assert!(Digest::from_hex("abc").is_err());
        assert_eq!(CacheKey::from(d).hex(), d.hex());
    }
}
