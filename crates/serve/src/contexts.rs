//! Build contexts written out from the content store. The engine reads a context in place, so a
//! directory is written once and reused as long as builds send the same tree: a no-op rebuild
//! costs nothing here.
//!
//! Each client project (the client's context path) has a *slot*, `<root>/remote/contexts/
//! slot-<hash>`, holding its latest tree. A new tree of the project updates the slot in place
//! (`update.rs`: only what differs is rewritten), so a one-file edit of a big context rewrites
//! one file and the engine's stat cache for that path stays warm. A slot that another build
//! holds with a different tree is not touched: that build gets a directory of its own
//! (`<hex of the root>`, written whole into a temporary name, then renamed). Slots are
//! forgotten when the worker starts (their state is in memory); the least recently used
//! directories beyond a few are removed when no build holds them.

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
    /// Holders of each directory, by its file name.
    in_use: Mutex<HashMap<String, usize>>,
    /// The tree each slot holds (absent: being written, or broken).
    slots: Mutex<HashMap<String, Digest>>,
}

/// A context directory a build holds; it is not removed or changed while held.
pub(crate) struct Held {
    contexts: Arc<Contexts>,
    name: String,
    pub(crate) path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut in_use = self
            .contexts
            .in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = in_use.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.name);
            }
        }
    }
}

fn slot_name(project: &str) -> String {
    format!("slot-{}", &Digest::of(project.as_bytes()).hex()[..24])
}

impl Contexts {
    pub(crate) fn open(root: &Path) -> std::io::Result<Contexts> {
        let dir = root.join("remote").join("contexts");
        std::fs::create_dir_all(&dir)?;
        // Half-written directories of a worker that was killed, and slots whose trees only
        // the last run knew.
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") || name.starts_with("slot-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Contexts {
            dir,
            in_use: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn take(self: &Arc<Self>, name: String) -> Held {
        *self
            .in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.clone())
            .or_default() += 1;
        Held {
            contexts: self.clone(),
            path: self.dir.join(&name),
            name,
        }
    }

    /// The directory of context `root` for the client project `project`: its slot, brought to
    /// `root` if no build holds it, else a directory of the tree's own. Runs on a blocking
    /// thread.
    pub(crate) fn hold_for(
        self: &Arc<Self>,
        images: &ImageStore,
        root: Digest,
        project: &str,
    ) -> Result<Held, tree::TreeError> {
        let name = slot_name(project);
        let held = {
            // Both locks, so a slot is never taken while its tree changes hands.
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
            let busy = in_use.get(&name).copied().unwrap_or(0) > 0;
            match slots.get(&name).copied() {
                Some(current) if current == root => {
                    *in_use.entry(name.clone()).or_default() += 1;
                    return Ok(Held {
                        contexts: self.clone(),
                        path: self.dir.join(&name),
                        name,
                    });
                }
                _ if busy => None,
                current => {
                    // Ours to change: nobody holds it, and until it is done it holds no tree.
                    slots.remove(&name);
                    *in_use.entry(name.clone()).or_default() += 1;
                    Some((
                        Held {
                            contexts: self.clone(),
                            path: self.dir.join(&name),
                            name: name.clone(),
                        },
                        current,
                    ))
                }
            }
        };
        let Some((held, current)) = held else {
            return self.hold(images, root);
        };
        let updated = match current {
            Some(old) if held.path.is_dir() => {
                crate::update::update(images, &held.path, &old, &root)
            }
            _ => Err(tree::TreeError::MissingNode(root)),
        };
        if updated.is_err() {
            // No slot yet, or its update failed half way: write it from scratch.
            let _ = std::fs::remove_dir_all(&held.path);
            tree::materialize(
                &root,
                &StoreSource(images),
                &held.path,
                &MaterializeOptions::default(),
            )?;
        }
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, root);
        if let Ok(f) = std::fs::File::open(&held.path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        self.evict();
        Ok(held)
    }

    /// The directory of context `root` (named by it), written now if it is not there yet. The
    /// tree must be complete in the store. Runs on a blocking thread.
    pub(crate) fn hold(
        self: &Arc<Self>,
        images: &ImageStore,
        root: Digest,
    ) -> Result<Held, tree::TreeError> {
        let held = self.take(root.hex());
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
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        let excess = dirs.len() - KEEP;
        for (_, path, name) in dirs.into_iter().take(excess) {
            if in_use.contains_key(&name) {
                continue;
            }
            slots.remove(&name);
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
