//! Root-only end-to-end tests of `kiln run`'s Docker flags and the container commands of
//! issue 22: what the container sees (`--init`, capabilities, cgroup limits, ulimits), and
//! `commit`, `diff`, `export`, `pause`, `rename`, `update`, `top`, `events`, `attach`, the
//! prunes, stop signals and timeouts, log rotation and `--cidfile`.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::containers::RunEnv;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Zombies among the container's processes, as `ps` inside shows them.
fn zombies(env: &RunEnv, name: &str) -> String {
    env.ok(&[
        "exec",
        name,
        "sh",
        "-c",
        "ps -o stat,comm | grep '^Z' || true",
    ])
}

#[test]
fn init_reaps_what_a_plain_pid_1_leaves_as_zombies() {
    let Some(env) = RunEnv::new(&[]) else { return };
    // The command: with --init it runs to its end and leaves nothing behind.
    let started = Instant::now();
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--init",
        "busybox",
        "sh",
        "-c",
        "sleep 1 & exec sleep 2",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    // A process orphaned into the container (its parent, a subshell, exits at once) is
    // reparented to pid 1. A `sleep` as pid 1 never reaps it; the init does.
    let orphan = "(sleep 1 &); exec sleep 30";
    for (name, init) in [("plain", false), ("inited", true)] {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sh", "-c", orphan]);
        env.ok(&args);
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        zombies(&env, "plain").contains('Z'),
        "the test needs a zombie to catch"
    );
    assert_eq!(zombies(&env, "inited"), "");
    // The init forwards `stop`'s SIGTERM to the sleep, which dies of it at once (a plain
    // `sleep` as pid 1 would ignore it until the timeout).
    let started = Instant::now();
    env.ok(&["stop", "inited"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        env.inspect("inited")["State"]["ExitCode"],
        serde_json::json!(143)
    );
}

#[test]
fn the_container_sees_its_limits_and_capabilities() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let run = |args: &[&str], script: &str| {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend_from_slice(args);
        all.extend(["busybox", "sh", "-c", script]);
        env.ok(&all)
    };
    assert_eq!(
        run(&["--cap-drop", "ALL"], "grep CapEff /proc/self/status"),
        "CapEff:\t0000000000000000\n"
    );
    // cgroup v1 (a directory per controller) or v2 (one tree).
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    let memory = if v1 {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    } else {
        "cat /sys/fs/cgroup/memory.max"
    };
    assert_eq!(run(&["-m", "64m"], memory), "67108864\n");
    let pids = if v1 {
        "cat /sys/fs/cgroup/pids/pids.max"
    } else {
        "cat /sys/fs/cgroup/pids.max"
    };
    assert_eq!(run(&["--pids-limit", "42"], pids), "42\n");
    assert_eq!(
        run(&["--ulimit", "nofile=1234:1234"], "ulimit -n; ulimit -Hn"),
        "1234\n1234\n"
    );
    // The cgroup view is read-only.
    assert_eq!(
        run(
            &[],
            &format!(
                "echo 1 > {} 2>/dev/null || echo refused",
                pids.trim_start_matches("cat ")
            )
        ),
        "refused\n"
    );
    assert_eq!(
        run(&["-u", "4242:4242"], "id"),
        "uid=4242 gid=4242 groups=4242\n"
    );
}

#[test]
fn exit_codes_are_dockers() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let code = |args: &[&str]| env.kiln(args).status.code();
    assert_eq!(
        code(&["run", "--rm", "--network", "none", "busybox", "nosuchcmd"]),
        Some(127)
    );
    assert_eq!(
        code(&["run", "--rm", "--network", "none", "busybox", "/etc/passwd"]),
        Some(126)
    );
    let bad = env.kiln(&["run", "--bogus", "busybox", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "unknown flag: --bogus\nSee 'kiln run --help'.\n"
    );
    let refused = env.kiln(&["run", "--link", "x:y", "busybox", "true"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not supported yet: --link"));
    assert_eq!(
        code(&["run", "--rm", "-m", "lots", "busybox", "true"]),
        Some(125)
    );
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn commit_gives_an_image_with_what_diff_shows_and_export_lists_the_filesystem() {
    let Some(env) = RunEnv::new(&[]) else { return };
    env.ok(&[
        "run",
        "--name",
        "changed",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /a/b && echo x > /a/b/f && echo y >> /etc/passwd && rm /bin/ls && rm -r /var/www",
    ]);
    let diff = env.ok(&["diff", "changed"]);
    assert_eq!(
        diff,
        "A /a\nA /a/b\nA /a/b/f\nC /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nC /var\nD /var/www\n"
    );
    let id = env.ok(&[
        "commit",
        "-m",
        "made by hand",
        "-c",
        "ENV FOO=bar",
        "changed",
        "snap:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    // A container of the new image has exactly those changes, and nothing of its own.
    env.ok(&[
        "create",
        "--name",
        "fresh",
        "--network",
        "none",
        "snap:1",
        "true",
    ]);
    assert_eq!(env.ok(&["diff", "fresh"]), "");
    let seen = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:1",
        "sh",
        "-c",
        "cat /a/b/f; tail -1 /etc/passwd; ls /bin/ls /var/www 2>&1 | wc -l; echo $FOO",
    ]);
    assert_eq!(seen, "x\ny\n2\nbar\n");
    // The new image's top layer holds those paths (whiteouts for the deletions).
    let saved = env.dir().join("snap.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "snap:1"]);
    let layers = tar_list(&saved);
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_read(&saved, "manifest.json")).unwrap();
    let top = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(layers.contains(&top));
    let layer = env.dir().join("top.tar");
    std::fs::write(&layer, tar_read(&saved, &top)).unwrap();
    let mut entries: Vec<String> = tar_list(&layer)
        .into_iter()
        .map(|e| e.trim_end_matches('/').to_string())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            "a",
            "a/b",
            "a/b/f",
            "bin",
            "bin/.wh.ls",
            "etc",
            "etc/passwd",
            "var",
            "var/.wh.www"
        ]
    );
    assert_eq!(
        env.inspect("snap:1")["Config"]["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "FOO=bar"
        ])
    );
    // export: the whole filesystem, changes included.
    let out = env.dir().join("export.tar");
    env.ok(&["export", "-o", out.to_str().unwrap(), "changed"]);
    let listed = tar_list(&out);
    for want in ["a/b/f", "bin/busybox", "etc/passwd", "tmp/"] {
        assert!(listed.iter().any(|e| e == want), "{want} not in {listed:?}");
    }
    assert!(!listed.iter().any(|e| e == "bin/ls"));
}

fn tar_list(path: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tar")
        .arg("tf")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    stdout(&out).lines().map(str::to_string).collect()
}

fn tar_read(path: &std::path::Path, member: &str) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args(["xOf"])
        .arg(path)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn pause_rename_update_top_and_events() {
    let Some(env) = RunEnv::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "--label",
        "app=web",
        "busybox",
        "sleep",
        "60",
    ]);
    env.ok(&["pause", "box"]);
    assert_eq!(env.ok(&["ps", "--format", "{{.State}}"]), "paused\n");
    assert_eq!(
        env.inspect("box")["State"]["Paused"],
        serde_json::json!(true)
    );
    let exec = env.kiln(&["exec", "box", "true"]);
    assert!(!exec.status.success());
    env.ok(&["unpause", "box"]);
    env.ok(&["exec", "box", "true"]);
    env.ok(&["rename", "box", "crate"]);
    assert_eq!(
        env.ok(&["ps", "--filter", "label=app=web", "--format", "{{.Names}}"]),
        "crate\n"
    );
    assert_eq!(
        env.ok(&["ps", "--filter", "label=app=db", "--format", "{{.Names}}"]),
        ""
    );
    env.ok(&["update", "--pids-limit", "77", "--memory", "48m", "crate"]);
    let inside = env.ok(&[
        "exec",
        "crate",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true",
    ]);
    assert_eq!(inside, "77\n");
    assert_eq!(
        env.inspect("crate")["HostConfig"]["Memory"],
        serde_json::json!(48 << 20)
    );
    let top = env.ok(&["top", "crate"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(top.contains("sleep 60"), "{top}");
    env.ok(&["rm", "-f", "crate"]);
    let events = env.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events.lines().collect();
    for want in [
        "create", "start", "pause", "unpause", "rename", "update", "die", "destroy",
    ] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }
}

#[test]
fn stop_signal_and_timeout_log_rotation_and_cidfile() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let cidfile = env.dir().join("cid");
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "--network",
        "none",
        "--stop-signal",
        "SIGUSR1",
        "--stop-timeout",
        "30",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "busybox",
        "sh",
        "-c",
        "trap 'echo got it; exit 5' USR1; while :; do sleep 0.1; done",
    ]);
    assert_eq!(std::fs::read_to_string(&cidfile).unwrap(), id.trim());
    // The file exists now: Docker refuses to overwrite it.
    let again = env.kiln(&[
        "run",
        "--cidfile",
        cidfile.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    assert_eq!(again.status.code(), Some(125));
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["stop", "trapper"]);
    assert_eq!(
        env.inspect("trapper")["State"]["ExitCode"],
        serde_json::json!(5)
    );
    assert_eq!(env.ok(&["logs", "trapper"]), "got it\n");
    // json-file rotation: 20 lines of ~100 bytes into files of 512 bytes, 3 kept.
    env.ok(&[
        "run",
        "--name",
        "chatty",
        "--network",
        "none",
        "--log-opt",
        "max-size=512",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 20); do echo line-$i; sleep 0.01; done",
    ]);
    let dir = env.inspect("chatty")["LogPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&format!("{dir}.1")).exists());
    assert!(!std::path::Path::new(&format!("{dir}.3")).exists());
    let logs = env.ok(&["logs", "chatty"]);
    assert!(logs.ends_with("line-20\n"), "{logs}");
    assert!(
        !logs.contains("line-1\n"),
        "the oldest lines were rotated away: {logs}"
    );
    // --log-driver none keeps nothing to read.
    env.ok(&[
        "run",
        "--name",
        "quiet",
        "--network",
        "none",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    assert!(!env.kiln(&["logs", "quiet"]).status.success());
}

#[test]
fn attach_and_detach_keys() {
    let Some(env) = RunEnv::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "echoer",
        "--network",
        "none",
        "busybox",
        "cat",
    ]);
    // Attach, type a line, then the detach keys: kiln attach returns, the container runs on.
    let mut child = env
        .command()
        .args(["attach", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"\x10\x11").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "hello\n");
    assert_eq!(env.ok(&["ps", "--format", "{{.Names}}"]), "echoer\n");
    // run -i: input goes in, the end of input ends `cat`, the exit code comes back.
    let mut child = env
        .command()
        .args([
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cat; exit 3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "piped\n");
    // -a: only the streams asked for.
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-a",
        "stderr",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&out), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn prunes_remove_what_nothing_runs() {
    let Some(env) = RunEnv::new(&[]) else { return };
    env.ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "none",
        "--label",
        "keep=no",
        "busybox",
        "true",
    ]);
    env.ok(&[
        "create",
        "--name",
        "kept",
        "--network",
        "none",
        "--label",
        "keep=yes",
        "busybox",
        "true",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    let out = env.ok(&["container", "prune", "-f", "--filter", "label=keep=no"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    let left = env.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left, "busy\nkept\n");
    env.ok(&["container", "prune", "-f"]);
    assert_eq!(env.ok(&["ps", "-a", "--format", "{{.Names}}"]), "busy\n");
    // Images: nothing without -a (kiln keeps no dangling images); with -a, what no container
    // uses.
    env.ok(&["tag", "busybox", "spare:1"]);
    assert!(!env.ok(&["image", "prune", "-f"]).contains("untagged"));
    // busybox and spare:1 are one image, used by `busy`: both stay.
    assert!(!env.ok(&["image", "prune", "-a", "-f"]).contains("untagged"));
    env.ok(&["rm", "-f", "busy"]);
    let out = env.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.contains("untagged: docker.io/library/spare:1") || out.contains("untagged: spare:1"),
        "{out}"
    );
    // Volumes and networks.
    env.ok(&["volume", "create", "loose"]);
    let out = env.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("loose"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
}
