//! Image names as the store keys them: the normalized Docker reference
//! (`docker.io/library/busybox:latest`), or `sha256:<id>` for an image without a name.

use kiln_llb::Reference;

use crate::error::ImageError;

/// The store key for a name the user gave, refused as Docker refuses it when it is not a
/// reference (`kiln tag x MyApp`).
pub fn store_name(name: &str) -> Result<String, ImageError> {
    Reference::parse(name)
        .map(|r| r.to_string())
        .map_err(|source| ImageError::InvalidReference {
            name: name.to_owned(),
            source,
        })
}

/// The short form Docker shows (`busybox:latest`) of a store key; an ID key stays as it is.
pub fn familiar(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) if !name.starts_with("sha256:") => r.familiar(),
        _ => name.to_owned(),
    }
}
