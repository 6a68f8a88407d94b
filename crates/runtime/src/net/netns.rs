//! Named network namespaces (`/run/netns/<name>`, the layout `ip netns` uses) made and removed
//! in process: a `kiln run` on a bridge pays for no `ip netns add`/`del` process.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::{RuntimeError, io_err};

const DIR: &str = "/run/netns";

pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// Creates an empty network namespace (only a down `lo`) pinned at `/run/netns/<name>`,
/// replacing one a killed owner left behind.
pub(crate) fn create(name: &str) -> Result<PathBuf, RuntimeError> {
    fs::create_dir_all(DIR).map_err(io_err(format!("create {DIR}")))?;
    let target = path(name);
    if target.exists() {
        delete(name);
    }
    fs::File::create_new(&target).map_err(io_err(format!("create {}", target.display())))?;
    // unshare(CLONE_NEWNET) moves only the calling thread, so a short-lived thread makes the
    // namespace and pins it with a bind mount of its own ns file before it ends.
    let t = target.clone();
    let made = std::thread::spawn(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &t,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .unwrap_or(Err(nix::errno::Errno::EINTR));
    if let Err(e) = made {
        let _ = fs::remove_file(&target);
        return Err(RuntimeError::Io {
            what: format!("create network namespace {name}"),
            source: e.into(),
        });
    }
    Ok(target)
}

/// Unpins the namespace; the kernel frees it (and the veth end inside, with its peer) once no
/// process is left in it.
pub(crate) fn delete(name: &str) {
    let p = path(name);
    let _ = umount2(&p, MntFlags::MNT_DETACH);
    let _ = fs::remove_file(&p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_pins_a_new_namespace_and_delete_removes_it() {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: network namespaces need root");
            return;
        }
        let name = format!("kiln-test-{}", std::process::id());
        let p = create(&name).expect("create");
        let ours = fs::metadata("/proc/self/ns/net").expect("own ns");
        let made = fs::metadata(&p).expect("pinned ns");
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), made.ino(), "a new namespace, not ours");
        // Creating again replaces it.
        let again = create(&name).expect("create again");
        assert_ne!(fs::metadata(&again).expect("ns").ino(), made.ino());
        delete(&name);
        assert!(!p.exists());
    }
}
