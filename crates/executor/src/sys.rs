//! Raw syscalls for the sandbox: clone3 into fresh namespaces, the child's setup program that
//! runs between clone and exec, the new mount API (detached mounts), pidfds and eventfds.
//!
//! This is the one module of the crate allowed to use `unsafe` (see `lib.rs`). Everything
//! exported from here is a safe function; the unsafe parts are the syscalls themselves and the
//! child program.

pub(crate) mod child;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// <linux/mount.h>; libc has the syscall numbers but not all of the flags.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn cvt_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        Err(last_err())
    } else {
        // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn cvt(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 { Err(last_err()) } else { Ok(()) }
}

/// Installs seccomp programs on the calling thread only (in order). Needs CAP_SYS_ADMIN in
/// the thread's effective set or no_new_privs; irreversible for the thread and its children.
pub(crate) fn install_seccomp(filters: &[Vec<libc::sock_filter>]) -> io::Result<()> {
    for f in filters {
        let len =
            u16::try_from(f.len()).map_err(|_| io::Error::other("seccomp filter too long"))?;
        let prog = libc::sock_fprog {
            len,
            filter: f.as_ptr().cast_mut(),
        };
        // SAFETY: prog points to `len` instructions that outlive the call; the kernel copies
        // them.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        })?;
    }
    Ok(())
}

/// Makes a detached copy of the mount tree at `path` (a bind mount that is attached nowhere
/// yet). It lives as long as the descriptor, so a failed sandbox start leaves no mount behind.
pub(crate) fn open_tree_clone(path: &CStr, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: path is a valid NUL-terminated string; the call has no memory side effects.
    cvt_fd(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })
}

/// Makes a detached mount (and, with `recursive`, every mount below it) read-only.
pub(crate) fn set_detached_readonly(fd: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    set_detached_attrs(fd, MOUNT_ATTR_RDONLY, recursive)
}

/// Makes device nodes on a detached mount (and, with `recursive`, every mount below it)
/// unusable: a node made with mknod there cannot be opened.
pub(crate) fn set_detached_nodev(fd: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    set_detached_attrs(fd, MOUNT_ATTR_NODEV, recursive)
}

/// Makes a detached mount nosuid, nodev and noexec, and read-only unless `writable`.
pub(crate) fn set_detached_locked(fd: BorrowedFd<'_>, writable: bool) -> io::Result<()> {
    let mut attrs = u64::from(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) | MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    set_detached_attrs(fd, attrs, false)
}

fn set_detached_attrs(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid fd, empty path string, attr points to a live struct of the given size.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// Creates a detached overlay mount from `lowerdirs` (top-most first) plus an upper and work
/// dir, one `lowerdir+` per layer so deep chains do not hit the one-page option limit.
/// On failure returns which parameter failed and the kernel's log message, if any.
pub(crate) fn overlay_mount_fd(
    lowerdirs: &[CString],
    upperdir: &CStr,
    workdir: &CStr,
) -> Result<OwnedFd, (String, io::Error)> {
    // SAFETY: constant string argument.
    let fs =
        cvt_fd(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })
            .map_err(|e| ("fsopen".to_string(), e))?;
    let set = |key: &CStr, value: &CStr| -> io::Result<()> {
        // SAFETY: valid fd and NUL-terminated strings.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })
    };
    let with_log = |what: String, e: io::Error| {
        let log = read_fs_log(&fs);
        if log.is_empty() {
            (what, e)
        } else {
            (what, io::Error::new(e.kind(), format!("{e} ({log})")))
        }
    };
    for lower in lowerdirs {
        set(c"lowerdir+", lower)
            .map_err(|e| with_log(format!("lower dir {}", lower.to_string_lossy()), e))?;
    }
    set(c"upperdir", upperdir)
        .map_err(|e| with_log(format!("upper dir {}", upperdir.to_string_lossy()), e))?;
    set(c"workdir", workdir)
        .map_err(|e| with_log(format!("work dir {}", workdir.to_string_lossy()), e))?;
    // Layer diffs read the upper dir as a self-contained record of changes, which redirected
    // directories and metacopy-only files would break; kernels that do not know the options
    // cannot have them on, so a refusal is fine.
    for key in [c"redirect_dir", c"metacopy"] {
        if set(key, c"off").is_err() {
            let _ = read_fs_log(&fs);
        }
    }
    // SAFETY: valid fd; null key/value as FSCONFIG_CMD_CREATE requires.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map_err(|e| with_log("create".to_string(), e))?;
    // nodev: a device node in the rootfs (from mknod, or from a layer) cannot be opened;
    // the container's devices are bind mounts in /dev.
    // SAFETY: valid fs context fd.
    cvt_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NODEV,
        )
    })
    .map_err(|e| with_log("fsmount".to_string(), e))
}

/// Drains the messages the kernel queued on a filesystem context.
fn read_fs_log(fs: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 512];
    // Each read returns one message and ENODATA once the queue is empty, so this cannot hang.
    for _ in 0..8 {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim());
    }
    out
}

/// A pipe whose both ends are close-on-exec and numbered 3 or above, so the child can dup2
/// them onto 0, 1 and 2 without clobbering one another.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(last_err());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Returns `fd` itself when it is 3 or above, else a close-on-exec duplicate that is.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd.
    cvt_fd(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) } as libc::c_long)
}

/// Sets or clears O_NONBLOCK.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(last_err());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } as libc::c_long)
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    cvt_fd(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } as libc::c_long)
}

/// Adds one to an eventfd's counter, waking whoever polls it.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) is already "signalled".
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Sends `signal` to the process behind `pidfd`; a process that already exited is not an error.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: valid pidfd, null siginfo, no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match cvt(ret) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// How a child ended, from waitid(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
}

/// Reaps the child behind `pidfd`; `None` with `nohang` when it is still running.
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<Exit>> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let mut options = libc::WEXITED;
        if nohang {
            options |= libc::WNOHANG;
        }
        // SAFETY: info is a live siginfo_t; P_PIDFD with a valid pidfd.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                options,
            )
        };
        if ret < 0 {
            let e = last_err();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed with WNOHANG).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Exit::Code(status),
            _ => Exit::Signal(status),
        }));
    }
}

/// The result of poll(2) on one descriptor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
}

/// Polls `fds` (each with whether to wait for writability instead of readability) and
/// returns readiness per descriptor, or `None` on timeout. EINTR counts as "nothing ready".
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, bool)],
    timeout_ms: i32,
) -> io::Result<Option<Vec<Ready>>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, write)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: if *write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a live array of pfds.len() pollfd structs.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = last_err();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Some(vec![Ready::default(); fds.len()]));
        }
        return Err(e);
    }
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        pfds.iter()
            .map(|p| Ready {
                readable: p.revents & (libc::POLLIN | libc::POLLERR) != 0,
                writable: p.revents & (libc::POLLOUT | libc::POLLERR) != 0,
                hangup: p.revents & (libc::POLLHUP | libc::POLLNVAL) != 0,
            })
            .collect(),
    ))
}

/// A child started by [`spawn`]: its pid in our namespace and a pidfd for it.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Stack size for the child between clone and execve; setup uses a few KiB at most.
const CHILD_STACK: usize = 256 * 1024;

extern "C" fn child_entry(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a pointer to a Plan that outlives the child's pre-exec life
    // (the parent is suspended by CLONE_VFORK until the child execs or exits, or, for an
    // init, the child has its own copy of the parent's memory).
    unsafe { child::run(&*(plan as *const child::Plan)) }
}

/// Starts the sandbox's first process in the namespaces of `clone_flags`.
///
/// Like posix_spawn, the child shares our memory (CLONE_VM) on a stack of its own and we stay
/// suspended until it execs or exits (CLONE_VFORK): no page tables are copied, so the cost
/// does not grow with the caller's memory, and the plan cannot change under the child. The
/// child runs [`child::run`], which never returns: it execs the command or reports why not
/// on the plan's status pipe and exits. It must not allocate or take locks (see `child`).
///
/// A plan with an init (`plan.init`) is different: its first process never execs, so it gets
/// a copy of our memory instead (no CLONE_VM, no CLONE_VFORK: a fork on its own stack) and we
/// return at once; the status pipe then tells when the command has exec'd.
pub(crate) fn spawn(plan: &child::Plan, clone_flags: u64) -> io::Result<Spawned> {
    let mut stack = vec![0u8; CHILD_STACK];
    // Stacks grow down on every architecture we build for; keep 16-byte alignment.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    let mut pidfd: libc::c_int = -1;
    let mut flags = clone_flags as libc::c_int | libc::CLONE_PIDFD | libc::SIGCHLD;
    if plan.init.is_none() {
        flags |= libc::CLONE_VM | libc::CLONE_VFORK;
    }
    // SAFETY: the stack stays alive until clone returns, which with CLONE_VFORK is after the
    // child has exec'd or exited (without CLONE_VM the child runs on its own copy of it); the
    // plan pointer likewise. CLONE_PIDFD stores the pidfd through the parent_tid argument.
    let ret = unsafe {
        libc::clone(
            child_entry,
            top as *mut libc::c_void,
            flags,
            plan as *const child::Plan as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    drop(stack);
    if ret < 0 {
        return Err(last_err());
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Spawned { pid: ret, pidfd })
}

/// Where this process's argument and environment strings are (`/proc/self/stat` fields 48
/// to 51): `((arg_start, arg_end), (env_start, env_end))`.
pub(crate) fn args_and_env_areas() -> Option<((usize, usize), (usize, usize))> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start with field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| ((f[0], f[1]), (f[2], f[3])))
}

/// Runs `f` with the calling thread's new children born in the pid namespace `ns` (setns of
/// `CLONE_NEWPID` changes only where children go), and puts it back afterwards.
pub(crate) fn with_child_pid_namespace<T>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let own = std::fs::File::open("/proc/thread-self/ns/pid")?;
    // SAFETY: setns on valid namespace descriptors.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } as libc::c_long)?;
    let result = f();
    // SAFETY: as above; our own (active) namespace is always a valid target.
    let back = cvt(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) } as libc::c_long);
    match (result, back) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// A detached copy (as [`open_tree_clone`]) of the mount tree at `path` as seen from the
/// mount namespace `ns` (another sandbox's): made on a throwaway thread that unshares its
/// filesystem attributes and joins that namespace, since a mount can only be cloned from the
/// namespace it belongs to.
pub(crate) fn open_tree_in(ns: &std::path::Path, path: &CStr) -> io::Result<OwnedFd> {
    let ns = std::fs::File::open(ns)?;
    let path = path.to_owned();
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<OwnedFd> {
            // SAFETY: plain syscalls affecting only this thread.
            cvt(unsafe { libc::unshare(libc::CLONE_FS) } as libc::c_long)?;
            // SAFETY: as above, on a valid namespace descriptor.
            cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } as libc::c_long)?;
            open_tree_clone(&path, true)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the mount thread panicked")))
    })
}

/// Reads the highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Whether the current process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Attaches a detached mount (from [`open_tree_clone`] or [`overlay_mount_fd`]) at `target`
/// in the caller's mount namespace.
#[cfg(feature = "runc")]
pub(crate) fn attach_mount(fd: BorrowedFd<'_>, target: &CStr) -> io::Result<()> {
    // SAFETY: valid fd, empty and NUL-terminated path strings.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
}

/// Lazily unmounts `target` (MNT_DETACH), so a lingering open file cannot keep it mounted.
#[cfg(feature = "runc")]
pub(crate) fn unmount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated path.
    cvt(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } as libc::c_long)
}

/// A pidfd for an existing child process.
#[cfg(feature = "runc")]
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the kernel returns a new close-on-exec descriptor.
    cvt_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })
}

/// A detached mount of a fresh devpts instance (its own pty numbering, starting at 0) with
/// Docker's options, for a sandbox that gets a pseudo-terminal: the caller opens the pty in it
/// before the sandbox starts and the sandbox attaches it at `/dev/pts`.
pub(crate) fn devpts_mount_fd() -> io::Result<OwnedFd> {
    // SAFETY: constant string argument.
    let fs =
        cvt_fd(unsafe { libc::syscall(libc::SYS_fsopen, c"devpts".as_ptr(), FSOPEN_CLOEXEC) })?;
    let set = |cmd: libc::c_uint, key: &CStr, value: Option<&CStr>| -> io::Result<()> {
        // SAFETY: valid fd and NUL-terminated strings (or null for a flag).
        cvt(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        })
    };
    // Every devpts mount is a new instance on current kernels; the flag documents intent and
    // is accepted for compatibility.
    let _ = set(FSCONFIG_SET_FLAG, c"newinstance", None);
    set(FSCONFIG_SET_STRING, c"ptmxmode", Some(c"0666"))?;
    set(FSCONFIG_SET_STRING, c"mode", Some(c"0620"))?;
    set(FSCONFIG_SET_STRING, c"gid", Some(c"5"))?;
    // SAFETY: valid fd; null key/value as FSCONFIG_CMD_CREATE requires.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: valid fs context fd.
    cvt_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        )
    })
}

/// Opens a new pseudo-terminal in the devpts mount `devpts`: (master, slave), both
/// close-on-exec and neither becoming this process's controlling terminal.
pub(crate) fn open_pty_in(devpts: BorrowedFd<'_>) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: valid directory fd and NUL-terminated relative path.
    let master = cvt_fd(unsafe {
        libc::openat(
            devpts.as_raw_fd(),
            c"ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    } as libc::c_long)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a live local.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } as libc::c_long)?;
    // TIOCGPTPEER opens the slave through the master, so no path lookup can pick another
    // instance's pts/N.
    // SAFETY: TIOCGPTPEER takes the open flags by value.
    let slave = cvt_fd(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    } as libc::c_long)?;
    Ok((master, slave))
}

/// Sets a terminal's window size (rows, columns); its foreground process group gets SIGWINCH.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } as libc::c_long)
}

/// A terminal's window size (rows, columns); `None` when `fd` is not a terminal.
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Changes the owner of an open file (here: a pty slave, so the container's user owns its
/// terminal as after a login).
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: Option<u32>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd; -1 leaves the group as it is.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid.unwrap_or(u32::MAX)) } as libc::c_long)
}
