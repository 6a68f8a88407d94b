//! Shared helpers for the end-to-end build tests: a fresh store root with the busybox base
//! imported, the `kiln` binary run against it, build contexts written from strings, and
//! rawjson progress parsed into events; submodules for container roots, a network namespace
//! playing the host, a private dockerd (with the host check of issue 23) and a real registry.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod compose;
pub mod containers;
pub mod dockerd;
pub mod faultproxy;
pub mod hostnet;
pub mod imagefs;
pub mod netns;
pub mod reference;
pub mod registry;
pub mod worker;

/// A store root in a tempdir with `busybox:latest` imported.
pub struct Kiln {
    pub dir: tempfile::TempDir,
}

impl Kiln {
    /// A fresh root, or `None` (with a printed reason) when the tests cannot run here.
    pub fn new(test: &str) -> Option<Kiln> {
        if !nix_is_root() {
            eprintln!("skipping {test}: needs root (sandboxes and overlay mounts)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-e2e-")
            .tempdir()
            .expect("tempdir");
        let tar = dir.path().join("busybox-rootfs.tar");
        if let Err(e) = kiln_testutil::write_busybox_rootfs_tar(&tar) {
            eprintln!("skipping {test}: no busybox fixture ({e})");
            return None;
        }
        let k = Kiln { dir };
        let out = k.run(&[
            "import",
            tar.to_str().expect("utf-8 path"),
            "busybox",
            "-c",
            "CMD [\"sh\"]",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]);
        assert_success(&out, "import busybox");
        let _ = std::fs::remove_file(&tar);
        Some(k)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A new empty directory under this test's tempdir.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("create dir");
        path
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.arg("--root").arg(self.root());
        cmd.env_remove("KILN_ROOT");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run kiln")
    }

    /// `kiln build --progress rawjson ARGS... CONTEXT`.
    pub fn build(&self, context: &Path, args: &[&str]) -> Build {
        let mut cmd = self.command();
        cmd.args(["build", "--progress", "rawjson"]).args(args);
        cmd.arg(context);
        Build::from(cmd.output().expect("run kiln build"))
    }

    /// Builds a Dockerfile given on stdin (context `-`).
    pub fn build_stdin(&self, dockerfile: &str, args: &[&str]) -> Build {
        let mut cmd = self.command();
        cmd.args(["build", "--progress", "rawjson"])
            .args(args)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kiln build");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dockerfile.as_bytes())
            .expect("write the Dockerfile");
        Build::from(child.wait_with_output().expect("wait for kiln build"))
    }

    /// What `CMD` prints inside `image`: a throwaway build runs it (there is no `kiln run` yet)
    /// and its stdout log is returned.
    pub fn output_of(&self, image: &str, shell: &str) -> String {
        let dockerfile = format!("FROM {image}\nRUN --network=none {shell}\n");
        let b = self.build_stdin(&dockerfile, &["--no-cache"]);
        b.assert_ok();
        let run = b
            .steps()
            .into_iter()
            .find(|s| s.contains("] RUN "))
            .expect("the RUN step");
        b.stdout_of(&run)
    }

    pub fn image_exists(&self, name: &str) -> bool {
        self.run(&["inspect", name]).status.success()
    }
}

pub fn nix_is_root() -> bool {
    // The effective uid from /proc, which keeps the tests free of unsafe code.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `files` (relative path, contents) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write file");
    }
}

/// Copies a directory tree (files and dirs; symlinks recreated) into `dest`; files are made
/// writable so tests can edit them (the shared workloads are read-only).
pub fn copy_tree(src: &Path, dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).expect("create dest");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        let ty = entry.file_type().expect("file type");
        let to = dest.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &to);
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path()).expect("readlink");
            std::os::unix::fs::symlink(target, &to).expect("symlink");
        } else {
            std::fs::copy(entry.path(), &to).expect("copy file");
            let mode = entry.metadata().expect("metadata").permissions().mode() | 0o200;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
}

/// The shared directory with the benchmark workloads, if this checkout has it.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KILN_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    dir.join("bench/workloads").is_dir().then_some(dir)
}

/// One rawjson progress event.
#[derive(Debug, Clone)]
pub struct Event {
    pub vertex: String,
    pub name: String,
    pub kind: String,
    pub time: f64,
    pub data: String,
    pub stream: String,
    /// The text of a `warning` or `info` record.
    pub message: String,
}

/// The outcome of one `kiln build --progress rawjson`.
pub struct Build {
    pub output: Output,
    pub events: Vec<Event>,
}

impl From<Output> for Build {
    fn from(output: Output) -> Build {
        let events = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|v| {
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                Event {
                    vertex: s("vertex"),
                    name: s("name"),
                    kind: s("kind"),
                    time: v.get("time").and_then(|t| t.as_f64()).unwrap_or(0.0),
                    data: s("data"),
                    stream: s("stream"),
                    message: s("message"),
                }
            })
            .collect();
        Build { output, events }
    }
}

impl Build {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn assert_ok(&self) {
        assert_success(&self.output, "kiln build");
    }

    /// The engine's `warning` or `info` records, in order.
    pub fn messages(&self, kind: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.message.clone())
            .collect()
    }

    /// Names of the Dockerfile steps (`[stage n/m] ...`; not `[internal]` context loads), in
    /// first-event order.
    pub fn steps(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in &self.events {
            if e.name.starts_with('[')
                && !e.name.starts_with("[internal]")
                && !out.contains(&e.name)
            {
                out.push(e.name.clone());
            }
        }
        out
    }

    fn has(&self, name: &str, kind: &str) -> bool {
        self.events.iter().any(|e| e.name == name && e.kind == kind)
    }

    /// Steps that ran (started and completed) rather than coming from the cache.
    pub fn executed(&self) -> Vec<String> {
        self.steps()
            .into_iter()
            .filter(|s| self.has(s, "completed") && !self.has(s, "cached"))
            .collect()
    }

    pub fn cached(&self) -> Vec<String> {
        self.steps()
            .into_iter()
            .filter(|s| self.has(s, "cached"))
            .collect()
    }

    /// Steps whose name contains `RUN` that executed.
    pub fn runs_executed(&self) -> Vec<String> {
        self.executed()
            .into_iter()
            .filter(|s| s.contains("] RUN "))
            .collect()
    }

    /// The stdout the step named `name` logged.
    pub fn stdout_of(&self, name: &str) -> String {
        self.events
            .iter()
            .filter(|e| e.name == name && e.kind == "log" && e.stream == "stdout")
            .map(|e| e.data.as_str())
            .collect()
    }

    /// Every log line of every step.
    pub fn all_logs(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.kind == "log")
            .map(|e| e.data.as_str())
            .collect()
    }

    pub fn time_of(&self, name: &str, kind: &str) -> Option<f64> {
        self.events
            .iter()
            .find(|e| e.name == name && e.kind == kind)
            .map(|e| e.time)
    }
}
