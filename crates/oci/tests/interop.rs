//! Interop with the OCI tools: skopeo and umoci must accept what kiln writes, and kiln must load
//! what skopeo writes. Skipped, with a message, where a tool is not installed.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kiln_oci::compress::Compression;
use kiln_oci::{
    DockerArchiveOptions, ImageOptions, LoadOptions, MemoryBlobs, load_archive, load_dir,
    write_docker_archive, write_oci_archive, write_oci_layout,
};

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipping: {name} is not installed (apt-get install -y {name})");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo_inspect(transport: &str) -> serde_json::Value {
    let out = run(kiln_testutil::skopeo().args(["inspect", "--raw", transport]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn skopeo_accepts_layouts_and_archives_and_kiln_loads_skopeo_output() {
    if !tool("skopeo") {
        return;
    }
    let cache_before = system_blob_cache();
    let store = MemoryBlobs::new();
    let gzip = build_image(
        &store,
        Compression::default(),
        "gz",
        &ImageOptions::default(),
    );
    let zstd = build_image(
        &store,
        Compression::Zstd { level: 3 },
        "zs",
        &ImageOptions::default(),
    );
    let images = [
        named("docker.io/library/app:1", &gzip.manifest_descriptor),
        named("docker.io/library/app:z", &zstd.manifest_descriptor),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    write_oci_layout(&layout, &store, &images).unwrap();
    let archive = tmp.path().join("image.tar");
    std::fs::write(
        &archive,
        write_oci_archive(Vec::new(), &store, &images[..1]).unwrap(),
    )
    .unwrap();

    // --raw returns the manifest bytes: the very ones kiln wrote.
    let raw = run(kiln_testutil::skopeo().args([
        "inspect",
        "--raw",
        &format!("oci:{}:1", layout.display()),
    ]));
    assert_eq!(raw.as_bytes(), &gzip.manifest[..]);
    let z = skopeo_inspect(&format!("oci:{}:z", layout.display()));
    assert_eq!(
        z["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let parsed =
        run(kiln_testutil::skopeo()
            .args(["inspect", &format!("oci-archive:{}", archive.display())]));
    let parsed: serde_json::Value = serde_json::from_str(&parsed).unwrap();
    assert_eq!(parsed["Architecture"], "amd64");
    assert_eq!(parsed["Layers"].as_array().unwrap().len(), 2);

    // skopeo copies kiln's layout into its own docker archive and OCI archive; kiln loads both
    // and finds the same config.
    let docker_tar = tmp.path().join("docker.tar");
    run(kiln_testutil::skopeo().args([
        "copy",
        &format!("oci:{}:1", layout.display()),
        &format!("docker-archive:{}:app:1", docker_tar.display()),
    ]));
    let into = MemoryBlobs::new();
    let loaded = load_archive(
        std::fs::File::open(&docker_tar).unwrap(),
        &into,
        &LoadOptions::default(),
    )
    .unwrap();
    // skopeo writes the full name into RepoTags, docker the short one: both are fine.
    assert_eq!(loaded.len(), 1);
    assert!(
        loaded[0].names.iter().any(|n| n.ends_with("app:1")),
        "{:?}",
        loaded[0].names
    );
    assert!(
        into.get(&gzip.config_descriptor.digest).is_some(),
        "config changed on the way through skopeo"
    );

    let oci_tar = tmp.path().join("skopeo-oci.tar");
    run(kiln_testutil::skopeo().args([
        "copy",
        &format!("oci:{}:z", layout.display()),
        &format!("oci-archive:{}:z", oci_tar.display()),
    ]));
    let into = MemoryBlobs::new();
    let loaded = load_archive(
        std::fs::File::open(&oci_tar).unwrap(),
        &into,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded[0].descriptor.digest, zstd.manifest_descriptor.digest);

    // And kiln's docker archive goes back into an OCI layout through skopeo.
    let kiln_docker = tmp.path().join("kiln-docker.tar");
    std::fs::write(
        &kiln_docker,
        write_docker_archive(
            Vec::new(),
            &store,
            &images[..1],
            &DockerArchiveOptions::default(),
        )
        .unwrap(),
    )
    .unwrap();
    let back = tmp.path().join("back");
    run(kiln_testutil::skopeo().args([
        "copy",
        &format!("docker-archive:{}", kiln_docker.display()),
        &format!("oci:{}:x", back.display()),
    ]));
    let loaded = load_dir(&back, &MemoryBlobs::new(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded[0].ref_name.as_deref(), Some("x"));
    // Issue 23's rule: the copies above left no cache on the host.
    assert_eq!(system_blob_cache(), cache_before);
}

/// The modification time of the blob-info cache skopeo keeps for root, if there is one.
fn system_blob_cache() -> Option<std::time::SystemTime> {
    std::fs::metadata("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
        .and_then(|m| m.modified())
        .ok()
}

#[test]
fn umoci_unpacks_the_layout() {
    if !tool("umoci") {
        return;
    }
    let store = MemoryBlobs::new();
    let image = build_image(
        &store,
        Compression::default(),
        "hello from kiln",
        &ImageOptions::default(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    write_oci_layout(
        &layout,
        &store,
        &[named("docker.io/library/app:1", &image.manifest_descriptor)],
    )
    .unwrap();
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:1", layout.display())])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("bin/hello")).unwrap(),
        b"hello from kiln"
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/motd")).unwrap(),
        b"welcome\n"
    );
    assert!(Path::new(&rootfs.join("data/big.bin")).exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][0], "/bin/hello");
}
