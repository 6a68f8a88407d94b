//! Several clients and several workers: two clients asking one worker for the same build run
//! its steps once; with three workers the same project lands on the same one, and when that
//! one is down the next builds it from the shared registry cache.

mod common;

use std::process::Stdio;

use common::registry::Registry;
use common::worker::{Worker, worker_root};
use common::{Kiln, assert_success, write_files};

fn metadata(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("metadata file")).expect("json")
}

#[test]
fn two_clients_with_the_same_build_share_one_run_of_each_step() {
    let Some(k) = Kiln::new("remote shared solver") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let id = format!("count-{}", std::process::id());
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nRUN --mount=type=cache,id={id},target=/c echo ran >> /c/runs && sleep 2 && echo done > /done\n"
            ),
        )],
    );
    let start = |n: usize| {
        let m = k.dir.path().join(format!("m{n}.json"));
        let child = k
            .command()
            .args(["build", "--progress", "plain", "--builder", &w.address])
            .arg("--metadata-file")
            .arg(&m)
            .arg(&ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, m)
    };
    let (a, ma) = start(1);
    let (b, mb) = start(2);
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_success(&out, "concurrent build");
    }
    let (ma, mb) = (metadata(&ma), metadata(&mb));
    assert_eq!(ma["containerimage.digest"], mb["containerimage.digest"]);
    // The cache mount outlives builds: it counts how often the step really ran.
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nRUN --mount=type=cache,id={id},target=/c echo runs=$(wc -l < /c/runs)\n"
            ),
        )],
    );
    let out = k
        .command()
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--builder",
            &w.address,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out, "count");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs=1"),
        "the step must run once for both clients:\n{err}"
    );
}

#[test]
fn three_workers_keep_a_project_on_one_and_fail_over_with_the_registry_cache() {
    let Some(k) = Kiln::new("remote fleet") else {
        return;
    };
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| {
            let root = worker_root(&k, &format!("worker{i}"));
            Worker::start(&root, "tcp://127.0.0.1:0", &[])
        })
        .collect();
    let list = workers
        .iter()
        .map(|w| w.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let ctx = k.mkdir("project");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY app.txt /app.txt\nRUN wc -c /app.txt > /size\nRUN echo built > /built\n",
            ),
            ("app.txt", "an application\n"),
        ],
    );
    let cache = format!("{}/cache/project:buildcache", reg.host());
    let to = format!("type=registry,ref={cache},mode=max");
    let from = format!("type=registry,ref={cache}");
    let build = |n: usize| {
        let m = k.dir.path().join(format!("fleet{n}.json"));
        let mut cmd = k.command();
        cmd.args(["build", "--progress", "rawjson", "--builder", &list])
            .args(["--cache-to", &to, "--cache-from", &from])
            .arg("--metadata-file")
            .arg(&m)
            .arg(&ctx);
        let b = common::Build::from(cmd.output().unwrap());
        b.assert_ok();
        let builder = metadata(&m)["kiln.remote"]["builder"]
            .as_str()
            .unwrap()
            .to_string();
        (b, builder)
    };
    let (first, on) = build(1);
    assert_eq!(first.runs_executed().len(), 2, "{:?}", first.steps());
    // --push pushes from the worker: the client's store can pull what it pushed.
    let image = format!("{}/app/project:1", reg.host());
    let out = k
        .command()
        .args([
            "build",
            "--progress",
            "quiet",
            "--builder",
            &list,
            "--push",
            "-t",
            &image,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out, "remote --push");
    assert_success(&k.run(&["pull", &image]), "pull what the worker pushed");
    let (_, again) = build(2);
    assert_eq!(again, on, "the same project goes to the same worker");
    let down = workers.iter().position(|w| w.address == on).unwrap();
    workers[down].kill9();
    let (moved, other) = build(3);
    assert_ne!(other, on, "a worker that is down is skipped");
    assert_eq!(
        moved.runs_executed(),
        Vec::<String>::new(),
        "the new worker takes the RUN steps from the registry cache:\n{}",
        moved.stderr()
    );
}
