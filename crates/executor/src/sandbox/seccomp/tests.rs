//! Tests of the seccomp filters: a BPF interpreter runs the compiled programs (the built-in
//! profile against seccompiler's, profile files against what they say).
use super::bpf::jump;
use super::*;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

const AUDIT_ARCH_X86_64: u32 = AUDIT_ARCH;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// A classic-BPF interpreter for the instructions our generator and seccompiler emit,
/// over a `struct seccomp_data` (nr, arch, ip, args).
fn eval(prog: &[libc::sock_filter], nr: i64, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&(nr as u32).to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            0x20 => {
                let k = i.k as usize;
                acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
            }
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let hit = match i.code {
                    0x15 => acc == i.k,
                    0x25 => acc > i.k,
                    0x35 => acc >= i.k,
                    _ => acc & i.k != 0,
                };
                pc += if hit { i.jt } else { i.jf } as usize;
            }
            0x06 => return i.k,
            other => panic!("unexpected BPF opcode {other:#x}"),
        }
    }
}

/// The strictest answer of all filters, as the kernel combines them (later wins ties).
fn verdict(p: &Program, nr: i64, args: [u64; 6]) -> u32 {
    verdict_arch(p, nr, AUDIT_ARCH_X86_64, args)
}

fn verdict_arch(p: &Program, nr: i64, arch: u32, args: [u64; 6]) -> u32 {
    verdict_of(&p.filters, nr, arch, args)
}

fn verdict_of(filters: &[Vec<libc::sock_filter>], nr: i64, arch: u32, args: [u64; 6]) -> u32 {
    let rank = |r: u32| match r & 0xffff_0000 {
        RET_KILL_PROCESS => 0,
        RET_ERRNO => 3,
        RET_ALLOW => 9,
        _ => 5,
    };
    let mut best = RET_ALLOW;
    for f in filters {
        let r = eval(f, nr, arch, args);
        if rank(r) <= rank(best) {
            best = r;
        }
    }
    best
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | e as u32
}

fn default_program() -> Arc<Program> {
    program(&Seccomp::DockerDefault, DOCKER_DEFAULT_CAPS)
        .unwrap()
        .unwrap()
}

#[test]
fn ordinary_syscalls_pass_and_unlisted_ones_get_eperm() {
    let p = default_program();
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_execve,
        libc::SYS_mmap,
    ] {
        assert_eq!(verdict(&p, nr, [0; 6]), RET_ALLOW, "syscall {nr}");
    }
    // chroot: CAP_SYS_CHROOT is one of Docker's default capabilities.
    assert_eq!(verdict(&p, libc::SYS_chroot, [0; 6]), RET_ALLOW);
    for nr in [
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_userfaultfd,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_reboot,
        libc::SYS_ptrace + 10_000,
    ] {
        assert_eq!(verdict(&p, nr, [0; 6]), errno(libc::EPERM), "syscall {nr}");
    }
}

#[test]
fn clone_without_namespace_flags_only_and_clone3_says_enosys() {
    let p = default_program();
    let fork_like = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
    assert_eq!(
        verdict(&p, libc::SYS_clone, [fork_like, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    let threads = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
    assert_eq!(
        verdict(&p, libc::SYS_clone, [threads, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    for ns in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
    ] {
        let flags = ns as u64 | libc::SIGCHLD as u64;
        assert_eq!(
            verdict(&p, libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
            errno(libc::EPERM),
            "clone flag {ns:#x}"
        );
    }
    assert_eq!(verdict(&p, libc::SYS_clone3, [0; 6]), errno(libc::ENOSYS));
}

#[test]
fn cap_sys_admin_opens_the_namespace_and_mount_calls() {
    let caps = DOCKER_DEFAULT_CAPS | 1 << CAP_SYS_ADMIN;
    let p = program(&Seccomp::DockerDefault, caps).unwrap().unwrap();
    for nr in [
        libc::SYS_unshare,
        libc::SYS_mount,
        libc::SYS_setns,
        libc::SYS_clone3,
    ] {
        assert_eq!(verdict(&p, nr, [0; 6]), RET_ALLOW, "syscall {nr}");
    }
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    assert_eq!(
        verdict(&p, libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    // And without CAP_SYS_CHROOT, chroot is refused.
    let p = program(&Seccomp::DockerDefault, caps & !(1 << CAP_SYS_CHROOT))
        .unwrap()
        .unwrap();
    assert_eq!(verdict(&p, libc::SYS_chroot, [0; 6]), errno(libc::EPERM));
}

#[test]
fn socket_families_and_personas() {
    let p = default_program();
    let sock = |family: u64| verdict(&p, libc::SYS_socket, [family, 1, 0, 0, 0, 0]);
    for family in [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
        39,
        41,
    ] {
        assert_eq!(sock(family as u64), RET_ALLOW, "family {family}");
    }
    assert_eq!(sock(AF_ALG), errno(libc::EPERM));
    assert_eq!(sock(AF_VSOCK), errno(libc::EPERM));
    let persona = |v: u64| verdict(&p, libc::SYS_personality, [v, 0, 0, 0, 0, 0]);
    for v in PERSONAS {
        assert_eq!(persona(v), RET_ALLOW, "persona {v:#x}");
    }
    // ADDR_NO_RANDOMIZE (setarch -R) and READ_IMPLIES_EXEC are refused, as in Docker.
    assert_eq!(persona(0x0004_0000), errno(libc::EPERM));
    assert_eq!(persona(0x0040_0000), errno(libc::EPERM));
}

#[test]
fn other_calling_conventions_are_refused() {
    let p = default_program();
    // x32: the x86_64 audit arch with bit 30 in the number.
    let x32_read = 0x4000_0000 | libc::SYS_read;
    assert_eq!(verdict(&p, x32_read, [0; 6]), errno(libc::EPERM));
    // i386 (int 0x80): not the filter's architecture.
    assert_eq!(
        verdict_arch(&p, 3, AUDIT_ARCH_I386, [0; 6]),
        RET_KILL_PROCESS
    );
}

#[test]
fn unconfined_has_no_program_and_the_default_is_built_once() {
    assert!(
        program(&Seccomp::Unconfined, DOCKER_DEFAULT_CAPS)
            .unwrap()
            .is_none()
    );
    let a = default_program();
    let b = default_program();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(a.filters[0].len() < 4096);
}

#[test]
fn security_opt_round_trip() {
    assert_eq!(
        Seccomp::from_security_opt("unconfined").unwrap(),
        Seccomp::Unconfined
    );
    assert_eq!(
        Seccomp::Unconfined.security_opt().as_deref(),
        Some("seccomp=unconfined")
    );
    assert_eq!(Seccomp::DockerDefault.security_opt(), None);
    assert!(matches!(
        Seccomp::from_security_opt("/etc/profile.json"),
        Err(SandboxError::InvalidSpec(_))
    ));
}

#[cfg(feature = "runc")]
#[test]
fn oci_profile_names_the_same_rules() {
    let v = oci_profile(&Seccomp::DockerDefault, DOCKER_DEFAULT_CAPS).unwrap();
    assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
    let all = v["syscalls"][0]["names"].as_array().unwrap();
    assert!(all.iter().any(|n| n == "read"));
    assert!(all.iter().any(|n| n == "chroot"));
    assert!(!all.iter().any(|n| n == "unshare" || n == "keyctl"));
    let text = v.to_string();
    assert!(text.contains("\"clone3\"") && text.contains("\"errnoRet\":38"));
    assert!(oci_profile(&Seccomp::Unconfined, DOCKER_DEFAULT_CAPS).is_none());
}

/// The same profile compiled by seccompiler (linear rule chains; a second filter for
/// clone3's ENOSYS, since its filters have one match action), as an independent reference.
fn reference(caps: u64) -> Vec<Vec<libc::sock_filter>> {
    let p = profile(caps);
    let cond = |c: &Cond| {
        let (arg, op, value) = match *c {
            Cond::Eq(a, v) => (a, SeccompCmpOp::Eq, v),
            Cond::Lt(a, v) => (a, SeccompCmpOp::Lt, v),
            Cond::Gt(a, v) => (a, SeccompCmpOp::Gt, v),
            Cond::NoBits(a, m) => (a, SeccompCmpOp::MaskedEq(m), 0),
            other => unreachable!("the built-in profile has no {other:?}"),
        };
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).unwrap()
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = p
        .allow
        .iter()
        .map(|(nr, (_, allow))| {
            let chain = match allow {
                Allow::Always => Vec::new(),
                Allow::If(alts) => alts
                    .iter()
                    .map(|conds| SeccompRule::new(conds.iter().map(cond).collect()).unwrap())
                    .collect(),
            };
            (*nr, chain)
        })
        .collect();
    let build = |rules, mismatch, matched| -> Vec<libc::sock_filter> {
        let f =
            SeccompFilter::new(rules, mismatch, matched, seccompiler::TargetArch::x86_64).unwrap();
        BpfProgram::try_from(f)
            .unwrap()
            .iter()
            .map(|i| jump(i.code, i.k, i.jt, i.jf))
            .collect()
    };
    let mut filters = vec![build(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )];
    if let Some(nr) = p.clone3_enosys {
        filters.push(build(
            BTreeMap::from([(nr, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
        ));
    }
    filters
}

#[test]
fn same_verdicts_as_seccompiler_for_every_syscall_number() {
    let mut arg_sets: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6]];
    for v in (0..48)
        .chain(PERSONAS)
        .chain([0x4_0000, 0x7E02_0011, 0x0001_0f00])
    {
        arg_sets.push([v, 1, 0, 0, 0, 0]);
    }
    for ns in [libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_NEWNS] {
        arg_sets.push([(ns | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0]);
    }
    for caps in [
        DOCKER_DEFAULT_CAPS,
        DOCKER_DEFAULT_CAPS | 1 << CAP_SYS_ADMIN,
        u64::MAX,
        0,
    ] {
        let ours = compile(caps).unwrap();
        let theirs = reference(caps);
        for nr in (0..1024).chain([0x4000_0000, 0x4000_0001, 0x4000_0200, 0x7fff_ffff]) {
            for args in &arg_sets {
                for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
                    assert_eq!(
                        verdict_of(&ours.filters, nr, arch, *args),
                        verdict_of(&theirs, nr, arch, *args),
                        "caps {caps:#x} nr {nr} arch {arch:#x} args {args:x?}"
                    );
                }
            }
        }
        // And far shorter: a search tree instead of one chain per syscall.
        let len = ours.filters[0].len();
        assert!(len < theirs[0].len() / 3, "{len} vs {}", theirs[0].len());
    }
}

fn file(text: &str) -> Seccomp {
    Seccomp::from_security_opt(text).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(feature = "runc")]
#[test]
fn the_builtin_profile_as_a_file_gives_the_same_verdicts() {
    // oci_profile writes the built-in rules in Docker's format; compiled back as a profile
    // file (64-bit comparisons) they must answer as the built-in program does for arguments
    // whose high words are zero.
    for caps in [
        DOCKER_DEFAULT_CAPS,
        DOCKER_DEFAULT_CAPS | 1 << CAP_SYS_ADMIN,
    ] {
        let text = oci_profile(&Seccomp::DockerDefault, caps)
            .unwrap()
            .to_string();
        let ours = program(&file(&text), caps).unwrap().unwrap();
        let builtin = program(&Seccomp::DockerDefault, caps).unwrap().unwrap();
        for nr in (0..1024).chain([0x4000_0000, 0x4000_0001]) {
            for args in [
                [0u64; 6],
                [38, 0, 0, 0, 0, 0],
                [40, 0, 0, 0, 0, 0],
                [0x8, 0, 0, 0, 0, 0],
                [0x4_0000, 0, 0, 0, 0, 0],
                [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0],
                [0xffff_ffff, 0, 0, 0, 0, 0],
            ] {
                assert_eq!(
                    verdict(&ours, nr, args),
                    verdict(&builtin, nr, args),
                    "caps {caps:#x} nr {nr} args {args:x?}"
                );
            }
        }
    }
}

#[test]
fn profile_files_follow_dockers_rules() {
    let text = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
            {"names": ["unshare"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
            {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 4294967296, "op": "SCMP_CMP_GE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}, {"index": 1, "value": 15, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_LT"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 15, "op": "SCMP_CMP_LE"}, {"index": 1, "value": 10, "op": "SCMP_CMP_GT"}]}
        ]
    }"#;
    let p = program(&file(text), DOCKER_DEFAULT_CAPS).unwrap().unwrap();
    let v = |nr: i64, args: [u64; 6]| verdict(&p, nr, args);
    assert_eq!(v(libc::SYS_read, [0; 6]), RET_ALLOW);
    assert_eq!(v(libc::SYS_open, [0; 6]), errno(38));
    assert_eq!(v(libc::SYS_mkdir, [0; 6]), errno(13));
    assert_eq!(v(libc::SYS_chroot, [0; 6]), RET_ALLOW);
    assert_eq!(v(libc::SYS_unshare, [0; 6]), errno(38));
    assert_eq!(v(libc::SYS_getpid, [0; 6]), RET_KILL_PROCESS);
    let pers = |a: u64| v(libc::SYS_personality, [a, 0, 0, 0, 0, 0]);
    assert_eq!(pers(8), RET_ALLOW);
    // 64-bit comparisons: 0x1_0000_0008 is not 8, and is at least 2^32.
    assert_eq!(pers(0x1_0000_0008), errno(22));
    assert_eq!(pers(9), errno(38));
    let sock = |a: u64, b: u64| v(libc::SYS_socket, [a, b, 0, 0, 0, 0]);
    assert_eq!(sock(2, 1), RET_ALLOW);
    assert_eq!(sock(2, 0x11), RET_ALLOW);
    assert_eq!(sock(2, 2), errno(38));
    assert_eq!(sock(40, 1), errno(38));
    assert_eq!(sock(40 | 1 << 32, 1), RET_ALLOW);
    let kill = |sig: u64| v(libc::SYS_kill, [1, sig, 0, 0, 0, 0]);
    assert_eq!(kill(8), RET_ALLOW);
    assert_eq!(kill(9), errno(38));
    assert_eq!(kill(10), errno(38));
    assert_eq!(kill(11), RET_ALLOW);
    assert_eq!(kill(15), RET_ALLOW);
    assert_eq!(kill(16), errno(38));
    assert_eq!(kill(1 << 32), errno(38));
    // Without CAP_SYS_CHROOT the rules swap.
    let p = program(&file(text), DOCKER_DEFAULT_CAPS & !(1 << CAP_SYS_CHROOT))
        .unwrap()
        .unwrap();
    assert_eq!(verdict(&p, libc::SYS_chroot, [0; 6]), errno(38));
    assert_eq!(verdict(&p, libc::SYS_unshare, [0; 6]), RET_ALLOW);
}

#[test]
fn profile_file_errors_name_the_place() {
    let bad = Seccomp::from_security_opt("{\n  \"defaultAction\": 3\n}").unwrap_err();
    assert!(bad.to_string().contains("line 2, column"), "{bad}");
    let bad = Seccomp::from_security_opt(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).unwrap_err();
    assert!(bad.to_string().contains("SCMP_ACT_MAYBE"), "{bad}");
    let bad = Seccomp::from_security_opt(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}"#,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("architecture"), "{bad}");
    assert!(matches!(
        Seccomp::from_security_opt(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#),
        Err(SandboxError::NotSupported(_))
    ));
}
