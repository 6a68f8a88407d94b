//! Container records on disk: `<root>/containers/<id>/config.json` (what the user asked for,
//! written once) and `state.json` (what is happening, written only by the process that owns
//! the container: the monitor or the foreground `kiln run`), each written temp + fsync + rename.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};

/// How the container's network is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace with only `lo` (published ports are proxied into it).
    None,
    /// The host's network namespace.
    Host,
    /// A user-defined network (`network_name`): its own namespace with `eth0` on the
    /// network's bridge.
    Named,
}

/// A mount of the container, resolved to host paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Type", rename_all = "lowercase")]
pub enum MountConfig {
    Bind {
        #[serde(rename = "Source")]
        source: PathBuf,
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "ReadOnly")]
        readonly: bool,
        /// A `-v` bind: a missing host directory is created (`--mount` refuses it).
        #[serde(rename = "Create", default)]
        create: bool,
    },
    Volume {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "ReadOnly")]
        readonly: bool,
        /// Made for an image VOLUME entry or a `-v /path`; removed with `rm -v`.
        #[serde(rename = "Anonymous")]
        anonymous: bool,
        /// Don't fill a new volume from the image (`nocopy`, `volume-nocopy`).
        #[serde(rename = "NoCopy", default)]
        nocopy: bool,
    },
    Tmpfs {
        #[serde(rename = "Destination")]
        target: String,
        #[serde(rename = "Size", skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(rename = "Mode", skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(rename = "ReadOnly", default)]
        readonly: bool,
        /// Mounted without noexec (`--tmpfs /p:exec`).
        #[serde(rename = "Exec", default)]
        exec: bool,
    },
}

impl MountConfig {
    pub(crate) fn target(&self) -> &str {
        match self {
            MountConfig::Bind { target, .. }
            | MountConfig::Volume { target, .. }
            | MountConfig::Tmpfs { target, .. } => target,
        }
    }
}

/// A published port: connections to `host_ip:host_port` reach `container_port` inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    #[serde(rename = "HostPort")]
    pub host_port: u16,
    #[serde(rename = "ContainerPort")]
    pub container_port: u16,
    #[serde(rename = "Protocol")]
    pub protocol: String,
}

/// When the monitor starts the command again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "Name", content = "MaximumRetryCount", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    /// On a non-zero exit, at most this many times (0 = unlimited).
    OnFailure(u32),
    UnlessStopped,
}

/// What the container was created with; written once by `create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image reference as the user gave it.
    pub image: String,
    /// The image ID (config digest).
    pub image_id: String,
    /// The top snapshot of the unpacked image (`None` for an image without layers).
    pub snapshot: Option<String>,
    pub created: String,
    /// The resolved command: entrypoint followed by cmd.
    pub path: String,
    pub args: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    pub mounts: Vec<MountConfig>,
    pub ports: Vec<PortMapping>,
    pub memory: Option<u64>,
    pub cpus_millis: Option<u64>,
    pub pids_limit: Option<u64>,
    pub read_only: bool,
    pub restart: RestartPolicy,
    pub stop_signal: String,
    /// `--rm`: the record goes away when the command exits.
    pub auto_remove: bool,
    pub open_stdin: bool,
    /// The user-defined network and the container's address on it.
    #[serde(default)]
    pub network_name: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    /// The image's HEALTHCHECK, run by the monitor.
    #[serde(default)]
    pub healthcheck: Option<kiln_llb::image::Healthcheck>,
    /// `-t`: the command gets a pseudo-terminal (its output is all stdout).
    #[serde(default)]
    pub tty: bool,
    /// `--security-opt` entries as Docker shows them (`seccomp=unconfined`).
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// `--label` and `--label-file`, over the image's labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Everything else `kiln run` was told about the container's host side.
    #[serde(default)]
    pub host: HostSettings,
    /// Networks joined with `network connect` beyond the first (`network_name`).
    #[serde(default)]
    pub extra_networks: Vec<NetworkLink>,
    /// Further names the container has on a network (network name → names), listed in the
    /// hosts files of the network's members: compose's service names and aliases.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub aliases: std::collections::BTreeMap<String, Vec<String>>,
}

/// A container's address on a network it was connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkLink {
    pub name: String,
    pub ip: String,
    /// Its interface inside is `eth<index>` (1 and up; kept when others are disconnected).
    #[serde(default)]
    pub index: usize,
}

/// A container's host-side settings (Docker's `HostConfig` fields beyond the basics), each as
/// `create` validated it; defaults for records written before they existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostSettings {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--init`: a small init is pid 1 and the command its child.
    pub init: bool,
    pub ulimits: Vec<Ulimit>,
    /// `--group-add` entries (names or numbers), resolved at each start.
    pub group_add: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    /// `--add-host` entries as `name:ip` (`host-gateway` already resolved).
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub sysctls: std::collections::BTreeMap<String, String>,
    pub shm_size: Option<u64>,
    /// `""` (private), `host`, `container:ID`; `shareable` and `private` are both private here.
    pub ipc_mode: String,
    /// `""` (its own), `host`, `container:ID`.
    pub pid_mode: String,
    /// `""` or `host`.
    pub uts_mode: String,
    /// Seconds `stop` waits before SIGKILL when not told (`--stop-timeout`).
    pub stop_timeout: Option<u32>,
    pub log_config: LogConfig,
    /// Memory plus swap in bytes, -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub oom_kill_disable: bool,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
}

/// One `--ulimit` (`-1` for unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One `--device HOST[:CONTAINER][:PERMISSIONS]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// `--log-driver` and `--log-opt`: `json-file` (the default), `local` (json-file lines,
/// rotated with its own defaults) or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub driver: String,
    pub config: std::collections::BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            driver: "json-file".into(),
            config: Default::default(),
        }
    }
}

impl ContainerConfig {
    /// The full command line.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.path.clone()];
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// The lifecycle states Docker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Restarting,
    Exited,
    /// The process that owned it vanished (killed) without recording an exit.
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        })
    }
}

/// What is happening to the container; written by its owner only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: Status,
    /// Host pid of the container's pid 1 (0 when not running).
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot, to tell a reused pid apart.
    pub pid_start: u64,
    /// The process that owns the container: the monitor, or the foreground `kiln run`.
    pub owner_pid: i32,
    pub owner_start: u64,
    pub exit_code: Option<i32>,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    pub error: Option<String>,
    pub cgroup_dirs: Vec<PathBuf>,
    /// Frozen by `pause` (read from the freezer when the record is loaded, never stored).
    #[serde(skip)]
    pub paused: bool,
}

impl ContainerState {
    pub(crate) fn created() -> ContainerState {
        ContainerState {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            owner_pid: 0,
            owner_start: 0,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            error: None,
            cgroup_dirs: Vec::new(),
            paused: false,
        }
    }

    /// Whether the command may still be running.
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Restarting)
    }
}

/// A container as found on disk, its state checked against the live processes.
#[derive(Debug, Clone)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub dir: PathBuf,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("log.json")
    }
}

/// Start time of `pid` (field 22 of `/proc/<pid>/stat`), or `None` when it does not exist.
pub(crate) fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); field 22 is the 20th of rest.
    let field = rest.split_whitespace().nth(19)?;
    // A zombie still has its start time but is not alive for our purposes.
    if rest.split_whitespace().next() == Some("Z") {
        return None;
    }
    field.parse().ok()
}

/// Whether `pid` is the process that had start time `start`.
pub(crate) fn is_alive(pid: i32, start: u64) -> bool {
    process_start(pid) == Some(start)
}

/// Writes `value` as JSON to `path` through a temp file, fsync and rename.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| RuntimeError::Bug(format!("failed to encode {}: {e}", path.display())))?;
    // Unique per write, not only per process: threads of one process (`kiln compose` acting
    // on several containers at once) may write the same record.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let what = || format!("write {}", path.display());
    let mut f = fs::File::create(&tmp).map_err(io_err(what()))?;
    f.write_all(&bytes).map_err(io_err(what()))?;
    f.sync_all().map_err(io_err(what()))?;
    fs::rename(&tmp, path).map_err(io_err(what()))?;
    Ok(())
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RuntimeError> {
    let bytes = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::Invalid(format!("corrupt record {}: {e}", path.display())))
}

/// The directory of all containers under a store root.
pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// Takes `<root>/containers/names.lock` exclusively until the returned guard drops. `create`
/// holds it from the name check until the new record is complete, so of two concurrent
/// creates with one name exactly one gets it (a lock file, as nothing else is shared between
/// kiln processes).
pub(crate) fn lock_names(root: &Path) -> Result<nix::fcntl::Flock<fs::File>, RuntimeError> {
    lock_file(&containers_dir(root), "names.lock")
}

/// Takes the lock file `dir/name` exclusively (made with its directory when missing) until
/// the returned guard drops.
pub(crate) fn lock_file(
    dir: &Path,
    name: &str,
) -> Result<nix::fcntl::Flock<fs::File>, RuntimeError> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let path = dir.join(name);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("open {}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        RuntimeError::Io {
            what: format!("lock {}", path.display()),
            source: e.into(),
        }
    })
}

/// Reads one container and corrects its state when its owner died without recording an exit.
pub(crate) fn load(dir: &Path) -> Result<Container, RuntimeError> {
    let config: ContainerConfig = read_json(&dir.join("config.json"))?;
    let mut state: ContainerState = read_json(&dir.join("state.json"))?;
    if state.is_running() && !is_alive(state.owner_pid, state.owner_start) {
        // The owner was killed. Its container may live on (pid 1 survives a killed foreground
        // CLI); report what is true now.
        if is_alive(state.pid, state.pid_start) {
            state.status = Status::Running;
        } else {
            state.status = Status::Dead;
            state.pid = 0;
        }
    }
    if state.status == Status::Running {
        state.paused = crate::container::is_frozen(&state.cgroup_dirs);
    }
    Ok(Container {
        config,
        state,
        dir: dir.to_path_buf(),
    })
}

/// Every container under `root`, oldest first. Half-created ones (no state yet) are skipped.
pub(crate) fn list(root: &Path) -> Result<Vec<Container>, RuntimeError> {
    let dir = containers_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("list {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        let path = entry.path();
        if !path.join("state.json").exists() {
            continue;
        }
        match load(&path) {
            Ok(c) => out.push(c),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "skipping unreadable container")
            }
        }
    }
    out.sort_by(|a, b| {
        a.config
            .created
            .cmp(&b.config.created)
            .then_with(|| a.config.id.cmp(&b.config.id))
    });
    Ok(out)
}

/// Finds a container by full ID, name, or unique ID prefix (as Docker does).
pub(crate) fn lookup(root: &Path, wanted: &str) -> Result<Container, RuntimeError> {
    let wanted = wanted.trim_start_matches('/');
    if wanted.is_empty() {
        return Err(RuntimeError::NoSuchContainer(wanted.to_string()));
    }
    let all = list(root)?;
    if let Some(c) = all
        .iter()
        .find(|c| c.config.id == wanted || c.config.name == wanted)
    {
        return Ok(c.clone());
    }
    let mut matches = all.into_iter().filter(|c| c.config.id.starts_with(wanted));
    match (matches.next(), matches.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(RuntimeError::Invalid(format!(
            "container ID prefix {wanted:?} is ambiguous"
        ))),
        _ => Err(RuntimeError::NoSuchContainer(wanted.to_string())),
    }
}

/// 32 random bytes as hex, Docker's ID format.
pub(crate) fn new_id() -> Result<String, RuntimeError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("read /dev/urandom for a container ID"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quiet", "sharp", "tender", "witty",
];
const NOUNS: [&str; 16] = [
    "ampere", "babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "kepler",
    "lovelace", "meitner", "noether", "pascal", "ritchie", "turing", "wozniak",
];

/// A Docker-style random name (`adjective_scientist`), from the ID's bytes.
pub(crate) fn generated_name(id: &str) -> String {
    let b = id.as_bytes();
    let pick = |i: usize| (b.get(i).copied().unwrap_or(0) as usize) % 16;
    format!(
        "{}_{}_{}",
        ADJECTIVES[pick(0)],
        NOUNS[pick(1)],
        &id[..4.min(id.len())]
    )
}

/// Now as RFC 3339 with nanoseconds.
pub(crate) fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    kiln_llb::image::format_rfc3339(d.as_secs() as i64, d.subsec_nanos())
}
