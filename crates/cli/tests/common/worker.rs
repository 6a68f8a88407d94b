//! `kiln serve` for tests: a worker process on a free loopback port (or a unix socket) with a
//! store root of its own holding busybox, killed by PID when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A worker root holding the client's busybox, saved and loaded, so both stores have the very
/// same base image and builds can be compared digest for digest.
pub fn worker_root(k: &super::Kiln, name: &str) -> PathBuf {
    let root = k.dir.path().join(name);
    let tar = k.dir.path().join(format!("{name}-busybox.tar"));
    super::assert_success(
        &k.run(&["save", "busybox", "-o", tar.to_str().unwrap()]),
        "save busybox",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(&root)
        .args(["load", "-i", tar.to_str().unwrap()])
        .output()
        .unwrap();
    super::assert_success(&out, "load busybox into the worker");
    root
}

pub struct Worker {
    pub child: Child,
    pub address: String,
    pub root: PathBuf,
    /// Everything the worker printed so far.
    pub log: Arc<Mutex<String>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    /// Starts `kiln serve --addr ADDR ARGS...` on `root` and waits until it listens.
    pub fn start(root: &Path, addr: &str, args: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(root)
            .args(["serve", "--addr", addr])
            .args(args)
            .env_remove("KILN_ROOT")
            .env("KILN_LOG", "kiln_serve=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kiln serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split(" listening on ").nth(1) {
                        let address = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(address);
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let address = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("kiln serve did not start:\n{}", log.lock().unwrap());
            }
        };
        Worker {
            child,
            address,
            root: root.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the worker with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose command line contains `needle`, with their pids.
pub fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Waits until `cond` holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The processes whose command line contains `needle`, and all their descendants: a test's
/// own step processes, found by a marker only it uses.
pub fn marked_processes(needle: &str) -> Vec<u32> {
    let mut found: Vec<u32> = processes_with(needle).into_iter().map(|(p, _)| p).collect();
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    loop {
        let more: Vec<u32> = all
            .iter()
            .copied()
            .filter(|p| !found.contains(p))
            .filter(|p| parent_of(*p).is_some_and(|pp| found.contains(&pp)))
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

/// Whether any of `pids` still exists.
pub fn any_alive(pids: &[u32]) -> bool {
    pids.iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}
