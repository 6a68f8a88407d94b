//! Fixtures for kiln's tests and quickstart: a busybox root filesystem built from the host's
//! statically linked busybox (Debian's `busybox-static`), since this machine reaches no image
//! registry; and a `skopeo` command that leaves no cache on the host.

#![deny(unsafe_code)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `busybox-static` installs its binary; `KILN_BUSYBOX` overrides it.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// Fixed mtime for every entry of the fixture tar, so the base image digest is stable.
const FIXTURE_MTIME: u64 = 1_700_000_000;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
bin:x:2:\n\
sys:x:3:\n\
adm:x:4:\n\
tty:x:5:\n\
disk:x:6:\n\
wheel:x:10:root\n\
www-data:x:33:\n\
operator:x:37:\n\
users:x:100:\n\
nogroup:x:65534:\n";

/// The busybox binary to use: `$KILN_BUSYBOX` or `/bin/busybox`; an error explains how to get it.
pub fn busybox_binary() -> io::Result<PathBuf> {
    let path = std::env::var_os("KILN_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BUSYBOX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "busybox not found at {} (install Debian's busybox-static, or set KILN_BUSYBOX)",
                path.display()
            ),
        ))
    }
}

/// Lays out a busybox root filesystem in `root` (which must exist and be empty):
/// `/bin/busybox`, a symlink per applet, `/etc/passwd`, `/etc/group`, `/tmp` (1777) and the
/// usual empty directories.
pub fn write_busybox_rootfs(root: &Path) -> io::Result<()> {
    write_busybox_rootfs_with(root, &busybox_binary()?)
}

/// [`write_busybox_rootfs`] with `busybox` as `/bin/busybox` (a binary for another
/// architecture, say); the applets are those the host's busybox lists, since Debian builds the
/// same set for every architecture.
pub fn write_busybox_rootfs_with(root: &Path, busybox: &Path) -> io::Result<()> {
    let host_busybox = busybox_binary()?;
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
        ("tmp", 0o1777),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    let target = root.join("bin/busybox");
    fs::copy(busybox, &target)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;

    let output = Command::new(&host_busybox).arg("--list-full").output()?;
    if !output.status.success() {
        return Err(io::Error::other("busybox --list-full failed"));
    }
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = root.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &link)?;
    }
    fs::write(root.join("etc/passwd"), PASSWD)?;
    fs::write(root.join("etc/group"), GROUP)?;
    Ok(())
}

/// Writes the busybox root filesystem as a deterministic tar (sorted entries, numeric owners
/// 0:0, a fixed mtime) to `out`, the input `kiln import` takes.
pub fn write_busybox_rootfs_tar(out: &Path) -> io::Result<()> {
    write_busybox_rootfs_tar_with(out, &busybox_binary()?)
}

/// [`write_busybox_rootfs_tar`] with `busybox` as the binary (see
/// [`write_busybox_rootfs_with`]).
pub fn write_busybox_rootfs_tar_with(out: &Path, busybox: &Path) -> io::Result<()> {
    let staging = out.with_extension("staging");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    write_busybox_rootfs_with(&staging, busybox)?;
    let tmp = out.with_extension("tmp");
    {
        let file = fs::File::create(&tmp)?;
        let mut builder = tar::Builder::new(io::BufWriter::new(file));
        append_tree_sorted(&mut builder, &staging, Path::new(""))?;
        builder.into_inner()?.flush()?;
    }
    fs::rename(&tmp, out)?;
    fs::remove_dir_all(&staging)?;
    Ok(())
}

fn append_tree_sorted<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel_path = rel.join(entry.file_name());
        let meta = entry.path().symlink_metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(FIXTURE_MTIME);
        header.set_mode(meta.permissions().mode() & 0o7777);
        if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = fs::read_link(entry.path())?;
            builder.append_link(&mut header, &rel_path, &target)?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel_path, io::empty())?;
            append_tree_sorted(builder, root, &rel_path)?;
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            builder.append_data(&mut header, &rel_path, fs::File::open(entry.path())?)?;
        }
    }
    Ok(())
}

/// The arm64 busybox for multi-platform tests: `$KILN_BUSYBOX_ARM64`, or Debian's
/// `busybox-static:arm64` fetched once into `cache` (`apt-get download`, which needs
/// `dpkg --add-architecture arm64` and an `apt-get update`) and unpacked with `dpkg-deb -x`.
/// The error says what is missing, for the test's `skipped:` line.
pub fn arm64_busybox(cache: &Path) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KILN_BUSYBOX_ARM64").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("KILN_BUSYBOX_ARM64={} is not a file", path.display()),
            ))
        };
    }
    let unpacked = cache.join("busybox-arm64");
    let binary = unpacked.join("bin/busybox");
    if binary.is_file() {
        return Ok(binary);
    }
    let download = cache.join("busybox-arm64-deb");
    fs::create_dir_all(&download)?;
    let fetched = Command::new("apt-get")
        .args(["download", "busybox-static:arm64"])
        .current_dir(&download)
        .output()?;
    if !fetched.status.success() {
        return Err(io::Error::other(format!(
            "apt-get download busybox-static:arm64 failed (is the arm64 architecture added: \
             dpkg --add-architecture arm64 && apt-get update?): {}",
            String::from_utf8_lossy(&fetched.stderr).trim()
        )));
    }
    let deb = fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| io::Error::other("apt-get download left no .deb"))?;
    let staging = cache.join("busybox-arm64.staging");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let unpack = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&staging)
        .status()?;
    if !unpack.success() || !staging.join("bin/busybox").is_file() {
        return Err(io::Error::other(format!(
            "dpkg-deb -x {} gave no bin/busybox",
            deb.display()
        )));
    }
    // Renamed into place, so concurrent tests see the whole tree or none of it.
    match fs::rename(&staging, &unpacked) {
        Ok(()) => {}
        Err(_) if binary.is_file() => fs::remove_dir_all(&staging)?,
        Err(e) => return Err(e),
    }
    Ok(binary)
}

/// Runs in a private mount namespace before skopeo: a tmpfs over `/var/lib/containers` (or over
/// `/var/lib` where that does not exist yet), so skopeo's blob-info cache, which it keeps in
/// `/var/lib/containers/cache` when run as root, is never written on the host.
const SKOPEO_SETUP: &str = r#"set -e
dir=/var/lib/containers
[ -d "$dir" ] || dir=/var/lib
mount -n -t tmpfs -o mode=0700 kiln-test-skopeo "$dir"
exec skopeo "$@""#;

/// A `skopeo` command for tests that leaves nothing on the host: as root it runs in a private
/// mount namespace that hides the system cache directory (see [`SKOPEO_SETUP`]); as another
/// user it caches under that user's own data directory, as skopeo always does.
pub fn skopeo() -> Command {
    if !is_root() {
        return Command::new("skopeo");
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", SKOPEO_SETUP, "sh"]);
    cmd
}

/// Whether this process runs as root (the effective uid, read from /proc to stay free of
/// unsafe code).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}
