//! Issue 17's features end to end, built by kiln and, where the reference can build the same
//! thing, by BuildKit 0.24 and compared as images: build checks (`--check` against the
//! reference's lint), git sources and git contexts (a bare repository behind a `git daemon` on
//! loopback), named contexts, contexts from stdin and from a URL, ssh agents made by the test,
//! `--add-host`/`--ulimit`/`--shm-size`, `RUN --device`, and provenance through a loopback
//! registry. Each part skips with `skipped: ...` when a tool it needs is absent.

mod common;

#[path = "build_features/checks.rs"]
mod checks;
#[path = "build_features/contexts.rs"]
mod contexts;
#[path = "build_features/git.rs"]
mod git;
#[path = "build_features/provenance.rs"]
mod provenance;
#[path = "build_features/run_settings.rs"]
mod run_settings;
#[path = "build_features/ssh.rs"]
mod ssh;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Whether `tool` runs here (`tool --version`, or any exit at all for tools without it).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `git daemon` serving the bare repositories under its directory on 127.0.0.1, stopped (by
/// its PID) when dropped.
pub struct GitServer {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GitServer {
    /// Serves `root`; `None` (after `skipped: ...`) without git.
    pub fn start(root: &Path, test: &str) -> Option<GitServer> {
        if !have("git") {
            eprintln!("skipped: {test}: git is not installed");
            return None;
        }
        let port = free_port();
        // `git daemon` would fork `git-daemon` and leave it behind when killed: start the
        // daemon itself, so the PID this test ends is the server's.
        let exec_path = run(Command::new("git").arg("--exec-path"), "git --exec-path");
        let daemon = Path::new(exec_path.trim()).join("git-daemon");
        let child = Command::new(daemon)
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let server = GitServer {
            child,
            port,
            root: root.to_path_buf(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("git daemon did not listen on {port}");
    }

    /// `git://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

/// `git` with a fixed identity and dates, so commits are the same on every run.
pub fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .env("GIT_AUTHOR_NAME", "kiln test")
        .env("GIT_AUTHOR_EMAIL", "test@kiln.invalid")
        .env("GIT_COMMITTER_NAME", "kiln test")
        .env("GIT_COMMITTER_EMAIL", "test@kiln.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    cmd
}

/// A work tree at `dir` with `files` committed on branch `main` and tagged `v1`, pushed into
/// the bare repository `bare`. Returns the commit.
pub fn make_repository(dir: &Path, bare: &Path, files: &[(&str, &str)]) -> String {
    common::write_files(dir, files);
    run(
        Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(dir),
        "git init",
    );
    run(git(dir).args(["add", "."]), "git add");
    run(git(dir).args(["commit", "-q", "-m", "one"]), "git commit");
    run(git(dir).args(["tag", "v1"]), "git tag");
    run(
        Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(dir)
            .arg(bare),
        "git clone --bare",
    );
    run(git(dir).args(["rev-parse", "HEAD"]), "git rev-parse")
        .trim()
        .to_owned()
}

/// An HTTP server on 127.0.0.1 answering every request with `body`; returns its port.
pub fn serve_bytes(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    port
}

/// The image ID `kiln build` printed with `-q`.
pub fn built_id(out: &std::process::Output) -> String {
    common::assert_success(out, "kiln build");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
