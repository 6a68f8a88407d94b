//! `--provenance`: a SLSA v1 statement attached as BuildKit attaches attestations, read back with
//! `skopeo` from a loopback registry after a push, and again after a pull and a push of the
//! pulled image to another repository; the statement's JSON shape is checked field by field.

use std::path::Path;

use serde_json::Value;

use crate::common::registry::Registry;
use crate::common::{self};

fn skopeo(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = kiln_testutil::skopeo()
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn is_hex_digest(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The index as BuildKit lays it out: the image for its platform, then an attestation manifest
/// for `unknown/unknown` that points at the image. Returns (image digest, attestation digest).
fn check_index(index: &Value) -> (String, String) {
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let m = index["manifests"].as_array().expect("manifests");
    assert_eq!(m.len(), 2, "{index}");
    assert_eq!(m[0]["platform"]["os"], "linux");
    assert!(m[0]["annotations"].is_null(), "{index}");
    let image = m[0]["digest"].as_str().expect("image digest").to_owned();
    assert_eq!(
        m[1]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(m[1]["platform"]["os"], "unknown");
    assert_eq!(m[1]["platform"]["architecture"], "unknown");
    assert_eq!(
        m[1]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        m[1]["annotations"]["vnd.docker.reference.digest"],
        image.as_str()
    );
    (image, m[1]["digest"].as_str().expect("digest").to_owned())
}

/// A blob of an OCI layout.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob in the layout")
}

/// The statement of attestation manifest `digest` in `layout`.
fn statement(layout: &Path, digest: &str) -> Value {
    let manifest = json(&blob(layout, digest));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.in-toto+json");
    assert_eq!(
        layers[0]["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    let config = json(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["os"], "unknown");
    json(&blob(layout, layers[0]["digest"].as_str().unwrap()))
}

/// An in-toto v1 statement with a SLSA v1 predicate about `image`, from a build of busybox
/// `base` with `GREETING=hello`.
fn check_statement(s: &Value, image: &str, base: &str, max: bool) {
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1", "{s}");
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");
    let subject = s["subject"].as_array().expect("subject");
    assert!(!subject.is_empty());
    for sub in subject {
        assert!(sub["name"].as_str().is_some_and(|n| !n.is_empty()), "{sub}");
        assert_eq!(
            format!(
                "sha256:{}",
                sub["digest"]["sha256"].as_str().unwrap_or_default()
            ),
            image
        );
    }
    let p = &s["predicate"];
    let def = &p["buildDefinition"];
    assert!(
        def["buildType"].as_str().is_some_and(|t| t.contains("://")),
        "{def}"
    );
    let request = &def["externalParameters"]["request"];
    assert_eq!(request["frontend"], "dockerfile.v0");
    assert_eq!(request["args"]["build-arg:GREETING"], "hello");
    let deps = def["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies");
    for d in deps {
        assert!(d["uri"].as_str().is_some(), "{d}");
        if let Some(digest) = d["digest"].as_object() {
            for (alg, v) in digest {
                let len = if alg == "sha1" { 40 } else { 64 };
                assert!(is_hex_digest(v, len), "{d}");
            }
        }
    }
    let busybox = deps
        .iter()
        .find(|d| {
            d["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("pkg:docker/busybox@latest"))
        })
        .unwrap_or_else(|| panic!("busybox in {deps:?}"));
    assert_eq!(
        format!("sha256:{}", busybox["digest"]["sha256"].as_str().unwrap()),
        base
    );
    let run = &p["runDetails"];
    assert!(
        run["builder"]["id"]
            .as_str()
            .is_some_and(|id| id.contains("://")),
        "{run}"
    );
    assert_eq!(run["builder"]["version"]["kiln"], env!("CARGO_PKG_VERSION"));
    for t in ["startedOn", "finishedOn"] {
        let v = run["metadata"][t].as_str().unwrap_or_default();
        assert!(
            v.len() >= 20 && v.contains('T') && v.ends_with('Z'),
            "{t}: {v}"
        );
    }
    let steps = &def["internalParameters"]["buildConfig"]["steps"];
    let source = &run["metadata"]["kiln"]["source"]["data"];
    if max {
        assert!(steps.as_array().is_some_and(|s| s.len() >= 2), "{def}");
        assert!(
            source.as_str().is_some_and(|d| d.contains("ARG GREETING")),
            "{run}"
        );
    } else {
        assert!(
            steps.is_null() && source.is_null(),
            "mode=min records no steps: {p}"
        );
    }
}

#[test]
fn provenance_is_attached_as_buildkit_does_and_survives_push_and_pull() {
    const TEST: &str = "provenance_is_attached_as_buildkit_does";
    let Some(k) = common::Kiln::new(TEST) else {
        return;
    };
    if kiln_testutil::skopeo().arg("--version").output().is_err() {
        eprintln!("skipped: {TEST}: skopeo is not installed");
        return;
    }
    let Some(registry) = Registry::start(None) else {
        return;
    };
    let dir = k.mkdir("prov");
    common::write_files(
        &dir,
        &[(
            "Dockerfile",
            "FROM busybox\nARG GREETING=hi\nRUN echo $GREETING > /greeting\n",
        )],
    );
    let name = format!("{}/prov/app:1", registry.host());
    let b = k.build(
        &dir,
        &[
            "-t",
            &name,
            "--provenance",
            "mode=max",
            "--build-arg",
            "GREETING=hello",
            "--push",
        ],
    );
    b.assert_ok();
    let base = b
        .steps()
        .iter()
        .find_map(|s| s.split('@').nth(1).map(str::to_owned))
        .expect("the FROM step names the base's digest");

    // In the registry, as BuildKit lays it out.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ])
    .expect("skopeo inspect --raw");
    let (image, attestation) = check_index(&json(&raw));
    let layout = k.mkdir("pushed-layout");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}", layout.display()),
    ])
    .expect("skopeo copy --all");
    let pushed = statement(&layout, &attestation);
    check_statement(&pushed, &image, &base, true);

    // Pulled back into a fresh store and pushed elsewhere: the attestation comes along.
    let other = common::Kiln::new(TEST).expect("a second store");
    common::assert_success(&other.run(&["pull", &name]), "kiln pull");
    let copy = format!("{}/prov/copy:1", registry.host());
    common::assert_success(
        &other.run(&["push", &name, &copy]),
        "kiln push of the pulled image",
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{copy}"),
    ])
    .expect("skopeo inspect --raw of the copy");
    let (copied_image, copied_attestation) = check_index(&json(&raw));
    assert_eq!(
        (copied_image.as_str(), copied_attestation.as_str()),
        (image.as_str(), attestation.as_str())
    );
    let layout2 = other.mkdir("copied-layout");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{copy}"),
        &format!("oci:{}", layout2.display()),
    ])
    .expect("skopeo copy --all of the copy");
    assert_eq!(statement(&layout2, &copied_attestation), pushed);

    // An OCI archive output holds the same index (mode=min: no steps).
    let tar = k.dir.path().join("prov.tar");
    let out = k.run(&[
        "build",
        "-q",
        "--provenance=mode=min",
        "--build-arg",
        "GREETING=hello",
        "-o",
        &format!("type=oci,dest={},tar=false", tar.display()),
        dir.to_str().unwrap(),
    ]);
    common::assert_success(&out, "build -o type=oci");
    // The layout's index.json names the image index, as BuildKit's OCI exporter writes it.
    let top = json(&std::fs::read(tar.join("index.json")).expect("index.json"));
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    let index = json(&blob(&tar, entry["digest"].as_str().expect("digest")));
    let (image, attestation) = check_index(&index);
    check_statement(&statement(&tar, &attestation), &image, &base, false);
}
