//! A private dockerd for the tests that compare with Docker, which cannot touch the host it
//! runs on (issue 23: a dockerd started with `--bridge=none` in the host's network namespace
//! deletes the host's `docker0`).
//!
//! The daemon runs under `unshare` in namespaces of its own:
//! - network: only `lo`, so whatever dockerd does to interfaces, routes, iptables or the
//!   forwarding sysctls happens there (the flags that turn those off are kept as a second line
//!   of defence). A test that needs a server on the host's loopback (a registry) gets it through
//!   [`Dockerd::forward_port`], a relay listening on the same port inside the namespace;
//! - mount: private propagation, so its overlay and namespace mounts never reach the host and
//!   vanish with it, and tmpfs over `/run` (a host containerd's socket there would otherwise be
//!   used instead of dockerd starting its own, and containerd puts shim sockets there), over
//!   `/etc/docker` (the host's `daemon.json` and `key.json`) and over `/opt` (containerd makes
//!   `/opt/containerd`);
//! - pid, with `--kill-child` and a parent-death signal: when the test ends, however it ends,
//!   dockerd, its containerd, shims and containers all die.
//!
//! Its data root, exec root, pidfile, socket, config file and client config are in its own
//! tempdir, its containers in a cgroup parent of its own (removed after). A snapshot of the
//! host ([`HostSnapshot`]) is taken before it starts and compared after it stopped: a test
//! whose daemon damaged the host fails, naming what changed.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::hostnet::{self, HostSnapshot};

/// Host directories hidden behind a tmpfs inside the daemon's mount namespace (when they exist).
const MASKED: &[&str] = &["/run", "/etc/docker", "/opt"];

/// What the daemon may create under a masked directory that does not exist on this host; it is
/// removed after the daemon stops, deepest first (directories only when empty).
const CREATED_WHEN_UNMASKED: &[(&str, &[&str])] = &[
    ("/etc/docker", &["/etc/docker/key.json", "/etc/docker"]),
    (
        "/opt",
        &[
            "/opt/containerd/bin",
            "/opt/containerd/lib",
            "/opt/containerd",
            "/opt",
        ],
    ),
];

/// Runs in the new namespaces before dockerd: loopback up, the masks, then dockerd itself.
/// `mount -n` keeps util-linux from writing `/run/mount/utab` on the host before `/run` is
/// masked.
const NAMESPACE_SETUP: &str = r#"set -e
ip link set lo up
for dir in $KILN_MASKED; do
  if [ -d "$dir" ]; then mount -n -t tmpfs -o mode=0755 kiln-test-dockerd "$dir"; fi
done
unset KILN_MASKED
exec "$@""#;

static STARTED: AtomicU32 = AtomicU32::new(0);

pub struct Dockerd {
    /// `unshare`, whose only child (pid 1 of the new pid namespace) is dockerd.
    child: Child,
    host: String,
    dir: tempfile::TempDir,
    cgroup_parent: String,
    /// The masked directories that did not exist here, so are not masked.
    unmasked: Vec<&'static str>,
    before: HostSnapshot,
    relays: Vec<Relay>,
}

impl Dockerd {
    /// Starts a daemon, or says why it cannot (not root, Docker or a tool missing, or it did
    /// not come up) and returns `None`: the caller skips.
    pub fn start(test: &str) -> Option<Dockerd> {
        let skip = |why: &str| {
            eprintln!("skipped: {test}: {why}");
            None
        };
        if !super::nix_is_root() {
            return skip("a private dockerd needs root");
        }
        let (Some(dockerd), Some(_)) = (dockerd_binary(), docker_binary()) else {
            return skip("Docker is not installed (apt-get install docker.io)");
        };
        for (tool, version) in [
            ("unshare", "--version"),
            ("setpriv", "--version"),
            ("ip", "-V"),
        ] {
            if Command::new(tool).arg(version).output().is_err() {
                return skip(&format!("{tool} is not installed (util-linux, iproute2)"));
            }
        }
        // Short paths: unix sockets (dockerd's, containerd's) are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("kdk")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("daemon.json"), "{}\n").expect("write daemon.json");
        std::fs::create_dir(d.join("client")).expect("create the client config dir");
        let host = format!("unix://{}", d.join("docker.sock").display());
        let cgroup_parent = format!(
            "kiln-test-dockerd-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let unmasked = MASKED
            .iter()
            .copied()
            .filter(|m| !Path::new(m).is_dir())
            .collect();
        let before = HostSnapshot::capture();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("create dockerd.log");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .args(["unshare", "--net", "--mount", "--propagation", "private"])
            .args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"])
            .args(["sh", "-c", NAMESPACE_SETUP, "sh"])
            .arg(dockerd)
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["--host", &host])
            // Moot in a namespace of its own, and what keeps a host-namespace daemon harmless.
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--ip-forward=false", "--ip-masq=false"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .arg(format!("--cgroup-parent=/{cgroup_parent}"))
            .args(["--storage-driver", "overlay2"])
            .env("KILN_MASKED", MASKED.join(" "))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare dockerd");
        let mut daemon = Dockerd {
            child,
            host,
            dir,
            cgroup_parent,
            unmasked,
            before,
            relays: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if daemon.run(&["version"]).status.success() {
                return Some(daemon);
            }
            if Instant::now() > deadline || matches!(daemon.child.try_wait(), Ok(Some(_))) {
                eprintln!("dockerd log:\n{}", daemon.log());
                return skip("the private dockerd did not come up (its log is above)");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The Docker client for this daemon, with a client config of its own.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(docker_binary().expect("docker"));
        cmd.args(["--host", &self.host])
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_HOST");
        cmd
    }

    /// The daemon's address (`unix://...`), for clients such as `docker-compose` that take
    /// `DOCKER_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client config directory (`DOCKER_CONFIG`).
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("client")
    }

    /// `docker ARGS` against this daemon.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run docker")
    }

    /// `docker ARGS`, asserted to succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Makes `127.0.0.1:port` inside the daemon's namespace reach `127.0.0.1:port` on the
    /// host (where a test's registry listens), so image references stay the same on both
    /// sides and dockerd still treats the loopback registry as insecure (plain HTTP).
    pub fn forward_port(&mut self, port: u16) {
        let netns = format!("/proc/{}/ns/net", self.child.id());
        self.relays.push(Relay::start(&netns, port));
    }

    /// Stops dockerd with SIGTERM (it takes its containers and containerd down), SIGKILL after
    /// 30 s (the pid namespace goes with it), then removes the cgroup parent and what it made.
    fn stop(&mut self) {
        for relay in &mut self.relays {
            relay.stop();
        }
        let me = self.child.id();
        let daemon = child_of(me);
        let signal = |pid: i32, sig| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        };
        use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
        if let Some(pid) = daemon {
            signal(pid, SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("dockerd did not stop within 30 s; killing its pid namespace");
            signal(daemon.unwrap_or(me as i32), SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for mount in hostnet::cgroup_mounts() {
            remove_cgroup(&mount.join(&self.cgroup_parent));
        }
        for (masked, created) in CREATED_WHEN_UNMASKED {
            if self.unmasked.contains(masked) {
                for path in *created {
                    let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
                }
            }
        }
    }

    /// What the daemon changed on the host, one line each (empty when nothing).
    fn damage(&self) -> Vec<String> {
        let mut damage = self.before.damage(&HostSnapshot::capture());
        damage.extend(
            hostnet::mounts_under(self.dir.path())
                .into_iter()
                .map(|m| format!("mount left on the host: {}", m.display())),
        );
        for mount in hostnet::cgroup_mounts() {
            let cgroup = mount.join(&self.cgroup_parent);
            if cgroup.exists() {
                damage.push(format!("cgroup left: {}", cgroup.display()));
            }
        }
        damage
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        let damage = self.damage();
        if damage.is_empty() {
            return;
        }
        let report = format!(
            "the test's dockerd changed the host (issue 23):\n  {}",
            damage.join("\n  ")
        );
        // A second panic while unwinding would abort and hide the first failure.
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

/// The child of `parent` (unshare has one: dockerd), from the kernel's children list or, where
/// that is not built in, from every process's parent.
fn child_of(parent: u32) -> Option<i32> {
    let listed = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok());
    listed.or_else(|| {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
    })
}

/// Removes an empty cgroup and its empty children (BuildKit makes `buildkit` in the parent),
/// deepest first; a cgroup with processes stays (and the host check reports it).
fn remove_cgroup(dir: &Path) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&child.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// dockerd: Debian's docker.io puts it in /usr/sbin, Docker's own packages in /usr/bin.
fn dockerd_binary() -> Option<PathBuf> {
    ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The client packaged with the daemon (another one on PATH may be a different version).
fn docker_binary() -> Option<PathBuf> {
    Some(PathBuf::from("/usr/bin/docker")).filter(|p| p.exists())
}

/// A TCP relay from a listener inside another network namespace to the same port on this
/// namespace's loopback. A socket belongs to the namespace it was made in, so a short-lived
/// thread joins the target namespace just to bind; accepting and connecting out happen here.
struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(netns: &str, port: u16) -> Relay {
        let ns = std::fs::File::open(netns).unwrap_or_else(|e| panic!("open {netns}: {e}"));
        let listener = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            TcpListener::bind(("127.0.0.1", port))
        })
        .join()
        .expect("relay bind thread")
        .unwrap_or_else(|e| panic!("listen on 127.0.0.1:{port} in the daemon's namespace: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        let _ = inside.set_nonblocking(false);
                        if let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) {
                            pipe(inside, outside);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Relay {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until each side has closed its half.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [
        (a.try_clone().expect("clone"), b.try_clone().expect("clone")),
        (b, a),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}
