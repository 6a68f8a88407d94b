//! Merge ops (`COPY --link`): the inputs' filesystems stacked in order, later ones winning.
//! The result is a new snapshot on top of the first input with every later input's tree
//! copied over it (owners, modes and times kept); deletions are not part of a merge, as in
//! BuildKit, so nothing of an earlier input disappears.

use kiln_llb::Digest;

use super::copy::{self, CopyOptions, Ownership};
use crate::error::EngineError;
use crate::value::Value;
use kiln_image::{ImageStore, with_private_mounts};

/// Stacks `inputs` (in merge order) into one committed snapshot.
pub fn merge(images: &ImageStore, inputs: &[Value], digest: &Digest) -> Result<Value, EngineError> {
    let Some((first, rest)) = inputs.split_first() else {
        return Ok(Value::Scratch);
    };
    let parent = match first {
        Value::Snapshot(id) => Some(id.clone()),
        Value::Scratch => None,
        Value::Local(_) => return Err(local_input()),
    };
    let layers: Vec<_> = rest
        .iter()
        .filter_map(|v| match v {
            Value::Snapshot(id) => Some(Ok(id.clone())),
            Value::Scratch => None,
            Value::Local(_) => Some(Err(local_input())),
        })
        .collect::<Result<_, _>>()?;
    if layers.is_empty() {
        return Ok(first.clone());
    }
    let active = images
        .snapshots()
        .prepare(&format!("merge-{}", digest.hex()), parent.as_ref())?;
    let target = images.tempdir("merge-")?;
    let result = with_private_mounts(|| {
        active
            .mounts()
            .mount(target.path())
            .map_err(|source| EngineError::Io {
                what: "mount the merge result".into(),
                source,
            })?;
        for (n, id) in layers.iter().enumerate() {
            let source = target.path().with_extension(format!("src{n}"));
            std::fs::create_dir_all(&source).map_err(|e| EngineError::Io {
                what: "create a merge source mount point".into(),
                source: e,
            })?;
            images
                .snapshots()
                .view(id)?
                .mount(&source)
                .map_err(|e| EngineError::Io {
                    what: "mount a merge input".into(),
                    source: e,
                })?;
            // An upper input's entry replaces a lower one of another type, and its directories'
            // owners, modes and times win, as when layers are stacked.
            let mut opts = CopyOptions::new(vec!["/".into()], "/", Ownership::Keep);
            opts.always_replace = true;
            let copied = copy::copy(&source, target.path(), &opts);
            let _ = nix::mount::umount2(&source, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&source);
            copied?;
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(Value::Snapshot(images.snapshots().commit(active)?)),
        Err(e) => {
            let _ = images.snapshots().discard(active);
            Err(e)
        }
    }
}

fn local_input() -> EngineError {
    EngineError::Bug("a merge input is the build context itself".into())
}
