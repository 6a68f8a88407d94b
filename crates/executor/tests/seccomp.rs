//! Root-only tests of the sandbox's seccomp filter: with Docker's default profile the calls
//! Docker refuses fail with EPERM inside the sandbox (checked with busybox applets and a tiny
//! static probe binary compiled here with rustc), ordinary workloads still run, and
//! `Seccomp::Unconfined` gives the refused calls back.

mod common;

use common::Fixture;

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_executor::sandbox::{
    self, CancelToken, CollectOutput, ExitInfo, ExitStatus, SandboxSpec, Seccomp, User,
};

impl Fixture {
    fn spec(&self, seccomp: Seccomp, script: &str) -> SandboxSpec {
        let mut spec = self.shell(script);
        spec.seccomp = seccomp;
        spec
    }
}

fn run(spec: &SandboxSpec) -> (ExitInfo, String, String) {
    let mut out = CollectOutput::default();
    let info = sandbox::run(spec, &mut out, &CancelToken::new())
        .unwrap_or_else(|e| panic!("sandbox failed: {e}"));
    (info, out.stdout_str(), out.stderr_str())
}

fn run_ok(spec: &SandboxSpec) -> String {
    let (info, out, err) = run(spec);
    assert_eq!(
        info.status,
        ExitStatus::Code(0),
        "stdout: {out}\nstderr: {err}"
    );
    out
}

/// `Seccomp:` and `Seccomp_filters:` from the command's /proc/self/status.
fn seccomp_status(out: &str) -> (String, String) {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

const STATUS: &str = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status";

#[test]
fn default_profile_is_installed_and_refuses_user_namespaces() {
    if !common::can_run("default_profile_is_installed_and_refuses_user_namespaces") {
        return;
    }
    let f = Fixture::new();
    let script = format!("{STATUS}; unshare -U true; echo unshare=$?");
    let (info, out, err) = run(&f.spec(Seccomp::DockerDefault, &script));
    assert_eq!(info.status, ExitStatus::Code(0), "{out}\n{err}");
    // Mode 2 is "filter", one program.
    assert_eq!(
        seccomp_status(&out),
        ("2".into(), "1".into()),
        "{out}\n{err}"
    );
    assert!(out.contains("unshare=1"), "{out}\n{err}");
    assert!(err.contains("Operation not permitted"), "{err}");

    let (info, out, err) = run(&f.spec(Seccomp::Unconfined, &script));
    assert_eq!(info.status, ExitStatus::Code(0), "{out}\n{err}");
    assert_eq!(seccomp_status(&out), ("0".into(), "0".into()), "{out}");
    assert!(out.contains("unshare=0"), "{out}\n{err}");
}

/// A static binary that makes raw syscalls: each argument `NR[:A0[:A1[:A2]]]` (decimal)
/// prints `NR ERRNO` (0 when the call succeeded).
const PROBE: &str = r#"
extern "C" {
    fn syscall(n: i64, ...) -> i64;
    fn __errno_location() -> *mut i32;
}
fn main() {
    for spec in std::env::args().skip(1) {
        let v: Vec<i64> = spec.split(':').map(|x| x.parse().unwrap()).collect();
        let a = |i: usize| v.get(i).copied().unwrap_or(0);
        let r = unsafe { syscall(v[0], a(1), a(2), a(3), 0i64, 0i64) };
        let e = if r < 0 { unsafe { *__errno_location() } } else { 0 };
        println!("{} {}", v[0], e);
    }
}
"#;

/// Compiles [`PROBE`] statically into `dest`; `None` (after saying why) without rustc.
fn build_probe(dest: &Path) -> Option<()> {
    let src = dest.with_extension("rs");
    fs::write(&src, PROBE).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(dest)
        .arg(&src)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => panic!(
            "building the probe failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            eprintln!("skipping: cannot run {rustc} to build the syscall probe: {e}");
            None
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn refused_syscalls_get_eperm_and_come_back_unconfined() {
    if !common::can_run("refused_syscalls_get_eperm_and_come_back_unconfined") {
        return;
    }
    let f = Fixture::new();
    if build_probe(&f.root.join("bin/probe")).is_none() {
        return;
    }
    // (call, errno with the default profile, errno unconfined; None: anything but EPERM,
    // as it depends on the host's kernel modules)
    let calls: [(&str, &str, i32, Option<i32>); 9] = [
        ("keyctl", "250:0:0:0", libc::EPERM, Some(libc::EINVAL)),
        ("add_key", "248", libc::EPERM, Some(libc::EFAULT)),
        (
            "bpf with an unknown command",
            "321:9999",
            libc::EPERM,
            Some(libc::EINVAL),
        ),
        (
            "unshare(CLONE_NEWUSER)",
            "272:268435456",
            libc::EPERM,
            Some(0),
        ),
        ("socket(AF_VSOCK)", "41:40:1:0", libc::EPERM, None),
        (
            "personality(ADDR_NO_RANDOMIZE)",
            "135:262144",
            libc::EPERM,
            Some(0),
        ),
        (
            "clone3 (fallback to clone)",
            "435:0:0",
            libc::ENOSYS,
            Some(libc::EINVAL),
        ),
        // Allowed ones behave the same either way.
        ("getpid", "39", 0, Some(0)),
        ("personality(PER_LINUX32)", "135:8", 0, Some(0)),
    ];
    let args: Vec<&str> = calls.iter().map(|c| c.1).collect();
    let script = format!("/bin/probe {}", args.join(" "));
    for (seccomp, column) in [(Seccomp::DockerDefault, 0), (Seccomp::Unconfined, 1)] {
        let out = run_ok(&f.spec(seccomp.clone(), &script));
        let got: Vec<i32> = out
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(got.len(), calls.len(), "{out}");
        for (c, e) in calls.iter().zip(got) {
            match if column == 0 { Some(c.2) } else { c.3 } {
                Some(want) => {
                    assert_eq!(e, want, "{} under {seccomp:?}: errno {e}, want {want}", c.0)
                }
                None => assert_ne!(e, libc::EPERM, "{} under {seccomp:?}", c.0),
            }
        }
    }
}

#[test]
fn ordinary_workloads_run_under_the_default_profile() {
    if !common::can_run("ordinary_workloads_run_under_the_default_profile") {
        return;
    }
    let f = Fixture::new();
    fs::create_dir_all(f.root.join("www")).unwrap();
    fs::write(f.root.join("www/index.html"), "served\n").unwrap();
    // Pipes, subshells, background jobs, ps through /proc, a raw ICMP socket (CAP_NET_RAW),
    // a 32-bit persona, a TCP server and client over loopback, chroot (CAP_SYS_CHROOT).
    let script = "set -e
        echo a b c | tr ' ' '\\n' | sort -r | head -1
        (sleep 0.1 &) ; wait
        ps -o pid,comm | grep -q ps && echo ps-ok
        ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok
        linux32 uname -m
        httpd -p 127.0.0.1:8080 -h /www
        wget -qO- http://127.0.0.1:8080/index.html
        chroot / true && echo chroot-ok";
    let out = run_ok(&f.spec(Seccomp::DockerDefault, script));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["c", "ps-ok", "ping-ok", "i686", "served", "chroot-ok"],
        "{out}"
    );
}

#[test]
fn filter_applies_to_non_root_users_and_with_no_new_privs() {
    if !common::can_run("filter_applies_to_non_root_users_and_with_no_new_privs") {
        return;
    }
    let f = Fixture::new();
    let script = format!("{STATUS}; id -u; unshare -U true 2>/dev/null; echo unshare=$?");
    let mut spec = f.spec(Seccomp::DockerDefault, &script);
    spec.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![],
    };
    let out = run_ok(&spec);
    assert_eq!(seccomp_status(&out).0, "2", "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.contains("1000\nunshare=1"), "{out}");

    spec.no_new_privs = true;
    let out = run_ok(&spec);
    assert_eq!(seccomp_status(&out).0, "2", "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
}

#[test]
fn a_profile_file_is_installed_as_written() {
    if !common::can_run("a_profile_file_is_installed_as_written") {
        return;
    }
    let f = Fixture::new();
    // Everything allowed but mkdir (EACCES) and chmod (ENOSYS); with and without
    // no_new_privs (the filter then goes in at a different step).
    let profile = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#;
    for nnp in [false, true] {
        let mut spec = f.spec(
            Seccomp::from_security_opt(profile).unwrap(),
            "mkdir /tmp/x 2>&1; chmod 700 /tmp 2>&1; echo done",
        );
        spec.no_new_privs = nnp;
        let out = run_ok(&spec);
        assert!(out.contains("Permission denied"), "{out}");
        assert!(out.contains("Function not implemented"), "{out}");
        assert!(out.ends_with("done\n"), "{out}");
    }
}
