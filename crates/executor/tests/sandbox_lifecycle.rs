//! Root-only tests of a sandbox's life: cgroup limits (OOM, pids), streaming output,
//! cancellation that leaves nothing behind, and an overlay rootfs whose writes land in the
//! upper dir only.

mod common;

use common::{Fixture, run};

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_executor::sandbox::{
    self, CancelToken, CollectOutput, ExitStatus, Mount, RootFs, Sandbox, SandboxError,
    SandboxSpec, Stdin, Stream,
};

impl Fixture {
    fn spec(&self, script: &str) -> SandboxSpec {
        self.shell(script)
    }
}

#[test]
fn memory_limit_stops_a_hog_and_reports_oom() {
    if !common::can_run("memory_limit_stops_a_hog_and_reports_oom") {
        return;
    }
    let f = Fixture::new();
    // The string doubles until the cgroup's 32 MiB are gone.
    let mut spec = f.spec("awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo survived $?");
    spec.cgroup.memory_bytes = Some(32 << 20);
    let (info, out) = run(&spec);
    assert!(info.oom_killed, "{info:?} {}", out.stderr_str());
    // awk was killed; the shell reports 128 + SIGKILL.
    assert_eq!(out.stdout_str(), "survived 137\n");

    // Without a limit being hit, no OOM is reported.
    let mut spec = f.spec("echo fine");
    spec.cgroup.memory_bytes = Some(32 << 20);
    let (info, _) = run(&spec);
    assert!(!info.oom_killed);
    assert_eq!(info.status, ExitStatus::Code(0));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if !common::can_run("pids_limit_stops_a_fork_bomb") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec(
        // The subshell forks until the limit makes it fail; the count uses shell builtins
        // only, since nothing more can fork by then.
        "(for i in $(seq 1 100); do sleep 60 & done); set -- /proc/[0-9]*; echo $#",
    );
    spec.cgroup.pids_max = Some(16);
    let (info, out) = run(&spec);
    let count: u32 = out.stdout_str().trim().parse().unwrap();
    assert!(count <= 16, "{count} processes despite pids.max=16");
    assert!(count >= 8, "the loop did not fork at all: {count}");
    assert!(
        out.stderr_str().contains("can't fork"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(info.status, ExitStatus::Code(0));
}

#[test]
fn output_streams_while_the_command_runs() {
    if !common::can_run("output_streams_while_the_command_runs") {
        return;
    }
    let f = Fixture::new();
    // The command only prints "second" once the flag exists, and only the sink creates the
    // flag, on seeing "first": with buffered output this ends in "timeout" instead.
    let flags = f.dir.path().join("flags");
    fs::create_dir(&flags).unwrap();
    let mut spec = f.spec(
        "echo first; for i in $(seq 1 600); do [ -e /flags/go ] && break; sleep 0.05; done; \
         [ -e /flags/go ] && echo second || echo timeout",
    );
    spec.mounts.push(Mount::Bind {
        source: flags.clone(),
        target: "/flags".into(),
        readonly: true,
    });
    let mut seen = String::new();
    let mut sink = |stream: Stream, data: &[u8]| {
        assert_eq!(stream, Stream::Stdout);
        seen.push_str(&String::from_utf8_lossy(data));
        if seen == "first\n" {
            fs::write(flags.join("go"), "").unwrap();
        }
    };
    let info = sandbox::run(&spec, &mut sink, &CancelToken::new()).unwrap();
    assert!(info.status.success());
    assert_eq!(seen, "first\nsecond\n");
}

fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

fn process_alive(pid: i32) -> bool {
    // A zombie is gone for our purposes only once reaped; /proc/<pid> vanishes then.
    PathBuf::from(format!("/proc/{pid}")).exists()
}

#[test]
fn cancel_mid_run_leaves_no_process_mount_or_cgroup() {
    if !common::can_run("cancel_mid_run_leaves_no_process_mount_or_cgroup") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec("sleep 4242 & sleep 4243 & echo started; wait");
    spec.cgroup.pids_max = Some(64);
    spec.cgroup.memory_bytes = Some(256 << 20);
    let sb = Sandbox::spawn(&spec, Stdin::Null).unwrap();
    let pid = sb.pid();
    let id = sb.id().to_string();
    let cgroups = sb.cgroup_dirs();
    assert_eq!(cgroups.len(), 2, "{cgroups:?}");
    assert!(cgroups.iter().all(|c| c.exists()));
    // The sandbox's children, found from the host through pid 1's children list.
    let cancel = CancelToken::new();
    let children = Arc::new(Mutex::new(Vec::<i32>::new()));
    let (c2, kids) = (cancel.clone(), children.clone());
    let mut sink = move |_: Stream, data: &[u8]| {
        if String::from_utf8_lossy(data).contains("started") {
            let list = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
            kids.lock()
                .unwrap()
                .extend(list.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
            c2.cancel();
        }
    };
    let err = sb.wait(&mut sink, &cancel).unwrap_err();
    assert!(matches!(err, SandboxError::Cancelled), "{err}");

    let children = children.lock().unwrap().clone();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(!process_alive(pid), "pid 1 of the sandbox still exists");
    for c in children {
        assert!(!process_alive(c), "sandbox process {c} survived");
    }
    for c in cgroups {
        assert!(!c.exists(), "cgroup {} left behind", c.display());
    }
    assert!(!f.state.join(&id).exists(), "state dir left behind");
    let mounts = host_mounts();
    assert!(!mounts.contains(&id), "mount left behind:\n{mounts}");
    assert!(
        !mounts.contains(f.root.to_str().unwrap()),
        "rootfs still mounted:\n{mounts}"
    );
    // No stub remains in the rootfs either.
    for p in ["proc", "dev", "sys", "etc/hosts"] {
        assert!(!f.root.join(p).exists(), "{p} left behind");
    }

    // A token cancelled before the start runs nothing.
    let err = sandbox::run(&spec, &mut CollectOutput::default(), &cancel).unwrap_err();
    assert!(matches!(err, SandboxError::Cancelled));
}

#[test]
fn dropping_a_running_sandbox_kills_and_cleans_up() {
    if !common::can_run("dropping_a_running_sandbox_kills_and_cleans_up") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec("exec sleep 4244");
    spec.cgroup.pids_max = Some(8);
    let sb = Sandbox::spawn(&spec, Stdin::Null).unwrap();
    let (pid, cgroups) = (sb.pid(), sb.cgroup_dirs());
    drop(sb);
    assert!(!process_alive(pid));
    assert!(cgroups.iter().all(|c| !c.exists()));
    assert_eq!(fs::read_dir(&f.state).unwrap().count(), 0);
}

#[test]
fn overlay_writes_land_in_the_upper_dir_only() {
    if !common::can_run("overlay_writes_land_in_the_upper_dir_only") {
        return;
    }
    let f = Fixture::new();
    let base = f.dir.path();
    // A second layer on top of the busybox one.
    let layer2 = base.join("layer2");
    fs::create_dir_all(layer2.join("etc")).unwrap();
    fs::write(layer2.join("etc/motd"), "layer2\n").unwrap();
    let upper = base.join("upper");
    let work = base.join("work");
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let lower_before = common::tree(&f.root);

    let mut spec = f.spec(
        "cat /etc/motd; echo new > /tmp/new; echo changed > /etc/motd; rm /bin/vi; \
         cat /etc/hosts > /dev/null; mkdir -p /var/data; echo d > /var/data/f",
    );
    spec.rootfs = RootFs::Overlay {
        lowerdirs: vec![layer2.clone(), f.root.clone()],
        upperdir: upper.clone(),
        workdir: work.clone(),
    };
    let (info, out) = run(&spec);
    assert!(info.status.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "layer2\n");

    // Exactly the command's changes are in the upper dir: no /etc/hosts, /proc, /dev or
    // /sys stubs, no copied-up-then-emptied directories beyond those the command touched.
    assert_eq!(
        common::tree(&upper),
        vec![
            "bin",
            "bin/vi",
            "etc",
            "etc/motd",
            "tmp",
            "tmp/new",
            "var",
            "var/data",
            "var/data/f"
        ]
    );
    assert_eq!(fs::read_to_string(upper.join("tmp/new")).unwrap(), "new\n");
    // bin/vi is a whiteout (character device 0/0).
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(upper.join("bin/vi"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // The lower layers are untouched.
    assert_eq!(common::tree(&f.root), lower_before);
    assert_eq!(
        fs::read_to_string(layer2.join("etc/motd")).unwrap(),
        "layer2\n"
    );
    // Nothing stays mounted on the host.
    assert!(!host_mounts().contains(upper.to_str().unwrap()));
}

#[test]
fn overlay_without_etc_leaves_no_copied_up_dirs() {
    if !common::can_run("overlay_without_etc_leaves_no_copied_up_dirs") {
        return;
    }
    let f = Fixture::new();
    let base = f.dir.path();
    let (upper, work) = (base.join("upper"), base.join("work"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let mut spec = f.spec("cat /etc/hostname /etc/resolv.conf > /dev/null");
    spec.rootfs = RootFs::Overlay {
        lowerdirs: vec![f.root.clone()],
        upperdir: upper.clone(),
        workdir: work,
    };
    let (info, out) = run(&spec);
    assert!(info.status.success(), "{}", out.stderr_str());
    assert_eq!(common::tree(&upper), Vec::<String>::new());
}

#[test]
fn cpu_and_memory_limits_are_written_to_the_sandbox_cgroups() {
    if !common::can_run("cpu_and_memory_limits_are_written_to_the_sandbox_cgroups") {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec("read line; echo got $line");
    spec.cgroup.cpu = Some(kiln_executor::sandbox::CpuQuota {
        quota_us: 50_000,
        period_us: 100_000,
    });
    spec.cgroup.memory_bytes = Some(64 << 20);
    let sb = Sandbox::spawn(&spec, Stdin::Bytes(b"go\n".to_vec())).unwrap();
    let dirs = sb.cgroup_dirs();
    let read = |name: &str| -> Option<String> {
        dirs.iter()
            .find_map(|d| fs::read_to_string(d.join(name)).ok())
            .map(|s| s.trim().to_string())
    };
    // cgroup v1 or v2, whichever the host offers for each controller.
    match read("cpu.max") {
        Some(v) => assert_eq!(v, "50000 100000"),
        None => assert_eq!(read("cpu.cfs_quota_us").as_deref(), Some("50000")),
    }
    match read("memory.max") {
        Some(v) => assert_eq!(v, (64u64 << 20).to_string()),
        None => assert_eq!(
            read("memory.limit_in_bytes"),
            Some((64u64 << 20).to_string())
        ),
    }
    // pid 1 of the sandbox is in them.
    let pid = sb.pid().to_string();
    assert!(dirs.iter().all(|d| {
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap()
            .lines()
            .any(|l| l == pid)
    }));
    let mut out = CollectOutput::default();
    let info = sb.wait(&mut out, &CancelToken::new()).unwrap();
    assert!(info.status.success());
    assert_eq!(out.stdout_str(), "got go\n");
    assert!(dirs.iter().all(|d| !d.exists()));
}
