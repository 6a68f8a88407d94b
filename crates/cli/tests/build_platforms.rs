//! Multi-platform builds (issue 20): bases resolve by platform, RUN steps for arm64 run through
//! QEMU user emulation on this amd64 host, several `--platform` values give one image index,
//! shared `$BUILDPLATFORM` steps run once, a missing emulator is named, and an index built
//! with SOURCE_DATE_EPOCH is the same in two fresh roots. The arm64 base is Debian's
//! `busybox-static:arm64`, made into an image the way the amd64 fixture is.

mod common;

use std::path::{Path, PathBuf};

use common::{Kiln, assert_success, write_files};

/// A root with `busybox` (amd64), `busybox-arm64` and `busybox-multi`, an index of both built
/// by kiln (`FROM busybox-${TARGETARCH}`); `None` (with `skipped:`) when the arm64 busybox
/// cannot be had or, if `emulated`, when no arm64 emulator is registered.
fn multi_root(test: &str, emulated: bool) -> Option<Kiln> {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: {test}: these tests emulate arm64 on an x86-64 host");
        return None;
    }
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let arm64 = match kiln_testutil::arm64_busybox(&cache) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("skipped: {test}: no arm64 busybox ({e})");
            return None;
        }
    };
    if emulated && !aarch64_emulator() {
        eprintln!(
            "skipped: {test}: no binfmt_misc handler for aarch64 (apt-get install \
             qemu-user-static binfmt-support)"
        );
        return None;
    }
    let k = Kiln::new(test)?;
    let tar = k.dir.path().join("busybox-arm64.tar");
    kiln_testutil::write_busybox_rootfs_tar_with(&tar, &arm64).expect("arm64 rootfs tar");
    let out = k.run(&[
        "import",
        "--platform",
        "linux/arm64",
        tar.to_str().unwrap(),
        "busybox-arm64",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    assert_success(&out, "import the arm64 busybox");
    assert_success(&k.run(&["tag", "busybox", "busybox-amd64"]), "tag");
    let ctx = k.mkdir("multi-base");
    write_files(
        &ctx,
        &[("Dockerfile", "ARG TARGETARCH\nFROM busybox-${TARGETARCH}\n")],
    );
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "busybox-multi",
        ],
    );
    b.assert_ok();
    let out = k.run(&[
        "inspect",
        "--format",
        "{{json .Platforms}}",
        "busybox-multi",
    ]);
    assert_success(&out, "inspect the index");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["linux/amd64","linux/arm64"]"#
    );
    Some(k)
}

/// Whether the host has an enabled aarch64 handler with the F flag (what the sandbox needs).
fn aarch64_emulator() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/sys/fs/binfmt_misc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        std::fs::read_to_string(e.path()).is_ok_and(|t| {
            t.starts_with("enabled")
                && t.contains("magic 7f454c460201010000000000000000000200b700")
                && t.lines()
                    .any(|l| l.starts_with("flags:") && l.contains('F'))
        })
    })
}

fn context(k: &Kiln, name: &str, dockerfile: &str) -> PathBuf {
    let ctx = k.mkdir(name);
    write_files(&ctx, &[("Dockerfile", dockerfile)]);
    ctx
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The bug of issue 20: `--platform linux/arm64` took the amd64 base and ran natively.
#[test]
fn issue_20_arm64_build_runs_the_arm64_base_emulated() {
    let Some(k) = multi_root("issue_20_arm64_build_runs_the_arm64_base_emulated", true) else {
        return;
    };
    let ctx = context(&k, "arm64", "FROM busybox-multi\nRUN uname -m > /arch\n");
    let out = k.dir.path().join("out");
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/arm64",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    b.assert_ok();
    assert_eq!(read(&out.join("arch")), "aarch64");
    // The platform names arm64/v8 the same way: containerd's matcher normalizes it.
    let b = k.build(&ctx, &["--platform", "linux/arm64/v8", "-t", "v8"]);
    b.assert_ok();

    // An amd64-only base for arm64 is an error naming what the image has, never a native run.
    let ctx = context(&k, "amd64-only", "FROM busybox\nRUN uname -m > /arch\n");
    let b = k.build(&ctx, &["--platform", "linux/arm64"]);
    assert!(!b.ok(), "an amd64 base built for arm64");
    let err = b.stderr();
    assert!(
        err.contains("has no image for platform linux/arm64 (it has: linux/amd64)"),
        "{err}"
    );
    // arm/v7 is not arm/v6, nor anything the index has: the error lists both platforms.
    let ctx = context(&k, "armv6", "FROM busybox-multi\n");
    let b = k.build(&ctx, &["--platform", "linux/arm/v6"]);
    assert!(!b.ok());
    let err = b.stderr();
    assert!(
        err.contains("no image for platform linux/arm/v6 (it has: linux/amd64, linux/arm64)"),
        "{err}"
    );
}

/// Acceptance: two platforms into one OCI archive whose index skopeo reads and whose images
/// umoci unpacks, with `/arch` from each architecture's `uname -m`.
#[test]
fn two_platform_oci_archive_holds_an_index() {
    let Some(k) = multi_root("two_platform_oci_archive_holds_an_index", true) else {
        return;
    };
    let ctx = context(&k, "two", "FROM busybox-multi\nRUN uname -m > /arch\n");
    let archive = k.dir.path().join("x.tar");
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "two:1",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
        ],
    );
    b.assert_ok();
    // Both RUN steps ran, each named with its platform.
    let runs = b.runs_executed();
    assert!(
        runs.iter().any(|r| r.starts_with("[linux/amd64 "))
            && runs.iter().any(|r| r.starts_with("[linux/arm64 ")),
        "{runs:?}"
    );

    let Ok(raw) = kiln_testutil::skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
    else {
        eprintln!("skipped: skopeo is not installed");
        return;
    };
    assert_success(&raw, "skopeo inspect --raw");
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("index json");
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let manifests = index["manifests"].as_array().expect("manifests");
    let platforms: Vec<String> = manifests
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or(""),
                m["platform"]["architecture"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    if std::process::Command::new("umoci")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: umoci is not installed");
        return;
    }
    // umoci picks images by ref name: name each platform's manifest in a copy of the layout.
    let layout = k.mkdir("layout");
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .output()
        .expect("tar");
    assert_success(&untar, "untar the archive");
    let mut top: serde_json::Value =
        serde_json::from_str(&read(&layout.join("index.json"))).expect("index.json");
    for m in manifests {
        let mut entry = m.clone();
        let arch = m["platform"]["architecture"].as_str().unwrap().to_owned();
        entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": arch });
        top["manifests"].as_array_mut().unwrap().push(entry);
    }
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let bundle = k.dir.path().join(format!("bundle-{arch}"));
        let out = std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{arch}", layout.display()))
            .arg(&bundle)
            .output()
            .expect("umoci");
        assert_success(&out, "umoci unpack");
        assert_eq!(read(&bundle.join("rootfs/arch")), uname);
    }
}

/// Acceptance: a cross-compile Dockerfile's `$BUILDPLATFORM` stage runs once for both
/// platforms; the steps that read TARGETARCH run per platform.
#[test]
fn buildplatform_stage_runs_once() {
    let Some(k) = multi_root("buildplatform_stage_runs_once", true) else {
        return;
    };
    let ctx = context(
        &k,
        "cross",
        "FROM --platform=$BUILDPLATFORM busybox-multi AS build\n\
         RUN echo built-on-$(uname -m) > /out\n\
         ARG TARGETARCH\n\
         RUN echo $TARGETARCH > /target\n\
         FROM busybox-multi\n\
         COPY --from=build /out /target /\n",
    );
    let out = k.dir.path().join("out");
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    b.assert_ok();
    let starts = |needle: &str| {
        b.events
            .iter()
            .filter(|e| e.kind == "started" && e.name.contains(needle))
            .count()
    };
    assert_eq!(starts("RUN echo built-on"), 1, "{:?}", b.steps());
    assert_eq!(starts("RUN echo $TARGETARCH"), 0, "expanded in the name");
    assert_eq!(starts("RUN echo amd64"), 1, "{:?}", b.steps());
    assert_eq!(starts("RUN echo arm64"), 1, "{:?}", b.steps());
    for (dir, target) in [("linux_amd64", "amd64"), ("linux_arm64", "arm64")] {
        assert_eq!(read(&out.join(dir).join("out")), "built-on-x86_64");
        assert_eq!(read(&out.join(dir).join("target")), target);
    }

    // `type=tar`: one tar holding the same directory per platform (from the cache now).
    let tar = k.dir.path().join("fs.tar");
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=tar,dest={}", tar.display()),
        ],
    );
    b.assert_ok();
    assert!(b.runs_executed().is_empty(), "{:?}", b.runs_executed());
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar -tf");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for entry in [
        "linux_amd64/target",
        "linux_arm64/target",
        "linux_arm64/bin/busybox",
    ] {
        assert!(
            listed.lines().any(|l| l.trim_start_matches("./") == entry),
            "{entry}: {listed}"
        );
    }
}

/// Acceptance: without an emulator the arm64 RUN fails naming qemu-user-static and binfmt.
/// The host's handlers stay as they are: the engine reads an empty directory instead.
#[test]
fn missing_emulator_is_named() {
    let Some(k) = multi_root("missing_emulator_is_named", false) else {
        return;
    };
    let empty = k.mkdir("binfmt_misc");
    std::fs::write(empty.join("status"), "enabled\n").unwrap();
    std::fs::write(empty.join("register"), "").unwrap();
    let ctx = context(&k, "noemu", "FROM busybox-arm64\nRUN uname -m > /arch\n");
    let mut cmd = k.command();
    cmd.env("KILN_BINFMT_MISC_DIR", &empty)
        .args(["build", "--progress", "plain", "--platform", "linux/arm64"])
        .arg(&ctx);
    let out = cmd.output().expect("kiln build");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(err.contains("binfmt_misc handler for aarch64"), "{err}");
    assert!(!err.contains("exec format error"), "{err}");

    // `kiln run` of an arm64 image says the same before it starts anything.
    let out = k
        .command()
        .env("KILN_BINFMT_MISC_DIR", &empty)
        .args(["run", "--rm", "--network", "none", "busybox-arm64", "true"])
        .output()
        .expect("kiln run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(err.contains("binfmt_misc handler for aarch64"), "{err}");
}

/// Acceptance: with SOURCE_DATE_EPOCH the index is the same in two fresh roots (given the same
/// base, which travels between them as an archive).
#[test]
fn source_date_epoch_index_is_reproducible() {
    let Some(a) = multi_root("source_date_epoch_index_is_reproducible", true) else {
        return;
    };
    let Some(b) = Kiln::new("source_date_epoch_index_is_reproducible") else {
        return;
    };
    let saved = a.dir.path().join("base.tar");
    assert_success(
        &a.run(&[
            "save",
            "--format",
            "oci",
            "-o",
            saved.to_str().unwrap(),
            "busybox-multi",
        ]),
        "save the base",
    );
    assert_success(&b.run(&["load", "-i", saved.to_str().unwrap()]), "load");
    let dockerfile = "FROM busybox-multi\nRUN uname -m > /arch\n";
    let mut ids = Vec::new();
    for k in [&a, &b] {
        let ctx = context(k, "sde", dockerfile);
        let iid = k.dir.path().join("iid");
        let out = k
            .command()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "--no-cache"])
            .args(["--platform", "linux/amd64,linux/arm64", "-t", "sde:1"])
            .arg("--iidfile")
            .arg(&iid)
            .arg(&ctx)
            .output()
            .expect("kiln build");
        assert_success(&out, "build with SOURCE_DATE_EPOCH");
        ids.push(read(&iid));
    }
    assert_eq!(ids[0], ids[1]);
}

/// Acceptance: `--push` of a two-platform build sends the index with both manifests; a fresh
/// root pulls the arm64 one and `kiln run --platform linux/arm64` runs it (emulated).
#[test]
fn pushed_index_pulls_and_runs_per_platform() {
    let Some(k) = multi_root("pushed_index_pulls_and_runs_per_platform", true) else {
        return;
    };
    let Some(reg) = common::registry::Registry::start(None) else {
        return;
    };
    let name = format!("{}/multi/arch:1", reg.host());
    let ctx = context(&k, "push", "FROM busybox-multi\nRUN uname -m > /arch\n");
    let b = k.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
        ],
    );
    b.assert_ok();

    let Some(fresh) = Kiln::new("pushed_index_pulls_and_runs_per_platform") else {
        return;
    };
    // The pushed index as the base of another two-platform build: each platform's manifest
    // is pulled from the registry, and the name keeps both.
    let ctx = context(
        &fresh,
        "from-registry",
        &format!("FROM {name}\nRUN uname -m > /again\n"),
    );
    let out = fresh.dir.path().join("out");
    let b = fresh.build(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    b.assert_ok();
    for (dir, uname) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        assert_eq!(read(&out.join(dir).join("arch")), uname);
        assert_eq!(read(&out.join(dir).join("again")), uname);
    }
    for (platform, uname) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let pulled = fresh.run(&["pull", "--platform", platform, &name]);
        assert_success(&pulled, "pull --platform");
        let out = fresh.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--platform",
            platform,
            &name,
            "cat",
            "/arch",
        ]);
        assert_success(&out, "run --platform");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uname);
    }
    // A pull for one platform keeps the other: arm64 runs without another pull.
    let out = fresh.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        "--platform",
        "linux/arm64",
        &name,
        "cat",
        "/arch",
    ]);
    assert_success(&out, "run the arm64 image kept in the index");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aarch64");

    // A Docker daemon pulls the index and runs its amd64 image (this host's).
    let Some(mut dockerd) = common::dockerd::Dockerd::start("docker pulls the kiln index") else {
        return;
    };
    dockerd.forward_port(reg.port());
    let pulled = dockerd.run(&["pull", &name]);
    assert_success(&pulled, "docker pull of the index");
    let run = dockerd.run(&["run", "--rm", "--network", "none", &name, "cat", "/arch"]);
    assert_success(&run, "docker run");
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "x86_64");
}
