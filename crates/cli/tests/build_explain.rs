//! `kiln build --explain`: after each kind of change the report names what changed (the
//! context file with its old and new digest, the build argument, the base image with both
//! digests, the earlier step), a first build says the cache never saw its steps, and a build
//! where everything came from the cache says nothing ran; in plain text, in rawjson records and
//! in `--metadata-file`.

mod common;

use common::{Build, Kiln, write_files};

/// The rawjson `explain` records of a build.
fn explained(b: &Build) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&b.output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "explain")
        .collect()
}

/// Every reason message of the step whose name contains `step`.
fn reasons_of(records: &[serde_json::Value], step: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.contains(step)))
        .flat_map(|r| r["reasons"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["message"].as_str().map(str::to_string))
        .collect()
}

const DOCKERFILE: &str = "FROM busybox
ARG GREETING=hello
COPY app.txt other.txt /app/
RUN cat /app/app.txt > /out && echo \"$GREETING\" >> /out
RUN echo done > /done
";

#[test]
fn explain_names_the_changed_file_the_argument_and_nothing_on_a_noop() {
    let Some(k) = Kiln::new("explain") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("app.txt", "one\n"),
            ("other.txt", "keep\n"),
        ],
    );
    let first = k.build(&ctx, &["--explain"]);
    first.assert_ok();
    let records = explained(&first);
    assert!(
        reasons_of(&records, "COPY app.txt")
            .iter()
            .any(|m| m.contains("never seen")),
        "{records:?}"
    );

    // A no-op build: one record, saying nothing ran.
    let noop = k.build(&ctx, &["--explain"]);
    noop.assert_ok();
    let records = explained(&noop);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["ran"], false);
    assert!(
        records[0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing ran")
    );

    // One context file edited: the COPY names it with both digests, the RUNs name the COPY.
    std::fs::write(ctx.join("app.txt"), "two\n").expect("edit");
    let edited = k.build(&ctx, &["--explain"]);
    edited.assert_ok();
    let records = explained(&edited);
    let copy = records
        .iter()
        .find(|r| r["name"].as_str().unwrap().contains("COPY app.txt"))
        .expect("the COPY ran");
    let reason = &copy["reasons"][0];
    assert_eq!(reason["kind"], "context-file");
    assert_eq!(reason["path"], "app.txt");
    let (old, new) = (
        reason["old"].as_str().unwrap(),
        reason["new"].as_str().unwrap(),
    );
    assert!(old.contains("blake3:") && new.contains("blake3:") && old != new);
    assert_eq!(copy["reasons"].as_array().unwrap().len(), 1, "{copy}");
    assert!(
        !reasons_of(&records, "COPY")
            .iter()
            .any(|m| m.contains("other.txt")),
        "an untouched file is not named"
    );
    assert!(
        reasons_of(&records, "RUN cat")
            .iter()
            .any(|m| m.contains("an earlier step ran again") && m.contains("COPY")),
        "{records:?}"
    );

    // A build argument changed: the RUNs name it with both values; the COPY stays cached.
    let arg = k.build(&ctx, &["--explain", "--build-arg", "GREETING=hi"]);
    arg.assert_ok();
    let records = explained(&arg);
    assert!(reasons_of(&records, "COPY").is_empty(), "{records:?}");
    let run = reasons_of(&records, "RUN cat");
    assert!(
        run.iter()
            .any(|m| m.contains("build argument GREETING changed")
                && m.contains("\"hello\" → \"hi\"")),
        "{run:?}"
    );

    // Plain text and the metadata file say the same.
    std::fs::write(ctx.join("app.txt"), "three\n").expect("edit");
    let meta = k.dir.path().join("meta.json");
    let plain = k
        .command()
        .args([
            "build",
            "--progress",
            "plain",
            "--explain",
            "--build-arg",
            "GREETING=hi",
        ])
        .arg("--metadata-file")
        .arg(&meta)
        .arg(&ctx)
        .output()
        .expect("run kiln");
    common::assert_success(&plain, "kiln build --explain");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("explain: 3 steps ran"), "{stderr}");
    assert!(
        stderr.contains("context file app.txt changed (blake3:"),
        "{stderr}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("metadata")).expect("json");
    let steps = meta["kiln.explain"].as_array().expect("kiln.explain");
    assert_eq!(steps.len(), 3, "{meta}");
    assert_eq!(steps[0]["reasons"][0]["path"], "app.txt");
}

#[test]
fn explain_names_the_base_image_when_its_tag_moves() {
    let Some(k) = Kiln::new("explain_base") else {
        return;
    };
    let (a, b, app) = (k.mkdir("a"), k.mkdir("b"), k.mkdir("app"));
    write_files(&a, &[("Dockerfile", "FROM busybox\nRUN echo a > /base\n")]);
    write_files(&b, &[("Dockerfile", "FROM busybox\nRUN echo b > /base\n")]);
    write_files(
        &app,
        &[("Dockerfile", "FROM mybase\nRUN cat /base > /seen\n")],
    );
    k.build(&a, &["-t", "base-a"]).assert_ok();
    k.build(&b, &["-t", "base-b"]).assert_ok();
    // The manifest digest each build resolved `mybase` to, from its FROM step's name.
    let from_digest = |b: &Build| {
        b.steps()
            .into_iter()
            .find(|s| s.contains("FROM docker.io/library/mybase"))
            .and_then(|s| s.rsplit_once('@').map(|(_, d)| d.to_string()))
            .expect("the FROM step")
    };
    assert!(k.run(&["tag", "base-a", "mybase"]).status.success());
    let before = k.build(&app, &["--explain"]);
    before.assert_ok();
    assert!(k.run(&["tag", "base-b", "mybase"]).status.success());
    let moved = k.build(&app, &["--explain"]);
    moved.assert_ok();
    let records = explained(&moved);
    let run = reasons_of(&records, "RUN cat");
    assert!(
        run.iter()
            .any(|m| m.starts_with("base image mybase") && m.contains("moved")),
        "{run:?}"
    );
    let base = records
        .iter()
        .flat_map(|r| r["reasons"].as_array().cloned().unwrap_or_default())
        .find(|r| r["kind"] == "base-image")
        .expect("a base-image reason");
    let (old, new) = (base["old"].as_str().unwrap(), base["new"].as_str().unwrap());
    assert_eq!(old, from_digest(&before));
    assert_eq!(new, from_digest(&moved));
    assert_ne!(old, new);
}
