//! Build cache through a registry and a directory (`--cache-to`, `--cache-from`): a build on a
//! wiped root that imports an exported cache runs none of the cached RUN steps, fetches their
//! layers instead, and stores an image with the same digest; `mode=min` carries only the final
//! image's steps, `mode=max` every stage's; a missing or corrupt cache is a warning, not a
//! failure; an inline cache travels in the pushed image's config.

use std::path::Path;

mod common;
use common::Kiln;
use common::registry::Registry;

/// A two-stage Dockerfile: the builder stage's RUN is not a layer of the final image.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS builder\n\
         RUN echo built-in-builder > /artifact && date +%s%N > /when-builder\n\
         FROM {base}\n\
         COPY input.txt /input.txt\n\
         RUN cat /input.txt > /final && date +%s%N > /when-final\n\
         COPY --from=builder /artifact /artifact\n\
         RUN echo done >> /final\n"
    )
}

fn context(k: &Kiln, base: &str) -> std::path::PathBuf {
    let ctx = k.mkdir("ctx");
    common::write_files(
        &ctx,
        &[("Dockerfile", &dockerfile(base)), ("input.txt", "hello\n")],
    );
    ctx
}

/// Builds and returns (the build, the image's manifest digest, its config digest). The image is
/// tagged `app:1` unless `extra` names it with `--output`.
fn build(k: &Kiln, ctx: &Path, extra: &[&str]) -> (common::Build, String, String) {
    let meta = k.dir.path().join("metadata.json");
    let mut args = vec!["--metadata-file", meta.to_str().unwrap()];
    if !extra.contains(&"--output") {
        args.extend(["-t", "app:1"]);
    }
    args.extend_from_slice(extra);
    let b = k.build(ctx, &args);
    b.assert_ok();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    (
        b,
        m["containerimage.digest"].as_str().unwrap().to_string(),
        m["containerimage.config.digest"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// Removes the whole store root, as a fresh CI runner has none.
fn wipe(k: &Kiln) {
    std::fs::remove_dir_all(k.root()).unwrap();
}

#[test]
fn registry_cache_max_rebuilds_nothing_on_a_wiped_root_with_the_same_digest() {
    let Some(k) = Kiln::new("registry cache") else {
        return;
    };
    let Some(reg) = Registry::start(None) else {
        return;
    };
    // The base lives in the registry so the wiped root can pull the very same image.
    let base = format!("{}/base/busybox:1", reg.host());
    common::assert_success(&k.run(&["push", "busybox", &base]), "push the base");
    let ctx = context(&k, &base);
    let cache = format!("{}/cache/app:buildcache", reg.host());
    let to = format!("type=registry,ref={cache},mode=max");
    // `--output type=image,push=true` stores and pushes the image in the same build (only the
    // loopback name: every name of a pushed output is pushed).
    let pushed = format!("{}/app/out:1", reg.host());
    let output = format!("type=image,name={pushed},push=true");
    let (first, digest, id) = build(&k, &ctx, &["--cache-to", &to, "--output", &output]);
    assert_eq!(first.runs_executed().len(), 3, "{:?}", first.steps());
    assert!(
        first
            .messages("info")
            .iter()
            .any(|m| m.starts_with(&format!("exporting cache to {cache}"))),
        "{:?}",
        first.messages("info")
    );

    wipe(&k);
    let from = format!("type=registry,ref={cache}");
    let (second, digest2, id2) = build(&k, &ctx, &["--cache-from", &from]);
    assert_eq!(
        second.runs_executed(),
        Vec::<String>::new(),
        "no RUN step may execute with the cache imported:\n{}",
        second.stderr()
    );
    assert_eq!(
        digest2, digest,
        "the image's manifest digest must be the same"
    );
    assert_eq!(id2, id, "the image ID must be the same");
    // The image is whole: its files came from the cache's layers.
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "app:1",
        "cat",
        "/final",
        "/artifact",
    ]);
    common::assert_success(&out, "run the rebuilt image");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\ndone\nbuilt-in-builder\n"
    );

    // An edit of the context reruns exactly the steps after the COPY that reads it.
    std::fs::write(ctx.join("input.txt"), "changed\n").unwrap();
    wipe(&k);
    let (third, digest3, _) = build(&k, &ctx, &["--cache-from", &from]);
    let ran = third.runs_executed();
    assert_eq!(
        ran.len(),
        2,
        "only the final stage's two RUNs rerun: {ran:?}"
    );
    assert!(ran.iter().all(|s| !s.contains("builder")), "{ran:?}");
    assert_ne!(digest3, digest);
}

#[test]
fn local_cache_min_carries_only_the_final_image_and_max_every_stage() {
    let Some(k) = Kiln::new("local cache") else {
        return;
    };
    // Keep the base image across wipes as a docker archive: its manifest changes on the way
    // (docker-archive layers are stored uncompressed), its layers do not, and the cache keys
    // the base by its layers.
    let saved = k.dir.path().join("busybox.tar");
    common::assert_success(
        &k.run(&["save", "-o", saved.to_str().unwrap(), "busybox"]),
        "save busybox",
    );
    let restore = |k: &Kiln| {
        wipe(k);
        common::assert_success(
            &k.run(&["load", "-i", saved.to_str().unwrap()]),
            "load busybox",
        );
    };
    let ctx = context(&k, "busybox");
    let min_dir = k.mkdir("cache-min");
    let max_dir = k.mkdir("cache-max");
    let to_min = format!("type=local,dest={}", min_dir.display());
    let to_max = format!("type=local,dest={},mode=max", max_dir.display());
    let (_, digest, _) = build(&k, &ctx, &["--cache-to", &to_min, "--cache-to", &to_max]);
    assert!(min_dir.join("index.json").exists() && max_dir.join("oci-layout").exists());

    // Both caches rebuild the final image without running anything: with min, the builder
    // stage is not even needed, as the COPY from it is itself a cached step.
    for (dir, what) in [(&min_dir, "min"), (&max_dir, "max")] {
        restore(&k);
        let from = format!("type=local,src={}", dir.display());
        let (b, d, _) = build(&k, &ctx, &["--cache-from", &from]);
        assert_eq!(
            b.runs_executed(),
            Vec::<String>::new(),
            "mode={what}: {}",
            b.stderr()
        );
        assert_eq!(d, digest, "mode={what}");
    }
    // The builder stage on its own: only mode=max exported its step.
    for (dir, runs) in [(&min_dir, 1), (&max_dir, 0)] {
        restore(&k);
        let from = format!("type=local,src={}", dir.display());
        let b = k.build(&ctx, &["--target", "builder", "--cache-from", &from]);
        b.assert_ok();
        assert_eq!(
            b.runs_executed().len(),
            runs,
            "{}: {:?}",
            dir.display(),
            b.steps()
        );
    }
}

#[test]
fn a_missing_or_broken_cache_is_a_warning_and_the_steps_run() {
    let Some(k) = Kiln::new("missing cache") else {
        return;
    };
    let ctx = context(&k, "busybox");
    let missing = k.dir.path().join("no-such-cache");
    let from = format!("type=local,src={}", missing.display());
    let (b, _, _) = build(&k, &ctx, &["--cache-from", &from]);
    // The engine's warning is a record in rawjson...
    let warnings = b.messages("warning");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("failed to import cache")),
        "{warnings:?}\n{}",
        b.stderr()
    );
    assert_eq!(b.runs_executed().len(), 3);
    // ...and a `WARNING:` line in the modes people read.
    for mode in ["plain", "tty"] {
        let out = k.run(&[
            "build",
            "--progress",
            mode,
            "--cache-from",
            &from,
            ctx.to_str().unwrap(),
        ]);
        common::assert_success(&out, mode);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("WARNING: failed to import cache"),
            "{mode}: {stderr}"
        );
    }

    // A cache whose document is corrupt: the digest check refuses it.
    let dir = k.mkdir("cache");
    let to = format!("type=local,dest={}", dir.display());
    build(&k, &ctx, &["--cache-to", &to, "--no-cache"]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace("sha256:", "");
    std::fs::write(dir.join("blobs/sha256").join(manifest), b"{}").unwrap();
    let from = format!("type=local,src={}", dir.display());
    let (b, _, _) = build(&k, &ctx, &["--cache-from", &from, "--no-cache"]);
    assert!(
        b.messages("warning")
            .iter()
            .any(|w| w.starts_with("failed to import cache")),
        "{:?}",
        b.messages("warning")
    );

    // Bad syntax is an error before anything runs.
    let bad = k.build(&ctx, &["--cache-to", "type=gha"]);
    assert!(!bad.ok());
    assert!(
        bad.stderr()
            .contains("not supported yet: cache type \"gha\""),
        "{}",
        bad.stderr()
    );
}

#[test]
fn inline_cache_travels_with_the_pushed_image() {
    let Some(k) = Kiln::new("inline cache") else {
        return;
    };
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let base = format!("{}/base/busybox:1", reg.host());
    common::assert_success(&k.run(&["push", "busybox", &base]), "push the base");
    let ctx = context(&k, &base);
    let image = format!("{}/app/inline:1", reg.host());
    let push = format!("type=image,name={image},push=true");
    let (first, digest, _) = build(&k, &ctx, &["--cache-to", "type=inline", "--output", &push]);
    assert_eq!(first.runs_executed().len(), 3);

    wipe(&k);
    let keep = format!("type=image,name={image}");
    let (second, digest2, _) = build(
        &k,
        &ctx,
        &[
            "--cache-from",
            &image,
            "--cache-to",
            "type=inline",
            "--output",
            &keep,
        ],
    );
    assert_eq!(
        second.runs_executed(),
        Vec::<String>::new(),
        "the image's inline cache answers every step of the final stage:\n{}",
        second.stderr()
    );
    assert_eq!(digest2, digest, "same steps, same inline cache, same image");

    // An image built FROM it does not inherit its cache document.
    let child = k.mkdir("child");
    common::write_files(
        &child,
        &[("Dockerfile", &format!("FROM {image}\nLABEL x=1\n"))],
    );
    let b = k.build(&child, &["-t", "child:1"]);
    b.assert_ok();
    let out = k.run(&["build", "--print", "config", child.to_str().unwrap()]);
    common::assert_success(&out, "print the child's config");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("kiln.cache.v1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
