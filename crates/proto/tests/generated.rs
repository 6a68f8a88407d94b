//! The committed kiln.v1 code matches the `.proto` it was generated from and was not edited by
//! hand: its header records the sha256 of both (written by `cargo xtask proto`). This runs in
//! CI without compiling the code generator; `cargo xtask proto --check` regenerates for real.

use std::path::Path;

use kiln_llb::Digest;

fn header_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .take(3)
        .find_map(|l| l.strip_prefix(&format!("// {key}: ")))
        .unwrap_or_else(|| panic!("no {key} line in the generated file's header"))
}

#[test]
fn generated_code_matches_the_proto_and_is_unedited() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = std::fs::read(dir.join("proto/kiln/v1/kiln.proto")).unwrap();
    let generated = std::fs::read_to_string(dir.join("src/gen/kiln.v1.rs")).unwrap();
    assert_eq!(
        header_value(&generated, "proto-sha256"),
        Digest::of(&proto).hex(),
        "kiln.proto changed since the code was generated: run `cargo xtask proto` and commit"
    );
    let body_start = generated
        .match_indices('\n')
        .nth(2)
        .map(|(i, _)| i + 1)
        .expect("three header lines");
    assert_eq!(
        header_value(&generated, "code-sha256"),
        Digest::of(&generated.as_bytes()[body_start..]).hex(),
        "src/gen/kiln.v1.rs was edited by hand: change the .proto and run `cargo xtask proto`"
    );
}
