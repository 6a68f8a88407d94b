//! `kiln debug dump-ast`: the dump on stdout for a good Dockerfile, a rendered diagnostic on
//! stderr and exit code 1 for a bad one.

use std::process::Command;

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

#[test]
fn dumps_a_valid_dockerfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM alpine\nRUN [\"echo\", \"hi\"]\n").expect("write");
    let out = kiln(&["debug", "dump-ast", file.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"alpine\")\n(run \"echo\" \"hi\")\n"
    );
}

#[test]
fn reports_a_parse_error_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, "FROM alpine\nENV PATH\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let out = kiln(&["debug", "dump-ast", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ENV must have two arguments\n"),
        "{err}"
    );
    assert!(err.contains(&format!("--> {path}:2:5")), "{err}");
    assert!(err.contains("2 | ENV PATH\n"), "{err}");
}

#[test]
fn missing_file_fails() {
    let out = kiln(&["debug", "dump-ast", "/nonexistent/kiln/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read"));
}
