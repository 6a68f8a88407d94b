//! `kiln run -t` / `exec -t` (a pty in the container, the caller's terminal in raw mode and its
//! size followed), `kiln system df` / `system prune` over containers, images and volumes,
//! container-name uniqueness under concurrent creates, and HEALTHCHECK timeouts and logs; as
//! root, with the busybox base image.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::containers::RunEnv as Env;

#[test]
fn run_t_gives_the_command_a_pty_even_without_a_terminal_here() {
    let Some(env) = Env::new(&[]) else { return };
    // The container's own devpts instance: its first pty.
    assert_eq!(
        env.ok(&["run", "--rm", "-t", "busybox", "tty"]),
        "/dev/pts/0\r\n"
    );
    // stdin and stdout are the terminal, stderr comes out on stdout, lines end in \r\n.
    let out = env.kiln(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo yes; echo err >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\r\nerr\r\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // The pty is the controlling terminal: /dev/tty opens.
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "echo ok >/dev/tty"
        ]),
        "ok\r\n"
    );
    // Without -t nothing changes.
    let out = env.kiln(&["run", "--rm", "busybox", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not a tty\n");
}

#[test]
fn detached_t_logs_the_terminals_output_and_exec_t_gets_a_pty() {
    let Some(env) = Env::new(&[]) else { return };
    let id = env.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "d",
        "busybox",
        "sh",
        "-c",
        "tty; echo to-stderr >&2; sleep 30",
    ]);
    let id = id.trim();
    let logs_path = env.root.join("containers").join(id).join("log.json");
    let until = Instant::now() + Duration::from_secs(20);
    let mut logs = String::new();
    while Instant::now() < until && !logs.contains("to-stderr") {
        std::thread::sleep(Duration::from_millis(50));
        logs = std::fs::read_to_string(&logs_path).unwrap_or_default();
    }
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text: String = lines.iter().map(|l| l["log"].as_str().unwrap()).collect();
    assert_eq!(text, "/dev/pts/0\r\nto-stderr\r\n");
    assert!(lines.iter().all(|l| l["stream"] == "stdout"), "{logs}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "d"])).expect("inspect json");
    assert_eq!(inspect[0]["Config"]["Tty"], true);

    // exec -t opens a second pty of the container's devpts, as its controlling terminal.
    assert_eq!(
        env.ok(&["exec", "-t", "d", "sh", "-c", "tty; echo ok >/dev/tty"]),
        "/dev/pts/1\r\nok\r\n"
    );
    let out = env.kiln(&["exec", "d", "tty"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not a tty\n");
    env.ok(&["rm", "-f", "d"]);
}

/// A pseudo-terminal that plays the user's terminal for an attached kiln.
struct CallerTerminal {
    master: std::fs::File,
    slave: OwnedFd,
}

impl CallerTerminal {
    fn new(rows: u16, cols: u16) -> CallerTerminal {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        CallerTerminal {
            master: std::fs::File::from(pty.master),
            slave: pty.slave,
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
        // SAFETY: TIOCSWINSZ reads a winsize from a live local.
        unsafe { set_winsize(self.master.as_raw_fd(), &ws) }.expect("resize");
    }

    fn canonical(&self) -> bool {
        nix::sys::termios::tcgetattr(self.slave.as_fd())
            .expect("tcgetattr")
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON)
    }

    /// Reads what the terminal shows until `needle` appears (panics after 20 s).
    fn read_until(&mut self, needle: &str) -> String {
        self.read_until_seen(needle, |seen| seen.contains(needle))
    }

    /// Reads what the terminal shows until `done` holds for all of it (panics after 20 s,
    /// naming `what`).
    fn read_until_seen(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&seen)) {
            assert!(
                Instant::now() < until,
                "no {what:?} in {:?}",
                String::from_utf8_lossy(&seen)
            );
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
                match self.master.read(&mut buf) {
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}

/// An attached `kiln run`; when a test fails before it exits, the container's processes and
/// kiln are killed (an attached `--rm` container has no record `rm -f` could find).
struct Attached(std::process::Child);

impl Drop for Attached {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let kiln = self.0.id();
        // The sandbox's pid 1 is a child of one of kiln's threads.
        let tasks = std::fs::read_dir(format!("/proc/{kiln}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_it_makes_the_callers_terminal_raw_follows_its_size_and_restores_it() {
    let Some(env) = Env::new(&[]) else { return };
    let mut term = CallerTerminal::new(33, 99);
    assert!(term.canonical());
    let io = |t: &CallerTerminal| Stdio::from(t.slave.try_clone().unwrap());
    let mut child = Attached(
        env.command()
            .args(["run", "--rm", "-i", "-t", "busybox", "sh"])
            .stdin(io(&term))
            .stdout(io(&term))
            .stderr(io(&term))
            .spawn()
            .expect("spawn kiln"),
    );
    term.master
        .write_all(b"stty size; echo mark$((1+1))\n")
        .unwrap();
    // The shell sees the caller's size, and the echo of "$((1+1))" shows the line went
    // through the container's terminal, not ours.
    let shown = term.read_until("mark2");
    assert!(shown.contains("33 99"), "{shown:?}");
    assert!(
        !term.canonical(),
        "the caller's terminal is raw while attached"
    );

    // The caller's terminal changes size (it would send SIGWINCH to its foreground group).
    term.resize(41, 120);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        term.master.write_all(b"echo size-$(stty size)-\n").unwrap();
        // The command's output line (`size-41 120-`), not its echo (`size-$(stty size)-`),
        // however the terminal hands the bytes over.
        let shown = term.read_until_seen("a size-ROWS COLS- line", |seen| {
            seen.split("size-").skip(1).any(|rest| {
                rest.starts_with(|c: char| c.is_ascii_digit()) && rest.contains("-\r\n")
            })
        });
        if shown.contains("size-41 120-") {
            break;
        }
        assert!(Instant::now() < until, "the size never followed: {shown:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // ^C is a byte for the container's terminal: it interrupts the container's command only.
    term.master.write_all(b"sleep 60\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    term.master.write_all(b"\x03").unwrap();
    term.master.write_all(b"echo after-$((2+3))\n").unwrap();
    term.read_until("after-5");
    term.master.write_all(b"exit 3\n").unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(term.canonical(), "the caller's terminal is restored");
}

/// The numbers of one row of `system df`: TOTAL, ACTIVE, SIZE, RECLAIMABLE.
fn df_row(df: &str, kind: &str) -> Vec<String> {
    let line = df
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} row in {df}"));
    line[kind.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn system_prune_removes_what_nothing_uses_and_df_shows_it() {
    let Some(env) = Env::new(&[]) else { return };
    // A second image (same layers, another config) that no container uses.
    let tar = env.dir().join("busybox.tar");
    env.ok(&[
        "import",
        tar.to_str().unwrap(),
        "unused",
        "-c",
        "LABEL unused=yes",
    ]);
    // A stopped container with an anonymous volume holding data, and a running one with its
    // own anonymous volume.
    env.ok(&[
        "run",
        "--name",
        "stopped",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo hello >/data/f; echo x >/layer-file",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "-v",
        "/keepdata",
        "busybox",
        "sh",
        "-c",
        "echo kept >/keepdata/f; sleep 60",
    ]);
    let df = env.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert_eq!(df_row(&df, "Images")[..2], ["2", "1"], "{df}");
    assert_eq!(df_row(&df, "Containers")[..2], ["2", "1"], "{df}");
    assert_ne!(df_row(&df, "Containers")[3], "0B", "{df}");
    assert_eq!(df_row(&df, "Local Volumes")[..2], ["2", "2"], "{df}");
    let verbose = env.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("Containers space usage:"), "{verbose}");
    // Docker's columns: REPOSITORY and TAG apart.
    assert!(
        verbose.contains("stopped")
            && verbose
                .lines()
                .any(|l| l.starts_with("unused ") && l.contains(" latest ")),
        "{verbose}"
    );

    let out = env.ok(&["system", "prune", "-a", "--volumes", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("untagged: unused:latest"), "{out}");
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");

    let df = env.ok(&["system", "df"]);
    assert_eq!(df_row(&df, "Images")[..2], ["1", "1"], "{df}");
    assert_eq!(df_row(&df, "Images")[3], "0B", "{df}");
    assert_eq!(df_row(&df, "Containers"), ["1", "1", "0B", "0B"], "{df}");
    assert_eq!(df_row(&df, "Local Volumes")[..2], ["1", "1"], "{df}");
    assert_eq!(df_row(&df, "Local Volumes")[3], "0B", "{df}");
    // The running container, its image and its volume survive.
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 1);
    assert_eq!(env.ok(&["exec", "keep", "cat", "/keepdata/f"]), "kept\n");
    assert_eq!(
        env.ok(&["run", "--rm", "busybox", "echo", "still"]),
        "still\n"
    );
    assert!(env.kiln(&["inspect", "stopped"]).status.code() != Some(0));
    env.ok(&["rm", "-f", "keep"]);
}

#[test]
fn concurrent_creates_with_one_name_leave_exactly_one_container() {
    let Some(env) = Env::new(&[]) else { return };
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command()
                .args(["create", "--name", "x", "busybox", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn kiln create")
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "{outputs:?}");
    for o in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("the container name \"/x\" is already in use by container"),
            "{err}"
        );
    }
    assert_eq!(env.ok(&["ps", "-a", "-q"]).lines().count(), 1);
}

/// `inspect`'s State.Health once `done` says so (panics after 30 s).
fn health_until(
    env: &Env,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let inspect: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", name])).expect("inspect json");
        let health = inspect[0]["State"]["Health"].clone();
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < until, "health never got there: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_probe_past_its_timeout_is_killed_and_counts_as_a_failure() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "echo started; sleep 30",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    let health = health_until(&env, "slow", |h| h["Status"] == "unhealthy");
    let log = health["Log"].as_array().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], -1);
    assert_eq!(last["Output"], "Health check exceeded timeout (300ms)");
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2);
    // Each killed probe took its sleep with it: at least two probes ran, and at most the one
    // running now is left.
    let ps = env.ok(&["exec", "slow", "ps", "-o", "args"]);
    assert!(ps.matches("sleep 30").count() <= 1, "{ps}");
    env.ok(&["rm", "-f", "slow"]);
}

#[test]
fn health_log_keeps_five_results_with_output_cut_at_4096_bytes() {
    let Some(env) = Env::new(&[]) else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--health-cmd",
        "head -c 6000 /dev/zero | tr '\\0' a",
        "--health-interval",
        "50ms",
        "busybox",
        "sleep",
        "60",
    ]);
    // Probes every 50 ms: the log fills to five and stays there.
    let health = health_until(&env, "chatty", |h| {
        h["Log"].as_array().is_some_and(|l| l.len() == 5)
    });
    assert_eq!(health["Status"], "healthy");
    std::thread::sleep(Duration::from_millis(400));
    let health = health_until(&env, "chatty", |_| true);
    let log = health["Log"].as_array().unwrap();
    assert_eq!(log.len(), 5, "{health}");
    for r in log {
        assert_eq!(r["ExitCode"], 0);
        assert_eq!(r["Output"].as_str().unwrap(), "a".repeat(4096));
        assert!(r["Start"].as_str().unwrap() <= r["End"].as_str().unwrap());
    }
    env.ok(&["rm", "-f", "chatty"]);
}
