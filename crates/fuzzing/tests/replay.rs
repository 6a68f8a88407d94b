//! What CI runs of the fuzz targets (cargo-fuzz needs a nightly-style build CI does not do):
//! each target replays its committed corpus, `fuzz/corpus/<target>/`, then a bounded number of
//! inputs the mutator derives from it, the same ones on every run. A panic is a failure; the
//! input is saved under `target/fuzz-failures/` and named in the message, so it can be replayed
//! with the libFuzzer binary or added to the corpus once fixed.
//!
//! `KILN_FUZZ_ITERS=N` sets the mutated inputs per target (default: a few seconds' worth each),
//! `KILN_FUZZ_SEED` changes which ones. `--ignored write_seeds` rewrites the code-made seeds.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Instant;

use kiln_fuzzing::mutate::Mutator;

/// Largest mutated input (libFuzzer's default `-max_len` is 4096; archives need more).
const MAX_LEN: usize = 64 << 10;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = workspace().join("fuzz/corpus").join(name);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no corpus at {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs `input` through the target; on a panic, saves it and fails naming the file.
fn exec(name: &str, run: fn(&[u8]), input: &[u8], origin: &str) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| run(input))).is_ok() {
        return;
    }
    let dir = workspace().join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{name}-{}",
        &kiln_oci::Digest::of(input).hex()[..16]
    ));
    std::fs::write(&path, input).unwrap();
    panic!(
        "fuzz target {name} panicked on {origin}; the input is saved at {}",
        path.display()
    );
}

fn replay(name: &str, default_iters: usize) {
    let target = kiln_fuzzing::target(name).expect("a known target");
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "fuzz/corpus/{name} is empty");
    let iters = std::env::var("KILN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_iters);
    let seed = std::env::var("KILN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64);
    let start = Instant::now();
    for (file, data) in &seeds {
        exec(name, target.run, data, &format!("corpus file {file}"));
    }
    let mut m = Mutator::new(fnv(name) ^ seed);
    for i in 0..iters {
        let (_, a) = &seeds[m.below(seeds.len())];
        let (_, b) = &seeds[m.below(seeds.len())];
        let input = m.mutate(a, b, MAX_LEN, target.tar);
        exec(name, target.run, &input, &format!("mutated input {i}"));
    }
    eprintln!(
        "{name}: {} executions ({} corpus + {iters} mutated) in {:.1} s, no crash",
        seeds.len() + iters,
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn dockerfile() {
    replay("dockerfile", 30000);
}

#[test]
fn dockerignore() {
    replay("dockerignore", 8000);
}

#[test]
fn compose() {
    replay("compose", 10000);
}

#[test]
fn layer_apply() {
    replay("layer_apply", 2000);
}

#[test]
fn oci_manifest() {
    replay("oci_manifest", 40000);
}

#[test]
fn oci_config() {
    replay("oci_config", 40000);
}

#[test]
fn image_archive() {
    replay("image_archive", 3000);
}

#[test]
fn image_dir() {
    replay("image_dir", 2000);
}

#[test]
fn registry_response() {
    replay("registry_response", 40000);
}

#[test]
fn cache_document() {
    replay("cache_document", 40000);
}

/// Every target has a test above.
#[test]
fn every_target_is_replayed() {
    let source = include_str!("replay.rs");
    for t in kiln_fuzzing::TARGETS {
        assert!(
            source.contains(&format!("replay(\"{}\"", t.name)),
            "no replay test for {}",
            t.name
        );
    }
}

/// Rewrites the code-made seeds into `fuzz/corpus/` (hand-picked files there are kept).
#[test]
#[ignore = "a tool: run with --ignored after changing crates/fuzzing/src/targets/seeds.rs"]
fn write_seeds() {
    for (target, file, bytes) in kiln_fuzzing::seeds::all() {
        let dir = workspace().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}
