//! Build contexts written out from the content store, one directory per context tree root under
//! `<root>/remote/contexts/<hex>`. The engine reads a context in place, so a directory is
//! written once (into a temporary name, then renamed) and reused as long as builds send the
//! same tree: a no-op rebuild costs nothing here. The least recently used directories beyond
//! a few are removed when no build holds them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_image::ImageStore;
use kiln_llb::Digest;
use kiln_proto::tree::{self, MaterializeOptions};

use crate::blobs::StoreSource;

/// Context directories kept besides those in use.
const KEEP: usize = 8;

pub(crate) struct Contexts {
    dir: PathBuf,
    in_use: Mutex<HashMap<Digest, usize>>,
}

/// A context directory a build holds; it is not removed while held.
pub(crate) struct Held {
    contexts: Arc<Contexts>,
    digest: Digest,
    pub(crate) path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut in_use = self
            .contexts
            .in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = in_use.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.digest);
            }
        }
    }
}

impl Contexts {
    pub(crate) fn open(root: &Path) -> std::io::Result<Contexts> {
        let dir = root.join("remote").join("contexts");
        std::fs::create_dir_all(&dir)?;
        // Half-written directories of a worker that was killed.
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Contexts {
            dir,
            in_use: Mutex::new(HashMap::new()),
        })
    }

    /// The directory of context `root`, written now if it is not there yet. The tree must be
    /// complete in the store. Runs on a blocking thread.
    pub(crate) fn hold(
        self: &Arc<Self>,
        images: &ImageStore,
        root: Digest,
    ) -> Result<Held, tree::TreeError> {
        *self
            .in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(root)
            .or_default() += 1;
        let held = Held {
            contexts: self.clone(),
            digest: root,
            path: self.dir.join(root.hex()),
        };
        if held.path.is_dir() {
            // Marks it recently used for eviction.
            if let Ok(f) = std::fs::File::open(&held.path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(held);
        }
        let temp = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.dir)
            .map_err(|source| tree::TreeError::Io {
                what: "create",
                path: self.dir.display().to_string(),
                source,
            })?;
        let dest = temp.path().join("ctx");
        tree::materialize(
            &root,
            &StoreSource(images),
            &dest,
            &MaterializeOptions::default(),
        )?;
        match std::fs::rename(&dest, &held.path) {
            Ok(()) => {}
            // Another build of the same context finished first: use its copy.
            Err(_) if held.path.is_dir() => {}
            Err(source) => {
                return Err(tree::TreeError::Io {
                    what: "rename",
                    path: held.path.display().to_string(),
                    source,
                });
            }
        }
        drop(temp);
        self.evict();
        Ok(held)
    }

    /// Removes the least recently used directories beyond [`KEEP`] that no build holds.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("tmp-") {
                    return None;
                }
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.path(), name))
            })
            .collect();
        if dirs.len() <= KEEP {
            return;
        }
        dirs.sort();
        let in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        let excess = dirs.len() - KEEP;
        for (_, path, name) in dirs.into_iter().take(excess) {
            if in_use.keys().any(|d| d.hex() == name) {
                continue;
            }
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
