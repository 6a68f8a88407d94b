//! Robustness: random bytes and random mutations of real Dockerfiles (BuildKit's conformance
//! files when present, and our own fixtures) never make the parser, the typed layer, the dump
//! or the diagnostic renderer panic. Case counts are modest so this runs in seconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_frontend::instructions::Dockerfile;
use kiln_frontend::syntax;
use proptest::prelude::*;

/// Dockerfiles to mutate: our fixtures always, BuildKit's test files when available.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        collect(&manifest.join("tests/fixtures/diagnostics"), &mut files);
        let shared = std::env::var_os("KILN_SHARED_DIR")
            .map_or_else(|| manifest.join("../../../shared"), PathBuf::from);
        let parser = shared.join("conformance/buildkit-parser/parser");
        if parser.is_dir() {
            collect(&parser, &mut files);
        } else {
            println!(
                "skipped: BuildKit parser files not found at {}; mutating our fixtures only",
                parser.display()
            );
        }
        files.push(
            b"FROM a\nRUN <<EOF\necho $X\nEOF\nCOPY <<-'A' <<B /d\n\tx\nA\ny\nB\nONBUILD RUN x\n"
                .to_vec(),
        );
        files
    })
}

fn collect(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect(&p, out);
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("Dockerfile"))
            && let Ok(bytes) = fs::read(&p)
        {
            out.push(bytes);
        }
    }
}

/// Runs every stage that takes untrusted input.
fn exercise(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    match syntax::parse(bytes) {
        Ok(ast) => {
            let _ = ast.dump();
            for w in &ast.warnings {
                let _ = w.render("Dockerfile", &text);
            }
            if let Err(d) = Dockerfile::from_ast(&ast) {
                let _ = d.render("Dockerfile", &text);
            }
        }
        Err(d) => {
            let _ = d.render("Dockerfile", &text);
            assert!(d.span.is_some(), "parse error without a span: {d}");
        }
    }
}

/// Bytes that often matter to the parser.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'\\'),
        Just(b'`'),
        Just(b'\n'),
        Just(b'\r'),
        Just(b' '),
        Just(b'\t'),
        Just(b'#'),
        Just(b'<'),
        Just(b'['),
        Just(b']'),
        Just(b'"'),
        Just(b'\''),
        Just(b'$'),
        Just(b'{'),
        Just(b'}'),
        Just(b'='),
        Just(b'-'),
        any::<u8>(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<usize>(),
            prop::collection::vec(interesting_byte(), 1..8)
        )
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), interesting_byte()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Insert(at, b) => {
                let at = at % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(at, n) if len > 0 => {
                let at = at % len;
                let end = (at + n).min(len);
                bytes.drain(at..end);
            }
            Mutation::Replace(at, b) if len > 0 => bytes[at % len] = *b,
            Mutation::Duplicate(at, n) if len > 0 => {
                let at = at % len;
                let end = (at + n).min(len);
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(interesting_byte(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_dockerfiles_never_panic(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let base = corpus[pick.index(corpus.len())].clone();
        exercise(&apply(base, &mutations));
    }
}
