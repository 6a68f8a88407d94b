//! Shared helpers for the executor's integration tests: root checks and a busybox rootfs made
//! from Debian's `busybox-static` (`apt-get install -y busybox-static`).

#![allow(dead_code)]

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the tests run as root (effective uid 0).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A static busybox binary, if installed.
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Returns false (after printing why) when the test cannot run here: not root, or no
/// busybox. Use as `if !common::can_run("name") { return; }`.
pub fn can_run(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root (sandbox tests create namespaces and mounts)");
        return false;
    }
    if busybox().is_none() {
        eprintln!("skipping {test}: needs busybox-static (apt-get install -y busybox-static)");
        return false;
    }
    true
}

/// Fills `dir` with a minimal busybox system: `bin/busybox` plus one symlink per applet in
/// `bin/`, `etc/passwd`, `etc/group` (root, nobody, a `user` 1000) and a `tmp` (1777).
/// Deliberately without `/proc`, `/dev`, `/sys` and `/etc/hosts`, so tests see the sandbox
/// create and remove those stubs.
pub fn busybox_rootfs(dir: &Path) -> io::Result<()> {
    let bb = busybox().ok_or_else(|| io::Error::other("busybox not found"))?;
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(&bb, bin.join("busybox"))?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))?;
    let out = Command::new(&bb).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        if !link.exists() {
            symlink("busybox", &link)?;
        }
    }
    let etc = dir.join("etc");
    fs::create_dir_all(&etc)?;
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(
        etc.join("group"),
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n",
    )?;
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// Every path under `dir`, relative, sorted (to compare trees before and after).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().display().to_string());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &p, out);
        }
    }
}

/// A busybox rootfs and a sandbox state dir in a tempdir of their own.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        busybox_rootfs(&root).unwrap();
        let state = dir.path().join("state");
        Fixture { dir, root, state }
    }

    /// `sh -c script` on the rootfs, its state under the fixture's state dir.
    pub fn shell(&self, script: &str) -> kiln_executor::sandbox::SandboxSpec {
        let mut spec = kiln_executor::sandbox::SandboxSpec::new(
            kiln_executor::sandbox::RootFs::Path(self.root.clone()),
            vec!["sh".into(), "-c".into(), script.into()],
        );
        spec.state_dir = self.state.clone();
        spec
    }
}

/// Runs `spec` to the end, collecting its output; a sandbox that fails to start panics.
pub fn run(
    spec: &kiln_executor::sandbox::SandboxSpec,
) -> (
    kiln_executor::sandbox::ExitInfo,
    kiln_executor::sandbox::CollectOutput,
) {
    let mut out = kiln_executor::sandbox::CollectOutput::default();
    let info =
        kiln_executor::sandbox::run(spec, &mut out, &kiln_executor::sandbox::CancelToken::new())
            .unwrap_or_else(|e| panic!("sandbox failed: {e}"));
    (info, out)
}

/// [`run`] for a command that must exit 0; returns its stdout.
pub fn run_ok(spec: &kiln_executor::sandbox::SandboxSpec) -> String {
    let (info, out) = run(spec);
    assert_eq!(
        info.status,
        kiln_executor::sandbox::ExitStatus::Code(0),
        "stdout: {}\nstderr: {}",
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}
