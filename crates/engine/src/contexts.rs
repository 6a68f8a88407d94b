//! `--build-context NAME=...` for lowering and the solve: a directory becomes the local source
//! `named-context:NAME` (with its own `.dockerignore`), an OCI layout's image is stored under its
//! ID, an image reference is normalized, a URL becomes a git or HTTP source.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kiln_frontend::dockerignore::PatternMatcher;
use kiln_frontend::lower::NamedContext;
use kiln_image::ImageStore;

use crate::error::EngineError;
use crate::extras::{BuildExtras, ContextSpec};
use crate::git::GitUrl;
use crate::value::LocalDir;

/// The local source a directory context is read through.
fn local_name(name: &str) -> String {
    format!("named-context:{name}")
}

/// What lowering needs to know of each named context.
pub(crate) fn for_lowering(
    images: &ImageStore,
    extras: &BuildExtras,
) -> Result<BTreeMap<String, NamedContext>, EngineError> {
    let mut out = BTreeMap::new();
    for (name, spec) in &extras.contexts {
        let context = match spec {
            ContextSpec::Dir(_) => NamedContext::Local {
                source: local_name(name),
            },
            ContextSpec::Image(reference) => NamedContext::Image {
                reference: kiln_llb::Reference::parse(reference)
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| reference.clone()),
            },
            ContextSpec::OciLayout { path, digest } => {
                let image = images.load_layout_image(path, digest.as_ref())?;
                NamedContext::Image {
                    reference: image.manifest_digest.to_string(),
                }
            }
            ContextSpec::Url(url) => match GitUrl::parse(url) {
                Some(git) => NamedContext::Git {
                    remote: git.remote,
                    reference: git.reference,
                    subdir: git.subdir,
                },
                None => NamedContext::Http { url: url.clone() },
            },
        };
        out.insert(name.clone(), context);
    }
    Ok(out)
}

/// The local sources of the directory contexts.
pub(crate) fn locals(extras: &BuildExtras) -> Result<Vec<(String, Arc<LocalDir>)>, EngineError> {
    let mut out = Vec::new();
    for (name, spec) in &extras.contexts {
        let ContextSpec::Dir(dir) = spec else {
            continue;
        };
        let dir = std::fs::canonicalize(dir).map_err(|source| EngineError::Io {
            what: format!("find build context {name} at {}", dir.display()),
            source,
        })?;
        if !dir.is_dir() {
            return Err(EngineError::Io {
                what: format!("use build context {name}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ),
            });
        }
        let ignore = read_ignore(&dir)?;
        out.retain(|(n, _)| *n != local_name(name));
        out.push((local_name(name), Arc::new(LocalDir::new(dir, ignore))));
    }
    Ok(out)
}

/// A directory context's own `.dockerignore`, as buildx sends it.
fn read_ignore(dir: &Path) -> Result<Option<PatternMatcher>, EngineError> {
    match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => PatternMatcher::parse(&text)
            .map(Some)
            .map_err(|e| EngineError::Io {
                what: format!("read {}", dir.join(".dockerignore").display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EngineError::Io {
            what: format!("read {}", dir.join(".dockerignore").display()),
            source,
        }),
    }
}
