//! A network namespace a test makes to play the host (`ip netns add` under a unique name):
//! kiln runs in it through `ip netns exec`, which also mounts a `/sys` of the namespace, and
//! what kiln leaves behind is read from inside: `iptables-save` without counters, `ip -br
//! link`, `net.ipv4.ip_forward`. Deleted on drop, with every interface and rule in it, so a
//! failing test leaves nothing on the real host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct TestNetns {
    pub name: String,
}

/// What a test compares before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsState {
    /// `iptables-save` without its comments (they carry the time) and chain counters.
    pub iptables: String,
    /// `ip -br link`.
    pub links: String,
    pub ip_forward: String,
}

impl TestNetns {
    /// A new namespace with `lo` up, or `None` (with a printed reason) where it cannot be made.
    pub fn new(tag: &str) -> Option<TestNetns> {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipped: network namespaces need root");
            return None;
        }
        for tool in ["ip", "iptables", "iptables-save"] {
            if Command::new(tool).arg("--version").output().is_err() {
                println!("skipped: no {tool}");
                return None;
            }
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = TestNetns {
            name: format!(
                "kiln-t-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let out = Command::new("ip")
            .args(["netns", "add", &ns.name])
            .output()
            .expect("ip netns add");
        assert!(out.status.success(), "ip netns add {}: {out:?}", ns.name);
        ns.ok("ip", &["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `program args` inside the namespace.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(Path::new(program), args)
            .output()
            .expect("ip netns exec")
    }

    /// Runs `program args` inside, asserts success, returns stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Gives the namespace what a host with a firewall has: the filter and nat tables with
    /// their builtin chains (a new namespace has none until iptables is first used there), a
    /// rule of the host's own in each chain kiln jumps from, and `ip_forward` as given.
    pub fn be_a_host(&self, ip_forward: bool) {
        for rule in [
            &[
                "-w",
                "-t",
                "filter",
                "-A",
                "FORWARD",
                "-s",
                "192.0.2.0/24",
                "-j",
                "ACCEPT",
            ][..],
            &[
                "-w", "-t", "filter", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT",
            ],
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "192.0.2.0/24",
                "-j",
                "RETURN",
            ],
        ] {
            self.ok("iptables", rule);
        }
        self.set_ip_forward(ip_forward);
    }

    pub fn set_ip_forward(&self, on: bool) {
        self.ok(
            "sysctl",
            &[
                "-q",
                "-w",
                if on {
                    "net.ipv4.ip_forward=1"
                } else {
                    "net.ipv4.ip_forward=0"
                },
            ],
        );
    }

    pub fn state(&self) -> NetnsState {
        let iptables = self
            .ok("iptables-save", &[])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.strip_prefix(':') {
                // `:CHAIN POLICY [packets:bytes]`
                Some(_) => l.split(" [").next().unwrap_or(l).to_string() + "\n",
                None => l.to_string() + "\n",
            })
            .collect();
        NetnsState {
            iptables,
            links: self.ok("ip", &["-br", "link"]),
            ip_forward: self
                .ok("cat", &["/proc/sys/net/ipv4/ip_forward"])
                .trim()
                .to_string(),
        }
    }

    /// Waits (up to 10 s: the kernel frees a container's namespace and its veth pair
    /// asynchronously) for the state to be `want` again, and asserts it is.
    pub fn assert_state_is(&self, want: &NetnsState) {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.state();
            if now == *want {
                return;
            }
            if Instant::now() >= until {
                assert_eq!(
                    now.iptables, want.iptables,
                    "iptables-save in {} changed",
                    self.name
                );
                assert_eq!(
                    now.links, want.links,
                    "ip -br link in {} changed",
                    self.name
                );
                assert_eq!(
                    now.ip_forward, want.ip_forward,
                    "ip_forward in {} changed",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl TestNetns {
    /// Where kiln notes that it turned forwarding on in this namespace (named after the
    /// namespace's inode, as `kiln_runtime`'s `net::forwarding` does); `None` once the
    /// namespace is gone.
    pub fn forwarding_record(&self) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let pin = std::fs::metadata(Path::new("/run/netns").join(&self.name)).ok()?;
        Some(PathBuf::from(format!(
            "/run/kiln/ip_forward-{}.json",
            pin.ino()
        )))
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Left by kiln when a test failed before its last network went.
        if let Some(record) = self.forwarding_record() {
            let _ = std::fs::remove_file(record);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
