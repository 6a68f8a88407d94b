//! A running sandbox: turning a spec into the child's plan, starting it, streaming its output,
//! waiting, killing, and cleaning up everything it left on the host.
//!
//! Setup order (see docs/dev/sandbox.md): in the parent, create the state dir and the /etc
//! files, detached mounts for the rootfs and each bind (open_tree/fsmount, attached nowhere
//! so they vanish if we fail), cgroups and pipes; clone3 into new mount, pid, uts, ipc and
//! (for `Network::None`) net namespaces; the child joins the cgroups, makes a cgroup
//! namespace, attaches the rootfs, pivot_roots, builds /proc, /dev, /sys and the mounts,
//! drops privileges and execs. The status pipe reports failures (and created stubs) until
//! execve closes it.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SandboxError;
use super::cgroup::Cgroups;
use super::etc;
use super::io::{CancelToken, ExitInfo, ExitStatus, OutputSink, PtyMaster, Stdin, Stream};
use super::spec::{CAPABILITY_NAMES, Mount, Network, RootFs, SandboxSpec};
use crate::sys::{self, child};

/// A started sandbox. Dropping it without [`Sandbox::wait`] kills it and cleans up.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    pid: i32,
    pidfd: OwnedFd,
    stdout: Option<fs::File>,
    stderr: Option<fs::File>,
    stdin: Option<StdinFeed>,
    /// The pty's master side, kept for [`Sandbox::pty`] (output is read through `stdout`).
    pty: Option<OwnedFd>,
    cgroups: Option<Cgroups>,
    cleanup: Cleanup,
    started: Instant,
    exit: Option<(sys::Exit, Instant)>,
    done: bool,
}

/// Input on its way to the command: the write end of its stdin pipe, or with a pty a duplicate
/// of the master.
#[derive(Debug)]
struct StdinFeed {
    to: fs::File,
    pending: Vec<u8>,
    pos: usize,
    /// Copied into `to` as it comes (the caller's terminal for `run -i -t`); read only while
    /// nothing is pending, so a slow command holds the caller back instead of memory growing.
    from: Option<fs::File>,
    /// With a pty, closing `to` is no end of file: the terminal's EOF character is.
    tty: bool,
}

/// The terminal's end-of-file character (^D): a canonical-mode read at the start of a line
/// returns 0 bytes on it.
const TTY_EOF: u8 = 0x04;

/// What to undo on the host once the sandbox is gone.
#[derive(Debug, Default)]
struct Cleanup {
    state_dir: Option<PathBuf>,
    /// Where stubs were created: the overlay's upper dir or the rootfs directory.
    stub_root: PathBuf,
    created: Vec<PathBuf>,
    upper_had: Vec<PathBuf>,
}

impl Cleanup {
    fn run(&mut self) {
        for e in etc::remove_stubs(&self.stub_root, &self.created, &self.upper_had) {
            tracing::warn!(error = %e, "sandbox stub left behind");
        }
        self.created.clear();
        if let Some(dir) = self.state_dir.take()
            && let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "failed to remove sandbox state dir");
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

fn cstr(bytes: &[u8], what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes)
        .map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    cstr(p.as_os_str().as_bytes(), &format!("path {}", p.display()))
}

/// An absolute path inside the sandbox without `..`, normalised.
fn inner_path(p: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    if !p.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} is not an absolute path",
            p.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(SandboxError::InvalidSpec(format!(
                    "{what} {} must not contain '..'",
                    p.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Builds the child's op list, with a description per op for error messages and the path of
/// each op that may report a created stub.
#[derive(Default)]
struct Ops {
    ops: Vec<child::Op>,
    what: Vec<String>,
    tracked: Vec<Option<PathBuf>>,
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

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn new_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{t:08x}", std::process::id())
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Setup { what, source }
}

const MAX_MOUNTS: usize = 512;

pub(crate) fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    if spec.rootless {
        return Err(SandboxError::NotSupported("rootless sandbox".into()));
    }
    if spec.argv.is_empty() {
        return Err(SandboxError::InvalidSpec("argv is empty".into()));
    }
    if !sys::is_root() {
        return Err(SandboxError::NotSupported(
            "sandbox without root privileges (rootless sandbox)".into(),
        ));
    }
    inner_path(&spec.cwd, "working directory")?;
    // Each mount may add a few status reports, written while we are suspended in clone; stay
    // far below what the status pipe buffers (4096 reports) so the child can never block.
    if spec.mounts.len() > MAX_MOUNTS {
        return Err(SandboxError::InvalidSpec(format!(
            "{} mounts requested, at most {MAX_MOUNTS} are supported",
            spec.mounts.len()
        )));
    }
    for m in &spec.mounts {
        inner_path(m.target(), "mount target")?;
    }
    if spec.hostname.len() > 64 {
        return Err(SandboxError::InvalidSpec(format!(
            "hostname {:?} is longer than 64 bytes",
            spec.hostname
        )));
    }
    Ok(())
}

/// argv[0] as execve candidates: itself when it has a slash, else each PATH entry.
fn exec_candidates(spec: &SandboxSpec) -> Result<Vec<CString>, SandboxError> {
    let argv0 = &spec.argv[0];
    if argv0.contains('/') {
        return Ok(vec![cstr(argv0.as_bytes(), "argv[0]")?]);
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::spec::DEFAULT_PATH);
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| cstr(format!("{d}/{argv0}").as_bytes(), "argv[0]"))
        .collect()
}

impl Sandbox {
    /// Starts the command of `spec` and returns once it runs (setup failures are errors here).
    pub fn spawn(spec: &SandboxSpec, stdin: Stdin) -> Result<Sandbox, SandboxError> {
        validate(spec)?;
        // Compiled once per process; the Arc keeps the instructions alive until the child has
        // installed them (the parent thread is suspended until exec).
        let seccomp = super::seccomp::program(spec.seccomp, spec.capabilities)?;
        let started = Instant::now();
        let id = new_id();
        let state = spec.state_dir.join(&id);
        let mountpoint = state.join("root");
        fs::create_dir_all(&mountpoint).map_err(io_err(format!(
            "failed to create sandbox state dir {}",
            state.display()
        )))?;
        let mut cleanup = Cleanup::default();
        cleanup.state_dir = Some(state.clone());
        // Descriptors the child uses; closed in the parent right after clone.
        let mut keep: Vec<OwnedFd> = Vec::new();

        // The rootfs as a detached mount.
        let rootfs = match &spec.rootfs {
            RootFs::Path(p) => {
                cleanup.stub_root = p.clone();
                sys::open_tree_clone(&cpath(p)?, true)
                    .map_err(io_err(format!("failed to bind rootfs {}", p.display())))?
            }
            RootFs::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => {
                cleanup.stub_root = upperdir.clone();
                if lowerdirs.is_empty() {
                    sys::open_tree_clone(&cpath(upperdir)?, true).map_err(io_err(format!(
                        "failed to bind rootfs {}",
                        upperdir.display()
                    )))?
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
        };

        let mut ops = Ops::default();
        const NOSUID: libc::c_ulong = libc::MS_NOSUID;
        const NODEV: libc::c_ulong = libc::MS_NODEV;
        const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;
        ops.mkdir(Path::new("/proc"), 0o555)?;
        ops.mount("proc", "/proc", NOSUID | NODEV | NOEXEC, None)?;
        ops.mkdir(Path::new("/dev"), 0o755)?;
        ops.mount(
            "tmpfs",
            "/dev",
            NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?;
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let path = format!("/dev/{name}");
            ops.push(
                child::Op::Mknod {
                    path: cstr(path.as_bytes(), "device")?,
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(major, minor),
                },
                format!("failed to create device {path}"),
                None,
            );
        }
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
            ("/dev/core", "/proc/kcore"),
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
        // With a pty, the devpts instance is mounted here (detached) and its first pty opened
        // before the clone, so the command's terminal is /dev/pts/0 of its own /dev/pts.
        let pty = if spec.tty {
            let devpts = sys::devpts_mount_fd().map_err(io_err(
                "failed to mount a devpts instance for the pty".into(),
            ))?;
            let (master, slave) = sys::open_pty_in(devpts.as_fd())
                .map_err(io_err("failed to open a pseudo-terminal".into()))?;
            if let Some(size) = spec.tty_size {
                sys::set_winsize(master.as_fd(), size.rows, size.cols)
                    .map_err(io_err("failed to set the pty's size".into()))?;
            }
            if spec.user.uid != 0 {
                sys::fchown(slave.as_fd(), spec.user.uid, None).map_err(io_err(
                    "failed to hand the pty to the container's user".into(),
                ))?;
            }
            ops.attach(
                &devpts,
                Path::new("/dev/pts"),
                "failed to mount devpts at /dev/pts".into(),
            )?;
            keep.push(devpts);
            let slave =
                sys::above_stdio(slave).map_err(io_err("failed to move the pty's fd".into()))?;
            Some((master, slave))
        } else {
            ops.mount(
                "devpts",
                "/dev/pts",
                NOSUID | NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            )?;
            None
        };
        ops.mkdir(Path::new("/dev/shm"), 0o1777)?;
        ops.mount(
            "tmpfs",
            "/dev/shm",
            NOSUID | NODEV | NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
        ops.mkdir(Path::new("/dev/mqueue"), 0o755)?;
        ops.mount("mqueue", "/dev/mqueue", NOSUID | NODEV | NOEXEC, None)?;
        ops.mkdir(Path::new("/sys"), 0o555)?;
        ops.mount(
            "sysfs",
            "/sys",
            libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
            None,
        )?;

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
                    keep.push(fd);
                }
                Mount::Tmpfs {
                    size,
                    mode,
                    readonly,
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

        // /etc files, unless the caller mounts something there itself.
        let mut etc_targets = Vec::new();
        for (inner, name, content) in etc::files(spec) {
            let target = PathBuf::from(inner);
            if spec.mounts.iter().any(|m| m.target() == target) {
                continue;
            }
            let file = state.join(name);
            fs::write(&file, content)
                .map_err(io_err(format!("failed to write {}", file.display())))?;
            ops.parents(&target)?;
            ops.touch(&target)?;
            let fd = sys::open_tree_clone(&cpath(&file)?, false)
                .map_err(io_err(format!("failed to bind {}", file.display())))?;
            ops.attach(&fd, &target, format!("failed to bind-mount {inner}"))?;
            keep.push(fd);
            etc_targets.push(target);
        }

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

        let cgroups = if spec.cgroup.is_empty() {
            None
        } else {
            Some(Cgroups::create(&id, &spec.cgroup)?)
        };
        let cgroup_procs = match &cgroups {
            Some(c) => c.procs_files()?,
            None => Vec::new(),
        };

        let netns = match &spec.network {
            Network::Namespace(p) => Some(OwnedFd::from(fs::File::open(p).map_err(io_err(
                format!("failed to open network namespace {}", p.display()),
            ))?)),
            _ => None,
        };

        let (out_r, out_w) = sys::pipe().map_err(io_err("failed to create stdout pipe".into()))?;
        let (err_r, err_w) = sys::pipe().map_err(io_err("failed to create stderr pipe".into()))?;
        let (status_r, status_w) =
            sys::pipe().map_err(io_err("failed to create status pipe".into()))?;
        let (stdin_child, stdin_parent) = match (stdin, &pty) {
            (input, Some((master, slave))) => {
                let to = || -> Result<fs::File, SandboxError> {
                    Ok(fs::File::from(master.try_clone().map_err(io_err(
                        "failed to duplicate the pty's master".into(),
                    ))?))
                };
                let feed = match input {
                    Stdin::Null => None,
                    Stdin::Bytes(mut bytes) => {
                        bytes.push(TTY_EOF);
                        Some(StdinFeed {
                            to: to()?,
                            pending: bytes,
                            pos: 0,
                            from: None,
                            tty: true,
                        })
                    }
                    Stdin::Fd(fd) => Some(StdinFeed {
                        to: to()?,
                        pending: Vec::new(),
                        pos: 0,
                        from: Some(fs::File::from(fd)),
                        tty: true,
                    }),
                };
                let slave = slave
                    .try_clone()
                    .map_err(io_err("failed to duplicate the pty's slave".into()))?;
                (slave, feed)
            }
            (Stdin::Null, None) => (
                OwnedFd::from(
                    fs::File::open("/dev/null")
                        .map_err(io_err("failed to open /dev/null".into()))?,
                ),
                None,
            ),
            (Stdin::Bytes(bytes), None) => {
                let (r, w) = sys::pipe().map_err(io_err("failed to create stdin pipe".into()))?;
                let feed = StdinFeed {
                    to: fs::File::from(w),
                    pending: bytes,
                    pos: 0,
                    from: None,
                    tty: false,
                };
                (r, Some(feed))
            }
            (Stdin::Fd(fd), None) => (fd, None),
        };
        let stdin_child =
            sys::above_stdio(stdin_child).map_err(io_err("failed to move stdin fd".into()))?;

        let mut cwd_prefixes = Vec::new();
        let cwd = inner_path(&spec.cwd, "working directory")?;
        let mut prefixes: Vec<&Path> = cwd.ancestors().collect();
        prefixes.reverse();
        for p in prefixes.into_iter().skip(1) {
            cwd_prefixes.push(cpath(p)?);
        }

        let argv_owned = spec
            .argv
            .iter()
            .map(|a| cstr(a.as_bytes(), "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let env_owned = spec
            .env
            .iter()
            .map(|e| cstr(e.as_bytes(), "environment entry"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env_owned.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());

        let plan = child::Plan {
            cgroup_procs: cgroup_procs.iter().map(|f| f.as_raw_fd()).collect(),
            new_cgroup_ns: true,
            netns: netns.as_ref().map(|f| f.as_raw_fd()),
            loopback_up: spec.network == Network::None,
            hostname: Some(cstr(spec.hostname.as_bytes(), "hostname")?),
            mountpoint: cpath(&mountpoint)?,
            rootfs: rootfs.as_raw_fd(),
            ops: std::mem::take(&mut ops.ops),
            readonly_rootfs: spec.readonly_rootfs,
            rlimits: spec
                .rlimits
                .iter()
                .map(|r| {
                    (
                        r.resource.raw(),
                        libc::rlimit {
                            rlim_cur: r.soft,
                            rlim_max: r.hard,
                        },
                    )
                })
                .collect(),
            cwd_prefixes,
            cwd: cpath(&cwd)?,
            uid: spec.user.uid,
            gid: spec.user.gid,
            groups: spec.user.additional_gids.clone(),
            caps: spec.capabilities,
            last_cap: sys::last_cap(),
            no_new_privs: spec.no_new_privs,
            seccomp: seccomp
                .as_ref()
                .map(|p| {
                    p.filters
                        .iter()
                        .map(|f| (f.as_ptr(), f.len() as u16))
                        .collect()
                })
                .unwrap_or_default(),
            stdio: match &pty {
                Some((_, slave)) => [slave.as_raw_fd(); 3],
                None => [
                    stdin_child.as_raw_fd(),
                    out_w.as_raw_fd(),
                    err_w.as_raw_fd(),
                ],
            },
            controlling_tty: pty.is_some(),
            status: status_w.as_raw_fd(),
            exec_candidates: exec_candidates(spec)?,
            argv,
            envp,
            argv_owned,
            env_owned,
        };

        let mut flags =
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
                as u64;
        if spec.network == Network::None {
            flags |= libc::CLONE_NEWNET as u64;
        }
        let spawned = sys::spawn(&plan, flags);
        // The child has its copies; ours must go so EOF on the pipes means "child done".
        drop(status_w);
        drop(out_w);
        drop(err_w);
        drop(stdin_child);
        // Only the command may hold the slave: the master reads EIO once it is gone.
        let pty = pty.map(|(master, _slave)| master);
        drop(keep);
        drop(rootfs);
        drop(netns);
        drop(cgroup_procs);
        let spawned = spawned.map_err(io_err("failed to clone the sandbox process".into()))?;

        // With a pty its master carries all output (as Docker's stdout); the pipes were unused.
        let (stdout, stderr) = match &pty {
            Some(master) => (
                fs::File::from(
                    master
                        .try_clone()
                        .map_err(io_err("failed to duplicate the pty's master".into()))?,
                ),
                None,
            ),
            None => (fs::File::from(out_r), Some(fs::File::from(err_r))),
        };
        let mut sandbox = Sandbox {
            id,
            pid: spawned.pid,
            pidfd: spawned.pidfd,
            stdout: Some(stdout),
            stderr,
            stdin: stdin_parent,
            pty,
            cgroups,
            cleanup,
            started,
            exit: None,
            done: false,
        };

        // Read the child's reports until execve closes the pipe.
        let mut status = fs::File::from(status_r);
        let mut failure = None;
        let mut buf = [0u8; child::REPORT_SIZE];
        loop {
            match status.read_exact(&mut buf) {
                Ok(()) => {
                    let r = child::Report::from_bytes(&buf);
                    if r.kind == child::REPORT_CREATED {
                        if let Some(Some(p)) = ops.tracked.get(r.index as usize) {
                            sandbox.cleanup.created.push(p.clone());
                        }
                    } else if r.kind == child::REPORT_ERROR {
                        failure = Some(r);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if let Some(r) = failure {
            // The child exits right after reporting; reap it and undo everything.
            let _ = sandbox.finish_blocking();
            return Err(describe_failure(spec, &ops.what, &mountpoint, r));
        }

        for fd in [&sandbox.stdout, &sandbox.stderr].into_iter().flatten() {
            sys::set_nonblocking(fd.as_fd(), true)
                .map_err(io_err("failed to make output pipe non-blocking".into()))?;
        }
        if let Some(feed) = &sandbox.stdin {
            sys::set_nonblocking(feed.to.as_fd(), true)
                .map_err(io_err("failed to make stdin pipe non-blocking".into()))?;
        }
        tracing::debug!(id = %sandbox.id, pid = sandbox.pid, "sandbox started");
        Ok(sandbox)
    }

    /// The host pid of the sandbox's pid 1.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The sandbox id (the name of its state dir and cgroups).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The master side of the command's pseudo-terminal (a duplicate), to resize it while
    /// [`Sandbox::wait`] runs; `None` without [`SandboxSpec::tty`].
    pub fn pty(&self) -> Option<PtyMaster> {
        let fd = self.pty.as_ref()?.try_clone().ok()?;
        Some(PtyMaster::from_fd(fd))
    }

    /// The sandbox's cgroup directories on the host (empty without limits).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroups
            .as_ref()
            .map(|c| c.dirs().map(Path::to_path_buf).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to pid 1. SIGKILL ends the whole sandbox: the kernel kills every other
    /// process of a pid namespace when its init dies.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if self.exit.is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal).map_err(io_err(format!(
            "failed to send signal {signal} to sandbox {}",
            self.id
        )))
    }

    /// Streams output to `io` until the command exits, then cleans up. With `cancel`
    /// cancelled, kills the sandbox, cleans up and returns [`SandboxError::Cancelled`].
    pub fn wait(
        mut self,
        io: &mut dyn OutputSink,
        cancel: &CancelToken,
    ) -> Result<ExitInfo, SandboxError> {
        let mut cancelled = false;
        let mut drain_until: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !cancelled && cancel.is_cancelled() {
                cancelled = true;
                self.kill(libc::SIGKILL)?;
            }
            if self.exit.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                break;
            }
            // Order: stdout, stderr, stdin, pidfd, cancel, stdin's source.
            let mut fds = Vec::with_capacity(6);
            let mut kinds = Vec::with_capacity(6);
            if let Some(f) = &self.stdout {
                fds.push((f.as_fd(), false));
                kinds.push(0);
            }
            if let Some(f) = &self.stderr {
                fds.push((f.as_fd(), false));
                kinds.push(1);
            }
            if let Some(feed) = &self.stdin
                && feed.pos < feed.pending.len()
            {
                fds.push((feed.to.as_fd(), true));
                kinds.push(2);
            }
            if self.exit.is_none() {
                fds.push((self.pidfd.as_fd(), false));
                kinds.push(3);
            }
            if !cancelled {
                fds.push((cancel.fd(), false));
                kinds.push(4);
            }
            if let Some(feed) = &self.stdin
                && feed.pos >= feed.pending.len()
                && let Some(from) = &feed.from
            {
                fds.push((from.as_fd(), false));
                kinds.push(5);
            }
            let timeout = match drain_until {
                Some(t) => t.saturating_duration_since(Instant::now()).as_millis() as i32,
                None => -1,
            };
            let ready =
                sys::poll(&fds, timeout).map_err(io_err("failed to poll sandbox".into()))?;
            drop(fds);
            let Some(ready) = ready else {
                // pid 1 exited and its namespace is gone, yet a pipe stays open: some process
                // outside the sandbox holds it. Stop waiting for it.
                tracing::warn!(id = %self.id, "sandbox output still open after exit; not waiting");
                self.stdout = None;
                self.stderr = None;
                continue;
            };
            for (kind, r) in kinds.iter().zip(ready) {
                if !(r.readable || r.writable || r.hangup) {
                    continue;
                }
                match kind {
                    0 | 1 => {
                        let (slot, stream) = if *kind == 0 {
                            (&mut self.stdout, Stream::Stdout)
                        } else {
                            (&mut self.stderr, Stream::Stderr)
                        };
                        if let Some(fd) = slot {
                            match read_some(fd, &mut buf) {
                                Ok(0) => *slot = None,
                                Ok(n) => io.write(stream, &buf[..n]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(_) => *slot = None,
                            }
                        }
                    }
                    2 => self.feed_stdin(),
                    3 => {
                        if let Some(exit) = sys::wait_pidfd(self.pidfd.as_fd(), true)
                            .map_err(io_err("failed to wait for sandbox".into()))?
                        {
                            self.exit = Some((exit, Instant::now()));
                            self.stdin = None;
                            drain_until = Some(Instant::now() + Duration::from_secs(5));
                        }
                    }
                    4 => {
                        cancelled = true;
                        self.kill(libc::SIGKILL)?;
                    }
                    _ => self.read_stdin_source(&mut buf),
                }
            }
        }
        let info = self.finish();
        if cancelled {
            return Err(SandboxError::Cancelled);
        }
        info
    }

    fn feed_stdin(&mut self) {
        let Some(feed) = &mut self.stdin else {
            return;
        };
        if feed.pos >= feed.pending.len() {
            if feed.from.is_none() {
                self.stdin = None;
            }
            return;
        }
        match write_some(&feed.to, &feed.pending[feed.pos..]) {
            Ok(n) => {
                feed.pos += n;
                if feed.pos >= feed.pending.len() {
                    feed.pending.clear();
                    feed.pos = 0;
                    if feed.from.is_none() {
                        // Closing our end is the command's end of file (with a pty, the EOF
                        // character already went in).
                        self.stdin = None;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EPIPE: the command closed its stdin; the rest is not wanted.
            Err(_) => self.stdin = None,
        }
    }

    /// Moves what the caller typed (the source of a pty's input) into the pending buffer.
    fn read_stdin_source(&mut self, buf: &mut [u8]) {
        let Some(feed) = &mut self.stdin else {
            return;
        };
        let Some(from) = &feed.from else {
            return;
        };
        match read_some(from, buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Ok(0) | Err(_) => {
                // The caller's input ended (or broke): the command sees end of file.
                feed.from = None;
                if feed.tty {
                    feed.pending.push(TTY_EOF);
                }
            }
            Ok(n) => feed.pending.extend_from_slice(&buf[..n]),
        }
        if feed.from.is_none() && feed.pending.is_empty() {
            self.stdin = None;
        }
    }

    /// Reaps pid 1 (blocking) and cleans up; used on failure paths and by Drop.
    fn finish_blocking(&mut self) -> Result<ExitInfo, SandboxError> {
        if self.exit.is_none() {
            let exit = sys::wait_pidfd(self.pidfd.as_fd(), false)
                .map_err(io_err("failed to wait for sandbox".into()))?;
            self.exit = exit.map(|e| (e, Instant::now()));
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<ExitInfo, SandboxError> {
        self.done = true;
        self.stdout = None;
        self.stderr = None;
        self.stdin = None;
        let oom_killed = self.cgroups.as_ref().is_some_and(|c| c.oom_killed());
        if let Some(mut c) = self.cgroups.take() {
            let left = c.remove();
            if let Some(dir) = left.first() {
                self.cleanup.run();
                return Err(SandboxError::Cgroup {
                    what: format!("failed to remove cgroup {}", dir.display()),
                    source: io::Error::from_raw_os_error(libc::EBUSY),
                });
            }
        }
        self.cleanup.run();
        let (exit, at) = self.exit.ok_or_else(|| SandboxError::Setup {
            what: "sandbox process vanished without an exit status (this is a bug in kiln)".into(),
            source: io::Error::from_raw_os_error(libc::ECHILD),
        })?;
        Ok(ExitInfo {
            status: match exit {
                sys::Exit::Code(c) => ExitStatus::Code(c),
                sys::Exit::Signal(s) => ExitStatus::Signal(s),
            },
            oom_killed,
            wall_time: at.saturating_duration_since(self.started),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        if let Err(e) = self.finish_blocking() {
            tracing::warn!(id = %self.id, error = %e, "failed to clean up dropped sandbox");
        }
    }
}

fn read_some(mut f: &fs::File, buf: &mut [u8]) -> io::Result<usize> {
    f.read(buf)
}

fn write_some(mut f: &fs::File, data: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    f.write(data)
}

fn describe_failure(
    spec: &SandboxSpec,
    op_what: &[String],
    mountpoint: &Path,
    r: child::Report,
) -> SandboxError {
    use child::Step;
    let source = io::Error::from_raw_os_error(r.errno);
    let Some(step) = Step::from_u32(r.step) else {
        return SandboxError::Setup {
            what: format!(
                "sandbox setup failed at unknown step {} (this is a bug in kiln)",
                r.step
            ),
            source,
        };
    };
    let what = match step {
        Step::Exec => {
            return SandboxError::Exec {
                program: spec.argv[0].clone(),
                source,
            };
        }
        Step::JoinCgroup => "failed to join the sandbox cgroup".to_string(),
        Step::CgroupNs => "failed to create a cgroup namespace".to_string(),
        Step::JoinNetNs => match &spec.network {
            Network::Namespace(p) => format!("failed to join network namespace {}", p.display()),
            _ => "failed to join network namespace".to_string(),
        },
        Step::Loopback => "failed to bring up lo".to_string(),
        Step::Hostname => format!("failed to set hostname {:?}", spec.hostname),
        Step::MakePrivate => "failed to make the sandbox's mounts private".to_string(),
        Step::AttachRootfs => format!("failed to attach the rootfs at {}", mountpoint.display()),
        Step::PivotRoot => format!("failed to pivot_root into {}", mountpoint.display()),
        Step::DetachOldRoot => "failed to detach the old root".to_string(),
        Step::Op => op_what
            .get(r.index as usize)
            .cloned()
            .unwrap_or_else(|| format!("failed at setup op {}", r.index)),
        Step::ReadonlyRootfs => "failed to make the rootfs read-only".to_string(),
        Step::Rlimit => match spec.rlimits.get(r.index as usize) {
            Some(l) => format!("failed to set {}", l.resource.oci_name()),
            None => "failed to set an rlimit".to_string(),
        },
        Step::Cwd => format!("failed to enter working directory {}", spec.cwd.display()),
        Step::DropBounding => format!(
            "failed to drop {} from the bounding set",
            CAPABILITY_NAMES
                .get(r.index as usize)
                .unwrap_or(&"a capability")
        ),
        Step::Setsid => "failed to start a new session".to_string(),
        Step::Groups => format!(
            "failed to set supplementary groups {:?}",
            spec.user.additional_gids
        ),
        Step::Gid => format!("failed to set gid {}", spec.user.gid),
        Step::Uid => format!("failed to set uid {}", spec.user.uid),
        Step::Capabilities => "failed to set capabilities".to_string(),
        Step::NoNewPrivs => "failed to set no_new_privs".to_string(),
        Step::Stdio => "failed to set up stdin, stdout and stderr".to_string(),
        Step::ControllingTty => "failed to make the pty the controlling terminal".to_string(),
        Step::Seccomp => "failed to install the seccomp filter".to_string(),
    };
    SandboxError::Setup { what, source }
}
