//! `--add-host`, `--ulimit` and `--shm-size` reach RUN steps as in BuildKit 0.24 (compared as
//! images), enter the step's cache key, and `RUN --device` binds a host device with the
//! `device` entitlement.

use crate::common::reference::{self, Spec};
use crate::common::{self};

#[test]
fn run_settings_match_the_reference() {
    let Some(pair) = reference::pair("run_settings_match_the_reference") else {
        return;
    };
    let ctx = pair.scratch_dir("run-settings").join("context");
    common::write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN cat /etc/hosts > /hosts && ulimit -n > /nofile && ulimit -Hn >> /nofile && df -k /dev/shm | awk 'NR==2 {print $2}' > /shm\n",
        )],
    );
    let spec = Spec::new(&ctx).flags(
        &[
            "--add-host",
            "db.internal:10.1.2.3",
            "--add-host",
            "cache.internal=10.1.2.4",
            "--ulimit",
            "nofile=1234:2345",
            "--shm-size",
            "64m",
        ],
        &[
            "--opt",
            "add-hosts=db.internal=10.1.2.3,cache.internal=10.1.2.4",
            "--opt",
            "ulimit=nofile=1234:2345",
            "--opt",
            "shm-size=67108864",
        ],
    );
    let image = pair
        .compare(&spec)
        .expect_same("--add-host, --ulimit, --shm-size");
    // BuildKit's /etc/hosts with the two lines added has this digest: the compare above
    // checked kiln's is the same file.
    assert!(matches!(
        image.file("/hosts").map(|n| &n.kind),
        Some(crate::common::imagefs::Kind::File { .. })
    ));

    // The settings are part of the step: other values run it again.
    let k = &pair.kiln;
    let args = ["--ulimit", "nofile=1234:2345"];
    k.build(&ctx, &args).assert_ok();
    let b = k.build(&ctx, &args);
    assert!(b.runs_executed().is_empty(), "{:?}", b.executed());
    let b = k.build(&ctx, &["--ulimit", "nofile=999:2345"]);
    assert_eq!(b.runs_executed().len(), 1, "{:?}", b.executed());
    let b = k.build(&ctx, &["--ulimit", "nofiles=1"]);
    assert!(!b.ok());
    assert!(b.stderr().contains("unknown resource"), "{}", b.stderr());
}

#[test]
fn run_device_binds_a_host_device_with_the_entitlement() {
    let Some(k) = common::Kiln::new("run_device_binds_a_host_device") else {
        return;
    };
    // A device the sandbox does not make on its own.
    let Some(device) = ["/dev/fuse", "/dev/net/tun", "/dev/loop-control"]
        .into_iter()
        .find(|d| std::path::Path::new(d).exists())
    else {
        eprintln!(
            "skipped: run_device_binds_a_host_device: no /dev/fuse, /dev/net/tun or /dev/loop-control here"
        );
        return;
    };
    let dir = k.mkdir("device");
    common::write_files(
        &dir,
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN --device={device} test -c {device} && echo has-device\n"),
        )],
    );
    let b = k.build(&dir, &[]);
    assert!(!b.ok(), "the device entitlement is needed");
    assert!(b.stderr().contains("--allow device"), "{}", b.stderr());
    let b = k.build(&dir, &["--allow", "device"]);
    b.assert_ok();
    assert!(b.all_logs().contains("has-device"), "{}", b.all_logs());
    // A CDI name kiln cannot resolve: an error when required, skipped when not.
    common::write_files(
        &dir,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --device=vendor.example/gpu=all,required echo ran\n",
        )],
    );
    let b = k.build(&dir, &["--allow", "device"]);
    assert!(!b.ok());
    assert!(
        b.stderr().contains("not supported yet: CDI device"),
        "{}",
        b.stderr()
    );
    common::write_files(
        &dir,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --device=vendor.example/gpu=all echo ran\n",
        )],
    );
    k.build(&dir, &["--allow", "device"]).assert_ok();
}
