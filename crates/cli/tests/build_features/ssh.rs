//! `RUN --mount=type=ssh` with `--ssh default=SOCKET` (an `ssh-agent` the test starts) and
//! `--ssh default=KEYFILE` (kiln's own agent), compared with BuildKit 0.24: the step lists the
//! agent's keys and has one sign (`ssh-add -T`), with the host's `ssh-add` in the image.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::reference::{self, Spec};
use crate::common::{self};
use crate::{have, run};

/// An `ssh-agent` in the foreground on a socket of the test's, stopped by PID when dropped.
struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(sock: &Path) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        // Dropping the agent (also on the panic below) ends the process.
        let agent = Agent { child };
        for _ in 0..100 {
            if sock.exists() {
                return agent;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("ssh-agent did not create {}", sock.display());
    }
}

/// A context that adds the host's `ssh-add` (with the libraries it loads) to busybox, so a
/// step can talk to its agent; built as `sshtools`.
fn build_tools_image(k: &common::Kiln, dir: &Path) -> Result<(), String> {
    let ldd = run(Command::new("ldd").arg("/usr/bin/ssh-add"), "ldd ssh-add");
    let mut files = vec!["/usr/bin/ssh-add".to_owned()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(str::to_owned),
    );
    let mut dockerfile = String::from("FROM busybox\n");
    for f in &files {
        let to = dir.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("parent")).map_err(|e| e.to_string())?;
        std::fs::copy(f, &to).map_err(|e| format!("copy {f}: {e}"))?;
        dockerfile.push_str(&format!("COPY {} {f}\n", f.trim_start_matches('/')));
    }
    std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
    reference::set_test_dates(dir);
    let b = k.build(dir, &["-t", "sshtools"]);
    if b.ok() { Ok(()) } else { Err(b.stderr()) }
}

#[test]
fn ssh_agents_reach_run_steps_like_the_reference() {
    const TEST: &str = "ssh_agents_reach_run_steps_like_the_reference";
    for tool in ["ssh-agent", "ssh-add", "ssh-keygen", "ldd"] {
        if !have(tool) {
            eprintln!("skipped: {TEST}: {tool} is not installed (openssh-client)");
            return;
        }
    }
    let Some(pair) = reference::pair(TEST) else {
        return;
    };
    let work = pair.scratch_dir("ssh");
    build_tools_image(&pair.kiln, &work.join("tools")).expect("the sshtools image");
    let base = pair
        .reference_base("sshtools", "sshtools")
        .expect("sshtools for the reference");
    let key = work.join("id_ed25519");
    run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key),
        "ssh-keygen",
    );
    let ctx = work.join("context");
    std::fs::create_dir_all(&ctx).expect("context");
    std::fs::copy(key.with_extension("pub"), ctx.join("key.pub")).expect("key.pub");
    common::write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM sshtools\nCOPY key.pub /key.pub\nRUN --mount=type=ssh ssh-add -l > /agent-keys && ssh-add -T /key.pub && echo \"$SSH_AUTH_SOCK\" > /signed\n",
        )],
    );
    reference::set_test_dates(&ctx);

    // A running agent's socket.
    let sock = work.join("agent.sock");
    let _agent = Agent::start(&sock);
    run(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock),
        "ssh-add",
    );
    let mut with_socket = Spec::new(&ctx);
    with_socket.reference_args.extend(base.iter().cloned());
    let with_socket = with_socket.flags(
        &["--ssh", &format!("default={}", sock.display())],
        &["--ssh", &format!("default={}", sock.display())],
    );
    let image = pair
        .compare(&with_socket)
        .expect_same("--ssh default=SOCKET");
    assert!(image.file("/signed").is_some());
    assert!(
        image.file("/run/buildkit").is_none(),
        "the socket is not in the image"
    );

    // Key files, served by kiln's own agent (and BuildKit's).
    let mut with_key = Spec::new(&ctx);
    with_key.reference_args.extend(base.iter().cloned());
    let with_key = with_key.flags(
        &["--no-cache", "--ssh", &format!("default={}", key.display())],
        &["--no-cache", "--ssh", &format!("default={}", key.display())],
    );
    pair.compare(&with_key).expect_same("--ssh default=KEYFILE");

    // Without an agent an optional mount is left out (BuildKit's default), a required one
    // fails the step.
    let b = pair.kiln.build(&ctx, &["--no-cache"]);
    assert!(!b.ok());
    assert!(
        b.stderr().contains("Error connecting to agent"),
        "{}",
        b.stderr()
    );
    let required = work.join("required");
    common::write_files(
        &required,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh,required=true true\n",
        )],
    );
    let b = pair.kiln.build(&required, &[]);
    assert!(!b.ok());
    assert!(b.stderr().contains("--ssh default"), "{}", b.stderr());
    // A key file that is not a key.
    let b = pair.kiln.build(
        &ctx,
        &[
            "--ssh",
            &format!("default={}", ctx.join("Dockerfile").display()),
        ],
    );
    assert!(!b.ok());
    assert!(
        b.stderr().contains("not an OpenSSH private key"),
        "{}",
        b.stderr()
    );
}
