//! `SandboxSpec`: what to run and in what kind of box, a small cousin of the OCI runtime spec.

use std::net::IpAddr;
use std::path::PathBuf;

/// Docker's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

/// Capability names by number, as the OCI runtime spec spells them (0..=40).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default masked paths: hidden behind /dev/null (files) or an empty read-only tmpfs
/// (directories). Paths missing on this kernel are skipped.
pub const DOCKER_MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths.
pub const DOCKER_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The PATH used to find argv[0] when the environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and how to box it. Build one with [`SandboxSpec::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The command; `argv[0]` is looked up in the environment's PATH unless it contains `/`.
    pub argv: Vec<String>,
    /// `KEY=value` entries, passed as they are.
    pub env: Vec<String>,
    /// Working directory inside the rootfs; created if missing (as BuildKit does).
    pub cwd: PathBuf,
    pub user: User,
    pub hostname: String,
    pub rootfs: RootFs,
    /// Mount the rootfs read-only (mounts on top of it keep their own mode).
    pub readonly_rootfs: bool,
    /// Extra mounts, applied in order after /proc, /dev and /sys.
    pub mounts: Vec<Mount>,
    pub network: Network,
    /// Extra `/etc/hosts` entries.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Content for `/etc/resolv.conf`; `None` derives it from the host's (see the docs).
    pub resolv_conf: Option<String>,
    pub rlimits: Vec<Rlimit>,
    pub cgroup: CgroupLimits,
    /// Bounding, effective and permitted capability set (bit n = capability n).
    pub capabilities: u64,
    /// Set `no_new_privs` (off by default, as in Docker and BuildKit, so setuid tools work).
    pub no_new_privs: bool,
    /// The seccomp filter (Docker's default profile unless unconfined).
    pub seccomp: super::Seccomp,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    /// Where per-sandbox state (rootfs mount point, /etc files) lives on the host; a
    /// subdirectory per sandbox is created and removed.
    pub state_dir: PathBuf,
    /// Run in a user namespace as an unprivileged user. Not supported yet.
    pub rootless: bool,
    /// Give the process a pseudo-terminal: a fresh devpts instance at `/dev/pts`, whose first
    /// pty becomes its stdin, stdout and stderr and its controlling terminal; its output
    /// arrives as [`Stream::Stdout`](super::Stream::Stdout) only. Not with `sandbox::runc`.
    pub tty: bool,
    /// The pty's initial size (0x0, as a terminal nobody sized, when `None`).
    pub tty_size: Option<super::WindowSize>,
    /// Bind a generated `/etc/hostname` (Docker's containers have one; BuildKit's RUN steps
    /// do not, so builds turn it off).
    pub etc_hostname: bool,
    /// The pid namespace: a new one (the command is pid 1), the host's, or another
    /// sandbox's (`/proc/PID/ns/pid`); without a new one, whatever is left in the sandbox's
    /// cgroup when the command exits is killed (the cgroup must exist: see
    /// [`CgroupLimits::container`]).
    pub pid_namespace: Namespace,
    /// The IPC namespace (SysV IPC, POSIX message queues).
    pub ipc_namespace: Namespace,
    /// The UTS namespace; with the host's, `hostname` is not set.
    pub uts_namespace: Namespace,
    /// Run a small init as the first process (Docker's `--init`): it reaps orphaned
    /// processes, forwards signals to the command, and exits with the command's status.
    pub init: bool,
    /// Device nodes to create in `/dev`, after the default ones.
    pub devices: Vec<Device>,
    /// Size of `/dev/shm` in bytes (64 MiB when `None`).
    pub shm_size: Option<u64>,
    /// Content for `/etc/hosts`; `None` generates it from `hostname` and `extra_hosts`.
    pub hosts: Option<String>,
    /// Mount `/sys` (and the cgroup views in it) read-write (Docker's `--privileged`).
    pub sysfs_writable: bool,
    /// Kernel parameters to set inside (`net.ipv4.ip_forward`, `1`), written to `/proc/sys`
    /// once the sandbox is in its namespaces; which ones are namespaced is the caller's check.
    pub sysctls: Vec<(String, String)>,
}

impl SandboxSpec {
    /// A spec with Docker's defaults: root user, cwd `/`, hostname `kiln`, no network (only
    /// `lo`), Docker's capabilities, seccomp profile, masked and read-only paths, no cgroup
    /// limits.
    pub fn new(rootfs: RootFs, argv: Vec<String>) -> SandboxSpec {
        SandboxSpec {
            argv,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: PathBuf::from("/"),
            user: User::default(),
            hostname: "kiln".to_string(),
            rootfs,
            readonly_rootfs: false,
            mounts: Vec::new(),
            network: Network::None,
            extra_hosts: Vec::new(),
            resolv_conf: None,
            rlimits: Vec::new(),
            cgroup: CgroupLimits::default(),
            capabilities: DOCKER_DEFAULT_CAPS,
            no_new_privs: false,
            seccomp: super::Seccomp::DockerDefault,
            masked_paths: DOCKER_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DOCKER_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            state_dir: PathBuf::from("/run/kiln/sandboxes"),
            rootless: false,
            tty: false,
            tty_size: None,
            etc_hostname: true,
            pid_namespace: Namespace::New,
            ipc_namespace: Namespace::New,
            uts_namespace: Namespace::New,
            init: false,
            devices: Vec::new(),
            shm_size: None,
            hosts: None,
            sysfs_writable: false,
            sysctls: Vec::new(),
        }
    }
}

/// Where one kind of namespace of the sandbox comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Namespace {
    /// A fresh one.
    #[default]
    New,
    /// The host's (the caller's).
    Host,
    /// An existing one, e.g. `/proc/PID/ns/ipc` of another sandbox's process.
    Join(PathBuf),
}

/// A host device given to the sandbox: the host's node is bound at `path`, so it keeps the
/// host's mode and owner (Docker copies both when it makes the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The node on the host.
    pub host_path: PathBuf,
    /// Where it appears inside (absolute, normally under `/dev`).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// What the device cgroup lets the sandbox do with it: any of `r`, `w`, `m`.
    pub access: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// The numeric user the command runs as; name lookup is the caller's business.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The root filesystem of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootFs {
    /// An already-prepared directory, bind-mounted (recursively) inside the sandbox.
    Path(PathBuf),
    /// An overlay mounted inside the sandbox's own mount namespace, so it disappears with it.
    /// `lowerdirs` are top-most first (overlayfs order); writes land in `upperdir`.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
    },
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A recursive bind mount of a host path (file or directory).
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A recursive bind mount of `source` as seen in the mount namespace `namespace` (e.g.
    /// `/proc/PID/ns/mnt` of another sandbox's process, whose `/dev/shm` this shares).
    BindFrom {
        namespace: PathBuf,
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs (nosuid, nodev); `size` in bytes, `mode` such as 0o1777.
    Tmpfs {
        target: PathBuf,
        size: Option<u64>,
        mode: Option<u32>,
        readonly: bool,
        /// Mount it noexec (a container's `--tmpfs` unless `exec`).
        noexec: bool,
    },
}

impl Mount {
    pub fn target(&self) -> &std::path::Path {
        match self {
            Mount::Bind { target, .. }
            | Mount::BindFrom { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// The network the command sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
    /// Join the network namespace at this path (e.g. `/run/netns/x`), prepared by the caller.
    Namespace(PathBuf),
}

/// A resource limit (setrlimit); `resource` is one of `libc::RLIMIT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

/// The resource limits Docker's `--ulimit` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitResource {
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
    As,
}

impl RlimitResource {
    pub(crate) fn raw(self) -> libc::c_int {
        use RlimitResource::*;
        (match self {
            Core => libc::RLIMIT_CORE,
            Cpu => libc::RLIMIT_CPU,
            Data => libc::RLIMIT_DATA,
            Fsize => libc::RLIMIT_FSIZE,
            Locks => libc::RLIMIT_LOCKS,
            Memlock => libc::RLIMIT_MEMLOCK,
            Msgqueue => libc::RLIMIT_MSGQUEUE,
            Nice => libc::RLIMIT_NICE,
            Nofile => libc::RLIMIT_NOFILE,
            Nproc => libc::RLIMIT_NPROC,
            Rss => libc::RLIMIT_RSS,
            Rtprio => libc::RLIMIT_RTPRIO,
            Rttime => libc::RLIMIT_RTTIME,
            Sigpending => libc::RLIMIT_SIGPENDING,
            Stack => libc::RLIMIT_STACK,
            As => libc::RLIMIT_AS,
        }) as libc::c_int
    }

    /// The OCI runtime spec's name (`RLIMIT_NOFILE`).
    pub fn oci_name(self) -> &'static str {
        use RlimitResource::*;
        match self {
            Core => "RLIMIT_CORE",
            Cpu => "RLIMIT_CPU",
            Data => "RLIMIT_DATA",
            Fsize => "RLIMIT_FSIZE",
            Locks => "RLIMIT_LOCKS",
            Memlock => "RLIMIT_MEMLOCK",
            Msgqueue => "RLIMIT_MSGQUEUE",
            Nice => "RLIMIT_NICE",
            Nofile => "RLIMIT_NOFILE",
            Nproc => "RLIMIT_NPROC",
            Rss => "RLIMIT_RSS",
            Rtprio => "RLIMIT_RTPRIO",
            Rttime => "RLIMIT_RTTIME",
            Sigpending => "RLIMIT_SIGPENDING",
            Stack => "RLIMIT_STACK",
            As => "RLIMIT_AS",
        }
    }
}

/// cgroup limits; a sandbox with none set (and not [`CgroupLimits::container`]) gets no
/// cgroup at all (cheaper start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory plus swap in bytes where the host accounts swap; -1 for unlimited swap. `None`:
    /// no swap beyond `memory_bytes` (a build step), see [`CgroupLimits::container`].
    pub memory_swap: Option<i64>,
    /// Don't let the OOM killer stop the sandbox's processes (cgroup v1 only).
    pub oom_kill_disable: bool,
    /// CPU bandwidth: `quota_us` of every `period_us` (e.g. 50_000 of 100_000 = half a CPU).
    pub cpu: Option<CpuQuota>,
    /// Relative CPU weight (v1 `cpu.shares`, 2 to 262144; mapped to v2's `cpu.weight`).
    pub cpu_shares: Option<u64>,
    /// The CPUs the sandbox may run on (`0-2,4`).
    pub cpuset_cpus: Option<String>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
    /// A container's cgroups, as Docker makes them: one in every hierarchy even without a
    /// limit (so it can be frozen, sampled and cleaned up as a whole), Docker's device rules
    /// (v1), swap as Docker sets it, and a read-only view of them at `/sys/fs/cgroup`.
    pub container: bool,
    /// Parent of the sandboxes' cgroups, relative to each hierarchy's root.
    pub parent: PathBuf,
}

impl Default for CgroupLimits {
    fn default() -> CgroupLimits {
        CgroupLimits {
            memory_bytes: None,
            memory_swap: None,
            oom_kill_disable: false,
            cpu: None,
            cpu_shares: None,
            cpuset_cpus: None,
            pids_max: None,
            container: false,
            parent: PathBuf::from("kiln"),
        }
    }
}

impl CgroupLimits {
    /// Whether the sandbox needs no cgroup of its own.
    pub fn is_empty(&self) -> bool {
        !self.container
            && self.memory_bytes.is_none()
            && self.cpu.is_none()
            && self.pids_max.is_none()
            && self.cpu_shares.is_none()
            && self.cpuset_cpus.is_none()
            && !self.oom_kill_disable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}
