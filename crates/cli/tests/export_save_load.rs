//! `kiln save` and `kiln load`: a round trip keeps every digest, a loaded image works as a
//! base, and corrupt or malicious archives are rejected without changing the store.

mod export_support;

use std::io::Read;

use export_support::{APP, Kiln, setup, tar_entries};

#[test]
fn oci_round_trip_keeps_digests_and_loaded_image_builds() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    k.build(&ctx, &["-t", "app:1"]);
    let before = k.digests("app:1");
    let base = k.digests("busybox");

    let oci = k.path("images.oci.tar");
    k.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "app:1",
        "busybox",
    ]);
    let other = Kiln::empty();
    let out = other.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert!(out.contains("Loaded image: app:1"), "{out}");
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(other.digests("app:1"), before);
    assert_eq!(other.digests("busybox"), base);

    // The loaded base unpacks for FROM.
    let ctx2 = other.context(
        "ctx2",
        "FROM app:1\nRUN cat /app/greeting.txt > /copy.txt\n",
    );
    other.build(&ctx2, &["-t", "next"]);
    let dir = other.path("fs");
    other.ok(&[
        "build",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", dir.display()),
        ctx2.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.join("copy.txt")).unwrap(),
        "hello from the context\n"
    );
}

#[test]
fn docker_round_trip_keeps_image_id_and_layers() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    k.build(&ctx, &["-t", "app:1"]);
    let id = k.digests("app:1").0;
    let layers = k.inspect("app:1")["RootFS"].clone();
    // To stdout, compressed on the way: load detects gzip.
    let out = k.cmd(&["save", "app:1"]).output().expect("run kiln save");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = tar_entries(&out.stdout);
    assert!(entries.iter().any(|(p, _)| p == "manifest.json"));
    let gz = k.path("app.tar.gz");
    {
        let f = std::fs::File::create(&gz).unwrap();
        let mut enc = flate2_writer(f);
        std::io::Write::write_all(&mut enc, &out.stdout).unwrap();
    }
    let other = Kiln::empty();
    // From stdin, as `docker load < app.tar.gz`.
    let out = other
        .cmd(&["load"])
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Loaded image: app:1"), "{text}");
    assert_eq!(other.digests("app:1").0, id);
    assert_eq!(other.inspect("app:1")["RootFS"], layers);
    assert!(other.ok(&["images"]).contains("app"));
}

/// gzip through the system `gzip` tool, to keep flate2 out of the dev-dependencies.
fn flate2_writer(f: std::fs::File) -> impl std::io::Write {
    struct Gz(std::process::Child);
    impl std::io::Write for Gz {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.stdin.as_mut().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Gz {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            let _ = self.0.wait();
        }
    }
    Gz(std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(f)
        .spawn()
        .expect("run gzip"))
}

/// Rewrites a tar, letting `edit` change, drop or add entries.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let Some(data) = edit(&path, data) else {
            continue;
        };
        if header.entry_type().is_file() {
            // Keep the claimed size for truncation tests only via `edit`; normally fix it.
            header.set_size(data.len() as u64);
        }
        header.set_cksum();
        out.append(&header, &data[..]).unwrap();
    }
    if let Some((path, data)) = extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Bypass the builder's path checks: a malicious archive would.
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        out.append(&h, data).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn corrupt_archives_are_rejected_and_store_unchanged() {
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    k.build(&ctx, &["-t", "app:1"]);
    let good = k.path("good.tar");
    k.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        good.to_str().unwrap(),
        "app:1",
    ]);
    let bytes = std::fs::read(&good).unwrap();
    let (_, manifest_digest) = k.digests("app:1");
    let manifest_path = format!(
        "blobs/sha256/{}",
        manifest_digest.trim_start_matches("sha256:")
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        export_support::entry(&tar_entries(&bytes), &manifest_path).unwrap(),
    )
    .unwrap();
    let config_path = format!(
        "blobs/sha256/{}",
        manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    let layer_path = format!(
        "blobs/sha256/{}",
        manifest["layers"][2]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    let diff_id = k.inspect("app:1")["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let docker_layer = format!("blobs/sha256/{diff_id}");
    let docker = k.path("good-docker.tar");
    k.ok(&["save", "-o", docker.to_str().unwrap(), "app:1"]);
    let docker_bytes = std::fs::read(&docker).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong digest",
            rewrite(
                &bytes,
                |p, mut d| {
                    if p == layer_path {
                        let n = d.len() / 2;
                        d[n] ^= 0xff;
                    }
                    Some(d)
                },
                None,
            ),
            "digest",
        ),
        (
            "truncated layer",
            rewrite(
                &bytes,
                |p, d| {
                    Some(if p == layer_path {
                        d[..d.len() / 2].to_vec()
                    } else {
                        d
                    })
                },
                None,
            ),
            "bytes",
        ),
        (
            "missing config",
            rewrite(&bytes, |p, d| (p != config_path).then_some(d), None),
            "missing",
        ),
        (
            "dot-dot entry",
            rewrite(&bytes, |_, d| Some(d), Some(("../escape.txt", b"pwned"))),
            "unsafe path",
        ),
        (
            "truncated archive",
            bytes[..bytes.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        (
            "docker archive with a changed layer",
            rewrite(
                &docker_bytes,
                |p, mut d| {
                    if p == docker_layer {
                        d[600] ^= 0x01;
                    }
                    Some(d)
                },
                None,
            ),
            "digest",
        ),
        ("not an archive", b"hello, this is not a tar".to_vec(), ""),
    ];
    let fresh = Kiln::empty();
    fresh.ok(&["images"]);
    let images_before = fresh.ok(&["images", "-q"]);
    let blobs_before = count_files(&fresh.root);
    for (what, archive, needle) in cases {
        let path = fresh.path("bad.tar");
        std::fs::write(&path, &archive).unwrap();
        let err = fresh.fails(&["load", "-i", path.to_str().unwrap()]);
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(fresh.ok(&["images", "-q"]), images_before, "{what}");
        assert!(!fresh.dir.path().join("escape.txt").exists(), "{what}");
        assert_eq!(
            count_files(&fresh.root),
            blobs_before,
            "{what}: store changed"
        );
    }
}

fn count_files(root: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.to_string_lossy().contains("/content/blobs/") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(root, &mut n);
    n
}
