//! Steps 3 and 9–11 of the setup, as the parent prepares them: the detached mounts (the
//! rootfs, each bind source, each /etc file) and the child's list of mount ops: /proc, /dev,
//! /sys, the spec's mounts, the /etc files, masked and read-only paths.
//!
//! Detached mounts are attached nowhere in the host: if anything fails, closing their fds
//! frees them, and the host mount table is never touched.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::cgroup::View;
use super::etc;
use super::process::io_err;
use super::spec::{Mount, RootFs, SandboxSpec};
use super::teardown::Cleanup;
use super::validate::{cpath, cstr, inner_path};
use crate::sys::{self, child};

/// Builds the child's op list, with a description per op for error messages and the path of
/// each op that may report a created stub.
#[derive(Default)]
pub(super) struct Ops {
    pub(super) ops: Vec<child::Op>,
    pub(super) what: Vec<String>,
    pub(super) tracked: Vec<Option<PathBuf>>,
    /// Targets mounted so far: stubs below them live in that mount, not the rootfs.
    mounted: Vec<PathBuf>,
}

impl Ops {
    fn push(&mut self, op: child::Op, what: String, tracked: Option<PathBuf>) {
        self.ops.push(op);
        self.what.push(what);
        self.tracked.push(tracked);
    }

    fn in_rootfs(&self, p: &Path) -> bool {
        !self.mounted.iter().any(|m| p.starts_with(m) && p != m)
    }

    fn mkdir(&mut self, p: &Path, mode: u32) -> Result<(), SandboxError> {
        let tracked = self.in_rootfs(p).then(|| p.to_path_buf());
        self.push(
            child::Op::Mkdir {
                path: cpath(p)?,
                mode,
            },
            format!("failed to create directory {}", p.display()),
            tracked,
        );
        Ok(())
    }

    /// mkdir -p for the parents of `p`.
    fn parents(&mut self, p: &Path) -> Result<(), SandboxError> {
        let mut prefixes: Vec<&Path> = p.ancestors().skip(1).collect();
        prefixes.reverse();
        for a in prefixes {
            if a != Path::new("/") {
                self.mkdir(a, 0o755)?;
            }
        }
        Ok(())
    }

    fn touch(&mut self, p: &Path) -> Result<(), SandboxError> {
        let tracked = self.in_rootfs(p).then(|| p.to_path_buf());
        self.push(
            child::Op::Touch {
                path: cpath(p)?,
                mode: 0o644,
            },
            format!("failed to create mount point {}", p.display()),
            tracked,
        );
        Ok(())
    }

    fn mount(
        &mut self,
        fstype: &str,
        target: &str,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<(), SandboxError> {
        self.push(
            child::Op::Mount {
                source: cstr(fstype.as_bytes(), "fstype")?,
                target: cstr(target.as_bytes(), "target")?,
                fstype: cstr(fstype.as_bytes(), "fstype")?,
                flags,
                data: data.map(|d| cstr(d.as_bytes(), "mount data")).transpose()?,
            },
            format!("failed to mount {fstype} at {target}"),
            None,
        );
        self.mounted.push(PathBuf::from(target));
        Ok(())
    }

    fn attach(&mut self, fd: &OwnedFd, target: &Path, what: String) -> Result<(), SandboxError> {
        self.push(
            child::Op::Attach {
                fd: fd.as_raw_fd(),
                target: cpath(target)?,
            },
            what,
            None,
        );
        self.mounted.push(target.to_path_buf());
        Ok(())
    }
}

/// What the parent prepared for the child's filesystem.
pub(super) struct Mounts {
    /// The rootfs as a detached mount.
    pub(super) rootfs: OwnedFd,
    pub(super) ops: Ops,
    /// Detached mounts the ops attach (binds, /etc files, devpts); closed right after clone.
    pub(super) keep: Vec<OwnedFd>,
}

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

impl Mounts {
    /// The rootfs, the ops in the child's order and the detached mounts they attach. The /etc
    /// files are written into `state`; `devpts` is the pty's devpts instance, if any;
    /// `cgroups` are the cgroup directories to show at `/sys/fs/cgroup`. Records in `cleanup`
    /// where stubs go and which of their parents were there before.
    pub(super) fn prepare(
        spec: &SandboxSpec,
        state: &Path,
        devpts: Option<OwnedFd>,
        cgroups: &[View],
        cleanup: &mut Cleanup,
    ) -> Result<Mounts, SandboxError> {
        let rootfs = rootfs(spec, cleanup)?;
        let mut mounts = Mounts {
            rootfs,
            ops: Ops::default(),
            keep: Vec::new(),
        };
        // A mount of the caller's at /dev/shm replaces the default one (as in runc's spec).
        let own_shm = spec
            .mounts
            .iter()
            .any(|m| m.target() == Path::new("/dev/shm"));
        mounts.system(spec, devpts, !own_shm)?;
        mounts.sysctls(spec)?;
        mounts.devices(spec)?;
        mounts.cgroups(spec, cgroups)?;
        mounts.spec_mounts(spec)?;
        mounts.etc_files(spec, state)?;
        let ops = &mut mounts.ops;
        for p in &spec.masked_paths {
            let p = inner_path(p, "masked path")?;
            ops.push(
                child::Op::Mask { path: cpath(&p)? },
                format!("failed to mask {}", p.display()),
                None,
            );
        }
        for p in &spec.readonly_paths {
            let p = inner_path(p, "read-only path")?;
            ops.push(
                child::Op::ReadOnly { path: cpath(&p)? },
                format!("failed to make {} read-only", p.display()),
                None,
            );
        }

        // For an overlay, creating a stub copies its parent directories up into the upper
        // dir; remember which were there already so cleanup removes only the copied-up ones.
        let tracked: Vec<PathBuf> = ops.tracked.iter().flatten().cloned().collect();
        cleanup.upper_had = etc::existing_ancestors(&cleanup.stub_root, &tracked);
        Ok(mounts)
    }

    /// /proc, /dev with its devices and links, /dev/pts (the pty's instance when there is
    /// one), /dev/shm unless the caller mounts its own, /dev/mqueue and /sys (read-only unless
    /// privileged).
    fn system(
        &mut self,
        spec: &SandboxSpec,
        devpts: Option<OwnedFd>,
        shm: bool,
    ) -> Result<(), SandboxError> {
        let ops = &mut self.ops;
        ops.mkdir(Path::new("/proc"), 0o555)?;
        ops.mount("proc", "/proc", NOSUID | NODEV | NOEXEC, None)?;
        ops.mkdir(Path::new("/dev"), 0o755)?;
        // Docker lets a container mknod any device and stops it from opening all but a few
        // with the devices cgroup. kiln has no per-sandbox cgroup by default, so it gets the
        // same effect from mount flags: /dev, the rootfs and every bind are nodev, and the
        // devices a container may use are bind mounts of the host's nodes, whose own mount
        // allows them. A node made anywhere else (or shipped in a layer) does not open.
        ops.mount(
            "tmpfs",
            "/dev",
            NOSUID | NODEV | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?;
        for name in ["null", "zero", "full", "random", "urandom", "tty"] {
            let path = PathBuf::from(format!("/dev/{name}"));
            self.bind_device(&path, &path)?;
        }
        let ops = &mut self.ops;
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            ops.push(
                child::Op::Symlink {
                    target: cstr(target.as_bytes(), "symlink")?,
                    link: cstr(link.as_bytes(), "symlink")?,
                },
                format!("failed to create symlink {link}"),
                None,
            );
        }
        ops.mkdir(Path::new("/dev/pts"), 0o755)?;
        match devpts {
            // With a pty, the devpts instance its slave lives in goes here, so the command's
            // terminal is /dev/pts/0 of its own /dev/pts.
            Some(devpts) => {
                ops.attach(
                    &devpts,
                    Path::new("/dev/pts"),
                    "failed to mount devpts at /dev/pts".into(),
                )?;
                self.keep.push(devpts);
            }
            None => ops.mount(
                "devpts",
                "/dev/pts",
                NOSUID | NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            )?,
        }
        let ops = &mut self.ops;
        if shm {
            ops.mkdir(Path::new("/dev/shm"), 0o1777)?;
            let size = format!("mode=1777,size={}", spec.shm_size.unwrap_or(64 << 20));
            ops.mount("tmpfs", "/dev/shm", NOSUID | NODEV | NOEXEC, Some(&size))?;
        }
        ops.mkdir(Path::new("/dev/mqueue"), 0o755)?;
        ops.mount("mqueue", "/dev/mqueue", NOSUID | NODEV | NOEXEC, None)?;
        ops.mkdir(Path::new("/sys"), 0o555)?;
        let ro = if spec.sysfs_writable {
            0
        } else {
            libc::MS_RDONLY
        };
        ops.mount("sysfs", "/sys", ro | NOSUID | NODEV | NOEXEC, None)?;
        Ok(())
    }

    /// The spec's kernel parameters, written while `/proc/sys` is still writable.
    fn sysctls(&mut self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        for (key, value) in &spec.sysctls {
            if key.is_empty()
                || key.contains(['/', '\0'])
                || key.split('.').any(|p| p.is_empty() || p == "..")
            {
                return Err(SandboxError::InvalidSpec(format!(
                    "invalid sysctl name {key:?}"
                )));
            }
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            self.ops.push(
                child::Op::Write {
                    path: cstr(path.as_bytes(), "sysctl")?,
                    data: cstr(value.as_bytes(), "sysctl value")?,
                },
                format!("failed to set sysctl {key}={value}"),
                None,
            );
        }
        Ok(())
    }

    /// The spec's device nodes, owned as asked (their parents under /dev made as needed).
    fn devices(&mut self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        for d in &spec.devices {
            let path = inner_path(&d.path, "device path")?;
            if path.starts_with("/dev") {
                // Parents inside /dev (a tmpfs made here) are plain directories.
                let mut prefixes: Vec<&Path> = path.ancestors().skip(1).collect();
                prefixes.reverse();
                for a in prefixes
                    .into_iter()
                    .filter(|a| a.starts_with("/dev") && *a != Path::new("/dev"))
                {
                    self.ops.push(
                        child::Op::Mkdir {
                            path: cpath(a)?,
                            mode: 0o755,
                        },
                        format!("failed to create directory {}", a.display()),
                        None,
                    );
                }
            } else {
                self.ops.parents(&path)?;
            }
            self.bind_device(&d.host_path, &path)?;
        }
        Ok(())
    }

    /// Binds the host's device node `host` at `target`. The bind's own mount allows devices,
    /// unlike /dev and the rootfs around it (see `system`), so this node opens and nothing
    /// made with mknod beside it does.
    fn bind_device(&mut self, host: &Path, target: &Path) -> Result<(), SandboxError> {
        let fd = sys::open_tree_clone(&cpath(host)?, false).map_err(io_err(format!(
            "failed to bind the host's {}",
            host.display()
        )))?;
        self.ops.touch(target)?;
        self.ops.attach(
            &fd,
            target,
            format!("failed to bind device {}", target.display()),
        )?;
        self.keep.push(fd);
        Ok(())
    }

    /// `/sys/fs/cgroup` as a container sees it: the sandbox's own cgroup directories, bound
    /// read-only (a pure v2 host: its one directory there; v1: a tmpfs with one directory per
    /// hierarchy, named as on the host, and links for combined ones such as `cpu,cpuacct`).
    fn cgroups(&mut self, spec: &SandboxSpec, views: &[View]) -> Result<(), SandboxError> {
        if views.is_empty() {
            return Ok(());
        }
        let root = Path::new("/sys/fs/cgroup");
        let bind = |view: &View| -> Result<OwnedFd, SandboxError> {
            let fd = sys::open_tree_clone(&cpath(&view.host_dir)?, false).map_err(io_err(
                format!("failed to bind cgroup {}", view.host_dir.display()),
            ))?;
            sys::set_detached_locked(fd.as_fd(), spec.sysfs_writable).map_err(io_err(format!(
                "failed to make the view of cgroup {} read-only",
                view.host_dir.display()
            )))?;
            Ok(fd)
        };
        if let [view] = views
            && view.name.is_empty()
        {
            let fd = bind(view)?;
            self.ops
                .attach(&fd, root, "failed to mount the cgroup view".into())?;
            self.keep.push(fd);
            return Ok(());
        }
        self.ops.mount(
            "tmpfs",
            "/sys/fs/cgroup",
            NOSUID | NODEV | NOEXEC,
            Some("mode=755"),
        )?;
        for view in views.iter().filter(|v| !v.name.is_empty()) {
            let target = root.join(&view.name);
            self.ops.mkdir(&target, 0o555)?;
            let fd = bind(view)?;
            self.ops.attach(
                &fd,
                &target,
                format!("failed to mount the cgroup view at {}", target.display()),
            )?;
            self.keep.push(fd);
            // A combined hierarchy (`cpu,cpuacct`) is also reached by each controller's name.
            if view.name.contains(',') {
                for part in view.name.split(',') {
                    if views.iter().any(|v| v.name == part) {
                        continue;
                    }
                    let link = format!("/sys/fs/cgroup/{part}");
                    self.ops.push(
                        child::Op::Symlink {
                            target: cstr(view.name.as_bytes(), "symlink")?,
                            link: cstr(link.as_bytes(), "symlink")?,
                        },
                        format!("failed to create symlink {link}"),
                        None,
                    );
                }
            }
        }
        Ok(())
    }

    /// The spec's mounts in order: binds as detached mounts (made read-only while still
    /// detached), tmpfs by the child; missing targets are created as stubs.
    fn spec_mounts(&mut self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        let ops = &mut self.ops;
        for m in &spec.mounts {
            let target = inner_path(m.target(), "mount target")?;
            ops.parents(&target)?;
            match m {
                Mount::Bind {
                    source, readonly, ..
                } => {
                    let meta = fs::metadata(source).map_err(io_err(format!(
                        "failed to stat bind mount source {}",
                        source.display()
                    )))?;
                    if meta.is_dir() {
                        ops.mkdir(&target, 0o755)?;
                    } else {
                        ops.touch(&target)?;
                    }
                    let fd = sys::open_tree_clone(&cpath(source)?, true)
                        .map_err(io_err(format!("failed to bind {}", source.display())))?;
                    // No devices through a bind either (see `system`).
                    sys::set_detached_nodev(fd.as_fd(), true).map_err(io_err(format!(
                        "failed to make bind of {} nodev",
                        source.display()
                    )))?;
                    if *readonly {
                        sys::set_detached_readonly(fd.as_fd(), true).map_err(io_err(format!(
                            "failed to make bind of {} read-only",
                            source.display()
                        )))?;
                    }
                    ops.attach(
                        &fd,
                        &target,
                        format!(
                            "failed to bind-mount {} at {}",
                            source.display(),
                            target.display()
                        ),
                    )?;
                    self.keep.push(fd);
                }
                Mount::BindFrom {
                    namespace,
                    source,
                    readonly,
                    ..
                } => {
                    let fd =
                        sys::open_tree_in(namespace, &cpath(source)?).map_err(io_err(format!(
                            "failed to bind {} of mount namespace {}",
                            source.display(),
                            namespace.display()
                        )))?;
                    if *readonly {
                        sys::set_detached_readonly(fd.as_fd(), true).map_err(io_err(format!(
                            "failed to make bind of {} read-only",
                            source.display()
                        )))?;
                    }
                    ops.mkdir(&target, 0o755)?;
                    ops.attach(
                        &fd,
                        &target,
                        format!(
                            "failed to bind-mount {} at {}",
                            source.display(),
                            target.display()
                        ),
                    )?;
                    self.keep.push(fd);
                }
                Mount::Tmpfs {
                    size,
                    mode,
                    readonly,
                    noexec,
                    ..
                } => {
                    ops.mkdir(&target, 0o755)?;
                    let mut data = Vec::new();
                    if let Some(mode) = mode {
                        data.push(format!("mode={mode:o}"));
                    }
                    if let Some(size) = size {
                        data.push(format!("size={size}"));
                    }
                    let mut flags = NOSUID | NODEV;
                    if *readonly {
                        flags |= libc::MS_RDONLY;
                    }
                    if *noexec {
                        flags |= NOEXEC;
                    }
                    let t = target.to_string_lossy().into_owned();
                    let data = data.join(",");
                    ops.mount(
                        "tmpfs",
                        &t,
                        flags,
                        (!data.is_empty()).then_some(data.as_str()),
                    )?;
                    // ops.mount recorded the lossy string; record the real path as well.
                    ops.mounted.push(target.clone());
                }
            }
        }
        Ok(())
    }

    /// The generated /etc files (written into `state`, bound in read-write), unless the caller
    /// mounts something there itself.
    fn etc_files(&mut self, spec: &SandboxSpec, state: &Path) -> Result<(), SandboxError> {
        for (inner, name, content) in etc::files(spec) {
            let target = PathBuf::from(inner);
            if spec.mounts.iter().any(|m| m.target() == target) {
                continue;
            }
            let file = state.join(name);
            fs::write(&file, content)
                .map_err(io_err(format!("failed to write {}", file.display())))?;
            self.ops.parents(&target)?;
            self.ops.touch(&target)?;
            let fd = sys::open_tree_clone(&cpath(&file)?, false)
                .map_err(io_err(format!("failed to bind {}", file.display())))?;
            self.ops
                .attach(&fd, &target, format!("failed to bind-mount {inner}"))?;
            self.keep.push(fd);
        }
        Ok(())
    }
}

/// The rootfs as a detached mount: a recursive bind of a directory, or an overlay built with
/// fsopen (one `lowerdir+` per layer, so hundreds of layers fit). Stubs go to the directory
/// or the upper dir.
fn rootfs(spec: &SandboxSpec, cleanup: &mut Cleanup) -> Result<OwnedFd, SandboxError> {
    Ok(match &spec.rootfs {
        RootFs::Path(p) => {
            cleanup.stub_root = p.clone();
            let fd = sys::open_tree_clone(&cpath(p)?, true)
                .map_err(io_err(format!("failed to bind rootfs {}", p.display())))?;
            sys::set_detached_nodev(fd.as_fd(), true).map_err(io_err(format!(
                "failed to make rootfs {} nodev",
                p.display()
            )))?;
            fd
        }
        RootFs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => {
            cleanup.stub_root = upperdir.clone();
            if lowerdirs.is_empty() {
                let fd = sys::open_tree_clone(&cpath(upperdir)?, true).map_err(io_err(format!(
                    "failed to bind rootfs {}",
                    upperdir.display()
                )))?;
                sys::set_detached_nodev(fd.as_fd(), true).map_err(io_err(format!(
                    "failed to make rootfs {} nodev",
                    upperdir.display()
                )))?;
                fd
            } else {
                let lowers = lowerdirs
                    .iter()
                    .map(|l| cpath(l))
                    .collect::<Result<Vec<_>, _>>()?;
                sys::overlay_mount_fd(&lowers, &cpath(upperdir)?, &cpath(workdir)?).map_err(
                    |(step, source)| SandboxError::Setup {
                        what: format!(
                            "failed to mount overlay rootfs ({step}) for {}",
                            upperdir.display()
                        ),
                        source,
                    },
                )?
            }
        }
    })
}
