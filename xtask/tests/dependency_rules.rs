//! The crate graph obeys the architecture: every dependency between workspace crates is one the
//! table in ARCHITECTURE.md (from `../shared/design.md`) allows, so layers cannot leak.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// crate → the workspace crates it may depend on (normal and build dependencies), each edge
/// one that ARCHITECTURE.md justifies. Adding an edge here is a design decision: say why there.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        // The vocabulary and the libraries under everything: no workspace dependency at all.
        ("kiln-llb", &[][..]),
        ("kiln-solver", &[][..]),
        ("kiln-executor", &[][..]),
        ("kiln-testutil", &[][..]),
        ("kiln-frontend", &["kiln-llb"][..]),
        ("kiln-cache", &["kiln-llb"][..]),
        // `oci` implements its blob traits over the content store.
        ("kiln-oci", &["kiln-llb", "kiln-cache"][..]),
        ("kiln-registry", &["kiln-llb", "kiln-oci"][..]),
        // The image store: snapshots (executor) hold unpacked layers; pull and push go through
        // the registry client.
        (
            "kiln-image",
            &[
                "kiln-llb",
                "kiln-cache",
                "kiln-executor",
                "kiln-oci",
                "kiln-registry",
            ][..],
        ),
        // The build: frontend and solver, over the image store; RUN in the executor's sandbox;
        // the cache export speaks oci and the registry.
        (
            "kiln-engine",
            &[
                "kiln-llb",
                "kiln-frontend",
                "kiln-solver",
                "kiln-cache",
                "kiln-executor",
                "kiln-oci",
                "kiln-registry",
                "kiln-image",
            ][..],
        ),
        // The run engine: images from the image store, never through the build.
        (
            "kiln-runtime",
            &["kiln-llb", "kiln-cache", "kiln-executor", "kiln-image"][..],
        ),
        // `llb` for `Digest`: the context tree's node and file digests are the content store's
        // blob digests, one type for both (llb has no I/O and no async).
        ("kiln-proto", &["kiln-llb"][..]),
        // The worker (`kiln serve`): gRPC shims over the engine and the image store; `llb` for
        // the request's types and `frontend` for the diagnostics a failed build sends back.
        (
            "kiln-serve",
            &[
                "kiln-llb",
                "kiln-frontend",
                "kiln-proto",
                "kiln-engine",
                "kiln-image",
            ][..],
        ),
        // The compose model and its planner are pure (parse, merge, interpolate, validate,
        // plan); the CLI executes plans through `runtime` and builds through its `Backend`
        // seam (so `--builder` works), which the design's `compose → runtime, engine` edges
        // would bypass. ARCHITECTURE.md records the difference.
        ("kiln-compose", &[][..]),
        // The binary: the backend seam (engine and image store), the run engine, and the
        // crates whose types it renders (frontend diagnostics and `--print`, llb configs,
        // registry credentials for `login`). Never the executor or the solver directly.
        (
            "kiln-cli",
            &[
                "kiln-llb",
                "kiln-frontend",
                "kiln-registry",
                "kiln-image",
                "kiln-engine",
                "kiln-runtime",
                // The remote backend speaks kiln.v1; `kiln serve` starts the worker.
                "kiln-proto",
                "kiln-serve",
                // `kiln compose`: the model and its planner; the CLI runs the plan through
                // `runtime` and builds through its `Backend`, so `compose` stays pure.
                "kiln-compose",
            ][..],
        ),
        // The fuzz targets' bodies: a leaf nothing depends on, feeding each parser of
        // untrusted input (through the hidden `fuzzing` modules where the parser is private).
        (
            "kiln-fuzzing",
            &[
                "kiln-llb",
                "kiln-frontend",
                "kiln-compose",
                "kiln-executor",
                "kiln-oci",
                "kiln-registry",
                "kiln-engine",
            ][..],
        ),
        ("xtask", &["kiln-testutil"][..]),
    ])
}

/// Edges that the seam between the CLI and the engine exists to keep out, checked by name so a
/// change to the table above cannot quietly let them back in.
const FORBIDDEN: &[(&str, &str)] = &[
    ("kiln-runtime", "kiln-engine"),
    ("kiln-cli", "kiln-executor"),
    ("kiln-cli", "kiln-solver"),
    ("kiln-image", "kiln-engine"),
];

#[test]
fn workspace_dependencies_follow_the_architecture() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata json");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let rules = allowed();
    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(allowed) = rules.get(name) else {
            violations.push(format!("{name} is not in the architecture table"));
            continue;
        };
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let is_dev = dep["kind"].as_str() == Some("dev");
            if names.contains(dep_name) && !is_dev && !allowed.contains(&dep_name) {
                violations.push(format!("{name} -> {dep_name}"));
            }
            if !is_dev && FORBIDDEN.contains(&(name, dep_name)) {
                violations.push(format!(
                    "{name} -> {dep_name} (forbidden: see ARCHITECTURE.md)"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency edges the architecture does not allow:\n  {}",
        violations.join("\n  ")
    );
}
