//! Remote builds (`kiln serve` + `kiln build --builder`) on one machine: workers on loopback
//! ports, each with its own root. Reproducibility against a local build, incremental context
//! sync (no-op, one-byte edit, `touch -r`), `--load` of missing blobs, `-o` outputs, secrets
//! that never touch the worker's disk, live progress, and RUN steps kept away from the API.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::worker::{Worker, worker_root};
use common::{Kiln, assert_success, write_files};

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("metadata file")).expect("json")
}

fn remote(meta: &serde_json::Value, key: &str) -> u64 {
    meta["kiln.remote"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no kiln.remote.{key} in {meta}"))
}

#[test]
fn remote_build_is_reproducible_incremental_and_loads_only_missing_layers() {
    let Some(k) = Kiln::new("remote build") else {
        return;
    };
    let tls = k.dir.path().join("tls");
    assert_success(
        &k.run(&["tls", "init", tls.to_str().unwrap(), "--san", "worker.test"]),
        "tls init",
    );
    let root = worker_root(&k, "worker");
    let w = Worker::start(
        &root,
        "tcp://127.0.0.1:0",
        &["--tls-dir", tls.join("server").to_str().unwrap()],
    );
    let client_tls = tls.join("client");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    let meta = |name: &str| k.dir.path().join(format!("{name}.json"));
    let remote_build = |ctx: &Path, name: &str, extra: &[&str]| {
        let mut args = vec![
            "--builder",
            &w.address,
            "--tls-dir",
            client_tls.to_str().unwrap(),
        ];
        let m = meta(name);
        args.extend_from_slice(&["--metadata-file", m.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let mut cmd = k.command();
        cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        cmd.args(["build", "--progress", "rawjson"])
            .args(&args)
            .arg(ctx);
        let b = common::Build::from(cmd.output().unwrap());
        b.assert_ok();
        (b, metadata(&m))
    };

    // Same image, bit for bit, as a local build.
    let local_meta = meta("local");
    let mut cmd = k.command();
    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
    cmd.args(["build", "--progress", "quiet", "--metadata-file"])
        .arg(&local_meta)
        .arg(&hello);
    assert_success(&cmd.output().unwrap(), "local build");
    let local = metadata(&local_meta);
    let (first, m1) = remote_build(&hello, "r1", &["-t", "hello:remote"]);
    assert_eq!(
        m1["containerimage.digest"], local["containerimage.digest"],
        "a remote build gives the local build's image"
    );
    assert_eq!(m1["kiln.remote"]["builder"], w.address.as_str());
    assert!(remote(&m1, "context_uploaded_bytes") > 0);
    assert!(
        first
            .stderr()
            .contains("the result stays in the builder's store"),
        "{}",
        first.stderr()
    );

    // A no-op rebuild sends nothing; two --loads: the second downloads nothing.
    let (_, m2) = remote_build(&hello, "r2", &["-t", "hello:remote", "--load"]);
    assert_eq!(remote(&m2, "context_uploaded_bytes"), 0);
    // The local store already had every layer of the local build (same layers).
    let loaded_first = remote(&m2, "layers_downloaded_bytes");
    let (_, m3) = remote_build(&hello, "r3", &["-t", "hello:remote", "--load"]);
    assert_eq!(remote(&m3, "layers_downloaded_bytes"), 0);
    assert!(k.image_exists("hello:remote"));
    assert!(
        loaded_first < 10_000,
        "only the manifest and config were missing: {loaded_first}"
    );

    // A fresh client store downloads the layers once.
    let other = k.dir.path().join("other-root");
    let m4 = meta("r4");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(&other)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--progress",
            "quiet",
            "--load",
            "-t",
            "hello:x",
            "--builder",
        ])
        .arg(&w.address)
        .arg("--tls-dir")
        .arg(&client_tls)
        .arg("--metadata-file")
        .arg(&m4)
        .arg(&hello)
        .output()
        .unwrap();
    assert_success(&out, "build into a fresh store");
    assert!(remote(&metadata(&m4), "layers_downloaded_bytes") > 500_000);

    // A big context (200 MB of assets and a source tree): a one-byte edit of a source file
    // sends a few KiB. (Files are the unit of transfer: an edited 2 MB asset would send it.)
    let big = k.mkdir("big");
    std::fs::create_dir_all(big.join("src")).unwrap();
    for i in 0..300 {
        let text: String = (0..100)
            .map(|l| format!("fn f{i}_{l}() -> u32 {{ {l} }}\n"))
            .collect();
        std::fs::write(big.join(format!("src/mod{i:03}.rs")), text).unwrap();
    }
    let mut files = Vec::new();
    // 200 MB that does not compress (xorshift), so the first upload really is that big.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..100 {
        let mut data = Vec::with_capacity(2_000_000);
        while data.len() < 2_000_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        files.push(big.join(format!("blob{i:03}.bin")));
        std::fs::write(files.last().unwrap(), data).unwrap();
    }
    write_files(
        &big,
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY blob000.bin /b\nRUN wc -c /b\n",
        )],
    );
    let (_, b1) = remote_build(&big, "big1", &[]);
    assert!(remote(&b1, "context_uploaded_bytes") > 190_000_000, "{b1}");
    let edited = big.join("src/mod150.rs");
    let mut data = std::fs::read(&edited).unwrap();
    data[1000] ^= 0x01;
    std::fs::write(&edited, data).unwrap();
    let (_, b2) = remote_build(&big, "big2", &[]);
    let sent = remote(&b2, "context_uploaded_bytes");
    assert!(sent < 64 * 1024, "a one-byte edit sent {sent} bytes");
    assert!(sent > 0, "the edit was sent");

    // An edit with its size and mtime restored (`touch -r`) is seen.
    let ctx = k.mkdir("touchr");
    write_files(
        &ctx,
        &[
            ("Dockerfile", "FROM busybox\nCOPY msg /msg\n"),
            ("msg", "hello"),
            ("ref", "r"),
        ],
    );
    let out_dir = k.dir.path().join("touchr-out");
    let o = format!("type=local,dest={}", out_dir.display());
    remote_build(&ctx, "t1", &["-o", &o]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("msg")).unwrap(),
        "hello"
    );
    let touch = |file: &Path| {
        let status = std::process::Command::new("touch")
            .arg("-r")
            .arg(ctx.join("ref"))
            .arg(file)
            .status()
            .unwrap();
        assert!(status.success());
    };
    touch(&ctx.join("msg"));
    std::thread::sleep(Duration::from_millis(2100));
    remote_build(&ctx, "t2", &["-o", &o]);
    std::fs::write(ctx.join("msg"), "jello").unwrap();
    touch(&ctx.join("msg"));
    remote_build(&ctx, "t3", &["-o", &o]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("msg")).unwrap(),
        "jello",
        "the edit with size and mtime restored must reach the build"
    );
}

#[test]
fn outputs_secrets_and_progress_work_remotely() {
    let Some(k) = Kiln::new("remote outputs") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let w = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS base\nRUN echo base > /base\nFROM base\nARG WHO=nobody\nRUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok-sum && grep ' /run/secrets/tok ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1 > /tok-fs && echo \"hi $WHO\" > /who\nRUN for i in 1 2 3; do echo tick-$i; sleep 1; done\n",
        )],
    );
    let secret_value = format!("s3cr3t-{}", std::process::id());
    let secret_file = k.dir.path().join("tok");
    std::fs::write(&secret_file, &secret_value).unwrap();
    let local_out = k.dir.path().join("out-local");
    let tar_out = k.dir.path().join("out.tar");
    let mut child = k
        .command()
        .args(["build", "--progress", "plain", "--builder", &w.address])
        .args(["--build-arg", "WHO=remote"])
        .arg("--secret")
        .arg(format!("id=tok,src={}", secret_file.display()))
        .arg("-o")
        .arg(format!("type=local,dest={}", local_out.display()))
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines printed a second apart arrive about a second apart.
    let mut ticks = Vec::new();
    let mut all = String::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("tick-") && !line.contains("RUN ") {
            ticks.push(Instant::now());
        }
        all.push_str(&line);
        all.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{all}");
    assert_eq!(ticks.len(), 3, "{all}");
    for pair in ticks.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(600) && gap < Duration::from_millis(1600),
            "RUN output must stream live, got a gap of {gap:?}:\n{all}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(local_out.join("who")).unwrap(),
        "hi remote\n"
    );
    let sum = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(secret_value.as_bytes()))
    };
    assert_eq!(
        std::fs::read_to_string(local_out.join("tok-sum"))
            .unwrap()
            .trim(),
        sum,
        "the step read the client's secret"
    );
    assert_eq!(
        std::fs::read_to_string(local_out.join("tok-fs"))
            .unwrap()
            .trim(),
        "tmpfs",
        "the secret was mounted from memory"
    );
    // The secret never reached the worker's disk.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", &secret_value])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&grep.stdout),
        "",
        "the secret is in the worker's root"
    );

    // -o tar and -o oci come back as files.
    let b = k
        .command()
        .args(["build", "--progress", "quiet", "--builder", &w.address])
        .args(["--build-arg", "WHO=remote"])
        .arg("--secret")
        .arg(format!("id=tok,src={}", secret_file.display()))
        .arg("-o")
        .arg(format!("type=tar,dest={}", tar_out.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&b, "-o type=tar");
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_out).unwrap());
    for e in archive.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(
        names.iter().any(|n| n.trim_start_matches("./") == "who"),
        "{names:?}"
    );
    let oci_out = k.dir.path().join("oci-dir");
    let b = k
        .command()
        .args(["build", "--progress", "quiet", "--builder", &w.address])
        .args(["--build-arg", "WHO=remote"])
        .arg("--secret")
        .arg(format!("id=tok,src={}", secret_file.display()))
        .arg("-o")
        .arg(format!("type=oci,tar=false,dest={}", oci_out.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&b, "-o type=oci,tar=false");
    assert!(oci_out.join("index.json").is_file());
    assert!(oci_out.join("oci-layout").is_file());

    // A step failure comes back located, as locally.
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo about-to-fail && exit 3\n",
        )],
    );
    let b = k
        .command()
        .args(["build", "--progress", "plain", "--builder", &w.address])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!b.status.success());
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("about-to-fail"), "{err}");
}

#[test]
fn run_steps_cannot_reach_the_workers_port_or_socket() {
    let Some(k) = Kiln::new("remote isolation") else {
        return;
    };
    let root = worker_root(&k, "worker");
    let tcp = Worker::start(&root, "tcp://127.0.0.1:0", &[]);
    let port = tcp.address.rsplit(':').next().unwrap().to_string();
    let sock_dir = k.mkdir("sock");
    let sock = sock_dir.join("kiln.sock");
    let unix_root = worker_root(&k, "worker-unix");
    let unix = Worker::start(&unix_root, &format!("unix://{}", sock.display()), &[]);
    let ctx = k.mkdir("ctx");
    // An HTTP/2 preface and an empty SETTINGS frame: a gRPC server answers with its own.
    let dockerfile = format!(
        "FROM busybox\nRUN printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\\0\\0\\0\\4\\0\\0\\0\\0\\0' | nc -w 3 127.0.0.1 {port} > /reply; echo \"reply-bytes=$(wc -c < /reply)\"; if [ -e {} ]; then echo socket-visible; else echo socket-hidden; fi\n",
        sock.display()
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile)]);
    let run = |builder: Option<&str>| {
        let mut cmd = k.command();
        cmd.args(["build", "--progress", "plain", "--no-cache"]);
        if let Some(b) = builder {
            cmd.args(["--builder", b]);
        }
        let out = cmd.arg(&ctx).output().unwrap();
        assert_success(&out, "build");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Outside the worker, the same step reaches its API: the check below can fail.
    let local = run(None);
    assert!(!local.contains("reply-bytes=0"), "{local}");
    let remote = run(Some(&tcp.address));
    assert!(
        remote.contains("reply-bytes=0"),
        "the step reached the worker:\n{remote}"
    );
    assert!(remote.contains("socket-hidden"), "{remote}");
    assert!(
        tcp.log().contains("may not use its API"),
        "the worker logs the refusal:\n{}",
        tcp.log()
    );
    let remote = run(Some(&unix.address));
    assert!(remote.contains("socket-hidden"), "{remote}");
}
