//! Root-only tests that put a probe (busybox sh) inside the sandbox and check what it sees:
//! pid 1, hostname, mounts, /proc, capabilities, network, users, exit statuses.

mod common;

use common::{Fixture, run, run_ok};

use std::fs;
use std::path::Path;

use kiln_executor::sandbox::{
    self, CancelToken, CollectOutput, ExitStatus, Mount, Network, SandboxError, SandboxSpec, Stdin,
    User,
};

impl Fixture {
    fn spec(&self, script: &str) -> SandboxSpec {
        let mut spec = self.shell(script);
        spec.hostname = "probe-host".into();
        spec
    }
}

#[test]
fn command_is_pid_1_with_the_sandbox_hostname() {
    if !common::can_run("command_is_pid_1_with_the_sandbox_hostname") {
        return;
    }
    let f = Fixture::new();
    let out =
        run_ok(&f.spec("echo $$; hostname; cat /etc/hostname; cat /proc/1/cmdline | tr '\\0' ' '"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], "probe-host");
    assert_eq!(lines[2], "probe-host");
    assert!(lines[3].starts_with("sh -c echo $$"), "{out}");
}

#[test]
fn no_host_mount_is_visible() {
    if !common::can_run("no_host_mount_is_visible") {
        return;
    }
    let f = Fixture::new();
    let out = run_ok(&f.spec("cat /proc/self/mountinfo"));
    let fixed = [
        "/",
        "/proc",
        "/dev",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ];
    let mut points = Vec::new();
    for line in out.lines() {
        let point = line.split(' ').nth(4).unwrap();
        points.push(point.to_string());
        let ok = fixed.contains(&point)
            || point.starts_with("/proc/")
            || point.starts_with("/dev/")
            || point.starts_with("/sys/");
        assert!(ok, "host mount {point} visible in the sandbox:\n{out}");
    }
    for want in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hosts",
    ] {
        assert!(
            points.iter().any(|p| p == want),
            "{want} not mounted:\n{out}"
        );
    }
    // The rootfs is the fixture's directory, not the host's root.
    let root_line = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    let host_root = host_mount_root_of(&f.root);
    assert!(
        root_line.split(' ').nth(3).unwrap().ends_with(&host_root),
        "rootfs is not the fixture: {root_line} (want root {host_root})"
    );
}

/// The path of `dir` relative to the root of its filesystem, as mountinfo's 4th field shows.
fn host_mount_root_of(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn proc_and_ps_show_only_the_sandbox() {
    if !common::can_run("proc_and_ps_show_only_the_sandbox") {
        return;
    }
    let f = Fixture::new();
    let out = run_ok(&f.spec(
        "sleep 30 & until grep -qx sleep /proc/$!/comm; do :; done; \
         ps -o pid,comm; echo ---; ls /proc | grep -E '^[0-9]+$'",
    ));
    let (ps, pids) = out.split_once("---\n").unwrap();
    let comms: Vec<&str> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(comms.len(), 3, "{ps}");
    assert!(
        comms.contains(&"sh") && comms.contains(&"sleep") && comms.contains(&"ps"),
        "{ps}"
    );
    let pids: Vec<u32> = pids.lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.contains(&1), "{pids:?}");
    // sh, sleep, ls, grep (and nothing from the host, which has hundreds).
    assert!(pids.len() <= 4, "{pids:?}");
}

#[test]
fn capabilities_are_dockers_defaults() {
    if !common::can_run("capabilities_are_dockers_defaults") {
        return;
    }
    let f = Fixture::new();
    let out = run_ok(&f.spec("grep -E '^Cap(Eff|Bnd|Prm|Inh|Amb)' /proc/self/status"));
    let caps: Vec<(&str, &str)> = out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k, v.trim())
        })
        .collect();
    for (k, v) in &caps {
        let want = match *k {
            "CapInh" | "CapAmb" => "0000000000000000",
            _ => "00000000a80425fb",
        };
        assert_eq!(*v, want, "{k}: {out}");
    }
    assert_eq!(caps.len(), 5, "{out}");

    // A non-root user has none effective, the same bounding set.
    let mut spec = f.spec("grep -E '^Cap(Eff|Bnd)' /proc/self/status; id -u; id -g; id -G");
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![1000, 2000],
    };
    let out = run_ok(&spec);
    assert_eq!(
        out,
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n1000\n1000\n1000 2000\n"
    );
}

#[test]
fn network_none_has_only_loopback_up() {
    if !common::can_run("network_none_has_only_loopback_up") {
        return;
    }
    let f = Fixture::new();
    let out =
        run_ok(&f.spec("ls /sys/class/net; cat /sys/class/net/lo/flags; cat /etc/resolv.conf"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    let flags = u32::from_str_radix(lines.next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    assert!(!out.contains("nameserver"), "{out}");
}

#[test]
fn network_host_sees_host_interfaces() {
    if !common::can_run("network_host_sees_host_interfaces") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec("ls /sys/class/net");
    spec.network = Network::Host;
    let out = run_ok(&spec);
    let mut host: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let mut seen: Vec<String> = out.lines().map(str::to_string).collect();
    seen.sort();
    assert_eq!(seen, host);
}

#[test]
fn exit_codes_and_signals_are_reported() {
    if !common::can_run("exit_codes_and_signals_are_reported") {
        return;
    }
    let f = Fixture::new();
    let (info, _) = run(&f.spec("exit 3"));
    assert_eq!(info.status, ExitStatus::Code(3));

    // A signal from outside the namespace (pid 1 ignores unhandled ones from inside).
    let spec = f.spec("echo ready; exec sleep 100");
    let sb = sandbox::Sandbox::spawn(&spec, Stdin::Null).unwrap();
    sb.kill(libc::SIGKILL).unwrap();
    let info = sb
        .wait(&mut CollectOutput::default(), &CancelToken::new())
        .unwrap();
    assert_eq!(info.status, ExitStatus::Signal(libc::SIGKILL));

    let mut spec = f.spec("");
    spec.argv = vec!["no-such-command".into()];
    let err = sandbox::run(&spec, &mut CollectOutput::default(), &CancelToken::new()).unwrap_err();
    assert!(matches!(err, SandboxError::Exec { .. }), "{err}");
    assert!(err.to_string().contains("no-such-command"), "{err}");
}

#[test]
fn user_env_cwd_and_stdin() {
    if !common::can_run("user_env_cwd_and_stdin") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec("pwd; echo $GREETING; cat");
    spec.env.push("GREETING=hello".into());
    spec.cwd = "/work/dir".into();
    let mut out = CollectOutput::default();
    let info = sandbox::run_with_stdin(
        &spec,
        Stdin::Bytes(b"from stdin\n".to_vec()),
        &mut out,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(info.status.success());
    assert_eq!(out.stdout_str(), "/work/dir\nhello\nfrom stdin\n");
    // The working directory is created like BuildKit does, and kept.
    assert!(f.root.join("work/dir").is_dir());
}

#[test]
fn mounts_binds_tmpfs_masked_and_readonly_paths() {
    if !common::can_run("mounts_binds_tmpfs_masked_and_readonly_paths") {
        return;
    }
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("in"), "data\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let mut spec = f.spec(
        "cat /ro/in; echo x > /ro/new 2>/dev/null && echo ro-writable; \
         echo out > /rw/out; \
         stat -c %a /scratch; \
         wc -c < /proc/keys; wc -c < /proc/timer_list; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable; \
         ls /sys/firmware | wc -l; \
         ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty | cut -c1-10; \
         readlink /dev/ptmx; readlink /dev/fd; \
         grep -E ' /dev/pts ' /proc/self/mountinfo | grep -c ptmxmode=666",
    );
    spec.mounts = vec![
        Mount::Bind {
            source: host.path().to_path_buf(),
            target: "/ro".into(),
            readonly: true,
        },
        Mount::Bind {
            source: rw.path().to_path_buf(),
            target: "/rw".into(),
            readonly: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: Some(0o1777),
            readonly: false,
            noexec: false,
        },
    ];
    let out = run_ok(&spec);
    assert_eq!(
        out,
        "data\n1777\n0\n0\n0\ncrw-rw-rw-\ncrw-rw-rw-\ncrw-rw-rw-\ncrw-rw-rw-\ncrw-rw-rw-\ncrw-rw-rw-\npts/ptmx\n/proc/self/fd\n1\n"
    );
    assert_eq!(fs::read_to_string(rw.path().join("out")).unwrap(), "out\n");
    assert!(!host.path().join("new").exists());
    // Mount points made for the binds are gone from the rootfs afterwards.
    for p in ["ro", "rw", "scratch"] {
        assert!(!f.root.join(p).exists(), "stub {p} left behind");
    }
}

#[test]
fn device_nodes_made_inside_do_not_open_anywhere() {
    if !common::can_run("device_nodes_made_inside_do_not_open_anywhere") {
        return;
    }
    let f = Fixture::new();
    let rw = tempfile::tempdir().unwrap();
    // The kernel log (c 1 11) and loop-control (c 10 237) open on an ordinary host; Docker's
    // device policy allows neither. CAP_MKNOD is Docker's default, so mknod itself works.
    let mut spec = f.spec(
        "for d in /tmp /dev /rw /scratch; do \
           mknod $d/kmsg c 1 11 && mknod $d/loopctl c 10 237 || echo mknod-failed-$d; \
           (: < $d/kmsg) 2>/dev/null && echo opened-$d/kmsg; \
           (: < $d/loopctl) 2>/dev/null && echo opened-$d/loopctl; \
         done; \
         head -c 3 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         head -c 1 /dev/urandom | wc -c",
    );
    spec.mounts = vec![
        Mount::Bind {
            source: rw.path().to_path_buf(),
            target: "/rw".into(),
            readonly: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: None,
            readonly: false,
            noexec: false,
        },
    ];
    assert_eq!(run_ok(&spec), "3\nnull-ok\n1\n");
    // The nodes the sandbox made in the bind are still there on the host (as with Docker).
    assert!(rw.path().join("kmsg").exists());
}

#[test]
fn setuid_files_give_no_privileges_under_no_new_privs() {
    if !common::can_run("setuid_files_give_no_privileges_under_no_new_privs") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    // busybox's su keeps its setuid root (other applets drop it) and says so when it has none.
    fs::create_dir_all(f.root.join("s")).unwrap();
    let su = f.root.join("s/su");
    fs::copy(f.root.join("bin/busybox"), &su).unwrap();
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
    let probe = "grep NoNewPrivs /proc/self/status; /s/su -c true root </dev/null 2>&1 | head -1";
    let mut spec = f.spec(probe);
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: Vec::new(),
    };
    spec.no_new_privs = true;
    let out = run_ok(&spec);
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("must be suid to work properly"),
        "{out}"
    );
    // The control: without no_new_privs the setuid bit works (su runs as root and asks).
    spec.no_new_privs = false;
    let out = run_ok(&spec);
    assert!(
        out.contains("NoNewPrivs:\t0") && !out.contains("must be suid"),
        "{out}"
    );
}

#[test]
fn readonly_rootfs_refuses_writes() {
    if !common::can_run("readonly_rootfs_refuses_writes") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec(
        "touch /tmp/x 2>/dev/null && echo writable; echo done > /dev/shm/ok && cat /dev/shm/ok",
    );
    spec.readonly_rootfs = true;
    assert_eq!(run_ok(&spec), "done\n");
    assert!(!f.root.join("tmp/x").exists());
}

#[test]
fn etc_stubs_and_mount_points_are_removed_afterwards() {
    if !common::can_run("etc_stubs_and_mount_points_are_removed_afterwards") {
        return;
    }
    let f = Fixture::new();
    let before = common::tree(&f.root);
    let mut spec = f.spec("cat /etc/hosts; echo ok > /tmp/kept");
    spec.extra_hosts = vec![("registry.local".into(), "10.0.0.7".parse().unwrap())];
    let out = run_ok(&spec);
    assert!(out.contains("127.0.0.1\tlocalhost probe-host"), "{out}");
    assert!(out.contains("10.0.0.7\tregistry.local"), "{out}");
    let mut after = common::tree(&f.root);
    after.retain(|p| p != "tmp/kept");
    assert_eq!(before, after, "stubs left in the rootfs");
    // The state dir of the sandbox is gone too.
    assert_eq!(fs::read_dir(&f.state).unwrap().count(), 0);

    // Files that exist in the rootfs are mounted over and kept as they were.
    fs::write(f.root.join("etc/hosts"), "original\n").unwrap();
    let out = run_ok(&f.spec("cat /etc/hosts"));
    assert!(out.contains("localhost probe-host"), "{out}");
    assert_eq!(
        fs::read_to_string(f.root.join("etc/hosts")).unwrap(),
        "original\n"
    );
}

#[test]
fn network_namespace_prepared_by_the_caller_is_joined() {
    if !common::can_run("network_namespace_prepared_by_the_caller_is_joined") {
        return;
    }
    let f = Fixture::new();
    let holder = tempfile::tempdir().unwrap();
    let ns = holder.path().join("netns");
    fs::write(&ns, "").unwrap();
    // util-linux unshare bind-mounts the new namespace onto the file and exits.
    let made = std::process::Command::new("unshare")
        .arg(format!("--net={}", ns.display()))
        .arg("true")
        .status();
    if !made.map(|s| s.success()).unwrap_or(false) {
        eprintln!(
            "skipping network_namespace_prepared_by_the_caller_is_joined: unshare --net=FILE failed"
        );
        return;
    }
    let mut spec = f.spec("readlink /proc/self/ns/net");
    spec.network = Network::Namespace(ns.clone());
    let out = run_ok(&spec);
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(&ns).unwrap().ino();
    let _ = std::process::Command::new("umount").arg(&ns).status();
    assert_eq!(out, format!("net:[{ino}]\n"));
}

#[test]
fn a_failing_setup_step_is_named_and_cleaned_up() {
    if !common::can_run("a_failing_setup_step_is_named_and_cleaned_up") {
        return;
    }
    let f = Fixture::new();
    let before = common::tree(&f.root);
    // The working directory is a file: chdir fails inside the sandbox, after the stubs were
    // made, and the error travels back over the status pipe.
    let mut spec = f.spec("true");
    spec.cwd = "/etc/passwd".into();
    let err = sandbox::run(&spec, &mut CollectOutput::default(), &CancelToken::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to enter working directory /etc/passwd: Not a directory (os error 20)"
    );
    assert_eq!(
        common::tree(&f.root),
        before,
        "stubs left after a failed setup"
    );
    assert_eq!(fs::read_dir(&f.state).unwrap().count(), 0);

    let mut spec = f.spec("true");
    spec.mounts.push(Mount::Bind {
        source: "/nonexistent/kiln-test".into(),
        target: "/x".into(),
        readonly: false,
    });
    let err = sandbox::run(&spec, &mut CollectOutput::default(), &CancelToken::new()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to stat bind mount source /nonexistent/kiln-test"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&f.state).unwrap().count(), 0);
}
