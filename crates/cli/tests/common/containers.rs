//! A store root for the container tests: busybox imported (with optional image changes), kiln
//! run against it, and every container and network it made removed when it is dropped, even
//! after a failed test, so no monitor, bridge or firewall rule outlives the test.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

pub struct RunEnv {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    _serial: Option<MutexGuard<'static, ()>>,
}

impl RunEnv {
    /// A fresh root with `busybox` imported, the image changed by `changes` (Dockerfile lines);
    /// `None` (and a message) when not root.
    pub fn new(changes: &[&str]) -> Option<RunEnv> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: containers need root");
            return None;
        }
        RunEnv::holding(changes, None)
    }

    /// [`RunEnv::new`] for a test that must not overlap the others holding `lock`.
    pub fn serial(lock: &'static Mutex<()>, changes: &[&str]) -> Option<RunEnv> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: containers need root");
            return None;
        }
        RunEnv::holding(
            changes,
            Some(lock.lock().unwrap_or_else(|p| p.into_inner())),
        )
    }

    /// A root that keeps `guard` (or none, for a second root of a test holding the lock).
    pub fn holding(changes: &[&str], guard: Option<MutexGuard<'static, ()>>) -> Option<RunEnv> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let tar = dir.path().join("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
        let env = RunEnv {
            root,
            _dir: dir,
            _serial: guard,
        };
        let mut args = vec![
            "import".to_string(),
            tar.to_str().expect("utf-8").to_string(),
            "busybox".to_string(),
            "-c".into(),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ];
        for c in changes {
            args.push("-c".into());
            args.push(c.to_string());
        }
        let out = env.kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "import failed: {out:?}");
        Some(env)
    }

    /// The test's own directory (the root is `root` in it; `busybox.tar` is the base's rootfs).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// `kiln --root ROOT`, to add arguments and stdio to.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Runs kiln (stdin empty) and returns what it did.
    pub fn kiln(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run kiln")
    }

    /// Runs kiln, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kiln inspect NAME`'s one object.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect json");
        v[0].clone()
    }
}

impl Drop for RunEnv {
    fn drop(&mut self) {
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
