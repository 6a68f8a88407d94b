//! Remote builds when things go wrong: Ctrl-C on the client, a worker killed mid-build (and
//! restarted on its root), a client that disappears (grace period, `kiln build attach`),
//! refused TLS, a full worker (queueing), a shutdown, and several workers with one down.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::worker::{Worker, any_alive, marked_processes, processes_with, wait_for, worker_root};
use common::{Kiln, assert_success, write_files};

/// A build running in the background whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Running {
    fn start(k: &Kiln, args: &[&str], ctx: &std::path::Path) -> Running {
        let mut child = k
            .command()
            .args(["build", "--progress", "plain"])
            .args(args)
            .arg(ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_line(&mut self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    // The step's own output, not its header line (which quotes the command).
                    if line.contains(needle) && !line.contains("RUN ") {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the process to exit; returns (success, time taken, all stderr).
    fn finish(mut self, limit: Duration) -> (Option<bool>, Duration, String) {
        let start = Instant::now();
        let mut status = None;
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                status = Some(s.success());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        (status, took, self.seen)
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A unique marker so the test finds only its own step processes. (Steps end in `; true` so
/// the shell, whose command line carries the marker, does not exec its last command.)
fn marker(name: &str) -> String {
    format!("kiln-test-{name}-{}", std::process::id())
}

#[test]
fn ctrl_c_cancels_the_build_on_the_worker() {
    let Some(k) = Kiln::new("remote ctrl-c") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let ctx = k.mkdir("ctx");
    let mark = marker("ctrlc");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {mark} started; sleep 300; true\n"),
        )],
    );
    let mut b = Running::start(&k, &["--builder", &w.address], &ctx);
    assert!(
        b.wait_line(&format!("{mark} started"), Duration::from_secs(30)),
        "{}",
        b.seen
    );
    // The echo is out; the shell may not have started its sleep yet.
    assert!(
        wait_for(Duration::from_secs(5), || marked_processes(&mark).len()
            >= 2),
        "the step's shell and its sleep run"
    );
    let sleeping = marked_processes(&mark);
    signal(b.child.id(), "INT");
    let (status, took, err) = b.finish(Duration::from_secs(10));
    assert_eq!(status, Some(false), "{err}");
    assert!(
        took < Duration::from_secs(2),
        "the client took {took:?} to stop:\n{err}"
    );
    assert!(err.contains("cancelled"), "{err}");
    let gone = wait_for(Duration::from_secs(5), || !any_alive(&sleeping));
    assert!(
        gone,
        "the step's processes outlived the cancel: {sleeping:?}"
    );
}

#[test]
fn a_killed_worker_fails_the_client_and_restarts_with_its_cache() {
    let Some(k) = Kiln::new("remote kill -9") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let mut w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let ctx = k.mkdir("ctx");
    let mark = marker("kill");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nRUN echo first > /first\nRUN echo {mark} started; sleep 300; true\n"
            ),
        )],
    );
    let mut b = Running::start(&k, &["--builder", &w.address], &ctx);
    assert!(
        b.wait_line(&format!("{mark} started"), Duration::from_secs(30)),
        "{}",
        b.seen
    );
    // The step's processes, found while the worker is alive (they are its descendants).
    let step = marked_processes(&mark);
    assert!(!step.is_empty());
    w.kill9();
    let (status, took, err) = b.finish(Duration::from_secs(20));
    // The sandbox outlives a SIGKILLed worker; this test started it, so it ends it.
    for pid in step {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert_eq!(status, Some(false), "the client must not hang:\n{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        err.contains(&w.address),
        "the error names the builder:\n{err}"
    );
    assert!(
        err.contains("sleep 300"),
        "the error names the step:\n{err}"
    );

    // Restarted on the same root: consistent, and the finished step is cached.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(&root)
        .args(["system", "check"])
        .output()
        .unwrap();
    assert_success(&check, "system check after kill -9");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo first > /first\nRUN echo second\n",
        )],
    );
    let b = k.build(&ctx, &["--builder", &w.address]);
    b.assert_ok();
    assert_eq!(
        b.runs_executed(),
        vec!["[3/3] RUN echo second".to_string()],
        "{:?}",
        b.steps()
    );
}

#[test]
fn a_vanished_client_is_waited_for_and_attach_follows_the_build() {
    let Some(k) = Kiln::new("remote attach") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &["--client-grace", "2s"]);
    let ctx = k.mkdir("ctx");
    let mark = marker("attach");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {mark} started; sleep 3; echo {mark} done\n"),
        )],
    );
    let mut b = Running::start(&k, &["--builder", &w.address], &ctx);
    assert!(
        b.wait_line(&format!("{mark} started"), Duration::from_secs(30)),
        "{}",
        b.seen
    );
    let id = b
        .seen
        .lines()
        .find_map(|l| {
            l.split(": build ")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .expect("the client names the build id");
    b.child.kill().unwrap();
    let _ = b.child.wait();
    let out = k
        .command()
        .args([
            "build",
            "--progress",
            "plain",
            "attach",
            &id,
            "--builder",
            &w.address,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{mark} done")),
        "attach replays and follows:\n{err}"
    );

    // Nobody attaches this time: the build is cancelled after the grace period.
    let mut b = Running::start(&k, &["--builder", &w.address, "--no-cache"], &ctx);
    assert!(
        b.wait_line(&format!("{mark} started"), Duration::from_secs(30)),
        "{}",
        b.seen
    );
    let step = marked_processes(&mark);
    b.child.kill().unwrap();
    let _ = b.child.wait();
    assert!(
        wait_for(Duration::from_secs(10), || w
            .log()
            .contains("no client for")),
        "{}",
        w.log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || !any_alive(&step)),
        "{step:?}"
    );
}

#[test]
fn tls_refusals_are_named_and_the_worker_keeps_serving() {
    let Some(k) = Kiln::new("remote tls") else {
        return;
    };
    let tls = k.dir.path().join("tls");
    let other = k.dir.path().join("other");
    for dir in [&tls, &other] {
        assert_success(&k.run(&["tls", "init", dir.to_str().unwrap()]), "tls init");
    }
    let root = k.dir.path().join("worker");
    let w = Worker::start(
        &root,
        "tcp://127.0.0.1:0",
        &["--tls-dir", tls.join("server").to_str().unwrap()],
    );
    let info = |extra: &[&str]| {
        let start = Instant::now();
        let out = k
            .command()
            .args(["builder", "info", "--builder", &w.address])
            .args(extra)
            .env_remove("KILN_TLS_DIR")
            .output()
            .unwrap();
        (out, start.elapsed())
    };
    // A client certificate from another CA (the client trusts the worker: it has our CA).
    let mixed = k.dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(tls.join("client/ca.pem"), mixed.join("ca.pem")).unwrap();
    std::fs::copy(other.join("client/cert.pem"), mixed.join("cert.pem")).unwrap();
    std::fs::copy(other.join("client/key.pem"), mixed.join("key.pem")).unwrap();
    let cases: [(&[&str], &str); 2] = [
        (&["--tls-dir", mixed.to_str().unwrap()], "unknown CA"),
        (&[], "plaintext"),
    ];
    for (args, cause) in cases {
        let (out, took) = info(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(err.contains(cause), "expected {cause:?} in:\n{err}");
    }
    let (out, _) = info(&["--tls-dir", tls.join("client").to_str().unwrap()]);
    assert_success(&out, "info with the right certificate");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Protocol:"));
    // du and prune ask the worker's store.
    for args in [&["du"][..], &["prune", "--all"][..]] {
        let out = k
            .command()
            .arg("builder")
            .args(args)
            .args(["--builder", &w.address, "--tls-dir"])
            .arg(tls.join("client"))
            .output()
            .unwrap();
        assert_success(&out, "builder du/prune --builder");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&w.address) || text.contains("Records:"),
            "{text}"
        );
    }

    // Plaintext off loopback is refused unless --insecure.
    let out = k
        .command()
        .args(["serve", "--addr", "tcp://0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to serve plaintext"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_worker_queues_and_a_shutdown_cancels_after_its_timeout() {
    let Some(k) = Kiln::new("remote queue") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(
        &root,
        "tcp://127.0.0.1:0",
        &["--max-builds", "1", "--shutdown-timeout", "1s"],
    );
    let mark = marker("queue");
    let a = k.mkdir("a");
    let b = k.mkdir("b");
    write_files(
        &a,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {mark} a; sleep 300; true\n"),
        )],
    );
    write_files(&b, &[("Dockerfile", "FROM busybox\nRUN echo b\n")]);
    let mut first = Running::start(&k, &["--builder", &w.address], &a);
    assert!(
        first.wait_line(&format!("{mark} a"), Duration::from_secs(30)),
        "{}",
        first.seen
    );
    let mut second = Running::start(&k, &["--builder", &w.address], &b);
    assert!(
        second.wait_line("waiting for a free build slot", Duration::from_secs(10)),
        "{}",
        second.seen
    );
    signal(w.pid(), "TERM");
    let (status, took, err) = first.finish(Duration::from_secs(15));
    assert_eq!(status, Some(false), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(err.contains("cancelled"), "{err}");
    let (status, _, err) = second.finish(Duration::from_secs(15));
    assert_eq!(status, Some(false), "{err}");
    assert!(
        wait_for(Duration::from_secs(5), || processes_with(&mark).is_empty()),
        "the cancelled step is gone"
    );
}
