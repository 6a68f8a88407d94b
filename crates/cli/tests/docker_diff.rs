//! The differential suite of issue 22: every `run`/`create`/`exec` invocation of the table
//! (`docker_diff/table.rs`) is run against a private dockerd (`common::dockerd`, in
//! namespaces of its own) and against kiln, on the same busybox image (kiln's, loaded into
//! the daemon with `docker load`), and their stdout and exit codes are compared after the
//! values that must differ (container IDs, hostnames) are normalized.
//!
//! One daemon and one kiln root serve the whole table, and the cases run on four threads
//! (each case uses names of its own), so the suite stays within a minute or two. A case the
//! table marks as a known difference (Docker 20.10 behaving unlike current Docker) is run
//! and reported, not failed.

mod common;
#[path = "docker_diff/table.rs"]
mod table;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::containers::RunEnv;
use common::dockerd::Dockerd;
use table::{CASES, Case, Compare};

/// What one tool did for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
}

/// Container IDs (64 and 12 hex digits, the latter also the default hostname) as
/// placeholders.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        let boundary = |j: usize| j >= bytes.len() || !bytes[j].is_ascii_alphanumeric();
        let starts = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if starts && (run == 64 || run == 12) && boundary(i + run) {
            out.push_str(if run == 64 { "<ID>" } else { "<ID12>" });
            i += run;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

fn outcome(out: Output, compare: Compare) -> Outcome {
    let text = normalize(&String::from_utf8_lossy(&out.stdout));
    let stdout = match compare {
        Compare::Exact => text,
        Compare::Sorted => {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort();
            lines.join("\n")
        }
        Compare::ExitOnly => String::new(),
    };
    Outcome {
        code: out.status.code(),
        stdout,
    }
}

/// The arguments of a step with its placeholders filled: `{dir}` the fixtures, `{n}` the
/// case's own container name, `{ex}` the long-running container of the exec cases.
fn fill(args: &[&str], dir: &Path, n: &str) -> Vec<String> {
    args.iter()
        .map(|a| {
            a.replace("{dir}", dir.to_str().unwrap())
                .replace("{n}", n)
                .replace("{ex}", "diff-ex")
        })
        .collect()
}

/// Runs a case's steps with `cmd` (a docker or kiln command with its global options); the
/// last step's outcome counts, then the case's container is removed.
fn run_case(make: &dyn Fn() -> Command, case: &Case, dir: &Path, n: &str) -> Outcome {
    for step in case.before {
        let _ = make().args(fill(step, dir, n)).output();
    }
    let out = make()
        .args(fill(case.args, dir, n))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the tool");
    let _ = make().args(["rm", "-f", n]).output();
    outcome(out, case.compare)
}

/// Files the cases read: a bind source, env and label files, a seccomp profile.
fn fixtures(dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/file"), "from the host\n").unwrap();
    std::fs::write(dir.join("env.list"), "# comment\nFROM_FILE=yes\nOTHER=2\n").unwrap();
    std::fs::write(dir.join("labels"), "# comment\nfrom.file=yes\n").unwrap();
    std::fs::write(dir.join("existing-cid"), "taken").unwrap();
    std::fs::write(
        dir.join("profile.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
}

#[test]
fn run_exec_and_create_match_docker() {
    let Some(kiln) = RunEnv::new(&[]) else { return };
    let Some(docker) = Dockerd::start("docker differential suite") else {
        return;
    };
    let image = kiln.dir().join("busybox-image.tar");
    kiln.ok(&["save", "-o", image.to_str().unwrap(), "busybox"]);
    docker.ok(&["load", "-i", image.to_str().unwrap()]);
    let dir = kiln.dir().join("fixtures");
    fixtures(&dir);
    // The exec cases' container, and the one other containers share namespaces with.
    let ex = [
        "run",
        "-d",
        "--name",
        "diff-ex",
        "--network",
        "none",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/x; exec sleep 600",
    ];
    docker.ok(&ex);
    kiln.ok(&ex);

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = CASES.get(i) else { return };
                    let n = format!("diff-{i}");
                    let d = run_case(&|| docker.command(), case, &dir, &n);
                    let k = run_case(&|| kiln.command(), case, &dir, &n);
                    results.lock().unwrap().push((i, d, k));
                }
            });
        }
    });
    let _ = docker.run(&["rm", "-f", "diff-ex"]);

    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _, _)| *i);
    let (mut same, mut documented, mut failed) = (0, Vec::new(), Vec::new());
    for (i, d, k) in &results {
        let case = &CASES[*i];
        let matches = d == k;
        match (matches, case.differs) {
            (true, _) => same += 1,
            (false, Some(why)) => documented.push(format!("{}: {why}", case.name)),
            (false, None) => failed.push(format!(
                "{}: {:?}\n  docker: {:?}\n  kiln:   {:?}",
                case.name, case.args, d, k
            )),
        }
    }
    println!(
        "differential suite: {} cases, {same} the same as Docker, {} documented differences",
        results.len(),
        documented.len()
    );
    for d in &documented {
        println!("  documented: {d}");
    }
    assert!(
        CASES.len() >= 60,
        "the table must hold at least 60 invocations"
    );
    assert!(
        failed.is_empty(),
        "{} of {} cases differ from Docker:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

#[test]
fn normalization_hides_ids_and_only_them() {
    let id = "a".repeat(64);
    assert_eq!(normalize(&format!("x {id} y")), "x <ID> y");
    assert_eq!(normalize("HOSTNAME=0123456789ab\n"), "HOSTNAME=<ID12>\n");
    assert_eq!(normalize("67108864 deadbeef"), "67108864 deadbeef");
    assert_eq!(normalize("x0123456789ab"), "x0123456789ab");
}
