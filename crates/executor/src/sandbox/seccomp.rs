//! The sandbox's seccomp filter: a syscall allowlist with the same effect as Docker's default
//! profile, compiled once per process to classic BPF and installed by the child before execve.
//!
//! The rules (our own table, written from the semantics of Docker's profile and the OCI
//! runtime spec's `linux.seccomp`):
//! - anything not listed fails with EPERM (Docker's default action);
//! - a base list of ordinary syscalls is allowed with any arguments;
//! - `socket` is allowed for every address family except AF_ALG (38) and AF_VSOCK (40);
//! - `personality` only with the few personas programs use (Linux, 32-bit Linux, the
//!   "unsupported" query value);
//! - some syscalls are allowed only when the sandbox keeps the capability that makes them
//!   useful (`chroot` with CAP_SYS_CHROOT, `mount`/`unshare`/`setns`/`bpf`… with
//!   CAP_SYS_ADMIN, `ptrace`-like calls are always allowed as on kernels >= 4.8);
//! - without CAP_SYS_ADMIN, `clone` is allowed only without namespace flags, and `clone3`
//!   fails with ENOSYS (its flags are behind a pointer a filter cannot read; ENOSYS makes
//!   glibc and Go fall back to `clone`, which is checked);
//! - only the native architecture's calling convention passes: x32 syscalls (same audit
//!   arch, numbers with bit 30 set) match no rule and get EPERM; 32-bit (i386) syscalls
//!   kill the process. Docker allows both; see docs/dev/sandbox.md.
//!
//! Syscall numbers come from `libc`; the few recent ones it lacks are spelled out below.
//!
//! The BPF is generated here rather than by a crate: seccompiler (tried first, kept as the
//! reference the tests compare against) emits a linear chain of five instructions per
//! syscall, ~1,600 instructions for this profile, and one match action per filter (clone3's
//! ENOSYS needed a second filter). Installing that cost ~0.75 ms of CPU per sandbox start,
//! mostly the kernel converting and JIT-compiling it and evaluating it once per syscall
//! number for its action cache. A binary search over ranges of syscall numbers returning
//! the same value is ~10 times shorter, one filter, and ~8 comparisons per syscall.
//!
//! Submodules: `bpf` (the compiler), `docker` (profile files in Docker's format, through
//! the same compiler), `names` (x86_64 syscall names for those files), `tests` (a BPF
//! interpreter running the programs, and seccompiler's program as a reference).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::SandboxError;
use super::spec::DOCKER_DEFAULT_CAPS;

mod bpf;
mod docker;
mod names;

use bpf::{Cond, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, Verdict};
pub use docker::Profile;

/// Which seccomp filter the sandbox's command runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default profile (see the module docs); the default for builds and runs.
    #[default]
    DockerDefault,
    /// No filter (`--security-opt seccomp=unconfined`, `RUN --security=insecure`).
    Unconfined,
    /// A profile file in Docker's format (`--security-opt seccomp=profile.json`).
    Custom(Arc<Profile>),
}

impl Seccomp {
    /// Parses the value of Docker's `--security-opt seccomp=VALUE`: `unconfined`, the
    /// built-in profile (`builtin`, `default`), or a profile's JSON text (the caller reads
    /// the file, as Docker's client does, so the container keeps the profile it was made
    /// with). Errors in a profile name the line and column.
    pub fn from_security_opt(value: &str) -> Result<Seccomp, SandboxError> {
        match value {
            "unconfined" => Ok(Seccomp::Unconfined),
            "builtin" | "default" => Ok(Seccomp::DockerDefault),
            text if text.trim_start().starts_with('{') => Profile::parse(text)
                .map(|p| Seccomp::Custom(Arc::new(p)))
                .map_err(|e| match e.strip_prefix("not supported yet: ") {
                    Some(what) => SandboxError::NotSupported(what.to_string()),
                    None => SandboxError::InvalidSpec(format!("invalid seccomp profile: {e}")),
                }),
            other => Err(SandboxError::InvalidSpec(format!(
                "seccomp profile {other:?}: expected unconfined, builtin, or a profile's JSON"
            ))),
        }
    }

    /// Puts the calling thread (and every process it starts from now on) under this filter,
    /// for a sandbox capability set `caps`; nothing for `Unconfined`. For `kiln exec`: a
    /// dedicated thread that joined a container's namespaces calls this before spawning the
    /// command. The thread must hold CAP_SYS_ADMIN (kiln runs as root) and may only make
    /// allowed syscalls afterwards (spawning a process is fine: glibc's clone3 gets ENOSYS
    /// and falls back to clone without namespace flags). Irreversible for the thread.
    pub fn apply_to_current_thread(&self, caps: u64) -> Result<(), SandboxError> {
        let Some(p) = program(self, caps)? else {
            return Ok(());
        };
        crate::sys::install_seccomp(&p.filters).map_err(|source| SandboxError::Setup {
            what: "failed to install the seccomp filter".into(),
            source,
        })
    }

    /// What Docker shows in `HostConfig.SecurityOpt` for this choice (nothing for the
    /// default; a profile file as `seccomp=` and its JSON text).
    pub fn security_opt(&self) -> Option<String> {
        match self {
            Seccomp::DockerDefault => None,
            Seccomp::Unconfined => Some("seccomp=unconfined".into()),
            Seccomp::Custom(p) => Some(format!("seccomp={}", p.text)),
        }
    }
}

/// A compiled filter: BPF programs (one today), installed in order.
pub(crate) struct Program {
    pub(crate) filters: Vec<Vec<libc::sock_filter>>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<usize> = self.filters.iter().map(Vec::len).collect();
        write!(f, "Program {{ instructions: {lens:?} }}")
    }
}

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | 64-bit | little-endian.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// Docker's default action: EPERM.
const RET_DENY: u32 = RET_ERRNO | libc::EPERM as u32;

/// Capability numbers used by the table.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_TIME: u32 = 25;
const CAP_SYS_TTY_CONFIG: u32 = 26;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Namespace flags `clone` may not carry without CAP_SYS_ADMIN: NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// Personas `personality(2)` may set: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff, which only queries the current persona.
const PERSONAS: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Address families `socket(2)` refuses: AF_ALG (kernel crypto) and AF_VSOCK (host/VM).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

#[cfg(target_arch = "x86_64")]
#[allow(non_upper_case_globals)]
mod table {
    use libc::c_long;
    // libc 0.2.191 lacks these x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
    const SYS_io_pgetevents: c_long = 333;
    const SYS_uretprobe: c_long = 335;
    const SYS_cachestat: c_long = 451;
    const SYS_map_shadow_stack: c_long = 453;
    const SYS_futex_wake: c_long = 454;
    const SYS_futex_wait: c_long = 455;
    const SYS_futex_requeue: c_long = 456;
    const SYS_statmount: c_long = 457;
    const SYS_listmount: c_long = 458;
    const SYS_lsm_get_self_attr: c_long = 459;
    const SYS_lsm_set_self_attr: c_long = 460;
    const SYS_lsm_list_modules: c_long = 461;
    const SYS_setxattrat: c_long = 463;
    const SYS_getxattrat: c_long = 464;
    const SYS_listxattrat: c_long = 465;
    const SYS_removexattrat: c_long = 466;

    use libc::*;

    /// `(number, "SYS_name")` pairs; the name is for the OCI profile and error messages.
    macro_rules! syscalls {
        ($($n:ident),* $(,)?) => { &[$(($n, stringify!($n))),*] };
    }
    pub(super) type Sys = (c_long, &'static str);

    /// Allowed with any arguments, whatever the capabilities. Kept sorted by name; every
    /// call an ordinary program (shells, compilers, package managers, servers) makes.
    #[rustfmt::skip]
    pub(super) const ALWAYS: &[Sys] = syscalls![
        SYS_accept, SYS_accept4, SYS_access, SYS_adjtimex, SYS_alarm, SYS_arch_prctl, SYS_bind,
        SYS_brk, SYS_cachestat, SYS_capget, SYS_capset, SYS_chdir, SYS_chmod, SYS_chown,
        SYS_clock_adjtime, SYS_clock_getres, SYS_clock_gettime, SYS_clock_nanosleep, SYS_close,
        SYS_close_range, SYS_connect, SYS_copy_file_range, SYS_creat, SYS_dup, SYS_dup2,
        SYS_dup3, SYS_epoll_create, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_ctl_old,
        SYS_epoll_pwait, SYS_epoll_pwait2, SYS_epoll_wait, SYS_epoll_wait_old, SYS_eventfd,
        SYS_eventfd2, SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_faccessat,
        SYS_faccessat2, SYS_fadvise64, SYS_fallocate, SYS_fanotify_mark, SYS_fchdir, SYS_fchmod,
        SYS_fchmodat, SYS_fchmodat2, SYS_fchown, SYS_fchownat, SYS_fcntl, SYS_fdatasync,
        SYS_fgetxattr, SYS_flistxattr, SYS_flock, SYS_fork, SYS_fremovexattr, SYS_fsetxattr,
        SYS_fstat, SYS_fstatfs, SYS_fsync, SYS_ftruncate, SYS_futex, SYS_futex_requeue,
        SYS_futex_wait, SYS_futex_waitv, SYS_futex_wake, SYS_futimesat, SYS_getcpu, SYS_getcwd,
        SYS_getdents, SYS_getdents64, SYS_getegid, SYS_geteuid, SYS_getgid, SYS_getgroups,
        SYS_getitimer, SYS_getpeername, SYS_getpgid, SYS_getpgrp, SYS_getpid, SYS_getppid,
        SYS_getpriority, SYS_getrandom, SYS_getresgid, SYS_getresuid, SYS_getrlimit,
        SYS_get_robust_list, SYS_getrusage, SYS_getsid, SYS_getsockname, SYS_getsockopt,
        SYS_get_thread_area, SYS_gettid, SYS_gettimeofday, SYS_getuid, SYS_getxattr,
        SYS_getxattrat, SYS_inotify_add_watch, SYS_inotify_init, SYS_inotify_init1,
        SYS_inotify_rm_watch, SYS_io_cancel, SYS_ioctl, SYS_io_destroy, SYS_io_getevents,
        SYS_io_pgetevents, SYS_ioprio_get, SYS_ioprio_set, SYS_io_setup, SYS_io_submit, SYS_kill,
        SYS_landlock_add_rule, SYS_landlock_create_ruleset, SYS_landlock_restrict_self,
        SYS_lchown, SYS_lgetxattr, SYS_link, SYS_linkat, SYS_listen, SYS_listmount,
        SYS_listxattr, SYS_listxattrat, SYS_llistxattr, SYS_lremovexattr, SYS_lseek,
        SYS_lsetxattr, SYS_lstat, SYS_madvise, SYS_map_shadow_stack, SYS_membarrier,
        SYS_memfd_create, SYS_memfd_secret, SYS_mincore, SYS_mkdir, SYS_mkdirat, SYS_mknod,
        SYS_mknodat, SYS_mlock, SYS_mlock2, SYS_mlockall, SYS_mmap, SYS_modify_ldt,
        SYS_mprotect, SYS_mq_getsetattr, SYS_mq_notify, SYS_mq_open, SYS_mq_timedreceive,
        SYS_mq_timedsend, SYS_mq_unlink, SYS_mremap, SYS_mseal, SYS_msgctl, SYS_msgget,
        SYS_msgrcv, SYS_msgsnd, SYS_msync, SYS_munlock, SYS_munlockall, SYS_munmap,
        SYS_name_to_handle_at, SYS_nanosleep, SYS_newfstatat, SYS_open, SYS_openat, SYS_openat2,
        SYS_pause, SYS_pidfd_open, SYS_pidfd_send_signal, SYS_pipe, SYS_pipe2, SYS_pkey_alloc,
        SYS_pkey_free, SYS_pkey_mprotect, SYS_poll, SYS_ppoll, SYS_prctl, SYS_pread64,
        SYS_preadv, SYS_preadv2, SYS_prlimit64, SYS_process_mrelease, SYS_process_vm_readv,
        SYS_process_vm_writev, SYS_pselect6, SYS_ptrace, SYS_pwrite64, SYS_pwritev,
        SYS_pwritev2, SYS_read, SYS_readahead, SYS_readlink, SYS_readlinkat, SYS_readv,
        SYS_recvfrom, SYS_recvmmsg, SYS_recvmsg, SYS_remap_file_pages, SYS_removexattr,
        SYS_removexattrat, SYS_rename, SYS_renameat, SYS_renameat2, SYS_restart_syscall,
        SYS_rmdir, SYS_rseq, SYS_rt_sigaction, SYS_rt_sigpending, SYS_rt_sigprocmask,
        SYS_rt_sigqueueinfo, SYS_rt_sigreturn, SYS_rt_sigsuspend, SYS_rt_sigtimedwait,
        SYS_rt_tgsigqueueinfo, SYS_sched_getaffinity, SYS_sched_getattr, SYS_sched_getparam,
        SYS_sched_get_priority_max, SYS_sched_get_priority_min, SYS_sched_getscheduler,
        SYS_sched_rr_get_interval, SYS_sched_setaffinity, SYS_sched_setattr,
        SYS_sched_setparam, SYS_sched_setscheduler, SYS_sched_yield, SYS_seccomp, SYS_select,
        SYS_semctl, SYS_semget, SYS_semop, SYS_semtimedop, SYS_sendfile, SYS_sendmmsg,
        SYS_sendmsg, SYS_sendto, SYS_setfsgid, SYS_setfsuid, SYS_setgid, SYS_setgroups,
        SYS_setitimer, SYS_setpgid, SYS_setpriority, SYS_setregid, SYS_setresgid,
        SYS_setresuid, SYS_setreuid, SYS_setrlimit, SYS_set_robust_list, SYS_setsid,
        SYS_setsockopt, SYS_set_thread_area, SYS_set_tid_address, SYS_setuid, SYS_setxattr,
        SYS_setxattrat, SYS_shmat, SYS_shmctl, SYS_shmdt, SYS_shmget, SYS_shutdown,
        SYS_sigaltstack, SYS_signalfd, SYS_signalfd4, SYS_socketpair, SYS_splice, SYS_stat,
        SYS_statfs, SYS_statmount, SYS_statx, SYS_symlink, SYS_symlinkat, SYS_sync,
        SYS_sync_file_range, SYS_syncfs, SYS_sysinfo, SYS_tee, SYS_tgkill, SYS_time,
        SYS_timer_create, SYS_timer_delete, SYS_timer_getoverrun, SYS_timer_gettime,
        SYS_timer_settime, SYS_timerfd_create, SYS_timerfd_gettime, SYS_timerfd_settime,
        SYS_times, SYS_tkill, SYS_truncate, SYS_umask, SYS_uname, SYS_unlink, SYS_unlinkat,
        SYS_uretprobe, SYS_utime, SYS_utimensat, SYS_utimes, SYS_vfork, SYS_vmsplice, SYS_wait4,
        SYS_waitid, SYS_write, SYS_writev,
    ];

    pub(super) const SOCKET: Sys = (SYS_socket, "SYS_socket");
    pub(super) const PERSONALITY: Sys = (SYS_personality, "SYS_personality");
    pub(super) const CLONE: Sys = (SYS_clone, "SYS_clone");
    pub(super) const CLONE3: Sys = (SYS_clone3, "SYS_clone3");

    /// Allowed only while the sandbox keeps the capability: without it they would fail with
    /// EPERM anyway, and refusing them early keeps their kernel code out of reach.
    pub(super) const BY_CAPABILITY: &[(u32, &[Sys])] = &[
        (super::CAP_DAC_READ_SEARCH, syscalls![SYS_open_by_handle_at]),
        (
            super::CAP_SYS_ADMIN,
            syscalls![
                SYS_bpf,
                SYS_clone,
                SYS_clone3,
                SYS_fanotify_init,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fsopen,
                SYS_fspick,
                SYS_lookup_dcookie,
                SYS_lsm_get_self_attr,
                SYS_lsm_list_modules,
                SYS_lsm_set_self_attr,
                SYS_mount,
                SYS_mount_setattr,
                SYS_move_mount,
                SYS_open_tree,
                SYS_perf_event_open,
                SYS_quotactl,
                SYS_quotactl_fd,
                SYS_setdomainname,
                SYS_sethostname,
                SYS_setns,
                SYS_syslog,
                SYS_umount2,
                SYS_unshare,
            ],
        ),
        (super::CAP_SYS_BOOT, syscalls![SYS_reboot]),
        (super::CAP_SYS_CHROOT, syscalls![SYS_chroot]),
        (
            super::CAP_SYS_MODULE,
            syscalls![SYS_delete_module, SYS_init_module, SYS_finit_module],
        ),
        (super::CAP_SYS_PACCT, syscalls![SYS_acct]),
        (
            super::CAP_SYS_PTRACE,
            syscalls![SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise],
        ),
        (super::CAP_SYS_RAWIO, syscalls![SYS_iopl, SYS_ioperm]),
        (
            super::CAP_SYS_TIME,
            syscalls![SYS_settimeofday, SYS_clock_settime],
        ),
        (super::CAP_SYS_TTY_CONFIG, syscalls![SYS_vhangup]),
        (
            super::CAP_SYS_NICE,
            syscalls![
                SYS_get_mempolicy,
                SYS_mbind,
                SYS_set_mempolicy,
                SYS_set_mempolicy_home_node,
            ],
        ),
        (super::CAP_SYSLOG, syscalls![SYS_syslog]),
        (super::CAP_BPF, syscalls![SYS_bpf]),
        (super::CAP_PERFMON, syscalls![SYS_perf_event_open]),
    ];
}

/// What the profile says about one syscall.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    /// Any arguments.
    Always,
    /// When any one of these condition lists holds entirely.
    If(Vec<Vec<Cond>>),
}

/// The profile for a capability set: syscall → rule, plus whether `clone3` must say ENOSYS.
#[derive(Debug)]
struct Builtin {
    allow: BTreeMap<i64, (&'static str, Allow)>,
    clone3_enosys: Option<i64>,
}

#[cfg(target_arch = "x86_64")]
fn profile(caps: u64) -> Builtin {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut allow: BTreeMap<i64, (&'static str, Allow)> = BTreeMap::new();
    let mut always = |(nr, name): table::Sys| {
        allow.insert(nr, (name, Allow::Always));
    };
    table::ALWAYS.iter().copied().for_each(&mut always);
    for (cap, list) in table::BY_CAPABILITY {
        if has(*cap) {
            list.iter().copied().for_each(&mut always);
        }
    }
    let mut when = |(nr, name): table::Sys, alternatives: Vec<Vec<Cond>>| {
        // A capability may already allow the call outright; that wins.
        allow
            .entry(nr)
            .or_insert_with(|| (name, Allow::If(alternatives)));
    };
    when(
        table::SOCKET,
        vec![
            vec![Cond::Lt(0, AF_ALG)],
            vec![Cond::Eq(0, AF_ALG + 1)],
            vec![Cond::Gt(0, AF_VSOCK)],
        ],
    );
    when(
        table::PERSONALITY,
        PERSONAS.iter().map(|&p| vec![Cond::Eq(0, p)]).collect(),
    );
    let mut clone3_enosys = None;
    if !has(CAP_SYS_ADMIN) {
        when(
            table::CLONE,
            vec![vec![Cond::NoBits(0, CLONE_NAMESPACE_FLAGS)]],
        );
        clone3_enosys = Some(table::CLONE3.0);
    }
    Builtin {
        allow,
        clone3_enosys,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn profile(_caps: u64) -> Builtin {
    unreachable!("program() refuses other architectures first")
}

/// The built-in profile for capability set `caps` as a program.
fn compile(caps: u64) -> Result<Program, String> {
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = caps;
        return Err(format!(
            "not supported yet: the seccomp profile on {}",
            std::env::consts::ARCH
        ));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let p = profile(caps);
        let mut by_nr: BTreeMap<u32, Verdict> = p
            .allow
            .into_iter()
            .map(|(nr, (_, allow))| {
                let v = match allow {
                    Allow::Always => Verdict::Return(RET_ALLOW),
                    Allow::If(alternatives) => Verdict::If {
                        alternatives: alternatives
                            .into_iter()
                            .map(|conds| (conds, RET_ALLOW))
                            .collect(),
                        otherwise: RET_DENY,
                    },
                };
                (nr as u32, v)
            })
            .collect();
        if let Some(nr) = p.clone3_enosys {
            by_nr.insert(nr as u32, Verdict::Return(RET_ERRNO | libc::ENOSYS as u32));
        }
        Ok(Program {
            filters: vec![bpf::assemble(
                AUDIT_ARCH,
                by_nr,
                RET_DENY,
                RET_KILL_PROCESS,
            )?],
        })
    }
}

/// A profile file for capability set `caps` as a program.
fn compile_file(p: &Profile, caps: u64) -> Result<Program, String> {
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, caps);
        return Err(format!(
            "not supported yet: seccomp profiles on {}",
            std::env::consts::ARCH
        ));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (by_nr, default) = p.verdicts(caps)?;
        // Another architecture's calls are killed, libseccomp's default for an architecture
        // the filter was not built for.
        Ok(Program {
            filters: vec![bpf::assemble(AUDIT_ARCH, by_nr, default, RET_KILL_PROCESS)?],
        })
    }
}

/// The compiled filter for `seccomp` and a capability set, built once per process for
/// Docker's default capabilities (and once per other set, or profile file and set); `None`
/// when unconfined.
pub(crate) fn program(seccomp: &Seccomp, caps: u64) -> Result<Option<Arc<Program>>, SandboxError> {
    let err = |e: &String| {
        if let Some(what) = e.strip_prefix("not supported yet: ") {
            SandboxError::NotSupported(what.to_string())
        } else {
            SandboxError::Setup {
                what: "failed to compile the seccomp filter".into(),
                source: std::io::Error::other(e.clone()),
            }
        }
    };
    let file = match seccomp {
        Seccomp::Unconfined => return Ok(None),
        Seccomp::DockerDefault => None,
        Seccomp::Custom(p) => Some(p),
    };
    if file.is_none() && caps == DOCKER_DEFAULT_CAPS {
        static DEFAULT: OnceLock<Result<Arc<Program>, String>> = OnceLock::new();
        return DEFAULT
            .get_or_init(|| compile(caps).map(Arc::new))
            .as_ref()
            .map(|p| Some(p.clone()))
            .map_err(err);
    }
    type Cache = Vec<(u64, Option<Arc<Profile>>, Arc<Program>)>;
    static OTHERS: Mutex<Cache> = Mutex::new(Vec::new());
    let mut others = OTHERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p)) = others
        .iter()
        .find(|(c, f, _)| *c == caps && f.as_deref() == file.map(|f| &**f))
    {
        return Ok(Some(p.clone()));
    }
    let compiled = match file {
        None => compile(caps),
        Some(f) => compile_file(f, caps),
    };
    let p = Arc::new(compiled.map_err(|e| err(&e))?);
    others.push((caps, file.cloned(), p.clone()));
    Ok(Some(p))
}

/// The same profile as an OCI runtime spec `linux.seccomp` object, for external runtimes.
#[cfg(feature = "runc")]
pub(crate) fn oci_profile(seccomp: &Seccomp, caps: u64) -> Option<serde_json::Value> {
    use serde_json::json;
    match seccomp {
        Seccomp::Unconfined => return None,
        // The file is already the OCI runtime's format (Docker passes it through).
        Seccomp::Custom(p) => return serde_json::from_str(&p.text).ok(),
        Seccomp::DockerDefault => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = caps;
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let p = profile(caps);
        let name = |n: &str| n.trim_start_matches("SYS_").to_string();
        let mut always = Vec::new();
        let mut syscalls = Vec::new();
        for (_, (n, allow)) in p.allow {
            match allow {
                Allow::Always => always.push(name(n)),
                Allow::If(alternatives) => {
                    for conds in alternatives {
                        let args: Vec<_> = conds
                            .iter()
                            .map(|c| match *c {
                                Cond::Eq(i, v) => json!({"index": i, "value": v, "op": "SCMP_CMP_EQ"}),
                                Cond::Lt(i, v) => json!({"index": i, "value": v, "op": "SCMP_CMP_LT"}),
                                Cond::Gt(i, v) => json!({"index": i, "value": v, "op": "SCMP_CMP_GT"}),
                                Cond::NoBits(i, m) => json!({"index": i, "value": m, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}),
                                // The built-in profile compares low words only.
                                _ => json!({}),
                            })
                            .collect();
                        syscalls.push(
                            json!({"names": [name(n)], "action": "SCMP_ACT_ALLOW", "args": args}),
                        );
                    }
                }
            }
        }
        syscalls.insert(0, json!({"names": always, "action": "SCMP_ACT_ALLOW"}));
        if p.clone3_enosys.is_some() {
            syscalls.push(
                json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
            );
        }
        Some(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": libc::EPERM,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": syscalls,
        }))
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
