//! Root-only tests of what the sandbox does for containers (`kiln run`'s flags): the init,
//! container cgroups and their view at `/sys/fs/cgroup`, devices, `/dev/shm`'s size, shared
//! and host namespaces, a generated `/etc/hosts`.

mod common;

use common::{Fixture, run, run_ok};

use std::time::{Duration, Instant};

use kiln_executor::sandbox::{
    self, CancelToken, CgroupLimits, CollectOutput, Device, DeviceKind, ExitStatus, Namespace,
    Stdin,
};

/// A process orphaned into the sandbox: `(sleep 1 &)` leaves a sleep whose parent exited, so
/// it is reparented to pid 1; two seconds later it has exited. With an init it is reaped; a
/// `sleep 3` as pid 1 never waits for it, so it stays a zombie.
const ORPHAN: &str = "(sleep 1 &); exec sleep 3";

fn zombies_seen(init: bool) -> String {
    let f = Fixture::new();
    let mut spec = f.shell(ORPHAN);
    spec.init = init;
    let sb = sandbox::Sandbox::spawn(&spec, Stdin::Null).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    // The sandbox's processes as the host sees them: its pid 1 and that one's descendants.
    let root = sb.pid();
    let mut zombies = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: i32 = fields[1].parse().unwrap();
        let in_sandbox = pid == root || ppid == root || {
            let pp = std::fs::read_to_string(format!("/proc/{ppid}/stat")).unwrap_or_default();
            pp.rfind(')')
                .and_then(|i| pp[i + 2..].split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(root)
        };
        if in_sandbox && fields[0] == "Z" {
            zombies.push_str(&stat);
        }
    }
    let (info, _) = {
        let mut out = CollectOutput::default();
        (sb.wait(&mut out, &CancelToken::new()).unwrap(), out)
    };
    assert_eq!(info.status, ExitStatus::Code(0));
    zombies
}

#[test]
fn init_reaps_orphans_that_a_plain_pid_1_leaves_as_zombies() {
    if !common::can_run("init_reaps_orphans") {
        return;
    }
    assert!(!zombies_seen(false).is_empty(), "without an init");
    assert_eq!(zombies_seen(true), "", "with an init");
}

#[test]
fn init_forwards_signals_and_hides_kilns_command_line() {
    if !common::can_run("init_forwards_signals") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.shell(
        "cat /proc/1/cmdline; echo; cat /proc/1/comm; echo $$; \
         cat /proc/1/environ 2>/dev/null | wc -c; ls /proc/1/fd 2>&1 | wc -l; exec sleep 30",
    );
    spec.init = true;
    let sb = sandbox::Sandbox::spawn(&spec, Stdin::Null).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // A plain `sleep` as pid 1 would ignore SIGTERM; under the init it is its child and dies.
    sb.kill(libc::SIGTERM).unwrap();
    let mut out = CollectOutput::default();
    let info = sb.wait(&mut out, &CancelToken::new()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(info.status, ExitStatus::Code(128 + libc::SIGTERM));
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("kiln-init -- sh -c cat /proc/1/cmdline"),
        "{text}"
    );
    assert_eq!(lines[1], "kiln-init");
    assert_eq!(lines[2], "2", "the command is the init's child: {text}");
    // The init is not dumpable: its environment and descriptors stay unreadable inside.
    assert_eq!(lines[3], "0", "{text}");
}

#[test]
fn init_exit_status_and_exec_failures_are_the_commands() {
    if !common::can_run("init_exit_status") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.shell("echo out; echo err >&2; exit 7");
    spec.init = true;
    let (info, out) = run(&spec);
    assert_eq!(info.status, ExitStatus::Code(7));
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    spec.argv = vec!["/no/such/binary".into()];
    let err = sandbox::run(&spec, &mut CollectOutput::default(), &CancelToken::new()).unwrap_err();
    assert!(
        matches!(&err, sandbox::SandboxError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
}

fn cgroup_v1_memory() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn container_cgroups_show_their_limits_read_only() {
    if !common::can_run("container_cgroups") {
        return;
    }
    let f = Fixture::new();
    let (file, pids) = if cgroup_v1_memory() {
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
        )
    } else {
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max")
    };
    let mut spec = f.shell(&format!(
        "cat {file} {pids}; echo x > {pids} 2>/dev/null && echo writable; \
         cat /proc/self/cgroup | grep -c :/$; ls /sys/fs/cgroup | wc -l"
    ));
    spec.cgroup = CgroupLimits {
        container: true,
        memory_bytes: Some(64 << 20),
        pids_max: Some(42),
        cpu_shares: Some(512),
        ..CgroupLimits::default()
    };
    let out = run_ok(&spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "67108864", "{out}");
    assert_eq!(lines[1], "42", "{out}");
    assert!(!out.contains("writable"), "{out}");
    // Every hierarchy's cgroup is the namespace's root.
    assert!(lines[2].parse::<u32>().unwrap() >= 1, "{out}");
}

#[test]
fn container_cgroups_exist_without_limits_and_go_away() {
    if !common::can_run("container_cgroups_without_limits") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.shell("ls /sys/fs/cgroup");
    spec.cgroup.container = true;
    let sb = sandbox::Sandbox::spawn(&spec, Stdin::Null).unwrap();
    let dirs = sb.cgroup_dirs();
    assert!(!dirs.is_empty());
    let mut out = CollectOutput::default();
    sb.wait(&mut out, &CancelToken::new()).unwrap();
    assert!(!out.stdout_str().is_empty());
    for d in dirs {
        assert!(!d.exists(), "{} left", d.display());
    }
}

#[test]
fn devices_shm_size_and_hosts() {
    if !common::can_run("devices_shm_size_and_hosts") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.shell(
        "ls -ln /dev/mynull /dev/sub/zero; head -c 3 /dev/sub/zero | wc -c; echo x > /dev/mynull; \
             df -k /dev/shm | tail -1; cat /proc/sys/kernel/shmmax; cat /etc/hosts",
    );
    spec.sysctls = vec![("kernel.shmmax".into(), "12345".into())];
    spec.devices = vec![
        Device {
            host_path: "/dev/null".into(),
            path: "/dev/mynull".into(),
            kind: DeviceKind::Char,
            major: 1,
            minor: 3,
            access: "rwm".into(),
        },
        Device {
            host_path: "/dev/zero".into(),
            path: "/dev/sub/zero".into(),
            kind: DeviceKind::Char,
            major: 1,
            minor: 5,
            access: "rwm".into(),
        },
    ];
    spec.cgroup.container = true;
    spec.shm_size = Some(1 << 20);
    spec.hosts = Some("127.0.0.1\tlocalhost\n10.0.0.9\tbox\n".into());
    let out = run_ok(&spec);
    let null: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    // The host's nodes, bound: their mode and owner, and they open (the /dev around them
    // is nodev).
    assert_eq!(null[..6], ["crw-rw-rw-", "1", "0", "0", "1,", "3"], "{out}");
    assert!(out.contains("1,   5"), "{out}");
    assert!(out.contains("\n3\n"), "{out}");
    assert!(out.contains(" 1024 "), "{out}");
    assert!(out.contains("\n12345\n"), "{out}");
    assert!(
        out.ends_with("127.0.0.1\tlocalhost\n10.0.0.9\tbox\n"),
        "{out}"
    );
}

#[test]
fn namespaces_can_be_shared_with_another_sandbox_or_the_host() {
    if !common::can_run("shared_namespaces") {
        return;
    }
    let f = Fixture::new();
    let mut first = f.shell("echo shared > /dev/shm/x; exec sleep 20");
    first.hostname = "first".into();
    let a = sandbox::Sandbox::spawn(&first, Stdin::Null).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ns = |kind: &str| std::path::PathBuf::from(format!("/proc/{}/ns/{kind}", a.pid()));
    let mut second = f.shell("cat /dev/shm/x; ps -o pid,comm | grep -c sleep; hostname");
    second.pid_namespace = Namespace::Join(ns("pid"));
    second.ipc_namespace = Namespace::Join(ns("ipc"));
    second.uts_namespace = Namespace::Host;
    second.cgroup.container = true;
    second.mounts.push(sandbox::Mount::BindFrom {
        namespace: ns("mnt"),
        source: "/dev/shm".into(),
        target: "/dev/shm".into(),
        readonly: false,
    });
    let out = run_ok(&second);
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(
        out,
        format!("shared\n1\n{}\n", host.to_string_lossy()),
        "{out}"
    );
    let ipc_a = std::fs::read_link(ns("ipc")).unwrap();
    drop(a);
    assert!(ipc_a.to_string_lossy().starts_with("ipc:"));
}
