//! Build contexts that are not a local directory, made into one before the build: a git
//! repository (`https://host/repo.git#ref:subdir`, `git://`, `file://`, a path to a bare
//! repository), a tarball or Dockerfile on stdin (`kiln build -`, told apart as `docker build -`
//! does), or a tarball or Dockerfile at an http(s) URL.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::EngineError;
use crate::extras::ContextOrigin;
use crate::fileop::archive::{self, ExtractOptions};
use crate::fileop::copy::Ownership;
use crate::fileop::http;
use crate::git::{self, GitUrl};

/// Where a context comes from.
pub enum ContextInput<'a> {
    /// `-`: a tar archive (plain or compressed) or a Dockerfile.
    Stdin(&'a mut dyn Read),
    /// A git URL or an http(s) URL of a tarball or a Dockerfile.
    Url(&'a str),
}

/// A context made into a local directory, removed when this is dropped.
#[derive(Debug)]
pub struct FetchedContext {
    dir: tempfile::TempDir,
    /// The context (the checkout's subdirectory for `#ref:subdir`).
    pub path: PathBuf,
    /// When the input was a Dockerfile rather than a context: its bytes (the context is then
    /// empty).
    pub dockerfile: Option<Vec<u8>>,
    /// Where it came from, for provenance.
    pub origin: Option<ContextOrigin>,
}

impl FetchedContext {
    /// The temporary directory holding the context.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether `text` names a context this module fetches (a URL or git reference) rather than a
/// directory.
pub fn is_remote_context(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://") || GitUrl::parse(text).is_some()
}

/// `file://` URL of a bare git repository at `path` (with its `#ref:subdir`), when `path` is
/// one: a directory with `HEAD`, `objects/` and `refs/` and no Dockerfile.
pub fn bare_repository_url(text: &str) -> Option<String> {
    let (path, fragment) = match text.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (text, None),
    };
    let dir = Path::new(path);
    let bare = dir.join("HEAD").is_file()
        && dir.join("objects").is_dir()
        && dir.join("refs").is_dir()
        && !dir.join("Dockerfile").exists();
    if !bare {
        return None;
    }
    let abs = std::fs::canonicalize(dir).ok()?;
    let mut url = format!("file://{}", abs.display());
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    Some(url)
}

/// Makes `input` into a context directory under `scratch` (a directory on the store's file
/// system).
pub fn fetch_context(
    input: ContextInput<'_>,
    scratch: &Path,
) -> Result<FetchedContext, EngineError> {
    std::fs::create_dir_all(scratch).map_err(|source| EngineError::Io {
        what: format!("create {}", scratch.display()),
        source,
    })?;
    let dir = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(scratch)
        .map_err(|source| EngineError::Io {
            what: "create a directory for the build context".into(),
            source,
        })?;
    let ctx = dir.path().join("context");
    std::fs::create_dir(&ctx).map_err(|source| EngineError::Io {
        what: "create the build context directory".into(),
        source,
    })?;
    match input {
        ContextInput::Url(url) if GitUrl::parse(url).is_some() => {
            let git = GitUrl::parse(url).ok_or_else(|| EngineError::Bug("git url".into()))?;
            let commit = git::resolve(&git.remote, git.reference.as_deref())?;
            let work = dir.path().join("checkout");
            std::fs::create_dir(&work).map_err(|source| EngineError::Io {
                what: "create the checkout directory".into(),
                source,
            })?;
            git::checkout(
                &git::Checkout {
                    remote: &git.remote,
                    reference: git.reference.as_deref(),
                    commit: &commit,
                    subdir: git.subdir.as_deref(),
                    keep_git_dir: false,
                },
                &ctx,
                &work,
            )?;
            Ok(FetchedContext {
                dir,
                path: ctx,
                dockerfile: None,
                origin: Some(ContextOrigin::Git {
                    url: git.remote,
                    commit,
                }),
            })
        }
        ContextInput::Url(url) => {
            let fetched = http::download(url, dir.path(), "download", 0o600, None)?;
            let digest = fetched
                .digest
                .parse()
                .map_err(|e| EngineError::Bug(format!("download digest: {e}")))?;
            let file = dir.path().join("download");
            let dockerfile = unpack_or_read(&file, &ctx)?;
            Ok(FetchedContext {
                dir,
                path: ctx,
                dockerfile,
                origin: Some(ContextOrigin::Url {
                    url: url.to_owned(),
                    digest,
                }),
            })
        }
        ContextInput::Stdin(reader) => {
            let file = dir.path().join("stdin");
            let mut out = std::fs::File::create(&file).map_err(|source| EngineError::Io {
                what: "save the context from stdin".into(),
                source,
            })?;
            std::io::copy(reader, &mut out).map_err(|source| EngineError::Io {
                what: "read the context from stdin".into(),
                source,
            })?;
            drop(out);
            let dockerfile = unpack_or_read(&file, &ctx)?;
            Ok(FetchedContext {
                dir,
                path: ctx,
                dockerfile,
                origin: None,
            })
        }
    }
}

/// A tar archive (plain, gzip, bzip2, xz, zstd) is extracted into `ctx`; anything else is a
/// Dockerfile, returned.
fn unpack_or_read(file: &Path, ctx: &Path) -> Result<Option<Vec<u8>>, EngineError> {
    let is_archive = archive::detect(file).map_err(|source| EngineError::Io {
        what: "read the build context".into(),
        source,
    })?;
    if is_archive.is_some() {
        archive::extract(
            file,
            ctx,
            "/",
            &ExtractOptions {
                ownership: Ownership::Keep,
                mtime_override: None,
            },
        )?;
        let _ = std::fs::remove_file(file);
        return Ok(None);
    }
    let text = std::fs::read(file).map_err(|source| EngineError::Io {
        what: "read the Dockerfile".into(),
        source,
    })?;
    Ok(Some(text))
}
