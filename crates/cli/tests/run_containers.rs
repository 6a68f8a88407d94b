//! `kiln run` and the container lifecycle end to end, as root, with the busybox base image:
//! exit codes, Docker's ENTRYPOINT/CMD table, image Env/WorkingDir/User, a detached httpd
//! reached through a published port, logs, exec, stop, volumes and read-only mounts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::containers::RunEnv as Env;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_rm_prints_and_leaves_nothing() {
    let Some(env) = Env::new(&[]) else { return };
    let out = env.kiln(&["run", "--rm", "busybox", "echo", "hi"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn exit_code_becomes_kilns_and_ps_shows_it() {
    let Some(env) = Env::new(&[]) else { return };
    let out = env.kiln(&["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let ps = env.ok(&["ps", "-a"]);
    let line = ps.lines().find(|l| l.ends_with("three")).expect("listed");
    assert!(line.contains("Exited (3)"), "{ps}");
    // pid 1 cannot be killed from inside its namespace; its child can, and the shell reports
    // 128 + the signal.
    let out = env.kiln(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "sh -c 'kill -9 $$'; exit $?",
    ]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    // A missing command: Docker's 127.
    let out = env.kiln(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    env.ok(&["rm", "three"]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn entrypoint_and_cmd_follow_dockers_table() {
    let Some(env) = Env::new(&[r#"ENTRYPOINT ["echo", "ep"]"#, r#"CMD ["c1", "c2"]"#]) else {
        return;
    };
    assert_eq!(env.ok(&["run", "--rm", "busybox"]), "ep c1 c2\n");
    assert_eq!(env.ok(&["run", "--rm", "busybox", "x", "-y"]), "ep x -y\n");
    // --entrypoint drops the image's CMD.
    assert_eq!(
        env.ok(&["run", "--rm", "--entrypoint", "echo", "busybox"]),
        "\n"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"]),
        "a b\n"
    );
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "",
            "busybox",
            "echo",
            "plain"
        ]),
        "plain\n"
    );
}

#[test]
fn image_env_workdir_and_user_apply_and_flags_override() {
    let Some(env) = Env::new(&["ENV FOO=image", "WORKDIR /srv/app", "USER www-data"]) else {
        return;
    };
    let show = "echo $FOO $(pwd) $(id -u):$(id -g) $HOME";
    assert_eq!(
        env.ok(&["run", "--rm", "busybox", "sh", "-c", show]),
        "image /srv/app 33:33 /var/www\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("env");
    std::fs::write(&file, "# comment\nFOO=file\nBAR=b\n").expect("write");
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--env-file",
            file.to_str().expect("utf-8"),
            "-e",
            "BAR=flag",
            "-w",
            "/tmp",
            "-u",
            "1234:5",
            "busybox",
            "sh",
            "-c",
            "echo $FOO $BAR $(pwd) $(id -u):$(id -g)"
        ]),
        "file flag /tmp 1234:5\n"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "--hostname", "box", "busybox", "hostname"]),
        "box\n"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body
}

#[test]
fn detached_httpd_serves_a_published_port_logs_exec_and_stop() {
    let Some(env) = Env::new(&[]) else { return };
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-kiln > /www/index.html && echo serving && exec httpd -f -v -p 80 -h /www",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    // The CLI that started it has exited; a new one lists it as running.
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up"), "{ps}");
    let mut reply = String::new();
    for _ in 0..100 {
        reply = http_get(port, "/index.html");
        if reply.contains("hello-from-kiln") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
    assert!(reply.contains("hello-from-kiln"), "{reply}");
    assert!(env.ok(&["logs", "web"]).contains("serving\n"));
    // exec joins the container: its pid 1 is httpd and its files are there.
    let procs = env.ok(&["exec", "web", "ps", "-o", "pid,args"]);
    assert!(
        procs
            .lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("httpd")),
        "{procs}"
    );
    assert_eq!(
        env.ok(&["exec", "web", "cat", "/www/index.html"]),
        "hello-from-kiln\n"
    );
    // Docker's default capability set, as the container's pid 1 has.
    let caps = env.ok(&["exec", "web", "sh", "-c", "grep CapBnd /proc/self/status"]);
    assert_eq!(caps, "CapBnd:\t00000000a80425fb\n");
    let out = env.kiln(&["exec", "web", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "web"])).expect("json");
    assert_eq!(inspect[0]["State"]["Running"], true);
    assert_eq!(inspect[0]["Id"], id);
    // httpd as pid 1 ignores SIGTERM: stop falls back to SIGKILL after the timeout.
    env.ok(&["stop", "-t", "1", "web"]);
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(env.ok(&["ps", "-q"]), "");
    assert_eq!(env.ok(&["wait", "web"]), "137\n");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    env.ok(&["rm", "web"]);
}

#[test]
fn logs_follow_until_the_container_exits() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three",
    ]);
    let out = env.kiln(&["logs", "-f", "talk"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "one\nthree\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "two\n");
    assert_eq!(env.ok(&["logs", "--tail", "1", "talk"]), "three\n");
    assert_eq!(env.ok(&["wait", "talk"]), "0\n");
}

#[test]
fn named_volumes_outlive_containers_and_ro_mounts_reject_writes() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    env.ok(&["rm", "writer"]);
    assert!(env.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    assert_eq!(
        env.ok(&["run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f"]),
        "kept\n"
    );
    let out = env.kiln(&[
        "run",
        "--rm",
        "-v",
        "data:/d:ro",
        "busybox",
        "touch",
        "/d/x",
    ]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let out = env.kiln(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    // A host bind mount, read-only.
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("h"), "from-host").expect("write");
    let bind = format!("{}:/h:ro", host.path().display());
    assert_eq!(
        env.ok(&["run", "--rm", "-v", &bind, "busybox", "cat", "/h/h"]),
        "from-host"
    );
    let out = env.kiln(&["run", "--rm", "-v", &bind, "busybox", "touch", "/h/new"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!Path::new(&host.path().join("new")).exists());
    // In use: refused; unused: removed.
    env.ok(&[
        "create",
        "--name",
        "holder",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    assert!(!env.kiln(&["volume", "rm", "data"]).status.success());
    env.ok(&["rm", "holder"]);
    env.ok(&["volume", "rm", "data"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(env) = Env::new(&[]) else { return };
    // Counts the background processes it managed to start; a failed fork ends the script.
    let script = "n=0; for i in $(seq 20); do sleep 2 & n=$((n+1)); done; echo $n";
    let unlimited = env.ok(&["run", "--rm", "busybox", "sh", "-c", script]);
    assert_eq!(unlimited, "20\n");
    let out = env.kiln(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_ne!(stdout(&out), "20\n", "{out:?}");
}

#[test]
fn memory_limit_kills_a_hog_and_inspect_reports_the_oom_kill() {
    let Some(env) = Env::new(&[]) else { return };
    // 200 MB through a shell variable under a 16 MiB limit.
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
    let out = env.kiln(&[
        "run", "--name", "hog", "-m", "16m", "busybox", "sh", "-c", hog,
    ]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_eq!(stdout(&out), "");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "hog"])).expect("json");
    assert_eq!(inspect[0]["State"]["OOMKilled"], true, "{inspect}");
    assert_eq!(inspect[0]["State"]["ExitCode"], 137);
    assert_eq!(inspect[0]["HostConfig"]["Memory"], 16 << 20);
}

#[test]
fn restart_policy_on_failure_retries_then_gives_up() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 1",
    ]);
    assert_eq!(env.ok(&["wait", "flaky"]), "1\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "flaky"])).expect("json");
    assert_eq!(inspect[0]["RestartCount"], 2, "{inspect}");
    assert_eq!(env.ok(&["logs", "flaky"]), "attempt\nattempt\nattempt\n");
    // start runs it again under a new monitor.
    env.ok(&["start", "flaky"]);
    env.ok(&["wait", "flaky"]);
    assert_eq!(env.ok(&["logs", "flaky"]).lines().count(), 6);
}

#[test]
fn kill_sends_the_signal_and_rm_force_removes_a_running_container() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "trap",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    for _ in 0..100 {
        if env.ok(&["logs", "trap"]).contains("ready") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    env.ok(&["kill", "-s", "USR1", "trap"]);
    assert_eq!(env.ok(&["wait", "trap"]), "7\n");
    assert!(env.ok(&["logs", "trap"]).contains("got-usr1\n"));
    env.ok(&["start", "trap"]);
    assert!(!env.kiln(&["rm", "trap"]).status.success());
    env.ok(&["rm", "-f", "trap"]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn healthcheck_runs_and_ps_and_inspect_show_it() {
    let Some(env) = Env::new(&[]) else { return };
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=2 CMD test -f /tmp/ok\n",
    )
    .expect("write");
    env.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "checked",
        ctx.path().to_str().expect("utf-8"),
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "checked",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 1; rm /tmp/ok; sleep 30",
    ]);
    let health = |env: &Env| -> String {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "hc"])).expect("json");
        v[0]["State"]["Health"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut seen = Vec::new();
    for _ in 0..100 {
        let h = health(&env);
        if seen.last() != Some(&h) {
            seen.push(h.clone());
        }
        if h == "unhealthy" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(seen.contains(&"healthy".to_string()), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("unhealthy"),
        "{seen:?}"
    );
    assert!(env.ok(&["ps"]).contains("(unhealthy)"));
    env.ok(&["rm", "-f", "hc"]);
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_others_cannot() {
    let Some(env) = Env::new(&[]) else { return };
    let (net_a, net_b) = (
        format!("a{}", std::process::id()),
        format!("b{}", std::process::id()),
    );
    env.ok(&["network", "create", &net_a]);
    env.ok(&["network", "create", &net_b]);
    let serve = "mkdir /www && echo from-srv > /www/i && exec httpd -f -p 80 -h /www";
    env.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        &net_a,
        "busybox",
        "sh",
        "-c",
        serve,
    ]);
    // Names resolve through the managed /etc/hosts. The fixture's static busybox cannot use
    // the C library's resolver (its wget crashes in NSS), so the script looks the name up
    // itself and speaks HTTP with nc.
    let fetch = "ip=$(awk '$2 == \"srv\" {print $1}' /etc/hosts); test -n \"$ip\" || exit 9; \
        for i in $(seq 50); do printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | nc -w 1 $ip 80 | grep -q from-srv \\
        && echo from-srv && exit 0; sleep 0.1; done; exit 1";
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--network",
            &net_a,
            "busybox",
            "sh",
            "-c",
            fetch
        ]),
        "from-srv\n"
    );
    // Another network: the name is not in its hosts file, and the address is not reachable.
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        &net_b,
        "busybox",
        "sh",
        "-c",
        fetch,
    ]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "srv"])).expect("json");
    let ip = inspect[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    let direct = format!("printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {ip} 80");
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        &net_b,
        "busybox",
        "sh",
        "-c",
        &direct,
    ]);
    assert!(!stdout(&out).contains("from-srv"), "{out:?}");
    // The same command from the server's own network does get through.
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        &net_a,
        "busybox",
        "sh",
        "-c",
        &direct,
    ]);
    assert!(stdout(&out).contains("from-srv"), "{out:?}");
    assert!(!env.kiln(&["network", "rm", &net_a]).status.success());
    env.ok(&["rm", "-f", "srv"]);
    env.ok(&["network", "rm", &net_a, &net_b]);
}

#[test]
fn interactive_stdin_cp_and_stats() {
    let Some(env) = Env::new(&[]) else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kiln");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped in\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "PIPED IN\n");

    env.ok(&[
        "run", "-d", "--name", "box", "-m", "64m", "busybox", "sleep", "30",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("in.txt");
    std::fs::write(&src, "copied in\n").expect("write");
    env.ok(&["cp", src.to_str().expect("utf-8"), "box:/tmp/in.txt"]);
    assert_eq!(
        env.ok(&["exec", "box", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    let dst = dir.path().join("passwd");
    env.ok(&["cp", "box:/etc/passwd", dst.to_str().expect("utf-8")]);
    assert!(
        std::fs::read_to_string(&dst)
            .expect("copied out")
            .starts_with("root:")
    );
    let stats = env.ok(&["stats", "--no-stream", "box"]);
    let line = stats.lines().nth(1).expect("a row");
    assert!(line.contains("box") && line.contains("/ 64MiB"), "{stats}");
    assert!(line.contains('%'), "CPU and memory percentages: {stats}");
    // Without --no-stream the table comes again every second until interrupted.
    let mut streaming = env
        .command()
        .args(["stats", "box"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kiln stats");
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let _ = streaming.kill();
    let out = streaming.wait_with_output().expect("wait");
    let tables = stdout(&out).matches("CONTAINER ID").count();
    assert!(tables >= 2, "{}", stdout(&out));
    // A stopped container: its rootfs is mounted for the copy.
    env.ok(&["stop", "-t", "0", "box"]);
    let back = dir.path().join("back.txt");
    env.ok(&["cp", "box:/tmp/in.txt", back.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(&back).expect("read"), "copied in\n");
    env.ok(&["rm", "-f", "box"]);
}

#[test]
fn bridge_network_reaches_the_host_through_its_gateway() {
    let Some(env) = Env::new(&[]) else { return };
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        got
    });
    let script = format!(
        "gw=$(ip route | awk '/^default/ {{print $3}}'); echo $gw; printf from-container | nc -w 2 $gw {port}"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.starts_with("10.89."), "{out}");
    assert_eq!(server.join().expect("server"), "from-container");
    let nets = env.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(nets.lines().any(|l| l == "bridge"), "{nets}");
    // `-q` lists IDs, as Docker's does: one per network, none empty.
    let ids = env.ok(&["network", "ls", "-q"]);
    assert_eq!(ids.lines().count(), nets.lines().count(), "{ids}");
    assert!(ids.lines().all(|l| l.len() == 12), "{ids}");
}

#[test]
fn cp_resolves_container_symlinks_inside_the_container() {
    let Some(env) = Env::new(&[]) else { return };
    // A host directory the container's symlinks point at by absolute path.
    let host = tempfile::tempdir().expect("tempdir");
    let host_dir = host.path().to_str().expect("utf-8").to_string();
    std::fs::write(host.path().join("secret"), "HOST SECRET\n").expect("write");
    let script = format!(
        "mkdir -p {host_dir} && echo container > {host_dir}/own && ln -s {host_dir} /link-dir && ln -s {host_dir}/secret /link-file && sleep 30"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "evil",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let wait_for_links = (0..100).any(|_| {
        let ok = env
            .kiln(&["exec", "evil", "test", "-L", "/link-file"])
            .status
            .success();
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ok
    });
    assert!(wait_for_links, "the container never made its links");

    // Reading through a directory symlink reads the container's directory, not the host's.
    let out = env.kiln(&[
        "cp",
        "evil:/link-dir/secret",
        dir.path().join("a").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "the host's file was copied out");
    assert!(!dir.path().join("a").exists());
    env.ok(&[
        "cp",
        "evil:/link-dir/own",
        dir.path().join("b").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b")).unwrap(),
        "container\n"
    );
    // A symlink is copied as a symlink, never as the host file it names.
    env.ok(&[
        "cp",
        "evil:/link-file",
        dir.path().join("c").to_str().unwrap(),
    ]);
    assert!(
        std::fs::symlink_metadata(dir.path().join("c"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Writing through a container symlink lands inside the container.
    let src = dir.path().join("payload");
    std::fs::write(&src, "payload\n").expect("write");
    env.ok(&["cp", src.to_str().unwrap(), "evil:/link-dir/payload"]);
    assert!(
        !host.path().join("payload").exists(),
        "kiln cp wrote into the host"
    );
    assert_eq!(
        env.ok(&["exec", "evil", "cat", &format!("{host_dir}/payload")]),
        "payload\n"
    );

    // docker cp's directory rules: into an existing directory under its own name, and a
    // directory's contents with `/.`.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("sub/f"), "f\n").expect("write");
    env.ok(&["cp", tree.to_str().unwrap(), "evil:/tmp"]);
    assert_eq!(env.ok(&["exec", "evil", "cat", "/tmp/tree/sub/f"]), "f\n");
    env.ok(&["exec", "evil", "mkdir", "/flat"]);
    env.ok(&["cp", &format!("{}/.", tree.display()), "evil:/flat"]);
    assert_eq!(env.ok(&["exec", "evil", "cat", "/flat/sub/f"]), "f\n");
    env.ok(&["rm", "-f", "evil"]);
}
