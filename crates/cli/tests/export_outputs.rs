//! `kiln build -o`: every output type writes what it says (archives other tools read, the final
//! filesystem), compression and media types follow the options, and SOURCE_DATE_EPOCH makes
//! two builds on two fresh roots give the same manifest digest.

mod export_support;

use export_support::{APP, EPOCH, Kiln, entry, read_json, setup, tar_entries};

#[test]
fn oci_archive_and_layout() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let archive = k.path("app.oci.tar");
    k.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
        ],
    );
    let entries = tar_entries(&std::fs::read(&archive).unwrap());
    assert!(entry(&entries, "oci-layout").is_some());
    let index: serde_json::Value =
        serde_json::from_slice(entry(&entries, "index.json").unwrap()).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:1"
    );
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "1");
    let manifest_path = format!(
        "blobs/sha256/{}",
        m["digest"].as_str().unwrap().trim_start_matches("sha256:")
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(entry(&entries, &manifest_path).unwrap()).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let blob = format!(
            "blobs/sha256/{}",
            l["digest"].as_str().unwrap().trim_start_matches("sha256:")
        );
        assert!(entry(&entries, &blob).is_some(), "{blob} missing");
    }
    // A non-image output does not name anything in the store.
    assert!(!k.ok(&["images"]).contains("app"));

    let layout = k.path("layout");
    k.build(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},tar=false,name=app:2", layout.display()),
        ],
    );
    assert!(layout.join("oci-layout").is_file());
    let index = read_json(&layout.join("index.json"));
    let d = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
            .is_file()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:2"
    );
}

#[test]
fn zstd_uncompressed_and_docker_media_types() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    for (opts, layer_type, manifest_type) in [
        (
            "compression=zstd,compression-level=5",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            "compression=uncompressed",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            "oci-mediatypes=false",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let dir = k.path(&format!("layout-{}", opts.len()));
        k.build(
            &ctx,
            &[
                "-o",
                &format!("type=oci,tar=false,dest={},{opts}", dir.display()),
            ],
        );
        let index = read_json(&dir.join("index.json"));
        let d = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest = read_json(
            &dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        );
        assert_eq!(manifest["mediaType"], manifest_type, "{opts}");
        // Every layer, the base's too, is in the asked-for compression.
        for l in manifest["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], layer_type, "{opts}");
        }
    }
    let err = k.fails(&[
        "build",
        "-o",
        &format!(
            "type=docker,dest={},compression=zstd",
            k.path("x").display()
        ),
        ctx.to_str().unwrap(),
    ]);
    assert!(err.contains("zstd"), "{err}");
    let err = k.fails(&["build", "-o", "type=oci", ctx.to_str().unwrap()]);
    assert!(err.contains("needs dest"), "{err}");
}

#[test]
fn docker_archive_names_and_uncompressed_layers() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let out = k
        .cmd(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "app:1",
            "-o",
            "type=docker,dest=-",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = tar_entries(&out.stdout);
    let manifest: serde_json::Value =
        serde_json::from_slice(entry(&entries, "manifest.json").unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "app:1");
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let config: serde_json::Value =
        serde_json::from_slice(entry(&entries, manifest[0]["Config"].as_str().unwrap()).unwrap())
            .unwrap();
    // docker save's layers are plain tars named by their diff IDs.
    for (l, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        let path = l.as_str().unwrap();
        assert!(path.ends_with(diff_id.as_str().unwrap().trim_start_matches("sha256:")));
        let inner = tar_entries(entry(&entries, path).unwrap());
        assert!(!inner.is_empty());
    }
    assert_eq!(config["config"]["Cmd"][1], "/app/greeting.txt");
}

#[test]
fn local_and_tar_give_the_final_filesystem() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let dir = k.path("rootfs");
    k.build(&ctx, &["-o", &format!("type=local,dest={}", dir.display())]);
    assert_eq!(
        std::fs::read_to_string(dir.join("app/greeting.txt")).unwrap(),
        "hello from the context\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app/built.txt")).unwrap(),
        "built\n"
    );
    assert!(dir.join("bin/busybox").is_file());
    // The RUN step deleted /bin/ls: the whiteout applies, nothing is left behind.
    assert!(std::fs::symlink_metadata(dir.join("bin/ls")).is_err());
    assert!(std::fs::symlink_metadata(dir.join("bin/.wh.ls")).is_err());
    assert!(std::fs::symlink_metadata(dir.join("bin/cat")).is_ok());

    let out = k
        .cmd(&[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            &format!("SOURCE_DATE_EPOCH={EPOCH}"),
            "-o",
            "-",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = tar_entries(&out.stdout);
    assert_eq!(
        entry(&entries, "app/greeting.txt").unwrap(),
        b"hello from the context\n"
    );
    assert!(entry(&entries, "bin/ls").is_none());
    assert!(!entries.iter().any(|(p, _)| p.contains(".wh.")));
    let mut a = tar::Archive::new(&out.stdout[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= EPOCH.parse::<u64>().unwrap());
    }
}

#[test]
fn several_outputs_in_one_build_each_get_the_image() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let dir = k.path("several-rootfs");
    let archive = k.path("several.tar");
    k.build(
        &ctx,
        &[
            "-t",
            "several:1",
            "-o",
            &format!("type=local,dest={}", dir.display()),
            "-o",
            &format!("type=docker,dest={}", archive.display()),
            "-o",
            "type=image,name=several:2",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("app/built.txt")).unwrap(),
        "built\n"
    );
    let entries = tar_entries(&std::fs::read(&archive).unwrap());
    assert!(entry(&entries, "manifest.json").is_some());
    // Both names of the image output, and the -t tag, name the stored image.
    for name in ["several:1", "several:2"] {
        k.ok(&["inspect", name]);
    }
    // Two outputs on stdout cannot both be honoured.
    let out = k
        .cmd(&[
            "build",
            "-o",
            "-",
            "-o",
            "type=oci,dest=-",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only one --output"));
}

/// Builds APP with SOURCE_DATE_EPOCH on a root whose busybox came from `base` (a saved archive,
/// so both roots hold the very same base image) and returns the manifest digest.
fn reproducible_build(base: &std::path::Path, compression: &str) -> (String, serde_json::Value) {
    let k = Kiln::empty();
    k.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = k.context("ctx", APP);
    let meta = k.path("meta.json");
    k.build(
        &ctx,
        &[
            "-t",
            "app",
            "--build-arg",
            &format!("SOURCE_DATE_EPOCH={EPOCH}"),
            "--compression",
            compression,
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    );
    let digest = read_json(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    (digest, k.inspect("app"))
}

#[test]
fn source_date_epoch_gives_identical_digests_on_fresh_roots() {
    let Some(k) = setup() else { return };
    let base = k.path("busybox.tar");
    k.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        base.to_str().unwrap(),
        "busybox",
    ]);
    for compression in ["gzip", "zstd"] {
        let (a, inspect) = reproducible_build(&base, compression);
        let (b, _) = reproducible_build(&base, compression);
        assert_eq!(a, b, "{compression}: manifest digests differ");
        assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
        for h in inspect["History"].as_array().unwrap().iter().skip(1) {
            assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
        }
    }
}
