//! kiln against a real registry (Debian's `docker-registry`, distribution 2.x) on 127.0.0.1:
//! push then `skopeo inspect`, pull of a skopeo-pushed image and `FROM` it, htpasswd auth with
//! `kiln login`, a corrupted blob, and a Docker Hub mirror. Each test starts its own registry
//! at a free port with storage in a tempdir and kills it by PID at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::dockerd::Dockerd;
use common::registry::Registry;

/// A kiln environment: a store root, a HOME (for docker credentials) and a kiln config file.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Env { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("kiln.toml")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        self.kiln_stdin(args, "")
    }

    fn kiln_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let home = self.dir.path().join("home");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("KILN_CONFIG", self.config())
            // Credential helpers a test writes go in <env>/bin.
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.dir.path().join("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            !out.status.success(),
            "kiln {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A fresh environment whose store has `busybox` imported.
    fn with_busybox() -> Env {
        let env = Env::new();
        env.import_busybox();
        env
    }

    fn import_busybox(&self) {
        let tar = self.dir.path().join("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&tar).unwrap();
        self.ok(&[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "-c",
            "CMD [\"sh\"]",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]);
    }

    fn build(&self, dockerfile: &str, tag: &str) -> Output {
        let ctx = self.dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        self.kiln(&[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ])
    }
}

fn is_root() -> bool {
    if common::nix_is_root() {
        return true;
    }
    eprintln!("skipping: needs root (builds run sandboxes)");
    false
}

fn skopeo() -> bool {
    let ok = Command::new("skopeo").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping the skopeo part: skopeo is not installed");
    }
    ok
}

fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    let mut cmd = kiln_testutil::skopeo();
    cmd.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    }
    let out = cmd.arg(format!("docker://{reference}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn push_inspect_with_skopeo_pull_back_and_build_from() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let a = Env::with_busybox();
    let name = format!("{}/test/busybox:v1", reg.host());
    a.ok(&["tag", "busybox", &name]);
    let out = a.kiln(&["push", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("pushing"), "{log}");

    // Pushing again uploads nothing; pushing to another repository mounts the blobs.
    let again = a.kiln(&["push", &name]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let other = format!("{}/other/bb:v1", reg.host());
    let mounted = a.kiln(&["push", &name, &other]);
    assert!(mounted.status.success());
    let mlog = String::from_utf8_lossy(&mounted.stderr);
    assert!(mlog.contains("mounted from test/busybox"), "{mlog}");
    assert!(!mlog.contains("pushing"), "{mlog}");

    if skopeo() {
        assert_eq!(skopeo_digest(&name, None), digest);
        assert_eq!(skopeo_digest(&other, None), digest);
    }

    // A fresh store builds FROM the pushed image: the build pulls it.
    let b = Env::new();
    let built = b.build(&format!("FROM {name}\nRUN echo pulled > /proof\n"), "out");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let images = b.ok(&["images"]);
    assert!(
        images.contains(&format!("{}/test/busybox", reg.host())),
        "{images}"
    );
    // `kiln build --push` sends the result to the registry under its tag.
    let built_name = format!("{}/test/built:1", reg.host());
    let ctx = b.dir.path().join("ctx");
    let pushed = b.kiln(&[
        "build",
        "--progress",
        "plain",
        "--push",
        "-t",
        &built_name,
        ctx.to_str().unwrap(),
    ]);
    let plog = String::from_utf8_lossy(&pushed.stderr);
    assert!(pushed.status.success(), "{plog}");
    assert!(plog.contains(&format!("pushed {built_name}")), "{plog}");
    if skopeo() {
        let d = skopeo_digest(&built_name, None);
        assert!(plog.contains(&d), "{plog}");
    }
    // `kiln pull` of what is there reports the same digest and downloads nothing.
    let pulled = b.kiln(&["pull", &name]);
    assert!(pulled.status.success());
    assert!(String::from_utf8_lossy(&pulled.stdout).contains(&digest));
    assert!(!String::from_utf8_lossy(&pulled.stderr).contains("downloading"));

    if skopeo() {
        // skopeo re-pushes it as Docker schema 2: kiln pulls that format too.
        let docker = format!("{}/skopeo/bb:v2s2", reg.host());
        let out = kiln_testutil::skopeo()
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--format",
                "v2s2",
                &format!("docker://{name}"),
                &format!("docker://{docker}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Env::new();
        let pulled = c.ok(&["pull", &docker]);
        assert!(pulled.contains(&skopeo_digest(&docker, None)), "{pulled}");
        let built = c.build(&format!("FROM {docker}\nRUN test -x /bin/sh\n"), "out2");
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
}

#[test]
fn htpasswd_auth_needs_login() {
    let Some(reg) = Registry::start(Some(("kiln", "s3cret"))) else {
        return;
    };
    let a = Env::new();
    if !common::nix_is_root() {
        eprintln!("skipping: needs root (import unpacks as root)");
        return;
    }
    a.import_busybox();
    let name = format!("{}/private/bb:1", reg.host());
    a.ok(&["tag", "busybox", &name]);
    let err = a.fails(&["push", &name]);
    assert!(err.contains("authentication required by registry"), "{err}");
    assert!(err.contains(&reg.host()), "{err}");

    let bad = a.kiln_stdin(
        &["login", "-u", "kiln", "--password-stdin", &reg.host()],
        "wrong\n",
    );
    assert!(!bad.status.success());
    assert!(!a.dir.path().join("home/.docker/config.json").exists());

    let good = a.kiln_stdin(
        &["login", "-u", "kiln", "--password-stdin", &reg.host()],
        "s3cret\n",
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let saved = std::fs::read_to_string(a.dir.path().join("home/.docker/config.json")).unwrap();
    assert!(
        saved.contains(&reg.host()) && saved.contains("\"auth\""),
        "{saved}"
    );
    let digest = a.ok(&["push", &name]).trim().to_owned();
    if skopeo() {
        assert_eq!(skopeo_digest(&name, Some("kiln:s3cret")), digest);
    }

    // Same HOME, fresh store: pull works with the saved login; after logout it does not.
    std::fs::remove_dir_all(a.root()).unwrap();
    let pulled = a.ok(&["pull", &name]);
    assert!(pulled.contains(&digest), "{pulled}");
    a.ok(&["logout", &reg.host()]);
    std::fs::remove_dir_all(a.root()).unwrap();
    let err = a.fails(&["pull", &name]);
    assert!(err.contains("authentication required by registry"), "{err}");

    // A credential store (`credsStore`) answers through `docker-credential-NAME get`.
    let bin = a.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {} ] || exit 1\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"kiln\",\"Secret\":\"s3cret\"}}'\n",
            reg.host()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        a.dir.path().join("home/.docker/config.json"),
        r#"{"credsStore":"kilntest"}"#,
    )
    .unwrap();
    let pulled = a.ok(&["pull", &name]);
    assert!(pulled.contains(&digest), "{pulled}");
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_stores_nothing() {
    if !common::nix_is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let a = Env::with_busybox();
    let name = format!("{}/corrupt/bb:1", reg.host());
    a.ok(&["tag", "busybox", &name]);
    a.ok(&["push", &name]);
    // The largest blob is the layer: flip bytes in the middle, keeping its size.
    let layer = reg
        .blob_files()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let hex = layer
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let b = Env::new();
    let err = b.fails(&["pull", &name]);
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(err.contains(&hex), "{err}");
    let images = b.ok(&["images"]);
    assert!(!images.contains("corrupt/bb"), "{images}");
    assert!(
        !contains_file_named(&b.root(), &hex),
        "the corrupt blob was stored"
    );
}

fn contains_file_named(dir: &Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(needle))
            {
                return true;
            }
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    false
}

#[test]
fn docker_hub_mirror_serves_from_busybox() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let a = Env::with_busybox();
    let mirrored = format!("{}/library/busybox:latest", reg.host());
    a.ok(&["push", "busybox", &mirrored]);

    let b = Env::new();
    std::fs::write(
        b.config(),
        format!(
            "[registry.\"docker.io\"]\nmirrors = [\"http://{}\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let built = b.build("FROM busybox\nRUN echo from-mirror > /proof\n", "mirrored");
    let log = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{log}");
    assert!(
        log.contains(&format!("from http://{}", reg.host())),
        "{log}"
    );
    assert!(b.ok(&["images"]).contains("busybox"));
}

/// A small image made in memory: a layer of `layer_len` bytes (the registry does not look
/// inside layers), its config and its OCI manifest.
fn memory_image(blobs: &kiln_oci::MemoryBlobs, layer_len: usize) -> kiln_oci::Descriptor {
    let layer: Vec<u8> = (0..layer_len).map(|i| (i * 7 % 251) as u8).collect();
    let layer_digest = blobs.insert(layer);
    let host = kiln_llb::Platform::host();
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#,
        host.architecture, host.os
    );
    let config_digest = blobs.insert(config.clone().into_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{layer_len}}}]}}"#,
        config.len()
    );
    let size = manifest.len() as u64;
    let digest = blobs.insert(manifest.into_bytes());
    kiln_oci::Descriptor::new("application/vnd.oci.image.manifest.v1+json", digest, size)
}

#[test]
fn chunked_push_and_pull_through_an_index_picks_this_platform() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let blobs = kiln_oci::MemoryBlobs::new();
    let manifest = memory_image(&blobs, 5000);
    let client = kiln_registry::Client::new(
        kiln_registry::RegistryConfig::default(),
        kiln_registry::DockerConfig::at(&reg.storage.join("no-docker-config.json")),
    );
    let events = std::sync::Mutex::new(Vec::new());
    let progress = |e: kiln_registry::PushEvent| events.lock().unwrap().push(format!("{e:?}"));
    let opts = kiln_registry::PushOptions {
        concurrency: 2,
        // 5000 bytes in 1 KiB chunks: five PATCHes, then the closing PUT.
        chunk_size: 1024,
        mount_from: Vec::new(),
        progress: &progress,
    };
    let by_digest =
        kiln_registry::Reference::parse(&format!("{}/lib/multi:single", reg.host())).unwrap();
    let pushed = kiln_registry::push(&client, &blobs, &manifest, &by_digest, &opts).unwrap();
    assert_eq!(pushed.descriptor.digest, manifest.digest);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("BlobDone")),
        "{:?}",
        events.lock().unwrap()
    );

    // An index with this platform and another: kiln pulls this platform's manifest.
    let host = kiln_llb::Platform::host();
    let other_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{s},"platform":{{"architecture":"{other_arch}","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{s},"platform":{{"architecture":"{}","os":"{}"}}}}]}}"#,
        host.architecture,
        host.os,
        d = manifest.digest,
        s = manifest.size
    );
    let index_digest = blobs.insert(index.clone().into_bytes());
    let index_desc = kiln_oci::Descriptor::new(
        "application/vnd.oci.image.index.v1+json",
        index_digest,
        index.len() as u64,
    );
    let tagged = kiln_registry::Reference::parse(&format!("{}/lib/multi:idx", reg.host())).unwrap();
    kiln_registry::push(&client, &blobs, &index_desc, &tagged, &opts).unwrap();
    if skopeo() {
        assert_eq!(
            skopeo_digest(&tagged.to_string(), None),
            index_digest.to_string()
        );
    }

    let sink = kiln_oci::MemoryBlobs::new();
    let pulled = kiln_registry::pull(
        &client,
        &tagged,
        &sink,
        &kiln_registry::PullOptions {
            platform: host,
            concurrency: 3,
            progress: &|_| {},
        },
    )
    .unwrap();
    assert_eq!(pulled.manifest.digest, manifest.digest);
    assert_eq!(pulled.index.map(|d| d.digest), Some(index_digest));
    let mut want = blobs.digests();
    want.sort();
    let mut got = sink.digests();
    got.sort();
    assert_eq!(
        got, want,
        "every blob of the image and the index were stored"
    );

    // No manifest for a platform nobody built: a clear error.
    let err = kiln_registry::pull(
        &client,
        &tagged,
        &kiln_oci::MemoryBlobs::new(),
        &kiln_registry::PullOptions {
            platform: kiln_llb::Platform::new("linux", "s390x", None),
            concurrency: 1,
            progress: &|_| {},
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no manifest for platform linux/s390x"),
        "{err}"
    );
}

#[test]
fn build_pull_rechecks_the_registry_for_a_moved_tag() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let a = Env::with_busybox();
    let base = format!("{}/base/bb:latest", reg.host());
    let first = a.ok(&["push", "busybox", &base]).trim().to_owned();

    let b = Env::new();
    let dockerfile = format!("FROM {base}\nRUN cat /marker || echo none\n");
    let out = b.build(&dockerfile, "app");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = b.ok(&["pull", &base]);
    assert!(pulled.contains(&first), "{pulled}");

    // The tag moves to a new image.
    let moved = a.build("FROM busybox\nRUN echo v2 > /marker\n", &base);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let second = a.ok(&["push", &base]).trim().to_owned();
    assert_ne!(first, second);

    // Without --pull the stored base is used; with it the build sees the new one.
    let out = b.build(&dockerfile, "app");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&format!("pull {}", reg.host())));
    let ctx = b.dir.path().join("ctx");
    let out = b.kiln(&[
        "build",
        "--pull",
        "--progress",
        "plain",
        "-t",
        "app",
        ctx.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("resolved {second}")), "{log}");
    assert!(log.contains("v2"), "the RUN step saw the new base: {log}");
}

#[test]
fn dockerd_pulls_and_runs_a_kiln_pushed_image() {
    if !is_root() {
        return;
    }
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let a = Env::with_busybox();
    let name = format!("{}/dockerd/app:1", reg.host());
    let ctx = a.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo hello-from-kiln > /msg\nCMD [\"cat\", \"/msg\"]\n",
    )
    .unwrap();
    a.ok(&[
        "build",
        "--progress",
        "plain",
        "--push",
        "-t",
        &name,
        ctx.to_str().unwrap(),
    ]);
    let Some(mut dockerd) = Dockerd::start("dockerd pulls a kiln-pushed image") else {
        return;
    };
    // dockerd has a network namespace of its own; the relay gives it the registry at the same
    // loopback address, which it treats as insecure (plain HTTP) by default.
    dockerd.forward_port(reg.port());
    let pulled = dockerd.run(&["pull", &name]);
    assert!(
        pulled.status.success(),
        "docker pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let run = dockerd.run(&["run", "--rm", "--network", "none", &name]);
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello-from-kiln"
    );
}
