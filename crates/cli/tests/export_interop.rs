//! kiln's archives in other tools and theirs in kiln: skopeo, umoci and (with the private
//! dockerd of `tests/common/dockerd.rs`) docker. Each test skips with a printed message when
//! its tool is missing.

mod common;
mod export_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dockerd::Dockerd;
use export_support::{APP, Kiln, have, setup};

fn tool(program: &str, args: &[&str]) -> String {
    let mut cmd = match program {
        "skopeo" => kiln_testutil::skopeo(),
        _ => Command::new(program),
    };
    let out = cmd.args(args).output().expect("run tool");
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_reads_kiln_archives_and_kiln_loads_skopeo_output() {
    if !have("skopeo") {
        return;
    }
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let archive = k.path("app.oci.tar");
    k.build(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},name=app:1", archive.display()),
        ],
    );
    let inspect: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", archive.display())],
    ))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(inspect["Os"], "linux");

    let layout = k.path("layout");
    k.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "-o",
            &format!("type=oci,dest={},tar=false,name=app:1", layout.display()),
        ],
    );
    k.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        ctx.to_str().unwrap(),
    ]);
    let (id, manifest) = k.digests("app:1");
    let docker = k.path("skopeo-docker.tar");
    let oci = k.path("skopeo.oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", layout.display()),
            &format!("docker-archive:{}:app:9", docker.display()),
        ],
    );
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", layout.display()),
            &format!("oci-archive:{}:app:7", oci.display()),
        ],
    );
    let other = Kiln::empty();
    assert!(
        other
            .ok(&["load", "-i", docker.to_str().unwrap()])
            .contains("app:9")
    );
    assert!(
        other
            .ok(&["load", "-i", oci.to_str().unwrap()])
            .contains("app:7")
    );
    // skopeo keeps the config, so the image ID; an OCI-to-OCI copy keeps the manifest too.
    assert_eq!(other.digests("app:9").0, id);
    assert_eq!(other.digests("app:7"), (id, manifest));
}

/// Path → (kind, mode, uid, gid, contents or link target) for every entry under `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, (String, u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let (kind, data) = if md.is_symlink() {
                (
                    "link",
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if md.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if md.is_file() {
                ("file", std::fs::read(&path).unwrap())
            } else {
                ("other", Vec::new())
            };
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.insert(
                rel,
                (
                    kind.to_string(),
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    data,
                ),
            );
        }
    }
    out
}

#[test]
fn umoci_unpack_of_the_layout_equals_type_local() {
    if !have("umoci") {
        return;
    }
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let layout = k.path("layout");
    k.build(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},tar=false,name=app:1", layout.display()),
        ],
    );
    let local = k.path("local");
    k.build(
        &ctx,
        &["-o", &format!("type=local,dest={}", local.display())],
    );
    let bundle = k.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:1", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let theirs = tree(&bundle.join("rootfs"));
    let ours = tree(&local);
    assert!(ours.contains_key(Path::new("app/greeting.txt")));
    assert!(!ours.contains_key(Path::new("bin/ls")));
    for (path, entry) in &theirs {
        assert_eq!(ours.get(path), Some(entry), "{}", path.display());
    }
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
}

#[test]
fn docker_loads_and_runs_kiln_archive_and_kiln_loads_docker_save() {
    if !export_support::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let Some(docker) = Dockerd::start("docker interop") else {
        return;
    };
    let Some(k) = setup() else { return };
    let ctx = k.context("ctx", APP);
    let archive = k.path("app-docker.tar");
    k.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "-o",
            &format!("type=docker,dest={}", archive.display()),
        ],
    );
    assert!(
        docker
            .ok(&["load", "-i", archive.to_str().unwrap()])
            .contains("app:1")
    );
    let out = docker.ok(&["run", "--rm", "--network", "none", "app:1"]);
    assert_eq!(out, "hello from the context\n");

    k.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        ctx.to_str().unwrap(),
    ]);
    let id = k.digests("app:1").0;
    assert_eq!(
        docker
            .ok(&["image", "inspect", "app:1", "--format", "{{.Id}}"])
            .trim(),
        id
    );
    let saved = k.path("docker-save.tar");
    docker.ok(&["save", "-o", saved.to_str().unwrap(), "app:1"]);
    let other = Kiln::empty();
    assert!(
        other
            .ok(&["load", "-i", saved.to_str().unwrap()])
            .contains("app:1")
    );
    assert_eq!(other.digests("app:1").0, id);
    // What docker saved is a usable base.
    let ctx2 = other.context("ctx2", "FROM app:1\nRUN test -f /app/built.txt\n");
    other.build(&ctx2, &["-t", "next"]);
}
