//! sha256 digests as they appear everywhere in kiln: `sha256:<64 lowercase hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 digest. Only sha256 exists here: OCI requires it for everything that leaves the
/// machine, and one algorithm keeps digests comparable byte for byte.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("invalid digest {0:?}: unsupported algorithm, only sha256 is supported")]
    Algorithm(String),
    #[error("invalid digest {0:?}: expected 64 lowercase hex characters after \"sha256:\"")]
    Hex(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes (for example from a hasher the caller fed incrementally).
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex characters without the algorithm prefix (for file names in a blob store).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the bare 64-lowercase-hex form a blob store uses for file names.
    pub fn from_hex(hex_digits: &str) -> Result<Digest, DigestParseError> {
        format!("sha256:{hex_digits}").parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        let Some(hex_part) = s.strip_prefix("sha256:") else {
            return Err(DigestParseError::Algorithm(s.to_owned()));
        };
        // Uppercase hex is rejected: the OCI spec says lowercase, and accepting both would make
        // two spellings of one digest compare unequal as strings elsewhere.
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestParseError::Hex(s.to_owned()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| DigestParseError::Hex(s.to_owned()))?;
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d = Digest::of(b"kiln");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestParseError::Algorithm(_))
        ));
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestParseError::Hex(_))
        ));
        let upper = d.to_string().to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            upper.parse::<Digest>(),
            Err(DigestParseError::Hex(_))
        ));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
