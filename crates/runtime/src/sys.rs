//! The runtime's raw system calls: dropping capabilities from a thread's bounding set, which
//! neither `nix` nor `rustix` wraps, taking a controlling terminal before exec, and a SIGWINCH
//! handler (signal handlers are unsafe to install).

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Drops every capability not in `keep` (bit n = capability n) from the calling thread's
/// bounding set, up to `last` (the kernel's highest capability). A process this thread then
/// starts as root gets at most `keep`, as a container's own processes do.
pub(crate) fn drop_bounding_except(keep: u64, last: u32) -> std::io::Result<()> {
    for cap in 0..=last.min(63) {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes two integer arguments and touches no
        // memory of ours; it only changes this thread's credentials.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: the kernel does not know this capability number.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Who an exec'd command runs as: ids, supplementary groups, and whether it may gain
/// privileges (`no-new-privileges`).
pub(crate) struct Credentials {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    pub(crate) no_new_privs: bool,
}

/// A command line and environment ready for execve in a forked child (nothing left to
/// allocate): std's `Command` passes the environment sorted, where Docker keeps the
/// container's order, so the exec'd command is started by [`prepare_exec`] itself.
pub(crate) struct Program {
    /// Full paths to try in order (argv[0] along the environment's PATH).
    candidates: Vec<std::ffi::CString>,
    _argv: Vec<std::ffi::CString>,
    _env: Vec<std::ffi::CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the CStrings the struct owns, which never move (their
// buffers are on the heap) and are only read.
unsafe impl Send for Program {}
// SAFETY: as above; nothing mutates through the pointers.
unsafe impl Sync for Program {}

impl Program {
    pub(crate) fn new(argv: &[String], env: &[String]) -> std::io::Result<Program> {
        use std::ffi::CString;
        let c = |s: &str| {
            CString::new(s).map_err(|_| std::io::Error::other("a NUL byte in the command"))
        };
        let argv_c = argv.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
        let env_c = env.iter().map(|e| c(e)).collect::<Result<Vec<_>, _>>()?;
        let first = argv
            .first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let candidates = if first.contains('/') {
            vec![c(first)?]
        } else {
            let path = env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or(kiln_executor::sandbox::DEFAULT_PATH);
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| c(&format!("{d}/{first}")))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        Ok(Program {
            candidates,
            _argv: argv_c,
            _env: env_c,
            argv_ptrs,
            env_ptrs,
        })
    }
}

/// Prepares the process `cmd` starts as a container's own processes are: an empty signal mask
/// (the caller blocks the signals it forwards, and a mask survives exec), no descriptors but
/// 0, 1 and 2, with `creds` its groups, gid and uid (std's own `uid`/`gid` cannot set
/// supplementary groups), and with `controlling_tty` a new session whose controlling terminal
/// is its stdin (a pty slave), as after a login: `exec -t` needs it for job control and ^C.
pub(crate) fn prepare_exec(
    cmd: &mut std::process::Command,
    controlling_tty: bool,
    creds: Option<Credentials>,
    program: Option<Program>,
) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls on its own stack (and reads `creds`, its own copy),
    // touching no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(c) = &creds {
                // Raw syscalls: the child is single-threaded, and glibc's wrappers would try
                // to synchronise threads that only exist in the parent.
                if libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()) < 0
                    || libc::syscall(libc::SYS_setresgid, c.gid, c.gid, c.gid) < 0
                    || libc::syscall(libc::SYS_setresuid, c.uid, c.uid, c.uid) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if c.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Close-on-exec rather than close: std's own error pipe must work until exec.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if controlling_tty {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(p) = &program {
                // execve along PATH as execvp does, remembering a permission problem; on
                // success this never returns, on failure std reports the error.
                let mut saved = libc::ENOENT;
                for path in &p.candidates {
                    libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.env_ptrs.as_ptr());
                    match *libc::__errno_location() {
                        libc::ENOENT | libc::ENOTDIR => {}
                        libc::EACCES => saved = libc::EACCES,
                        e => {
                            saved = e;
                            break;
                        }
                    }
                }
                return Err(std::io::Error::from_raw_os_error(saved));
            }
            Ok(())
        });
    }
}

/// Where the SIGWINCH handler writes a byte (-1: nowhere).
static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; the byte is a static. A full
        // pipe (EAGAIN) already holds a pending wake-up. errno is saved for the interrupted code.
        unsafe {
            let saved = *libc::__errno_location();
            libc::write(fd, b"w".as_ptr().cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

/// A process-wide SIGWINCH handler that writes a byte to a pipe per signal, whichever thread
/// the kernel picks to run it; read [`WinchHandler::wakeups`]. The previous disposition comes
/// back on drop. One at a time per process (an attached run or exec has one terminal).
pub(crate) struct WinchHandler {
    read: OwnedFd,
    write: OwnedFd,
    previous: nix::sys::signal::SigAction,
}

impl WinchHandler {
    pub(crate) fn install() -> std::io::Result<WinchHandler> {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(
            &write,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        WINCH_PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_winch),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: on_winch only makes async-signal-safe calls.
        let previous = unsafe { sigaction(Signal::SIGWINCH, &action) }.inspect_err(|_| {
            WINCH_PIPE.store(-1, Ordering::SeqCst);
        })?;
        Ok(WinchHandler {
            read,
            write,
            previous,
        })
    }

    /// Readable once per SIGWINCH (and per [`WinchHandler::wake`]).
    pub(crate) fn wakeups(&self) -> std::io::Result<OwnedFd> {
        self.read.try_clone()
    }

    /// A wake-up without a signal (to stop a thread reading [`WinchHandler::wakeups`]).
    pub(crate) fn wake(&self) {
        let _ = nix::unistd::write(&self.write, b"s");
    }
}

impl Drop for WinchHandler {
    fn drop(&mut self) {
        // SAFETY: puts back the disposition that was there before install.
        let _ = unsafe {
            nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGWINCH, &self.previous)
        };
        WINCH_PIPE.store(-1, Ordering::SeqCst);
    }
}
