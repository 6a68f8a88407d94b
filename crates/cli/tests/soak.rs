//! Concurrent load on one root: builders, a puller, an `rmi` worker, `builder prune` and
//! `system prune`, and containers, all at once for a bounded time (40 s; `KILN_SOAK_SECS=N`
//! for a longer run). No operation may hang (each has a deadline), no build, pull or run may
//! fail, no image that nobody removed on purpose may be lost (each builder's last image still
//! runs and prints what it built), and `kiln system check` must be clean at the end. The
//! operation counts and the time are printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::containers::RunEnv;
use common::registry::Registry;

/// An operation that takes longer than this is taken for a deadlock.
const OP_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Default)]
struct Tally {
    ok: BTreeMap<&'static str, u32>,
    failures: Vec<String>,
    slowest: Duration,
}

struct Soak {
    root: PathBuf,
    tally: Mutex<Tally>,
    stop: AtomicBool,
}

impl Soak {
    /// Runs `kiln ARGS` with a deadline; counts it under `kind` when `ok` says it worked.
    fn op(&self, kind: &'static str, args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("KILN_ROOT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln");
        // Read the pipes on threads so a chatty process cannot block on a full pipe.
        let mut out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out_pipe, &mut v);
            v
        });
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err_pipe, &mut v);
            v
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > OP_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                self.stop.store(true, Ordering::SeqCst);
                panic!("kiln {args:?} ran for more than {OP_DEADLINE:?}: a deadlock");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        };
        let mut t = self.tally.lock().unwrap();
        t.slowest = t.slowest.max(start.elapsed());
        if ok(&output) {
            *t.ok.entry(kind).or_default() += 1;
        } else {
            t.failures.push(format!(
                "{kind}: kiln {args:?}: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        output
    }

    fn running(&self, until: Instant) -> bool {
        !self.stop.load(Ordering::SeqCst) && Instant::now() < until
    }
}

fn succeeded(o: &Output) -> bool {
    o.status.success()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A builder: rebuilds `keep/bN` from changing context (and tags each result `tmp/bN:I` for
/// the rmi worker); returns what its last image must print.
fn builder(s: &Soak, n: usize, dir: &Path, until: Instant) -> Option<String> {
    let ctx = dir.join(format!("ctx{n}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY data /data\nRUN cat /data > /marker && head -c 65536 /dev/urandom > /noise\nRUN wc -c < /noise >> /marker\n",
    )
    .unwrap();
    let keep = format!("keep/b{n}:latest");
    let mut expected = None;
    let mut i = 0;
    while s.running(until) {
        // Every third build repeats the previous context, so cache hits race prunes too.
        let content = format!("builder {n} round {}\n", i - i % 3 / 2);
        std::fs::write(ctx.join("data"), &content).unwrap();
        let tmp = format!("tmp/b{n}:{i}");
        let out = s.op(
            "build",
            &[
                "build",
                "--progress",
                "plain",
                "-t",
                &keep,
                "-t",
                &tmp,
                ctx.to_str().unwrap(),
            ],
            succeeded,
        );
        if out.status.success() {
            expected = Some(format!("{content}65536\n"));
        }
        i += 1;
    }
    expected
}

fn puller(s: &Soak, images: &[String], until: Instant) {
    let mut i = 0;
    while s.running(until) {
        let name = &images[i % images.len()];
        s.op("pull", &["pull", name], succeeded);
        // Remove it on purpose every other time, so the next pull downloads again.
        if i % 2 == 1 {
            s.op("rmi", &["rmi", name], |o| {
                o.status.success() || String::from_utf8_lossy(&o.stderr).contains("No such image")
            });
        }
        i += 1;
    }
}

fn remover(s: &Soak, until: Instant) {
    while s.running(until) {
        let list = s.op(
            "images",
            &["images", "--format", "{{.Repository}}:{{.Tag}}"],
            succeeded,
        );
        for name in stdout(&list).lines().filter(|l| l.starts_with("tmp/")) {
            // Another round of this loop cannot race it, but a build may retag meanwhile.
            s.op("rmi", &["rmi", name], |o| {
                o.status.success() || String::from_utf8_lossy(&o.stderr).contains("No such image")
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn pruner(s: &Soak, until: Instant) {
    let mut i = 0;
    while s.running(until) {
        if i % 2 == 0 {
            s.op(
                "builder prune",
                &["builder", "prune", "-a", "-f"],
                succeeded,
            );
        } else {
            s.op("system prune", &["system", "prune", "-f"], succeeded);
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
}

fn runner(s: &Soak, until: Instant) {
    let mut i = 0;
    while s.running(until) {
        let word = format!("soak-{i}");
        if i % 3 == 2 {
            s.op(
                "run",
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-v",
                    "soakvol:/v",
                    "busybox",
                    "sh",
                    "-c",
                    &format!("echo {word} >> /v/log && tail -n1 /v/log"),
                ],
                |o| o.status.success() && stdout(o).trim() == word,
            );
        } else {
            s.op(
                "run",
                &["run", "--rm", "--network", "none", "busybox", "echo", &word],
                |o| o.status.success() && stdout(o).trim() == word,
            );
        }
        i += 1;
    }
}

#[test]
fn concurrent_builds_pulls_removals_prunes_and_runs_lose_nothing() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let secs: u64 = std::env::var("KILN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let soak = Soak {
        root: env.root.clone(),
        tally: Mutex::new(Tally::default()),
        stop: AtomicBool::new(false),
    };
    // Images to pull: busybox and a built one, pushed to a registry of the test's own.
    let registry = Registry::start(None);
    let mut pullable = Vec::new();
    if let Some(reg) = &registry {
        for (tag, src) in [("base:1", "busybox"), ("base:2", "busybox")] {
            let name = format!("{}/soak/{tag}", reg.host());
            env.ok(&["tag", src, &name]);
            env.ok(&["push", &name]);
            env.ok(&["rmi", &name]);
            pullable.push(name);
        }
    } else {
        eprintln!("skipped the pull worker: no docker-registry");
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let expected: Vec<(usize, Option<String>)> = std::thread::scope(|scope| {
        let builders: Vec<_> = (0..2)
            .map(|n| {
                let soak = &soak;
                let dir = env.dir();
                scope.spawn(move || (n, builder(soak, n, dir, until)))
            })
            .collect();
        if !pullable.is_empty() {
            scope.spawn(|| puller(&soak, &pullable, until));
        }
        scope.spawn(|| remover(&soak, until));
        scope.spawn(|| pruner(&soak, until));
        scope.spawn(|| runner(&soak, until));
        builders.into_iter().map(|b| b.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();

    // Nothing anyone kept was lost: each builder's last image is there, whole, and runs.
    for (n, want) in &expected {
        let want = want
            .as_ref()
            .unwrap_or_else(|| panic!("builder {n} never finished a build"));
        let got = soak.op(
            "run",
            &[
                "run",
                "--rm",
                "--network",
                "none",
                &format!("keep/b{n}:latest"),
                "cat",
                "/marker",
            ],
            succeeded,
        );
        assert_eq!(
            &stdout(&got),
            want,
            "builder {n}'s image is not what it built last"
        );
    }
    let check = soak.op("system check", &["system", "check"], |o| {
        o.status.success() && stdout(o).contains("is consistent")
    });
    let t = soak.tally.into_inner().unwrap();
    let total: u32 = t.ok.values().sum();
    eprintln!(
        "soak: {:.0} s, {total} operations without a failure ({}), slowest {:.1} s, {} failures",
        elapsed.as_secs_f64(),
        t.ok.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.slowest.as_secs_f64(),
        t.failures.len()
    );
    assert!(
        t.failures.is_empty(),
        "failed operations:\n{}",
        t.failures.join("\n")
    );
    assert!(check.status.success(), "{}", stdout(&check));
    for kind in ["build", "run", "builder prune", "system prune", "rmi"] {
        assert!(t.ok.get(kind).copied().unwrap_or(0) > 0, "no {kind} ran");
    }
    drop(registry);
}
