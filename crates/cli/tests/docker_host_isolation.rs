//! Issue 23: the tests' private dockerd deleted the host's `docker0` (dockerd removes the
//! default bridge when started with `--bridge=none` in the host's network namespace). Here a
//! thread plays the host in a network namespace of its own, set up as a machine running Docker
//! looks (`docker0` with its address, Docker's firewall chains and rules), starts the private
//! dockerd of `tests/common/dockerd.rs` from there, runs containers and a build, and checks the
//! "host" is unchanged. No real interface or rule is touched, so the test runs on any machine,
//! with or without a Docker of its own.

use std::process::Command;

mod common;
use common::dockerd::Dockerd;
use common::hostnet::HostSnapshot;

fn sh(cmd: &str, args: &[&str]) -> bool {
    let out = Command::new(cmd).args(args).output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("{cmd}: {e}");
            false
        }
    }
}

/// Runs `body` in a new thread that has a network namespace of its own with `lo` up (every
/// command the thread starts is in it), and re-raises its panic here.
fn in_fake_host(body: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the network");
        assert!(sh("ip", &["link", "set", "lo", "up"]));
        body();
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// `docker0` as a Docker daemon leaves it: a bridge with the default address, up.
fn add_docker0() {
    assert!(sh("ip", &["link", "add", "docker0", "type", "bridge"]));
    assert!(sh(
        "ip",
        &["addr", "add", "172.17.0.1/16", "dev", "docker0"]
    ));
    assert!(sh("ip", &["link", "set", "docker0", "up"]));
}

/// A few of the rules a Docker daemon adds for `docker0`; false when iptables is unusable here.
fn add_docker_rules() -> bool {
    [
        vec!["-t", "nat", "-N", "DOCKER"],
        vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "DOCKER",
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.0/16",
            "!",
            "-o",
            "docker0",
            "-j",
            "MASQUERADE",
        ],
        vec!["-N", "DOCKER-USER"],
        vec!["-A", "FORWARD", "-j", "DOCKER-USER"],
        vec!["-A", "FORWARD", "-o", "docker0", "-j", "ACCEPT"],
    ]
    .iter()
    .all(|args| sh("iptables", &[&["-w"], args.as_slice()].concat()))
}

#[test]
fn issue_23_a_test_dockerd_leaves_the_hosts_docker0_and_firewall_alone() {
    if !common::nix_is_root() {
        eprintln!("skipped: issue 23 check: needs root (network namespaces, dockerd)");
        return;
    }
    in_fake_host(|| {
        add_docker0();
        let with_rules = add_docker_rules();
        if !with_rules {
            eprintln!("note: iptables is not usable here; checking interfaces only");
        }
        let before = HostSnapshot::capture();
        assert!(before.has_link("docker0"), "{before:?}");
        let Some(docker) = Dockerd::start("issue 23 check") else {
            return;
        };
        // A container, so the daemon's networking (sandbox, namespaces) really runs.
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&rootfs).expect("busybox rootfs");
        docker.ok(&["import", rootfs.to_str().expect("utf-8"), "busybox:latest"]);
        let out = docker.ok(&["run", "--rm", "--network", "none", "busybox", "echo", "ran"]);
        assert_eq!(out, "ran\n");
        let out = docker.ok(&["run", "--rm", "busybox", "cat", "/proc/net/dev"]);
        assert!(out.contains("lo:"), "{out}");
        // And a BuildKit RUN step, which makes cgroups of its own under the daemon's parent.
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).expect("mkdir ctx");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nRUN echo built > /b\n",
        )
        .expect("write Dockerfile");
        let build = docker
            .command()
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "-q", "--network", "none"])
            .arg(&ctx)
            .output()
            .expect("docker build");
        assert!(
            build.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        // The helper compares the host before and after as it drops; so does this test, so
        // that it fails even if that check is taken out of the helper.
        drop(docker);
        let damage = before.damage(&HostSnapshot::capture());
        assert!(
            damage.is_empty(),
            "the host changed:\n{}",
            damage.join("\n")
        );
    });
}

/// The check itself: a deleted interface, a lost address, a removed rule and a changed
/// forwarding switch are each reported.
#[test]
fn the_host_check_reports_what_a_daemon_could_break() {
    if !common::nix_is_root() {
        eprintln!("skipped: host check: needs root (network namespaces)");
        return;
    }
    in_fake_host(|| {
        add_docker0();
        assert!(sh("ip", &["link", "add", "kt-dummy", "type", "bridge"]));
        assert!(sh(
            "ip",
            &["addr", "add", "192.0.2.1/24", "dev", "kt-dummy"]
        ));
        let with_rules = add_docker_rules();
        let forwarding = "/proc/sys/net/ipv4/ip_forward";
        let before = HostSnapshot::capture();
        assert!(before.damage(&HostSnapshot::capture()).is_empty());

        assert!(sh("ip", &["link", "del", "docker0"]));
        assert!(sh(
            "ip",
            &["addr", "del", "192.0.2.1/24", "dev", "kt-dummy"]
        ));
        if with_rules {
            assert!(sh(
                "iptables",
                &["-w", "-D", "FORWARD", "-j", "DOCKER-USER"]
            ));
        }
        // Per network namespace, so this changes only the fake host's.
        let was = std::fs::read_to_string(forwarding).expect("read ip_forward");
        let flipped = if was.trim() == "1" { "0" } else { "1" };
        std::fs::write(forwarding, flipped).expect("write ip_forward");

        let damage = before.damage(&HostSnapshot::capture());
        let has = |what: &str| damage.iter().any(|d| d.contains(what));
        assert!(has("interface docker0 was deleted"), "{damage:#?}");
        assert!(has("kt-dummy lost its address 192.0.2.1/24"), "{damage:#?}");
        assert!(has("ip_forward changed"), "{damage:#?}");
        if with_rules {
            assert!(has("-A FORWARD -j DOCKER-USER"), "{damage:#?}");
        }
    });
}
