//! The seccomp filter as a `kiln run` user sees it (root, busybox base image): on by default
//! for run and exec, off with `--security-opt seccomp=unconfined`, which `inspect` shows as
//! Docker does; unknown security options are refused.

use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Option<Env> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: kiln run needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let tar = dir.path().join("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&tar).expect("busybox rootfs tar");
        let env = Env { _dir: dir, root };
        env.ok(&[
            "import",
            tar.to_str().expect("utf-8"),
            "busybox",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]);
        Some(env)
    }

    fn kiln(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .output()
            .expect("run kiln")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn security_opt(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect prints JSON");
        v[0]["HostConfig"]["SecurityOpt"].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.kiln(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.kiln(&["rm", "-f", id]);
        }
    }
}

const PROBE: &str = "grep '^Seccomp:' /proc/self/status; unshare -U true";

#[test]
fn run_and_exec_are_filtered_unless_unconfined() {
    let Some(env) = Env::new() else { return };

    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        PROBE,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t2\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );

    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        PROBE,
    ]);
    assert_eq!(out, "Seccomp:\t0\n");

    // Detached containers: inspect shows the option, exec inherits the container's choice.
    let base = ["run", "-d", "--network", "none"];
    env.ok(&[&base[..], &["--name", "filtered", "busybox", "sleep", "60"]].concat());
    env.ok(&[
        &base[..],
        &["--security-opt", "seccomp:unconfined"],
        &["--name", "open", "busybox", "sleep", "60"],
    ]
    .concat());
    assert_eq!(env.security_opt("filtered"), serde_json::Value::Null);
    assert_eq!(
        env.security_opt("open"),
        serde_json::json!(["seccomp=unconfined"])
    );
    let out = env.kiln(&["exec", "filtered", "sh", "-c", PROBE]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t2\n");
    assert_eq!(
        env.ok(&["exec", "open", "sh", "-c", PROBE]),
        "Seccomp:\t0\n"
    );
}

#[test]
fn unknown_security_options_are_refused() {
    let Some(env) = Env::new() else { return };
    for opt in ["seccomp=/etc/profile.json", "apparmor=unconfined"] {
        let out = env.kiln(&["run", "--rm", "--security-opt", opt, "busybox", "true"]);
        assert!(!out.status.success(), "{opt}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not supported yet"), "{opt}: {err}");
    }
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}
