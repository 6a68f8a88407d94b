//! Mounting overlayfs (writable and read-only) with the new mount API, so deep layer chains work.
//!
//! The classic `mount(2)` call takes all options as one string limited to a page (4096 bytes),
//! which caps a `lowerdir=` list at a few dozen layers. Since Linux 6.8 overlayfs accepts
//! `lowerdir+` once per layer through `fsconfig(2)`, with no total length limit; we use it and
//! fall back to the options string on older kernels when the string fits.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount,
};

/// The kernel copies mount data into a single page; the string and its NUL must fit.
const MOUNT_DATA_MAX: usize = 4095;

/// Mounts a writable overlay at `target`.
///
/// `lowerdirs` are ordered top-most first, as overlayfs' `lowerdir=` lists them. With no lower
/// dirs at all (a snapshot with no parent) the upper dir is bind-mounted read-write instead,
/// which behaves the same for the process and leaves its changes in `upperdir` likewise.
pub fn mount_overlay(
    target: &Path,
    lowerdirs: &[PathBuf],
    upperdir: &Path,
    workdir: &Path,
) -> io::Result<()> {
    if lowerdirs.is_empty() {
        return bind(upperdir, target, false);
    }
    mount_overlay_inner(target, lowerdirs, Some((upperdir, workdir)))
}

/// Mounts a read-only overlay of `lowerdirs` (top-most first) at `target`.
///
/// Overlayfs without an upper dir needs at least two lower dirs on older kernels, so a single
/// lower dir is bind-mounted read-only instead; an empty list is an error.
pub fn mount_overlay_readonly(target: &Path, lowerdirs: &[PathBuf]) -> io::Result<()> {
    match lowerdirs {
        [] => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "failed to mount read-only overlay at {}: no lower dirs given",
                target.display()
            ),
        )),
        [only] => bind(only, target, true),
        _ => mount_overlay_inner(target, lowerdirs, None),
    }
}

/// Unmounts what one of the functions here mounted at `target`.
///
/// Falls back to a lazy (detached) unmount when the mount is busy, so a lingering open file
/// cannot keep a snapshot mounted forever.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| with_context(e.into(), "failed to unmount", target)),
        Err(e) => Err(with_context(e.into(), "failed to unmount", target)),
    }
}

/// Reports whether an overlay with its upper and work dirs under `root` can be mounted here,
/// including creating a whiteout (which needs `trusted.*` xattrs and `mknod` on the upper fs).
///
/// Creates and removes a scratch directory under `root`; any failure means "no".
pub fn overlay_supported(root: &Path) -> bool {
    let Ok(scratch) = make_scratch(root) else {
        return false;
    };
    let ok = probe(&scratch).is_ok();
    let _ = fs::remove_dir_all(&scratch);
    ok
}

fn make_scratch(root: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let scratch = root.join(format!(".overlay-probe-{}", std::process::id()));
    if scratch.exists() {
        let _ = unmount(&scratch.join("merged"));
        fs::remove_dir_all(&scratch)?;
    }
    for d in ["lower1", "lower2", "upper", "work", "merged"] {
        fs::create_dir_all(scratch.join(d))?;
    }
    Ok(scratch)
}

fn probe(scratch: &Path) -> io::Result<()> {
    fs::write(scratch.join("lower2/gone"), b"x")?;
    fs::write(scratch.join("lower1/kept"), b"x")?;
    let merged = scratch.join("merged");
    mount_overlay(
        &merged,
        &[scratch.join("lower1"), scratch.join("lower2")],
        &scratch.join("upper"),
        &scratch.join("work"),
    )?;
    let result = (|| {
        fs::remove_file(merged.join("gone"))?;
        fs::write(merged.join("new"), b"y")?;
        if merged.join("gone").exists() || !merged.join("kept").exists() {
            return Err(io::Error::other("overlay probe saw the wrong tree"));
        }
        Ok(())
    })();
    let unmounted = unmount(&merged);
    result?;
    unmounted
}

fn mount_overlay_inner(
    target: &Path,
    lowerdirs: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> io::Result<()> {
    match mount_new_api(target, lowerdirs, upper) {
        Ok(()) => Ok(()),
        // ENOSYS: no fsopen (before 5.2). LowerdirPlusUnsupported: overlayfs before 6.8.
        Err(NewApiError::Unsupported(why)) => {
            tracing::debug!(%why, "new mount api unusable for overlay, using mount(2)");
            mount_legacy(target, lowerdirs, upper)
        }
        Err(NewApiError::Failed(e)) => Err(e),
    }
}

enum NewApiError {
    Unsupported(String),
    Failed(io::Error),
}

fn mount_new_api(
    target: &Path,
    lowerdirs: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<(), NewApiError> {
    let fs_fd = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOSYS) => {
            return Err(NewApiError::Unsupported("fsopen is not available".into()));
        }
        Err(e) => {
            return Err(NewApiError::Failed(with_context(
                e.into(),
                "failed to open overlay filesystem context for",
                target,
            )));
        }
    };
    let fail = |e: rustix::io::Errno, what: &str| {
        let log = read_fs_log(&fs_fd);
        let mut err = with_context(
            e.into(),
            &format!("failed to mount overlay ({what}) at"),
            target,
        );
        if !log.is_empty() {
            err = io::Error::new(err.kind(), format!("{err}: {log}"));
        }
        NewApiError::Failed(err)
    };

    for (i, lower) in lowerdirs.iter().enumerate() {
        if let Err(e) = fsconfig_set_string(&fs_fd, "lowerdir+", lower.as_os_str()) {
            // The first `lowerdir+` failing with EINVAL means the parameter is unknown.
            if i == 0 && e == rustix::io::Errno::INVAL {
                let log = read_fs_log(&fs_fd);
                if log.is_empty() || log.contains("nknown parameter") {
                    return Err(NewApiError::Unsupported(format!(
                        "overlayfs does not know lowerdir+ ({log})"
                    )));
                }
            }
            return Err(fail(e, &format!("lower dir {}", lower.display())));
        }
    }
    if let Some((upperdir, workdir)) = upper {
        fsconfig_set_string(&fs_fd, "upperdir", upperdir.as_os_str())
            .map_err(|e| fail(e, &format!("upper dir {}", upperdir.display())))?;
        fsconfig_set_string(&fs_fd, "workdir", workdir.as_os_str())
            .map_err(|e| fail(e, &format!("work dir {}", workdir.display())))?;
    }
    // Layer diffs read the upper dir as a self-contained record of changes. Redirected
    // directories and metacopy-only files would make it depend on the lower dirs, so turn both
    // off where the kernel knows them (where it does not, they cannot be on).
    for (key, value) in [("redirect_dir", "off"), ("metacopy", "off")] {
        if fsconfig_set_string(&fs_fd, key, value).is_err() {
            let _ = read_fs_log(&fs_fd);
        }
    }
    fsconfig_create(&fs_fd).map_err(|e| fail(e, "create"))?;
    let attrs = if upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let mnt =
        fsmount(&fs_fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| fail(e, "fsmount"))?;
    move_mount(
        mnt.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail(e, "move_mount"))?;
    Ok(())
}

/// Drains the messages the kernel queued on a filesystem context (`e overlay: ...` lines).
fn read_fs_log(fs_fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; the queue holds a handful at most. The fd is blocking but
    // returns ENODATA when empty, so this cannot hang.
    for _ in 0..16 {
        match rustix::io::read(fs_fd, &mut buf) {
            Ok(n) if n > 0 => {
                if !out.is_empty() {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(&buf[..n]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

fn mount_legacy(
    target: &Path,
    lowerdirs: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> io::Result<()> {
    let data = legacy_options(lowerdirs, upper).map_err(|msg| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("failed to mount overlay at {}: {msg}", target.display()),
        )
    })?;
    let flags = if upper.is_some() {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let data = std::ffi::CString::new(data).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "failed to mount overlay at {}: a path contains a NUL byte",
                target.display()
            ),
        )
    })?;
    rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())
        .map_err(|e| with_context(e.into(), "failed to mount overlay at", target))
}

/// Builds the `mount(2)` data string, refusing what it cannot express.
fn legacy_options(lowerdirs: &[PathBuf], upper: Option<(&Path, &Path)>) -> Result<Vec<u8>, String> {
    let mut data = b"lowerdir=".to_vec();
    for (i, lower) in lowerdirs.iter().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(checked(lower.as_os_str())?);
    }
    if let Some((upperdir, workdir)) = upper {
        data.extend_from_slice(b",upperdir=");
        data.extend_from_slice(checked(upperdir.as_os_str())?);
        data.extend_from_slice(b",workdir=");
        data.extend_from_slice(checked(workdir.as_os_str())?);
    }
    if data.len() > MOUNT_DATA_MAX {
        return Err(format!(
            "not supported yet: {} lower dirs need {} bytes of mount options, over the kernel's \
             limit of {MOUNT_DATA_MAX}, and this kernel lacks overlayfs lowerdir+ (Linux 6.8)",
            lowerdirs.len(),
            data.len()
        ));
    }
    Ok(data)
}

/// The options string separates with `,` and `:` and escapes with `\`; rather than rely on
/// each kernel's escaping rules, paths containing them are refused on this fallback path.
fn checked(path: &OsStr) -> Result<&[u8], String> {
    let bytes = path.as_bytes();
    if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
        return Err(format!(
            "not supported yet: path {} contains ',', ':' or '\\' and this kernel lacks overlayfs lowerdir+",
            Path::new(path).display()
        ));
    }
    Ok(bytes)
}

fn bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    rustix::mount::mount_bind(source, target).map_err(|e| {
        with_context(
            e.into(),
            &format!("failed to bind-mount {} at", source.display()),
            target,
        )
    })?;
    if readonly {
        // A bind mount ignores MS_RDONLY on creation; it takes a remount to make it read-only.
        if let Err(e) =
            rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
        {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            return Err(with_context(
                e.into(),
                "failed to make bind mount read-only at",
                target,
            ));
        }
    }
    Ok(())
}

fn with_context(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `mount(2)` fallback, exercised directly since this kernel has `lowerdir+`.
    #[test]
    fn legacy_mount_path_works_for_short_chains() {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: this test needs root (overlay mounts)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = tmp.path().join(n);
            fs::create_dir(&p).unwrap();
            p
        };
        let (a, b, u, w, m) = (d("a"), d("b"), d("u"), d("w"), d("m"));
        fs::write(a.join("f"), "top").unwrap();
        fs::write(b.join("f"), "bottom").unwrap();
        fs::write(b.join("g"), "g").unwrap();
        mount_legacy(&m, &[a.clone(), b.clone()], Some((&u, &w))).unwrap();
        let seen = (
            fs::read_to_string(m.join("f")),
            fs::read_to_string(m.join("g")),
        );
        let wrote = fs::write(m.join("new"), "n");
        unmount(&m).unwrap();
        assert_eq!(seen.0.unwrap(), "top");
        assert_eq!(seen.1.unwrap(), "g");
        wrote.unwrap();
        assert!(u.join("new").exists());
        mount_legacy(&m, &[a, b], None).unwrap();
        let wrote = fs::write(m.join("x"), "x");
        unmount(&m).unwrap();
        assert_eq!(wrote.unwrap_err().raw_os_error(), Some(libc::EROFS));
    }

    #[test]
    fn legacy_options_refuse_separators_and_overlong_lists() {
        let ok = legacy_options(
            &[PathBuf::from("/a"), PathBuf::from("/b")],
            Some((Path::new("/u"), Path::new("/w"))),
        )
        .unwrap();
        assert_eq!(ok, b"lowerdir=/a:/b,upperdir=/u,workdir=/w");
        let err = legacy_options(&[PathBuf::from("/a:b")], None).unwrap_err();
        assert!(err.contains("contains ','"), "{err}");
        let many: Vec<PathBuf> = (0..300)
            .map(|i| PathBuf::from(format!("/var/lib/kiln/snapshots/{i:04}/fs")))
            .collect();
        let err = legacy_options(&many, None).unwrap_err();
        assert!(err.contains("over the kernel's limit"), "{err}");
    }
}
