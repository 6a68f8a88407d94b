//! The image store: one local root with its content store, metadata and snapshotter, which the
//! `oci` crate reads and writes blobs in through its blob traits.

use std::path::{Path, PathBuf};

use kiln_cache::Store;
use kiln_executor::snapshot::Snapshotter;

use crate::error::ImageError;

/// Everything a build or an image command needs from the local root.
pub struct ImageStore {
    root: PathBuf,
    store: std::sync::Arc<Store>,
    snapshots: Snapshotter,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish()
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        std::fs::create_dir_all(root).map_err(|source| ImageError::Io {
            what: format!("create the root {}", root.display()),
            source,
        })?;
        let store = std::sync::Arc::new(Store::open(root)?);
        let snapshots = Snapshotter::open(root)?;
        std::fs::create_dir_all(root.join("tmp")).map_err(|source| ImageError::Io {
            what: "create the root's tmp dir".into(),
            source,
        })?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            store,
            snapshots,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, shareable with blocking tasks.
    pub fn store_arc(&self) -> std::sync::Arc<Store> {
        self.store.clone()
    }

    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// A fresh temporary directory under the root (same filesystem as the snapshots).
    pub fn tempdir(&self, prefix: &str) -> Result<tempfile::TempDir, ImageError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.root.join("tmp"))
            .map_err(|source| ImageError::Io {
                what: "create a temporary directory".into(),
                source,
            })
    }

    /// The content store, which the `oci` crate's blob traits are implemented for.
    pub fn blobs(&self) -> &kiln_cache::ContentStore {
        self.store.content()
    }
}

/// Runs `f` on a thread with its own private mount namespace, so every mount `f` makes is gone
/// when the thread ends, even if the process is killed: nothing leaks into the host's mounts.
pub fn with_private_mounts<T: Send, E: From<ImageError> + Send>(
    f: impl FnOnce() -> Result<T, E> + Send,
) -> Result<T, E> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                use nix::mount::{MsFlags, mount};
                use nix::sched::{CloneFlags, unshare};
                // CLONE_NEWNS for one thread needs an unshared fs struct, which CLONE_NEWNS
                // implies; the namespace dies with the last thread in it.
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).map_err(|e| {
                    E::from(ImageError::Io {
                        what: "unshare a mount namespace for file operations".into(),
                        source: e.into(),
                    })
                })?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|e| {
                    E::from(ImageError::Io {
                        what: "make mounts private for file operations".into(),
                        source: e.into(),
                    })
                })?;
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(E::from(ImageError::Bug(
                    "a file-operation thread panicked".into(),
                )))
            })
    })
}
