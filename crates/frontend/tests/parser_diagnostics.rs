//! Rendered diagnostics for malformed Dockerfiles of our own
//! (`tests/fixtures/diagnostics/*.Dockerfile`), compared as insta snapshots. Every fixture
//! must fail, and its report must name the file, line and column and underline the span.

use std::fs;
use std::path::PathBuf;

use kiln_frontend::instructions::Dockerfile;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnostics");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

#[test]
fn malformed_dockerfiles_render_located_diagnostics() {
    let files = fixtures();
    assert!(files.len() >= 12, "expected at least a dozen fixtures");
    for path in files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file name")
            .to_string();
        let bytes = fs::read(&path).expect("fixture");
        let err = match Dockerfile::parse(&bytes) {
            Ok(df) => panic!("{name}: parsed but should fail: {df:?}"),
            Err(e) => e,
        };
        let source = String::from_utf8_lossy(&bytes);
        let rendered = err.render("Dockerfile", &source);
        let span = err.span.expect("every parser diagnostic has a span");
        let location = format!("--> Dockerfile:{}:{}", span.start.line, span.start.column);
        assert!(rendered.contains(&location), "{name}: {rendered}");
        if !source.is_empty() {
            assert!(rendered.contains('^'), "{name}: no caret in\n{rendered}");
        }
        insta::assert_snapshot!(name, rendered);
    }
}
