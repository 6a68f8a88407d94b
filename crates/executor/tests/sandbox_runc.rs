//! Root-only tests of handing a spec to runc: the same probe sees the same box.

mod common;

use std::path::PathBuf;

use kiln_executor::sandbox::{CancelToken, CollectOutput, ExitStatus, RootFs, SandboxSpec, runc};

fn runc_binary() -> Option<PathBuf> {
    ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn runc_runs_the_spec_like_the_builtin_sandbox() {
    if !common::can_run("runc_runs_the_spec_like_the_builtin_sandbox") {
        return;
    }
    let Some(runc_bin) = runc_binary() else {
        eprintln!("skipping runc_runs_the_spec_like_the_builtin_sandbox: runc not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    common::busybox_rootfs(&lower).unwrap();
    let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs: vec![lower.clone()],
            upperdir: upper.clone(),
            workdir: work,
        },
        vec![
            "sh".into(),
            "-c".into(),
            "echo $$; hostname; grep CapEff /proc/self/status; ls /sys/class/net; \
             echo x > /tmp/f; echo err >&2; exit 7"
                .into(),
        ],
    );
    spec.hostname = "via-runc".into();
    spec.state_dir = dir.path().join("state");
    spec.cgroup.pids_max = Some(32);
    let mut out = CollectOutput::default();
    let info = runc::run(&runc_bin, &spec, &mut out, &CancelToken::new()).unwrap();
    assert_eq!(info.status, ExitStatus::Code(7), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        "1\nvia-runc\nCapEff:\t00000000a80425fb\nlo\n"
    );
    assert_eq!(out.stderr_str(), "err\n");
    // Writes land in the upper dir; runc's mount points and /etc stubs are removed again.
    assert_eq!(common::tree(&upper), vec!["tmp", "tmp/f"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0
    );
}
