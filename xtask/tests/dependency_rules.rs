//! The crate graph obeys the architecture: every dependency between workspace crates is one the
//! table in ARCHITECTURE.md (from `../shared/design.md`) allows, so layers cannot leak.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// crate → the workspace crates it may depend on (normal and build dependencies).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("kiln-llb", &[][..]),
        ("kiln-frontend", &["kiln-llb"][..]),
        ("kiln-solver", &["kiln-llb"][..]),
        ("kiln-cache", &["kiln-llb"][..]),
        ("kiln-executor", &[][..]),
        ("kiln-oci", &["kiln-llb", "kiln-cache"][..]),
        ("kiln-registry", &["kiln-llb", "kiln-oci", "kiln-cache"][..]),
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
            ][..],
        ),
        (
            "kiln-runtime",
            // `engine` for image lookup and unpacking (see ARCHITECTURE.md).
            &[
                "kiln-llb",
                "kiln-cache",
                "kiln-executor",
                "kiln-oci",
                "kiln-engine",
            ][..],
        ),
        // `llb` for `Digest`: the context tree's node and file digests are the content store's
        // blob digests, one type for both (llb has no I/O and no async).
        ("kiln-proto", &["kiln-llb"][..]),
        (
            "kiln-daemon",
            &["kiln-engine", "kiln-runtime", "kiln-proto", "kiln-llb"][..],
        ),
        (
            "kiln-cli",
            &[
                "kiln-llb",
                "kiln-frontend",
                "kiln-solver",
                "kiln-cache",
                "kiln-executor",
                "kiln-oci",
                "kiln-registry",
                "kiln-engine",
                "kiln-runtime",
                "kiln-daemon",
                "kiln-proto",
            ][..],
        ),
        ("kiln-testutil", &[][..]),
        ("xtask", &["kiln-testutil"][..]),
    ])
}

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
        }
    }
    assert!(
        violations.is_empty(),
        "dependency edges the architecture does not allow:\n  {}",
        violations.join("\n  ")
    );
}
