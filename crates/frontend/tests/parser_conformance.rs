//! BuildKit's parser test data (`shared/conformance/buildkit-parser`) run against our parser:
//! every positive case dumps byte for byte, every negative case fails with a located error,
//! and the line-number case gives BuildKit's line ranges.
//!
//! The data is not part of the repository. Its directory comes from `KILN_SHARED_DIR` or
//! `../../../shared` next to the checkout; when neither exists the tests say so and pass.

use std::fs;
use std::path::PathBuf;

use kiln_frontend::syntax;

fn parser_data() -> Option<PathBuf> {
    let shared = match std::env::var_os("KILN_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let dir = shared.join("conformance/buildkit-parser/parser");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: BuildKit parser conformance data not found at {}",
            dir.display()
        );
        None
    }
}

fn cases(dir: PathBuf) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

#[test]
fn positive_cases_dump_byte_for_byte() {
    let Some(dir) = parser_data() else { return };
    let cases = cases(dir.join("testfiles"));
    assert!(!cases.is_empty(), "no positive cases found");
    let mut failures = Vec::new();
    for (name, path) in &cases {
        let source = fs::read(path.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read_to_string(path.join("result")).expect("result");
        match syntax::parse(&source) {
            Ok(ast) => {
                let got = ast.dump() + "\n";
                if got != expected {
                    failures.push(format!(
                        "{name}: dump differs\n--- expected\n{expected}--- got\n{got}"
                    ));
                }
            }
            Err(d) => failures.push(format!("{name}: failed to parse: {d}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(cases.len(), 33, "expected BuildKit's 33 positive cases");
}

#[test]
fn negative_cases_fail_with_a_location() {
    let Some(dir) = parser_data() else { return };
    let cases = cases(dir.join("testfiles-negative"));
    assert_eq!(cases.len(), 4, "expected BuildKit's 4 negative cases");
    for (name, path) in &cases {
        let source = fs::read(path.join("Dockerfile")).expect("Dockerfile");
        let err = match syntax::parse(&source) {
            Ok(ast) => panic!("{name}: parsed but should fail:\n{}", ast.dump()),
            Err(e) => e,
        };
        let span = err
            .span
            .unwrap_or_else(|| panic!("{name}: error without a span: {err}"));
        assert!(
            span.start.line >= 1 && span.start.column >= 1,
            "{name}: {span:?}"
        );
        let rendered = err.render("Dockerfile", &String::from_utf8_lossy(&source));
        assert!(rendered.contains("--> Dockerfile:"), "{name}: {rendered}");
    }
}

#[test]
fn negative_cases_give_buildkits_reasons() {
    let Some(dir) = parser_data() else { return };
    let neg = dir.join("testfiles-negative");
    let msg = |case: &str| {
        let source = fs::read(neg.join(case).join("Dockerfile")).expect("Dockerfile");
        syntax::parse(&source).expect_err(case).message
    };
    assert_eq!(msg("empty_dockerfile"), "file with no instructions");
    assert_eq!(msg("only_comments"), "file with no instructions");
    assert_eq!(msg("env_no_value"), "ENV must have two arguments");
    assert!(
        msg("shykes-nested-json").contains("arrays must be comprised of strings only"),
        "{}",
        msg("shykes-nested-json")
    );
}

#[test]
fn line_numbers_match_buildkit() {
    let Some(dir) = parser_data() else { return };
    let source = fs::read(dir.join("testfile-line/Dockerfile")).expect("Dockerfile");
    let ast = syntax::parse(&source).expect("parses");
    assert_eq!((ast.span.start.line, ast.span.end.line), (5, 31));
    let lines: Vec<_> = ast
        .children
        .iter()
        .map(|c| (c.span.start.line, c.span.end.line))
        .collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}
