//! Shared helpers of the export tests: a fresh store root with the busybox base imported, and
//! running the `kiln` binary against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const EPOCH: &str = "1700000000";

/// A store root in a tempdir, with `busybox` imported.
pub struct Kiln {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

pub fn is_root() -> bool {
    // The effective uid from /proc keeps the tests free of unsafe libc calls.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `None` (with a printed reason) when not root: builds need namespaces and mounts.
pub fn setup() -> Option<Kiln> {
    if !is_root() {
        eprintln!("skipping: export tests need root (namespaces, overlayfs)");
        return None;
    }
    let k = Kiln::empty();
    let tar = k.dir.path().join("busybox-rootfs.tar");
    kiln_testutil::write_busybox_rootfs_tar(&tar).expect("write busybox rootfs tar");
    k.ok(&[
        "import",
        tar.to_str().unwrap(),
        "busybox",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    Some(k)
}

/// Whether `tool` is on PATH; prints why a test skips when not.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

impl Kiln {
    /// A root with nothing in it.
    pub fn empty() -> Kiln {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        Kiln { dir, root }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.arg("--root").arg(&self.root).args(args);
        c.env_remove("SOURCE_DATE_EPOCH");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run kiln")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kiln build --progress plain EXTRA... CONTEXT`, asserting success; returns stdout.
    pub fn build(&self, ctx: &Path, extra: &[&str]) -> String {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().expect("utf-8 context path"));
        self.ok(&args)
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kiln {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes a build context with `dockerfile` and a file `greeting.txt`.
    pub fn context(&self, name: &str, dockerfile: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        std::fs::write(dir.join("greeting.txt"), "hello from the context\n").unwrap();
        dir
    }

    /// `kiln inspect NAME` as JSON (the first element).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let text = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("inspect json");
        match v {
            serde_json::Value::Array(mut a) => a.remove(0),
            other => other,
        }
    }

    /// Image ID and manifest digest of NAME.
    pub fn digests(&self, name: &str) -> (String, String) {
        let v = self.inspect(name);
        (
            v["Id"].as_str().unwrap().to_string(),
            v["Descriptor"]["digest"].as_str().unwrap().to_string(),
        )
    }
}

/// The Dockerfile most export tests build: a RUN layer, a COPY layer and a CMD.
pub const APP: &str = "FROM busybox\nRUN mkdir -p /app && echo built > /app/built.txt && rm /bin/ls\nCOPY greeting.txt /app/\nCMD [\"cat\", \"/app/greeting.txt\"]\n";

/// Reads a tar (plain) and returns entry path -> contents for regular files, plus all paths.
pub fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((path, data));
    }
    out
}

pub fn entry<'a>(entries: &'a [(String, Vec<u8>)], path: &str) -> Option<&'a [u8]> {
    entries
        .iter()
        .find(|(p, _)| p.trim_start_matches("./") == path)
        .map(|(_, d)| d.as_slice())
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
