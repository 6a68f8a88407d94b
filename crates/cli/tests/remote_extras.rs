//! Build inputs beyond the Dockerfile and context, remotely as locally (kiln.v1 protocol 2):
//! `--ssh` forwarded over the Build stream (an `ssh-agent` the test starts, and key files),
//! `--add-host`/`--ulimit`/`--shm-size`, `--allow device`, `--provenance`, `--explain`, and
//! `--build-context` with a directory and a `docker-image://`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::worker::{Worker, worker_root};
use common::{Kiln, write_files};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kiln build ARGS CTX` against the worker (`remote`) or the local store.
fn build(k: &Kiln, worker: Option<&Worker>, ctx: &Path, args: &[&str]) -> common::Build {
    let mut cmd = k.command();
    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
    cmd.args(["build", "--progress", "plain"]);
    if let Some(w) = worker {
        cmd.args(["--builder", &w.address]);
    }
    cmd.args(args).arg(ctx);
    common::Build::from(cmd.output().unwrap())
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// An `ssh-agent` in the foreground on a socket of the test's, stopped by PID when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(sock: &Path) -> Agent {
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent"),
    );
    for _ in 0..100 {
        if sock.exists() {
            return agent;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("ssh-agent did not create {}", sock.display());
}

/// Files under `dir` that are sockets.
fn sockets_under(dir: &Path) -> String {
    run(
        Command::new("find").arg(dir).args(["-type", "s"]),
        "find sockets",
    )
}

#[test]
fn ssh_agents_are_forwarded_over_the_build_stream() {
    const TEST: &str = "ssh_agents_are_forwarded_over_the_build_stream";
    for tool in ["ssh-agent", "ssh-add", "ssh-keygen", "ldd", "find"] {
        if !have(tool) {
            eprintln!("skipped: {TEST}: {tool} is not installed (openssh-client)");
            return;
        }
    }
    let Some(k) = Kiln::new(TEST) else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);

    // busybox with the host's ssh-add, built on the worker (it stays in the worker's store).
    let tools = k.mkdir("tools");
    let ldd = run(Command::new("ldd").arg("/usr/bin/ssh-add"), "ldd ssh-add");
    let mut files = vec!["/usr/bin/ssh-add".to_owned()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(str::to_owned),
    );
    let mut dockerfile = String::from("FROM busybox\n");
    for f in &files {
        let to = tools.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(f, &to).unwrap_or_else(|e| panic!("copy {f}: {e}"));
        dockerfile.push_str(&format!("COPY {} {f}\n", f.trim_start_matches('/')));
    }
    std::fs::write(tools.join("Dockerfile"), dockerfile).unwrap();
    build(&k, Some(&w), &tools, &["-t", "sshtools"]).assert_ok();

    let key = k.dir.path().join("id_ed25519");
    run(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kiln-remote-key",
                "-f",
            ])
            .arg(&key),
        "ssh-keygen",
    );
    let fingerprint = run(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub")),
        "fingerprint",
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_owned();
    let ctx = k.mkdir("ctx");
    std::fs::copy(key.with_extension("pub"), ctx.join("key.pub")).unwrap();
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM sshtools\nCOPY key.pub /key.pub\nRUN --mount=type=ssh ssh-add -l > /agent-keys && ssh-add -T /key.pub && echo signed > /signed && echo \"$SSH_AUTH_SOCK\" > /sock\n",
        )],
    );

    // The client's running agent.
    let sock = k.dir.path().join("agent.sock");
    let _agent = start_agent(&sock);
    run(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock),
        "ssh-add",
    );
    let out = k.dir.path().join("out-socket");
    let b = build(
        &k,
        Some(&w),
        &ctx,
        &[
            "--ssh",
            &format!("default={}", sock.display()),
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    b.assert_ok();
    assert_eq!(read(&out, "signed"), "signed\n");
    assert!(
        read(&out, "agent-keys").contains(&fingerprint),
        "the step listed the client's key: {}",
        read(&out, "agent-keys")
    );
    // $SSH_AUTH_SOCK pointed at a socket in the step, which is not in the result.
    let in_step = read(&out, "sock");
    assert!(!in_step.trim().is_empty());
    assert!(!out.join(in_step.trim().trim_start_matches('/')).exists());

    // The client's key files, served by its own in-process agent (--no-cache: the mount is
    // not part of the step's key).
    let out = k.dir.path().join("out-key");
    let b = build(
        &k,
        Some(&w),
        &ctx,
        &[
            "--no-cache",
            "--ssh",
            &format!("default={}", key.display()),
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    b.assert_ok();
    assert_eq!(read(&out, "signed"), "signed\n");
    assert!(read(&out, "agent-keys").contains(&fingerprint));

    // Nothing of the agent is left on the worker: no socket, and the key is nowhere.
    assert_eq!(
        sockets_under(&root),
        "",
        "sockets left in the worker's root"
    );
    let private = std::fs::read_to_string(&key).unwrap();
    let secret_line = private.lines().nth(2).unwrap().to_owned();
    let grep = Command::new("grep")
        .args(["-r", "-l", "-F", &secret_line])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&grep.stdout), "");

    // Without --ssh the step has no agent, as locally.
    let b = build(&k, Some(&w), &ctx, &["--no-cache"]);
    assert!(!b.ok(), "{}", b.stderr());
    // An id the client does not have fails on the client, before the build.
    let b = build(&k, Some(&w), &ctx, &["--ssh", "default=/no/such/key"]);
    assert!(!b.ok());
    assert!(b.stderr().contains("/no/such/key"), "{}", b.stderr());
}

#[test]
fn run_settings_provenance_and_explain_work_remotely_as_locally() {
    let Some(k) = Kiln::new("remote run settings") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY app.txt /app.txt\nRUN grep internal /etc/hosts > /hosts && ulimit -n > /nofile && ulimit -Hn >> /nofile && df -k /dev/shm | awk 'NR==2 {print $2}' > /shm\n",
            ),
            ("app.txt", "one\n"),
        ],
    );
    let flags = [
        "--add-host",
        "db.internal:10.1.2.3",
        "--add-host",
        "cache.internal=10.1.2.4",
        "--ulimit",
        "nofile=1234:2345",
        "--shm-size",
        "64m",
    ];
    let mut outs = Vec::new();
    for (name, worker) in [("local", None), ("remote", Some(&w))] {
        let out = k.dir.path().join(format!("settings-{name}"));
        let mut args = flags.to_vec();
        let dest = format!("type=local,dest={}", out.display());
        args.extend(["-o", &dest]);
        build(&k, worker, &ctx, &args).assert_ok();
        outs.push(out);
    }
    for file in ["hosts", "nofile", "shm"] {
        assert_eq!(
            read(&outs[1], file),
            read(&outs[0], file),
            "/{file} differs between the remote and the local build"
        );
    }
    assert!(read(&outs[1], "hosts").contains("10.1.2.3"));
    assert_eq!(read(&outs[1], "nofile"), "1234\n2345\n");
    assert_eq!(read(&outs[1], "shm"), "65536\n");

    // --explain: the worker's reasons, printed by the client as a local build prints them.
    let explain: Vec<&str> = flags.iter().copied().chain(["--explain"]).collect();
    let first = build(&k, Some(&w), &ctx, &explain);
    first.assert_ok();
    assert!(first.stderr().contains("explain: "), "{}", first.stderr());
    std::fs::write(ctx.join("app.txt"), "two\n").unwrap();
    let edited = build(&k, Some(&w), &ctx, &explain);
    edited.assert_ok();
    let err = edited.stderr();
    assert!(
        err.contains("context file app.txt changed"),
        "the COPY names the edited file: {err}"
    );
    assert!(err.contains("COPY app.txt /app.txt"), "{err}");
    let noop = build(&k, Some(&w), &ctx, &explain);
    noop.assert_ok();
    assert!(
        noop.stderr().contains("explain: ") && !noop.stderr().contains("context file"),
        "{}",
        noop.stderr()
    );

    // --provenance: the attestation manifest comes back in the OCI layout.
    let layout = k.dir.path().join("prov");
    let dest = format!("type=oci,tar=false,dest={}", layout.display());
    let provenance: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--provenance=mode=max", "-o", &dest])
        .collect();
    build(&k, Some(&w), &ctx, &provenance).assert_ok();
    let index: serde_json::Value =
        serde_json::from_str(&read(&layout, "index.json")).expect("index.json");
    let text = index.to_string();
    let blobs = layout.join("blobs/sha256");
    let mut found = false;
    for entry in std::fs::read_dir(&blobs).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if String::from_utf8_lossy(&bytes).contains("https://slsa.dev/provenance/v1") {
            found = true;
        }
    }
    assert!(found, "no SLSA statement in the layout: {text}");

    // --allow device: refused without it, given with it, as locally.
    let Some(device) = ["/dev/fuse", "/dev/net/tun", "/dev/loop-control"]
        .into_iter()
        .find(|d| Path::new(d).exists())
    else {
        eprintln!(
            "skipped: the --allow device part: no /dev/fuse, /dev/net/tun or /dev/loop-control here"
        );
        return;
    };
    let dev = k.mkdir("device");
    write_files(
        &dev,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN --device={device} test -c {device} && echo has-device\n"),
        )],
    );
    let b = build(&k, Some(&w), &dev, &[]);
    assert!(!b.ok(), "the device entitlement is needed");
    assert!(b.stderr().contains("--allow device"), "{}", b.stderr());
    let b = build(&k, Some(&w), &dev, &["--allow", "device"]);
    b.assert_ok();
    assert!(b.stderr().contains("has-device"), "{}", b.stderr());
}

#[test]
fn named_contexts_work_remotely() {
    let Some(k) = Kiln::new("remote named contexts") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let ctx = k.mkdir("ctx");
    let extra = k.mkdir("extra");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM base\nCOPY --from=extra note.txt /note.txt\nRUN cat /note.txt > /seen && test -x /bin/busybox\n",
        )],
    );
    write_files(
        &extra,
        &[("note.txt", "from a named context\n"), ("skip.txt", "x")],
    );
    std::fs::write(extra.join(".dockerignore"), "skip.txt\n").unwrap();
    let out = k.dir.path().join("out");
    let args = [
        "--build-context".to_string(),
        format!("extra={}", extra.display()),
        "--build-context".to_string(),
        "base=docker-image://busybox".to_string(),
        "-o".to_string(),
        format!("type=local,dest={}", out.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    build(&k, Some(&w), &ctx, &args).assert_ok();
    assert_eq!(read(&out, "seen"), "from a named context\n");

    // An edit in the named directory reaches the worker.
    std::fs::write(extra.join("note.txt"), "edited\n").unwrap();
    build(&k, Some(&w), &ctx, &args).assert_ok();
    assert_eq!(read(&out, "seen"), "edited\n");

    // An OCI layout on the client's disk is not sent yet: refused by name.
    let b = build(
        &k,
        Some(&w),
        &ctx,
        &["--build-context", "base=oci-layout:///no/layout"],
    );
    assert!(!b.ok());
    assert!(b.stderr().contains("not supported yet"), "{}", b.stderr());
}
