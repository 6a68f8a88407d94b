//! A compose project for the `kiln compose` tests: a store root with busybox, the project's
//! directory, and a network namespace the test makes to play the host, which kiln runs in.
//! Every container and network is removed from inside the namespace before it goes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::netns::TestNetns;

/// A store root with busybox, a project directory, and the namespace kiln runs in.
pub struct Stack {
    pub root: PathBuf,
    pub project: PathBuf,
    pub ns: TestNetns,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub fn new(tag: &str, files: &[(&str, &str)]) -> Option<Stack> {
        if !super::nix_is_root() {
            println!("skipped: containers need root");
            return None;
        }
        let ns = TestNetns::new(tag)?;
        ns.be_a_host(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let project = dir.path().join("proj");
        std::fs::create_dir_all(&project).expect("project dir");
        super::write_files(&project, files);
        let tar = dir.path().join("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
        let s = Stack {
            root,
            project,
            ns,
            _dir: dir,
        };
        // `import` touches no network: it runs outside the namespace.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(&s.root)
            .args([
                "import",
                tar.to_str().expect("utf-8"),
                "busybox",
                "-c",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .output()
            .expect("run kiln");
        assert!(out.status.success(), "import: {out:?}");
        Some(s)
    }

    /// `kiln --root ROOT ARGS` in the project directory, inside the namespace.
    pub fn kiln(&self, args: &[&str]) -> Output {
        let root = self.root.to_str().expect("utf-8");
        let mut all = vec!["--root", root];
        all.extend_from_slice(args);
        self.ns
            .command(Path::new(env!("CARGO_BIN_EXE_kiln")), &all)
            .current_dir(&self.project)
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .output()
            .expect("run kiln")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["compose", "-p", "app"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// Container names of the project (running and not).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    pub fn id(&self, name: &str) -> String {
        self.ok(&["inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    pub fn exec(&self, name: &str, shell: &str) -> String {
        self.ok(&["exec", name, "sh", "-c", shell])
    }

    /// HTTP GET from the namespace (the "host"), retried while the server comes up.
    pub fn http_get(&self, url: &str) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            // Busybox's `wget -T` crashes (Debian 12's static build), so the host side uses
            // busybox without a timeout; the container answers or refuses at once.
            let out = self.ns.run("busybox", &["wget", "-q", "-O", "-", url]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < until,
                "GET {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Everything the test made goes from inside the namespace, before it is deleted.
        let ids = self.kiln(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.kiln(&["rm", "-f", id]);
        }
        let nets = self.kiln(&["network", "ls", "-q"]);
        for n in String::from_utf8_lossy(&nets.stdout).lines() {
            if n != "none" && n != "host" {
                let _ = self.kiln(&["network", "rm", n]);
            }
        }
    }
}

/// Polls `f` until it returns true (10 s).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
