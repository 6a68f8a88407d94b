//! Steps 5 and 6 of the setup: the child's [`Plan`](child::Plan), with every C string, fd and
//! op computed in the parent (the child may not allocate), and the namespaces to clone into.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::SandboxError;
use super::mounts::Mounts;
use super::seccomp::Program;
use super::spec::{DEFAULT_PATH, Namespace, Network, SandboxSpec};
use super::stdio::ChildEnds;
use super::validate::{cpath, cstr, inner_path};
use crate::sys::{self, child};

/// What the plan points at besides the spec: it borrows their descriptors, which must stay
/// open until clone has returned.
pub(super) struct Parts<'a> {
    /// Where the child attaches the rootfs before pivot_root.
    pub(super) mountpoint: &'a Path,
    pub(super) mounts: &'a mut Mounts,
    pub(super) child: &'a ChildEnds,
    pub(super) cgroup_procs: &'a [OwnedFd],
    pub(super) netns: Option<&'a OwnedFd>,
    /// Namespaces the child joins with setns (descriptor, CLONE_NEW* type).
    pub(super) join_ns: &'a [(OwnedFd, libc::c_int)],
    pub(super) seccomp: Option<&'a Program>,
}

/// The child's plan for `spec`; takes the mount ops out of `parts.mounts`.
pub(super) fn build(spec: &SandboxSpec, parts: Parts<'_>) -> Result<child::Plan, SandboxError> {
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

    let child = parts.child;
    Ok(child::Plan {
        cgroup_procs: parts.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect(),
        new_cgroup_ns: true,
        join_ns: parts
            .join_ns
            .iter()
            .map(|(f, kind)| (f.as_raw_fd(), *kind))
            .collect(),
        netns: parts.netns.map(|f| f.as_raw_fd()),
        loopback_up: spec.network == Network::None,
        hostname: match spec.uts_namespace {
            Namespace::New => Some(cstr(spec.hostname.as_bytes(), "hostname")?),
            _ => None,
        },
        mountpoint: cpath(parts.mountpoint)?,
        rootfs: parts.mounts.rootfs.as_raw_fd(),
        ops: std::mem::take(&mut parts.mounts.ops.ops),
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
        seccomp: parts
            .seccomp
            .map(|p| {
                p.filters
                    .iter()
                    .map(|f| (f.as_ptr(), f.len() as u16))
                    .collect()
            })
            .unwrap_or_default(),
        stdio: match &child.pty_slave {
            Some(slave) => [slave.as_raw_fd(); 3],
            None => [
                child.stdin.as_raw_fd(),
                child.stdout.as_raw_fd(),
                child.stderr.as_raw_fd(),
            ],
        },
        controlling_tty: child.pty_slave.is_some(),
        status: child.status.as_raw_fd(),
        exec_candidates: exec_candidates(spec)?,
        init: if spec.init {
            Some(init_plan(spec)?)
        } else {
            None
        },
        argv,
        envp,
        argv_owned,
        env_owned,
    })
}

/// The namespaces the child starts in: mount, and pid, uts, ipc and net unless it shares the
/// host's or joins one (pid in the parent before clone, the others with setns in the child).
pub(super) fn clone_flags(spec: &SandboxSpec) -> u64 {
    let mut flags = libc::CLONE_NEWNS as u64;
    for (ns, flag) in [
        (&spec.pid_namespace, libc::CLONE_NEWPID),
        (&spec.uts_namespace, libc::CLONE_NEWUTS),
        (&spec.ipc_namespace, libc::CLONE_NEWIPC),
    ] {
        if *ns == Namespace::New {
            flags |= flag as u64;
        }
    }
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET as u64;
    }
    flags
}

/// The init's plan: where kiln's own arguments and environment are (to overwrite them in the
/// init's copy) and the title it shows instead, `kiln-init -- COMMAND ARGS`.
fn init_plan(spec: &SandboxSpec) -> Result<child::InitPlan, SandboxError> {
    let (args, env) = sys::args_and_env_areas().ok_or_else(|| {
        SandboxError::InvalidSpec("cannot read this process's /proc/self/stat for --init".into())
    })?;
    let mut title = b"kiln-init --".to_vec();
    for a in &spec.argv {
        title.push(b' ');
        title.extend(a.bytes().filter(|&b| b != 0));
    }
    Ok(child::InitPlan { args, env, title })
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
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| cstr(format!("{d}/{argv0}").as_bytes(), "argv[0]"))
        .collect()
}
