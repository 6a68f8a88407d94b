//! The sandbox's init (`SandboxSpec::init`, Docker's `--init`): the first process forks the
//! command and stays as its parent, reaping every process orphaned into it and forwarding
//! the signals it gets to the command, then exits with the command's status.
//!
//! Why here and not a binary: Docker bind-mounts a static `docker-init` (tini) into the
//! container. kiln is one dynamically linked binary whose loader and libc are the host's, not
//! the container's, so it cannot be executed inside; a mode of the sandbox's own child needs
//! no file in the container at all. The price is that the init is a copy of the kiln process
//! (the sandbox is cloned without `CLONE_VM` in this mode, so it has its own memory): it must
//! keep to the child's rules (raw syscalls, no allocation), and it hides what it inherited —
//! its command line and environment are overwritten in its copy (so `/proc/1/cmdline` reads
//! `kiln-init -- COMMAND`, never kiln's arguments), it is made non-dumpable (so neither its
//! memory nor `/proc/1/environ` can be read from inside without `CAP_SYS_PTRACE`), and every
//! descriptor it inherited is closed.

use libc::c_int;

use super::{Fail, InitPlan, Never, Plan, Step, check, errno, exec, install_seccomp};

/// Signals a process raises against itself; forwarding them would be wrong.
const SYNCHRONOUS: [c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Forks the command, then serves as init until it exits. Returns only with a failure before
/// the fork.
///
/// # Safety
/// Only in the sandbox child of a spawn without `CLONE_VM` (its memory is its own).
pub(super) unsafe fn run_init(plan: &Plan, init: &InitPlan) -> Result<Never, Fail> {
    // SAFETY (whole function): raw syscalls on the plan's descriptors and on memory that is
    // this process's private copy.
    unsafe {
        // Every signal waits for sigtimedwait from here on; the command resets its mask
        // before exec. A blocked signal is delivered even to a pid namespace's init (the
        // kernel drops only signals init neither handles nor blocks).
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        check(
            libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) as _,
            Step::Init,
            0,
        )?;
        // Orphans come here even when this is not pid 1 of its namespace (`--pid host`).
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        check(child, Step::Init, 1)?;
        if child == 0 {
            // The command leads a session of its own, so a pty can become its terminal.
            check(libc::setsid() as _, Step::Setsid, 1)?;
            return exec(plan);
        }
        let child = child as libc::pid_t;
        if plan.no_new_privs {
            // The command installs the filter right before exec; the init joins it.
            install_seccomp(plan)?;
        }
        hide(init);
        // Nothing the caller had open may stay in the container (the status pipe included:
        // the command's copy reports an exec failure, and its close means success).
        libc::close_range(0, c_int::MAX as libc::c_uint, 0);
        serve(child, &all)
    }
}

/// Overwrites the inherited command line and environment in this process's copy of them and
/// makes it non-dumpable.
unsafe fn hide(init: &InitPlan) {
    // SAFETY: the ranges are this process's argument and environment areas (from
    // /proc/self/stat), private to it after the fork; writes stay inside them.
    unsafe {
        let (start, end) = init.args;
        if end > start + 1 {
            let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
            // setproctitle's convention: the title, a NUL, and a non-NUL last byte, which
            // makes the kernel show the title up to its NUL rather than the whole area.
            let n = init.title.len().min(area.len() - 2);
            area[..n].copy_from_slice(&init.title[..n]);
            area[n] = 0;
            for b in &mut area[n + 1..] {
                *b = b' ';
            }
        }
        let (start, end) = init.env;
        if end > start {
            std::ptr::write_bytes(start as *mut u8, 0, end - start);
        }
        libc::prctl(libc::PR_SET_NAME, c"kiln-init".as_ptr(), 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// The init loop: takes signals one at a time; SIGCHLD reaps every exited child, anything
/// else goes to the command. Exits with the command's status (128 + signal when killed).
unsafe fn serve(child: libc::pid_t, all: &libc::sigset_t) -> ! {
    // SAFETY (whole function): raw syscalls with live locals.
    unsafe {
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            // The kernel's sigset is 8 bytes on every architecture we build for.
            let sig = libc::syscall(
                libc::SYS_rt_sigtimedwait,
                all as *const libc::sigset_t,
                &mut info as *mut libc::siginfo_t,
                std::ptr::null::<libc::timespec>(),
                8usize,
            ) as c_int;
            if sig < 0 {
                if errno() == libc::EINTR || errno() == libc::EAGAIN {
                    continue;
                }
                libc::_exit(126);
            }
            if sig != libc::SIGCHLD {
                if !SYNCHRONOUS.contains(&sig) {
                    libc::kill(child, sig);
                }
                continue;
            }
            let mut exited = None;
            loop {
                let mut status: c_int = 0;
                let pid = libc::wait4(-1, &mut status, libc::WNOHANG, std::ptr::null_mut());
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    exited = Some(status);
                }
            }
            if let Some(status) = exited {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                libc::_exit(code);
            }
        }
    }
}
