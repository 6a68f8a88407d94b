//! `cargo xtask`: repository chores that must run the same on every machine and in CI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  fixtures   make the busybox base image rootfs tar (target/fixtures/busybox-rootfs.tar)
  ci         the whole test suite: cargo fmt --check, clippy -D warnings, every test
  demo       the main job: build examples/hello with kiln (RUN steps in real sandboxes), then run it";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures().map(|path| println!("{}", path.display())),
        Some("ci") => ci(),
        Some("demo") => demo(),
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

fn ci() -> Result<(), String> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    fixtures()?;
    run(
        "cargo test",
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("KILN_FIXTURES_DIR", target_dir().join("fixtures")),
    )?;
    run(
        "criterion smoke run",
        cargo().args(["bench", "--workspace", "--", "--test"]),
    )
}

fn demo() -> Result<(), String> {
    run(
        "build kiln",
        cargo().args(["build", "--release", "-p", "kiln-cli"]),
    )?;
    let kiln = target_dir().join("release/kiln");
    let example = workspace_root().join("examples/hello/Dockerfile");
    run(
        "kiln debug dump-ast examples/hello/Dockerfile",
        Command::new(&kiln)
            .args(["debug", "dump-ast"])
            .arg(&example),
    )
}
