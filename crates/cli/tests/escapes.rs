//! Escapes that must fail. A host directory holds a secret; builds, containers, `kiln cp`,
//! volumes and binds are pointed at it through every trick a Dockerfile author, an image or a
//! container can play (symlinks in the context, in a stage, in an archive, in the image, a
//! symlink swapped in mid-copy, the runtime's own binary under `/proc`, mounts made inside,
//! device nodes), and the secret must never come out, the directory must never change, and
//! nothing inside may reach the host's devices or mount table. Where Docker succeeds (a COPY of
//! a directory holding symlinks, a bind onto a symlinked target) kiln does too, inside.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod common;
use common::containers::RunEnv;

/// A host directory with a secret nobody inside may read, and a check that it did not change.
struct Host {
    dir: tempfile::TempDir,
    token: String,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("kiln-escape-")
            .tempdir()
            .unwrap();
        let token = format!(
            "KILN-ESCAPE-SECRET-{}-{}",
            std::process::id(),
            dir.path().display().to_string().len() * 7919
        );
        std::fs::write(dir.path().join("secret"), &token).unwrap();
        Host { dir, token }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn secret(&self) -> String {
        format!("{}/secret", self.dir.path().display())
    }

    /// Nothing was added to, removed from or written in the directory.
    fn assert_untouched(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["secret"], "the host directory changed");
        assert_eq!(
            std::fs::read_to_string(self.path().join("secret")).unwrap(),
            self.token
        );
    }

    /// `bytes` do not hold the secret.
    fn assert_absent(&self, what: &str, bytes: &[u8]) {
        assert!(
            !bytes
                .windows(self.token.len())
                .any(|w| w == self.token.as_bytes()),
            "the host's secret leaked into {what}"
        );
    }

    fn assert_not_in_output(&self, what: &str, out: &Output) {
        self.assert_absent(&format!("{what}'s stdout"), &out.stdout);
        self.assert_absent(&format!("{what}'s stderr"), &out.stderr);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds `dockerfile` in `ctx` with the final filesystem written to `out.tar`; the output
/// and the tar (if the build succeeded).
fn build_to_tar(env: &RunEnv, ctx: &Path, dockerfile: &str, extra: &[&str]) -> (Output, Vec<u8>) {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let tar = env.dir().join("out.tar");
    let _ = std::fs::remove_file(&tar);
    let mut args = vec![
        "build".to_string(),
        "--progress".into(),
        "plain".into(),
        "-o".into(),
        format!("type=tar,dest={}", tar.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(ctx.display().to_string());
    let out = env.kiln(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let bytes = std::fs::read(&tar).unwrap_or_default();
    (out, bytes)
}

/// The entries of a tar: path → (is a symlink, contents).
fn entries(tar: &[u8]) -> Vec<(String, bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let link = e.header().entry_type().is_symlink();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((path, link, data));
    }
    out
}

/// Raw tar entries, names as given (the tar builder refuses `..` and absolute names).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn builds_never_follow_symlinks_out_of_the_context_a_stage_or_an_archive() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let host = Host::new();
    let ctx = env.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("ok"), "ok\n").unwrap();
    std::os::unix::fs::symlink(host.secret(), ctx.join("abs")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../../..{}", host.secret()),
        ctx.join("rel"),
    )
    .unwrap();
    std::os::unix::fs::symlink(host.path(), ctx.join("dirlink")).unwrap();
    // An archive for ADD with every way out of the destination.
    let mut evil = Vec::new();
    let h = host.path().display().to_string();
    raw_entry(
        &mut evil,
        &format!("../../../../../../../..{h}/dotdot"),
        tar::EntryType::Regular,
        "",
        b"x",
    );
    raw_entry(
        &mut evil,
        &format!("{h}/absolute"),
        tar::EntryType::Regular,
        "",
        b"x",
    );
    raw_entry(&mut evil, "esc", tar::EntryType::Symlink, &h, b"");
    raw_entry(
        &mut evil,
        "esc/through-link",
        tar::EntryType::Regular,
        "",
        b"x",
    );
    raw_entry(&mut evil, "hard", tar::EntryType::Link, &host.secret(), b"");
    raw_entry(&mut evil, "fine", tar::EntryType::Regular, "", b"fine\n");
    evil.extend_from_slice(&[0u8; 1024]);
    std::fs::write(ctx.join("evil.tar"), &evil).unwrap();

    let stage = format!(
        "FROM busybox AS s\nRUN ln -s {secret} /leak && ln -s {h} /leakdir\n",
        secret = host.secret()
    );
    let cases: Vec<(String, bool)> = vec![
        // (Dockerfile, must it succeed?)
        ("FROM busybox\nCOPY abs /abs\n".into(), false),
        ("FROM busybox\nCOPY rel /rel\n".into(), false),
        ("FROM busybox\nCOPY dirlink/secret /s\n".into(), false),
        ("FROM busybox\nCOPY dirlink/ /d/\n".into(), false),
        // A directory holding symlinks is copied with the symlinks as symlinks (Docker too).
        ("FROM busybox\nCOPY . /ctx/\n".into(), true),
        ("FROM busybox\nADD evil.tar /x/\n".into(), false),
        // BuildKit follows a source symlink, inside the stage's root: not found there.
        (
            format!("{stage}FROM busybox\nCOPY --from=s /leak /leak\n"),
            false,
        ),
        (
            format!("{stage}FROM busybox\nCOPY --from=s /leakdir/secret /x\n"),
            false,
        ),
        (
            format!("{stage}FROM busybox\nCOPY --from=s /leakdir/ /d/\n"),
            false,
        ),
        (
            format!(
                "{stage}FROM busybox\nRUN --mount=type=bind,from=s,source=/leakdir,target=/m cat /m/secret; true\n"
            ),
            false,
        ),
        (
            "FROM busybox\nRUN --mount=type=bind,source=dirlink,target=/m cat /m/secret; true\n"
                .to_string(),
            false,
        ),
    ];
    for (dockerfile, must_succeed) in &cases {
        let (out, tar) = build_to_tar(&env, &ctx, dockerfile, &[]);
        host.assert_not_in_output(dockerfile, &out);
        host.assert_absent(&format!("the image of {dockerfile:?}"), &tar);
        host.assert_untouched();
        if *must_succeed {
            assert!(out.status.success(), "{dockerfile}: {}", text(&out));
        }
        if out.status.success() {
            for (path, is_link, data) in entries(&tar) {
                if path.ends_with("abs") || path.ends_with("leak") || path.ends_with("dirlink") {
                    assert!(
                        is_link,
                        "{dockerfile}: {path} was followed, not copied as a link"
                    );
                }
                host.assert_absent(&path, &data);
            }
        }
    }
}

#[test]
fn binds_and_volumes_onto_symlinked_targets_stay_inside_the_container() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let host = Host::new();
    let h = host.path().display().to_string();
    let ctx = env.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\nRUN ln -s {h} /data && mkdir /vol && ln -s {secret} /vol/leak && echo image > /vol/own && ln -s {h} /tmpfs\n",
            secret = host.secret()
        ),
    )
    .unwrap();
    env.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "escimg",
        ctx.to_str().unwrap(),
    ]);
    let bind = env.dir().join("bind");
    std::fs::create_dir_all(&bind).unwrap();
    let b = bind.display().to_string();
    for spec in [
        vec!["-v".to_string(), format!("{b}:/data")],
        vec![
            "--mount".to_string(),
            format!("type=bind,source={b},target=/data"),
        ],
        vec![
            "--mount".to_string(),
            format!("type=bind,source={b},target={h}"),
        ],
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(spec.iter().map(String::as_str));
        args.extend([
            "escimg",
            "sh",
            "-c",
            "echo via-bind > /data/x 2>/dev/null || echo via-bind > $(readlink /data)/x; cat /data/secret; true",
        ]);
        let out = env.kiln(&args);
        host.assert_not_in_output("a container with a bind", &out);
        host.assert_untouched();
        // Docker resolves a symlinked target inside the rootfs and mounts there; kiln refuses
        // to mount onto a symlink. Either way the bind must not land outside.
        let through_symlink = !spec[1].contains(&h);
        if !through_symlink {
            assert!(out.status.success(), "{spec:?}: {}", text(&out));
        }
        if out.status.success() {
            assert_eq!(
                std::fs::read_to_string(bind.join("x")).unwrap(),
                "via-bind\n",
                "{spec:?}: the bind did not land inside the container"
            );
            std::fs::remove_file(bind.join("x")).unwrap();
        } else {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("/data"),
                "{spec:?}: the refusal does not name the target: {}",
                text(&out)
            );
        }
    }
    // A tmpfs onto a symlink to the host path: mounted inside (the symlink is followed after
    // the container's root is in place) or refused; never over the host's directory.
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--tmpfs",
        "/tmpfs",
        "escimg",
        "sh",
        "-c",
        "echo t > /tmpfs/t",
    ]);
    host.assert_untouched();
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("/tmpfs"),
        "{}",
        text(&out)
    );
    // A new volume over a directory holding a symlink to the host's secret: the volume is
    // filled from the image without following it.
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "escvol:/vol",
        "escimg",
        "sh",
        "-c",
        "cat /vol/leak; cat /vol/own; ls -la /vol",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("image"),
        "the volume was not filled from the image: {}",
        text(&out)
    );
    host.assert_not_in_output("a container with a volume", &out);
    host.assert_untouched();
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "escvol"])).unwrap();
    let mountpoint = PathBuf::from(inspect[0]["Mountpoint"].as_str().unwrap());
    for e in std::fs::read_dir(&mountpoint).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if !meta.file_type().is_symlink() && meta.is_file() {
            host.assert_absent(
                &format!("volume file {}", e.path().display()),
                &std::fs::read(e.path()).unwrap(),
            );
        }
    }
    env.ok(&["volume", "rm", "escvol"]);
}

#[test]
fn cp_under_a_symlink_swapping_race_copies_nothing_from_or_to_the_host() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let host = Host::new();
    let h = host.path().display().to_string();
    // The container swaps /data/d between a directory and a symlink to the host's path, as
    // fast as it can, while the host copies out of and into it.
    let script = format!(
        "mkdir -p {h} /data/d && echo decoy > {h}/secret && echo inside > /data/d/f; \
         while :; do mv /data/d /data/d.real; ln -s {h} /data/d; rm /data/d; mv /data/d.real /data/d; done"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "race",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let out_dir = env.dir().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let payload = env.dir().join("payload");
    std::fs::write(&payload, "payload\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut copies = 0;
    while Instant::now() < deadline && copies < 40 {
        let dest = out_dir.join(format!("c{copies}"));
        let out = env.kiln(&["cp", "race:/data/d/secret", dest.to_str().unwrap()]);
        host.assert_not_in_output("kiln cp", &out);
        if let Ok(bytes) = std::fs::read(&dest) {
            host.assert_absent("a copy out of the container", &bytes);
        }
        let out = env.kiln(&[
            "cp",
            "race:/data",
            out_dir.join(format!("t{copies}")).to_str().unwrap(),
        ]);
        host.assert_not_in_output("kiln cp", &out);
        let _ = env.kiln(&["cp", payload.to_str().unwrap(), "race:/data/d/payload"]);
        host.assert_untouched();
        copies += 1;
    }
    // Nothing copied out anywhere holds the secret.
    let mut stack = vec![out_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                host.assert_absent(
                    &e.path().display().to_string(),
                    &std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    assert!(copies >= 5, "only {copies} rounds of copies ran");

    // Host-side symlinks in what is copied in stay symlinks: they name paths inside.
    let tree = env.dir().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::os::unix::fs::symlink(host.secret(), tree.join("link")).unwrap();
    env.ok(&["cp", tree.to_str().unwrap(), "race:/copied"]);
    let out = env.kiln(&[
        "exec",
        "race",
        "sh",
        "-c",
        "ls -la /copied; cat /copied/link",
    ]);
    host.assert_not_in_output("the container reading a copied-in link", &out);
    env.ok(&["rm", "-f", "race"]);
    host.assert_untouched();
}

fn sha(path: &Path) -> kiln_oci::Digest {
    kiln_oci::Digest::of(&std::fs::read(path).unwrap())
}

#[test]
fn the_runtime_binary_is_out_of_reach_of_run_steps_and_exec() {
    let Some(env) = RunEnv::new(&[]) else { return };
    // A copy of kiln runs the container and the execs, so a write through /proc/PID/exe would
    // show in its hash (and not break the build under test).
    let kiln = env.dir().join("kiln-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &kiln).unwrap();
    let before = sha(&kiln);
    let run = |args: &[&str]| -> Output {
        std::process::Command::new(&kiln)
            .arg("--root")
            .arg(&env.root)
            .args(args)
            .output()
            .unwrap()
    };
    // The markers are spelled in two pieces so the command line itself does not match.
    let attack = "s=SE; r=RE; w=WRO; for p in /proc/[0-9]*; do e=$(readlink $p/exe 2>/dev/null); \
                  case \"$e\" in *kiln*) echo \"${s}EN $p $e\" >> /seen; \
                  (cat $p/exe > /stolen) 2>/dev/null && [ -s /stolen ] && echo \"${r}AD $p\" >> /seen; \
                  (echo x >> $p/exe) 2>/dev/null && echo \"${w}TE $p\" >> /seen;; esac; done";
    // A RUN step: its own /proc/self/exe is the shell; nothing of kiln's is there to write.
    let ctx = env.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nRUN {attack}; (echo x >> /proc/self/exe) 2>/dev/null && echo ${{w}}TE-self; cat /seen 2>/dev/null; true\n"),
    )
    .unwrap();
    let out = run(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("WROTE") && !log.contains("SEEN"), "{log}");

    // A container that watches for kiln exec's process joining it.
    let watcher = format!("touch /seen; while :; do {attack}; done");
    let out = run(&[
        "run",
        "-d",
        "--name",
        "watcher",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &watcher,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for _ in 0..15 {
        let _ = run(&["exec", "watcher", "true"]);
    }
    let seen = run(&["exec", "watcher", "cat", "/seen"]);
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    let _ = run(&["rm", "-f", "watcher"]);
    assert_eq!(
        sha(&kiln),
        before,
        "the runtime's binary was modified: {seen}"
    );
    assert!(
        !seen.contains("WROTE") && !seen.contains("READ"),
        "the container reached kiln's binary through /proc: {seen}"
    );
}

/// Whether the host's mount table names `source`.
fn host_has_mount(source: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(source)
}

#[test]
fn mounts_made_inside_never_propagate_to_the_host() {
    let Some(env) = RunEnv::new(&[]) else { return };
    let ctx = env.dir().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    let tag = format!("kiln-prop-{}", std::process::id());
    // A privileged RUN (the one place with CAP_SYS_ADMIN) mounts over its rootfs and over a
    // bind of the context (a host directory) and holds them while the host looks.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\nRUN --security=insecure --mount=type=bind,source=.,target=/ctx,rw \
             mkdir -p /mnt/p && mount -t tmpfs {tag}-root /mnt/p && mount -t tmpfs {tag}-bind /ctx/sub \
             && echo MOUNTED-$(grep -c {tag} /proc/self/mountinfo) && echo w > /ctx/written; \
             mount --make-rshared / 2>/dev/null; sleep 4\n"
        ),
    )
    .unwrap();
    let mut child = env
        .command()
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--allow",
            "security.insecure",
        ])
        .arg(&ctx)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut leaked = false;
    while start.elapsed() < Duration::from_secs(12) {
        if host_has_mount(&tag) {
            leaked = true;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("MOUNTED-") && !log.contains("MOUNTED-0"),
        "the mounts were not made inside: {}",
        text(&out)
    );
    assert!(
        !leaked,
        "a mount made inside the build showed up on the host"
    );
    assert!(!host_has_mount(&tag));
    assert!(std::fs::read_dir(ctx.join("sub")).unwrap().next().is_none());
    // As in BuildKit, what a rw bind of the context writes is thrown away, not written to the
    // user's directory.
    assert!(
        !ctx.join("written").exists(),
        "a RUN step wrote into the build context on the host"
    );
}

#[test]
fn device_nodes_from_run_steps_containers_and_layers_do_not_open() {
    let Some(env) = RunEnv::new(&[]) else { return };
    // loop-control (c 10 237) opens on an ordinary host; Docker's device policy refuses it.
    // The marker is spelled in two pieces so the command line itself does not match.
    let probe = "o=OPE; mknod /tmp/lc c 10 237 && (: < /tmp/lc) 2>/dev/null && echo ${o}NED-tmp; \
                 mknod /dev/lc c 10 237 && (: < /dev/lc) 2>/dev/null && echo ${o}NED-dev; \
                 (: < /evil/lc) 2>/dev/null && echo ${o}NED-layer; echo probed";
    let ctx = env.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nRUN {probe}\n"),
    )
    .unwrap();
    let out = env.kiln(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        ctx.to_str().unwrap(),
    ]);
    let log = text(&out);
    assert!(
        out.status.success() && log.contains("probed") && !log.contains("OPENED"),
        "{log}"
    );
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    let log = text(&out);
    assert!(
        out.status.success() && log.contains("probed") && !log.contains("OPENED"),
        "{log}"
    );

    // An image whose layer carries the device node: refused when unpacked, or unusable.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_device_major(10).unwrap();
    h.set_device_minor(237).unwrap();
    h.set_size(0);
    h.set_path("evil/lc").unwrap();
    h.set_cksum();
    // busybox's rootfs then the device: one layer with both.
    let tar_path = env.dir().join("evil.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let base = std::fs::File::open(env.dir().join("busybox.tar")).unwrap();
    let mut base = tar::Archive::new(base);
    for e in base.entries().unwrap() {
        let e = e.unwrap();
        let header = e.header().clone();
        builder.append(&header, e).unwrap();
    }
    builder.append(&h, &[][..]).unwrap();
    builder.into_inner().unwrap().flush().unwrap();
    env.ok(&[
        "import",
        tar_path.to_str().unwrap(),
        "devimg",
        "-c",
        "ENV PATH=/bin:/sbin:/usr/bin",
    ]);
    let out = env.kiln(&[
        "run",
        "--rm",
        "--network",
        "none",
        "devimg",
        "sh",
        "-c",
        probe,
    ]);
    let log = text(&out);
    assert!(!log.contains("OPENED"), "{log}");
    assert!(
        log.contains("probed") || log.contains("device nodes are not allowed"),
        "{log}"
    );
}
