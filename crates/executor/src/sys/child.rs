//! The sandbox's first process between clone3 and execve: join cgroups, enter the network,
//! mount the rootfs, pivot_root, build /proc, /dev and /sys, drop privileges, exec.
//!
//! The child shares the parent's memory (CLONE_VM, like posix_spawn) while the calling thread
//! is suspended (CLONE_VFORK); the parent's other threads (tokio, the test harness) keep
//! running and may hold the allocator's or glibc's locks at any moment. So nothing in this
//! file allocates, formats, panics or calls a glibc function that takes a lock or talks to
//! other threads (setuid and friends are raw syscalls for that reason: glibc's wrappers signal
//! every thread of the process). The parent prepares every string and descriptor in a
//! [`Plan`]; the child only issues syscalls (writing nothing but its own stack and the
//! suspended thread's errno) and, on failure, writes a fixed-size [`Report`] to the status
//! pipe before exiting.

use std::ffi::CString;
use std::os::fd::RawFd;

use libc::{c_char, c_int, c_ulong};

mod init;
use init::run_init;

/// Report kinds written to the status pipe.
pub(crate) const REPORT_ERROR: u32 = 1;
pub(crate) const REPORT_CREATED: u32 = 2;

/// Steps of the child program, for error reports; `STEP_OP` carries the op's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    JoinCgroup = 1,
    CgroupNs,
    JoinNetNs,
    Loopback,
    Hostname,
    MakePrivate,
    AttachRootfs,
    PivotRoot,
    DetachOldRoot,
    Op,
    ReadonlyRootfs,
    Rlimit,
    Cwd,
    DropBounding,
    Setsid,
    Groups,
    Gid,
    Uid,
    Capabilities,
    NoNewPrivs,
    Stdio,
    Exec,
    ControllingTty,
    Seccomp,
    JoinNs,
    Init,
}

impl Step {
    pub(crate) fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        const ALL: [Step; 26] = [
            JoinCgroup,
            CgroupNs,
            JoinNetNs,
            Loopback,
            Hostname,
            MakePrivate,
            AttachRootfs,
            PivotRoot,
            DetachOldRoot,
            Op,
            ReadonlyRootfs,
            Rlimit,
            Cwd,
            DropBounding,
            Setsid,
            Groups,
            Gid,
            Uid,
            Capabilities,
            NoNewPrivs,
            Stdio,
            Exec,
            ControllingTty,
            Seccomp,
            JoinNs,
            Init,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }
}

/// One fixed-size record on the status pipe (well under PIPE_BUF, so writes are atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Report {
    pub kind: u32,
    pub step: u32,
    pub index: u32,
    pub errno: i32,
}

pub(crate) const REPORT_SIZE: usize = std::mem::size_of::<Report>();

impl Report {
    pub(crate) fn from_bytes(b: &[u8; REPORT_SIZE]) -> Report {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Report {
            kind: u32::from_ne_bytes(word(0)),
            step: u32::from_ne_bytes(word(4)),
            index: u32::from_ne_bytes(word(8)),
            errno: i32::from_ne_bytes(word(12)),
        }
    }
}

/// One setup action inside the new root (after pivot_root), in order.
#[derive(Debug)]
pub(crate) enum Op {
    /// mkdir unless it exists; reports `REPORT_CREATED` when it made it.
    Mkdir { path: CString, mode: u32 },
    /// Creates an empty regular file unless something exists there; reports when it made it.
    Touch { path: CString, mode: u32 },
    /// mount(2).
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Attaches a detached mount (from open_tree or fsmount) at `target`.
    Attach { fd: RawFd, target: CString },
    /// symlink(2): `link` pointing at `target`.
    Symlink { target: CString, link: CString },
    /// Hides a path: a read-only tmpfs over a directory, /dev/null over anything else.
    /// Missing paths are skipped.
    Mask { path: CString },
    /// Bind-mounts a path onto itself read-only (recursively). Missing paths are skipped.
    ReadOnly { path: CString },
    /// Writes `data` to an existing file (a `/proc/sys` entry).
    Write { path: CString, data: CString },
}

/// Everything the child needs, prepared by the parent before clone.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `cgroup.procs` files opened for writing; the child writes "0" (itself) to each.
    pub cgroup_procs: Vec<RawFd>,
    pub new_cgroup_ns: bool,
    /// Namespaces to join with setns (descriptor, CLONE_NEW* type): another sandbox's IPC
    /// namespace.
    pub join_ns: Vec<(RawFd, c_int)>,
    /// A network namespace to join with setns.
    pub netns: Option<RawFd>,
    /// Bring `lo` up (a fresh network namespace starts with it down).
    pub loopback_up: bool,
    pub hostname: Option<CString>,
    /// A directory (in the host's tree) to attach the rootfs on before pivot_root.
    pub mountpoint: CString,
    /// The detached rootfs mount.
    pub rootfs: RawFd,
    pub ops: Vec<Op>,
    pub readonly_rootfs: bool,
    pub rlimits: Vec<(c_int, libc::rlimit)>,
    /// Every prefix of the working directory, shortest first, created if missing.
    pub cwd_prefixes: Vec<CString>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// Capabilities to keep in the bounding, effective and permitted sets.
    pub caps: u64,
    pub last_cap: u32,
    pub no_new_privs: bool,
    /// BPF programs to install with seccomp(2), in order; empty for no filter.
    pub seccomp: Vec<(*const libc::sock_filter, u16)>,
    /// Descriptors to become 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Make stdin (a pty slave) the controlling terminal of the new session.
    pub controlling_tty: bool,
    pub status: RawFd,
    /// Full paths to try execve on, in order (argv[0] resolved through PATH).
    pub exec_candidates: Vec<CString>,
    /// Run as the init of the sandbox (see [`InitPlan`]); the command becomes its child.
    pub init: Option<InitPlan>,
    /// NULL-terminated pointer arrays into `argv_owned` / `env_owned`.
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    // Owners of the strings `argv` and `envp` point into; never read, only kept alive.
    #[allow(dead_code)]
    pub argv_owned: Vec<CString>,
    #[allow(dead_code)]
    pub env_owned: Vec<CString>,
}

/// What the init needs besides the plan: where this process's own command line and
/// environment live in its memory (read by the parent from `/proc/self/stat`), to overwrite
/// them in the init's private copy, and the title to show instead.
#[derive(Debug)]
pub(crate) struct InitPlan {
    /// `[start, end)` of the argument strings.
    pub args: (usize, usize),
    /// `[start, end)` of the environment strings.
    pub env: (usize, usize),
    /// What `/proc/1/cmdline` shows inside: `kiln-init -- COMMAND ...`.
    pub title: Vec<u8>,
}

struct Fail {
    step: Step,
    index: u32,
    errno: i32,
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn check(ret: libc::c_long, step: Step, index: u32) -> Result<(), Fail> {
    if ret < 0 {
        Err(Fail {
            step,
            index,
            errno: errno(),
        })
    } else {
        Ok(())
    }
}

fn report(fd: RawFd, kind: u32, step: u32, index: u32, err: i32) {
    let r = Report {
        kind,
        step,
        index,
        errno: err,
    };
    // SAFETY: writes REPORT_SIZE bytes from a live repr(C) struct. A failed write only means
    // the parent is gone; there is nobody left to tell.
    unsafe {
        libc::write(fd, (&r as *const Report).cast(), REPORT_SIZE);
    }
}

/// Runs the plan and execs; never returns.
///
/// # Safety
/// Must only be called in a child created by `sys::spawn` (CLONE_VM|CLONE_VFORK), while the
/// parent thread that owns `plan` is suspended.
pub(crate) unsafe fn run(plan: &Plan) -> ! {
    // SAFETY: contract of this function.
    let Err(Fail { step, index, errno }) = unsafe { setup(plan) };
    report(plan.status, REPORT_ERROR, step as u32, index, errno);
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing, which
    // belong to the parent.
    unsafe { libc::_exit(127) }
}

enum Never {}

/// The child's steps in the order of docs/dev/sandbox.md (7 to 15), each phase returning at
/// its first failure.
unsafe fn setup(plan: &Plan) -> Result<Never, Fail> {
    // SAFETY (whole function): the contract of `run`; each phase issues raw syscalls on
    // descriptors and strings owned by the plan.
    unsafe {
        // Explicit modes everywhere during setup; the command gets Docker's 022 later.
        libc::umask(0);
        join(plan)?;
        enter_rootfs(plan)?;
        for (i, op) in plan.ops.iter().enumerate() {
            run_op(plan, i as u32, op)?;
        }
        finish_rootfs(plan)?;
        drop_privileges(plan)?;
        match &plan.init {
            Some(init) => run_init(plan, init),
            None => exec(plan),
        }
    }
}

/// Step 7: the cgroups, a cgroup namespace, the network, the hostname.
unsafe fn join(plan: &Plan) -> Result<(), Fail> {
    // SAFETY (whole function): raw syscalls on descriptors and strings owned by the plan.
    unsafe {
        // Cgroups first, before the cgroup namespace, so the namespace's root is the
        // sandbox's own cgroup and /proc/self/cgroup inside reads "/".
        for &fd in &plan.cgroup_procs {
            let ret = libc::write(fd, b"0".as_ptr().cast(), 1);
            check(ret as libc::c_long, Step::JoinCgroup, 0)?;
        }
        if plan.new_cgroup_ns {
            check(libc::unshare(libc::CLONE_NEWCGROUP) as _, Step::CgroupNs, 0)?;
        }
        for (i, &(fd, kind)) in plan.join_ns.iter().enumerate() {
            check(libc::setns(fd, kind) as _, Step::JoinNs, i as u32)?;
        }
        if let Some(fd) = plan.netns {
            check(libc::setns(fd, libc::CLONE_NEWNET) as _, Step::JoinNetNs, 0)?;
        }
        if plan.loopback_up {
            loopback_up()?;
        }
        if let Some(name) = &plan.hostname {
            check(
                libc::sethostname(name.as_ptr(), name.as_bytes().len()) as _,
                Step::Hostname,
                0,
            )?;
        }
        Ok(())
    }
}

/// Step 8: the rootfs becomes `/` and every host mount leaves the namespace.
unsafe fn enter_rootfs(plan: &Plan) -> Result<(), Fail> {
    // SAFETY (whole function): raw syscalls on descriptors and strings owned by the plan.
    unsafe {
        // Our copy of the host's mounts must not propagate anything back to the host.
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) as _,
            Step::MakePrivate,
            0,
        )?;
        check(
            libc::syscall(
                libc::SYS_move_mount,
                plan.rootfs,
                c"".as_ptr(),
                libc::AT_FDCWD,
                plan.mountpoint.as_ptr(),
                super::MOVE_MOUNT_F_EMPTY_PATH,
            ),
            Step::AttachRootfs,
            0,
        )?;
        // pivot_root(".", ".") stacks the old root on top of the new one at "/"; detaching
        // "." then drops every host mount from this namespace in one go, and no directory
        // for the old root is needed inside the rootfs.
        check(
            libc::chdir(plan.mountpoint.as_ptr()) as _,
            Step::PivotRoot,
            0,
        )?;
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
            Step::PivotRoot,
            0,
        )?;
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH) as _,
            Step::DetachOldRoot,
            0,
        )?;
        check(libc::chdir(c"/".as_ptr()) as _, Step::DetachOldRoot, 0)?;
        Ok(())
    }
}

/// Steps 12 and 13: a read-only rootfs if asked, rlimits, the working directory.
unsafe fn finish_rootfs(plan: &Plan) -> Result<(), Fail> {
    // SAFETY (whole function): raw syscalls on descriptors and strings owned by the plan.
    unsafe {
        if plan.readonly_rootfs {
            let attr = super::MountAttr {
                attr_set: super::MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check(
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c"/".as_ptr(),
                    0,
                    &attr as *const super::MountAttr,
                    std::mem::size_of::<super::MountAttr>(),
                ),
                Step::ReadonlyRootfs,
                0,
            )?;
        }

        for (i, (resource, limit)) in plan.rlimits.iter().enumerate() {
            check(
                libc::setrlimit(*resource as _, limit) as _,
                Step::Rlimit,
                i as u32,
            )?;
        }

        // Like BuildKit, a missing working directory is created (and kept in the snapshot).
        for prefix in &plan.cwd_prefixes {
            if libc::mkdir(prefix.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                return Err(Fail {
                    step: Step::Cwd,
                    index: 0,
                    errno: errno(),
                });
            }
        }
        check(libc::chdir(plan.cwd.as_ptr()) as _, Step::Cwd, 0)?;
        Ok(())
    }
}

/// Step 14: the bounding set, a new session, groups, gid, uid, capabilities, no_new_privs;
/// the seccomp filter goes in before setresuid (or, with no_new_privs, last thing in `exec`).
unsafe fn drop_privileges(plan: &Plan) -> Result<(), Fail> {
    // SAFETY (whole function): raw syscalls on descriptors and strings owned by the plan.
    unsafe {
        // The bounding set caps what any later execve can gain; dropping needs CAP_SETPCAP,
        // which we still have as root.
        for cap in 0..=plan.last_cap {
            if cap < 64 && plan.caps & (1u64 << cap) == 0 {
                let ret = libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0);
                // EINVAL: a capability this kernel does not know; nothing to drop.
                if ret < 0 && errno() != libc::EINVAL {
                    return Err(Fail {
                        step: Step::DropBounding,
                        index: cap,
                        errno: errno(),
                    });
                }
            }
        }
        check(libc::setsid() as _, Step::Setsid, 0)?;

        // Raw syscalls: glibc's wrappers would try to synchronise threads that only exist in
        // the parent. The order (groups, gid, uid) keeps the right to change each.
        check(
            libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr()),
            Step::Groups,
            0,
        )?;
        check(
            libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid),
            Step::Gid,
            0,
        )?;
        // Installing a filter needs no_new_privs or CAP_SYS_ADMIN. Without no_new_privs (the
        // default, so setuid binaries keep working) this is the last moment we hold
        // CAP_SYS_ADMIN: setresuid to a non-root user and capset take it away. Everything the
        // child does from here on (setresuid, capget/capset, prctl, dup3, ioctl, close_range,
        // umask, rt_sigprocmask, rt_sigaction, execve, write and exit_group for a report) is
        // on the allowlist. With no_new_privs it goes right before execve instead, as runc does.
        if !plan.no_new_privs {
            install_seccomp(plan)?;
        }
        check(
            libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid),
            Step::Uid,
            0,
        )?;
        set_capabilities(plan.caps)?;
        if plan.no_new_privs {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _,
                Step::NoNewPrivs,
                0,
            )?;
        }
        Ok(())
    }
}

/// Step 15: stdio, the controlling terminal, no leaked descriptors, umask and signals as a
/// fresh process has them, then execve along PATH. Returns only with the failure.
unsafe fn exec(plan: &Plan) -> Result<Never, Fail> {
    // SAFETY (whole function): raw syscalls on descriptors and strings owned by the plan.
    unsafe {
        for (target, &fd) in plan.stdio.iter().enumerate() {
            // dup3 clears close-on-exec on the copy, which is what we want for 0, 1 and 2.
            check(
                libc::dup3(fd, target as c_int, 0) as _,
                Step::Stdio,
                target as u32,
            )?;
        }
        if plan.controlling_tty {
            // After setsid the process leads a session without a terminal, so it may take one.
            check(
                libc::ioctl(0, libc::TIOCSCTTY, 0) as _,
                Step::ControllingTty,
                0,
            )?;
        }
        // Whatever else the parent had open (the test harness, tokio) must not leak into the
        // sandbox; CLOEXEC rather than close so the status pipe still works until execve.
        libc::close_range(
            3,
            c_int::MAX as libc::c_uint,
            libc::CLOSE_RANGE_CLOEXEC as c_int,
        );

        libc::umask(0o022);
        // Signal dispositions and the mask are inherited across execve; the parent (Rust's
        // runtime ignores SIGPIPE, tokio blocks some) must not decide them for the command.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }

        if plan.no_new_privs {
            install_seccomp(plan)?;
        }

        let mut saved = libc::ENOENT;
        for path in &plan.exec_candidates {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            match errno() {
                // Keep looking along PATH, as execvp does, remembering a permission problem.
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => saved = libc::EACCES,
                e => {
                    saved = e;
                    break;
                }
            }
        }
        Err(Fail {
            step: Step::Exec,
            index: 0,
            errno: saved,
        })
    }
}

unsafe fn run_op(plan: &Plan, i: u32, op: &Op) -> Result<(), Fail> {
    let fail = |e: i32| Fail {
        step: Step::Op,
        index: i,
        errno: e,
    };
    // SAFETY (whole function): raw syscalls on plan-owned strings and descriptors.
    unsafe {
        match op {
            Op::Mkdir { path, mode } => {
                if libc::mkdir(path.as_ptr(), *mode) == 0 {
                    report(plan.status, REPORT_CREATED, Step::Op as u32, i, 0);
                } else if errno() != libc::EEXIST {
                    return Err(fail(errno()));
                }
            }
            Op::Touch { path, mode } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    *mode,
                );
                if fd >= 0 {
                    libc::close(fd);
                    report(plan.status, REPORT_CREATED, Step::Op as u32, i, 0);
                } else if errno() != libc::EEXIST {
                    return Err(fail(errno()));
                }
            }
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let data_ptr = data
                    .as_ref()
                    .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
                if libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    *flags,
                    data_ptr,
                ) < 0
                {
                    return Err(fail(errno()));
                }
            }
            Op::Attach { fd, target } => {
                if libc::syscall(
                    libc::SYS_move_mount,
                    *fd,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    super::MOVE_MOUNT_F_EMPTY_PATH,
                ) < 0
                {
                    return Err(fail(errno()));
                }
            }
            Op::Symlink { target, link } => {
                if libc::symlink(target.as_ptr(), link.as_ptr()) < 0 && errno() != libc::EEXIST {
                    return Err(fail(errno()));
                }
            }
            Op::Mask { path } => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::stat(path.as_ptr(), &mut st) < 0 {
                    return match errno() {
                        libc::ENOENT | libc::ENOTDIR => Ok(()),
                        e => Err(fail(e)),
                    };
                }
                let ret = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        path.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"size=0".as_ptr().cast(),
                    )
                } else {
                    libc::mount(
                        c"/dev/null".as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
                if ret < 0 {
                    return Err(fail(errno()));
                }
            }
            Op::Write { path, data } => {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(fail(errno()));
                }
                let len = data.as_bytes().len();
                let n = libc::write(fd, data.as_ptr().cast(), len);
                let e = errno();
                libc::close(fd);
                if n < 0 {
                    return Err(fail(e));
                }
            }
            Op::ReadOnly { path } => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::stat(path.as_ptr(), &mut st) < 0 {
                    return match errno() {
                        libc::ENOENT | libc::ENOTDIR => Ok(()),
                        e => Err(fail(e)),
                    };
                }
                if libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) < 0
                {
                    return Err(fail(errno()));
                }
                let attr = super::MountAttr {
                    attr_set: super::MOUNT_ATTR_RDONLY,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                if libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    super::AT_RECURSIVE,
                    &attr as *const super::MountAttr,
                    std::mem::size_of::<super::MountAttr>(),
                ) < 0
                {
                    return Err(fail(errno()));
                }
            }
        }
    }
    Ok(())
}

/// Installs the plan's seccomp programs (this thread only: the child is single-threaded, so
/// no SECCOMP_FILTER_FLAG_TSYNC).
unsafe fn install_seccomp(plan: &Plan) -> Result<(), Fail> {
    for (i, &(filter, len)) in plan.seccomp.iter().enumerate() {
        let prog = libc::sock_fprog {
            len,
            filter: filter.cast_mut(),
        };
        // SAFETY: prog points to `len` instructions kept alive by the suspended parent.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        check(ret, Step::Seccomp, i as u32)?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` in the current network namespace.
unsafe fn loopback_up() -> Result<(), Fail> {
    // SAFETY (whole function): a socket we own and a zero-initialised ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(sock as _, Step::Loopback, 0)?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as c_char;
        ifr.ifr_name[1] = b'o' as c_char;
        let r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr);
        if r < 0 {
            let e = errno();
            libc::close(sock);
            return Err(Fail {
                step: Step::Loopback,
                index: 0,
                errno: e,
            });
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr);
        let e = errno();
        libc::close(sock);
        if r < 0 {
            return Err(Fail {
                step: Step::Loopback,
                index: 0,
                errno: e,
            });
        }
    }
    Ok(())
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` (version 3: two words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Limits effective and permitted to `keep`, empties inheritable and ambient: after execve as
/// root the command then holds exactly `keep` (the bounding set), as non-root nothing.
unsafe fn set_capabilities(keep: u64) -> Result<(), Fail> {
    // SAFETY (whole function): header and data point to live structs of the v3 layout.
    unsafe {
        let mut header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        check(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr(),
            ),
            Step::Capabilities,
            0,
        )?;
        let words = [keep as u32, (keep >> 32) as u32];
        for (d, w) in data.iter_mut().zip(words) {
            d.effective &= w;
            d.permitted &= w;
            d.inheritable = 0;
        }
        check(
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            ),
            Step::Capabilities,
            1,
        )?;
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
                0,
                0,
                0,
            ) as _,
            Step::Capabilities,
            2,
        )?;
    }
    Ok(())
}
