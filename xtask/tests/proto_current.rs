//! The committed kiln.v1 code is what `cargo xtask proto` generates from the `.proto` today, so
//! an edit to the `.proto` cannot land without its generated code.

use std::process::Command;

#[test]
fn generated_kiln_v1_code_is_current() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["proto", "--check"])
        .output()
        .expect("run xtask proto --check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
