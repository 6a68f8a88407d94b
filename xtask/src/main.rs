//! `cargo xtask`: repository chores that must run the same on every machine and in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  fixtures   make the busybox base image rootfs tar (target/fixtures/busybox-rootfs.tar) and,
             from Debian's busybox-static:arm64, busybox-arm64-rootfs.tar
  ci         the whole test suite: cargo fmt --check, clippy -D warnings, every test
  demo       the main job: build examples/hello with kiln (RUN steps in real sandboxes), then run it
  proto      regenerate crates/proto/src/gen from the kiln.v1 .proto (--check: fail if stale)
  fuzz       build the libFuzzer targets in fuzz/ (stable toolchain, RUSTC_BOOTSTRAP) and run
             each for SECONDS (default 60): cargo xtask fuzz [SECONDS] [TARGET...]

`ci` also runs `fuzz` when KILN_CI_FUZZ_SECS is set (the instrumented build takes about
18 minutes on two cores, so it is opt-in; `cargo test` always replays the corpora).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures().map(|path| {
            println!("{}", path.display());
            // The arm64 base of the multi-platform tests, when Debian's arm64 package can be
            // had; its absence only skips those tests.
            match arm64_fixture() {
                Ok(path) => println!("{}", path.display()),
                Err(e) => eprintln!("xtask: no arm64 busybox fixture: {e}"),
            }
        }),
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("proto") => proto(args.get(1).map(String::as_str) == Some("--check")),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the busybox rootfs tar once; later calls reuse it.
fn fixtures() -> Result<PathBuf, String> {
    let dir = target_dir().join("fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let tar = dir.join("busybox-rootfs.tar");
    if !tar.exists() {
        kiln_testutil::write_busybox_rootfs_tar(&tar)
            .map_err(|e| format!("make busybox rootfs: {e}"))?;
    }
    Ok(tar)
}

/// The arm64 busybox rootfs tar (`busybox-arm64-rootfs.tar`, for `kiln import --platform
/// linux/arm64`), from Debian's `busybox-static:arm64`.
fn arm64_fixture() -> Result<PathBuf, String> {
    let dir = target_dir().join("fixtures");
    let tar = dir.join("busybox-arm64-rootfs.tar");
    if !tar.exists() {
        let busybox = kiln_testutil::arm64_busybox(&dir).map_err(|e| e.to_string())?;
        kiln_testutil::write_busybox_rootfs_tar_with(&tar, &busybox)
            .map_err(|e| format!("make the arm64 busybox rootfs: {e}"))?;
    }
    Ok(tar)
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {step}");
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("{step}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs every check even when an earlier one fails, so one CI run reports all problems; fails
/// at the end if any did.
fn ci() -> Result<(), String> {
    let mut failures = Vec::new();
    let mut check = |result: Result<(), String>| {
        if let Err(e) = result {
            eprintln!("xtask: {e}");
            failures.push(e);
        }
    };
    check(run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    ));
    check(run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    ));
    check(fixtures().map(|_| ()));
    check(run(
        "cargo test",
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("KILN_FIXTURES_DIR", target_dir().join("fixtures")),
    ));
    check(run(
        "criterion smoke run",
        cargo().args(["bench", "--workspace", "--", "--test"]),
    ));
    if let Ok(secs) = std::env::var("KILN_CI_FUZZ_SECS") {
        check(fuzz(&[secs]));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} check(s) failed: {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}

/// Runs the kiln.v1 code generator, a package outside the workspace (`xtask/proto-gen`), so
/// that only this command ever compiles protox and tonic-prost-build.
fn proto(check: bool) -> Result<(), String> {
    let root = workspace_root();
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--manifest-path"])
        .arg(root.join("xtask/proto-gen/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir().join("proto-gen"))
        .arg("--");
    if check {
        cmd.arg("--check");
    }
    cmd.arg(&root);
    run("kiln.v1 code generation (xtask/proto-gen)", &mut cmd)
}

/// The libFuzzer targets of `fuzz/`, built with coverage instrumentation on the pinned stable
/// toolchain (its nightly flags unlocked by RUSTC_BOOTSTRAP, no sanitizer: what we look for in
/// safe Rust is panics, hangs and memory blow-ups), each run for a while over a scratch corpus
/// seeded from the committed one. A crash fails the command and leaves its input in
/// `fuzz/target/artifacts/TARGET/`.
fn fuzz(args: &[String]) -> Result<(), String> {
    let secs: u64 = match args.first() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("fuzz: {s:?} is not a number of seconds"))?,
        None => 60,
    };
    let fuzz_dir = workspace_root().join("fuzz");
    let host = "x86_64-unknown-linux-gnu";
    let flags = "--cfg fuzzing -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
        -Cdebug-assertions -Coverflow-checks";
    let flags = flags.split_whitespace().collect::<Vec<_>>().join(" ");
    run(
        "build the fuzz targets (release, coverage instrumentation)",
        cargo()
            .args(["build", "--release", "--bins", "--target", host])
            .arg("--manifest-path")
            .arg(fuzz_dir.join("Cargo.toml"))
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", flags),
    )?;
    let bin_dir = fuzz_dir.join("target").join(host).join("release");
    let mut targets: Vec<String> = args.iter().skip(1).cloned().collect();
    if targets.is_empty() {
        let corpus = fuzz_dir.join("corpus");
        let entries =
            std::fs::read_dir(&corpus).map_err(|e| format!("read {}: {e}", corpus.display()))?;
        targets = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        targets.sort();
    }
    for target in &targets {
        let scratch = fuzz_dir.join("target/corpus").join(target);
        let artifacts = fuzz_dir.join("target/artifacts").join(target);
        for dir in [&scratch, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        run(
            &format!("fuzz {target} for {secs} s"),
            Command::new(bin_dir.join(target))
                .arg(&scratch)
                .arg(fuzz_dir.join("corpus").join(target))
                .arg(format!("-max_total_time={secs}"))
                .args([
                    "-rss_limit_mb=2048",
                    "-malloc_limit_mb=512",
                    "-timeout=10",
                    "-max_len=65536",
                    "-print_final_stats=1",
                ])
                .arg(format!("-artifact_prefix={}/", artifacts.display())),
        )?;
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    if !nix_is_root() {
        return Err("the demo runs RUN steps in real namespaces: run it as root".into());
    }
    if kiln_testutil::busybox_binary().is_err() {
        run(
            "apt-get install busybox-static (the base image is made from it)",
            Command::new("sh").args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static",
            ]),
        )?;
    }
    run(
        "build kiln (release)",
        cargo().args(["build", "--release", "-p", "kiln-cli"]),
    )?;
    let kiln = target_dir().join("release/kiln");
    let rootfs = fixtures()?;
    let root = std::env::var_os("KILN_DEMO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("demo-root"));
    let kiln_cmd = || {
        let mut c = Command::new(&kiln);
        c.arg("--root").arg(&root);
        c
    };
    let have_base = kiln_cmd()
        .args(["inspect", "busybox"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_base {
        run(
            "kiln import busybox (the base image, from Debian's busybox-static)",
            kiln_cmd().arg("import").arg(&rootfs).args([
                "busybox",
                "-c",
                "CMD [\"sh\"]",
                "-c",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]),
        )?;
    }
    run(
        "kiln build -t hello examples/hello",
        kiln_cmd().args(["build", "-t", "hello", "examples/hello"]),
    )?;
    run("kiln images", kiln_cmd().arg("images"))?;
    run(
        "kiln run --rm hello",
        kiln_cmd().args(["run", "--rm", "hello"]),
    )
}

fn nix_is_root() -> bool {
    // The effective uid from /proc avoids a libc dependency for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
