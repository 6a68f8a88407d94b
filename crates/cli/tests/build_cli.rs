//! `kiln build` as a user drives it: failures that point at the line, cache control flags,
//! targets, `.dockerignore`, a re-packaged base that keeps the cache, other Dockerfiles, stdin,
//! `--iidfile`, `--print`, concurrent builds on one root, and a root that survives builds
//! killed at random moments.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{Kiln, write_files};

#[test]
fn failing_run_shows_the_line_with_a_caret_and_its_output() {
    let Some(k) = Kiln::new("failing_run") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo fine\nRUN echo before-the-failure && exit 3\nRUN echo never\n",
        )],
    );
    let b = k.build(&ctx, &["-t", "broken"]);
    assert!(!b.ok(), "the build should fail");
    let err = b.stderr();
    assert!(err.contains("before-the-failure"), "no step output: {err}");
    assert!(
        err.contains("RUN echo before-the-failure && exit 3"),
        "no Dockerfile line: {err}"
    );
    assert!(err.contains(":3:"), "no line number 3: {err}");
    assert!(err.contains('^'), "no caret: {err}");
    assert!(
        err.contains("exit code: 3") || err.contains("code 3"),
        "{err}"
    );
    assert!(
        !b.executed().iter().any(|s| s.contains("echo never")),
        "a step after the failure ran"
    );
    assert!(
        !k.image_exists("broken"),
        "a failed build left an image ref"
    );
}

#[test]
fn invalid_dockerfile_shows_the_located_diagnostic() {
    let Some(k) = Kiln::new("invalid_dockerfile") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[("Dockerfile", "FROM busybox\nFNTRYPOINT [\"sh\"]\n")],
    );
    let b = k.build(&ctx, &["-t", "invalid"]);
    assert!(!b.ok());
    let err = b.stderr();
    assert!(err.contains("unknown instruction: FNTRYPOINT"), "{err}");
    assert!(err.contains("did you mean ENTRYPOINT?"), "{err}");
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(b.executed().is_empty());
    assert!(!k.image_exists("invalid"));
}

#[test]
fn no_cache_reruns_every_step_and_target_selects_a_stage() {
    let Some(k) = Kiln::new("no_cache_target") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS first\nRUN echo a > /a\n\
             FROM busybox AS second\nRUN echo b > /b\nRUN echo c > /c\n",
        )],
    );
    let b = k.build(&ctx, &["-t", "nc"]);
    b.assert_ok();
    // Only the stages the target needs run.
    assert_eq!(b.runs_executed().len(), 2, "{:?}", b.runs_executed());
    let again = k.build(&ctx, &["-t", "nc", "--no-cache"]);
    again.assert_ok();
    assert_eq!(
        again.runs_executed().len(),
        2,
        "{:?}",
        again.runs_executed()
    );
    assert!(again.cached().iter().all(|s| !s.contains("RUN")));

    let t = k.build(&ctx, &["-t", "first", "--target", "first"]);
    t.assert_ok();
    assert_eq!(t.runs_executed().len(), 1, "{:?}", t.runs_executed());
    assert!(t.runs_executed()[0].contains("echo a"));
    assert_eq!(
        k.output_of("first", "cat /a; ls /b 2>&1 || true"),
        "a\nls: /b: No such file or directory\n"
    );

    let typo = k.build(&ctx, &["--target", "secnd"]);
    assert!(!typo.ok());
    assert!(
        typo.stderr().contains("did you mean second?"),
        "{}",
        typo.stderr()
    );
}

#[test]
fn dockerignore_excludes_files_and_their_edits_keep_the_cache() {
    let Some(k) = Kiln::new("dockerignore") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx | sort > /listing\n",
            ),
            (".dockerignore", "ignored.txt\nlogs/\n*.tmp\n!keep.tmp\n"),
            ("kept.txt", "kept\n"),
            ("ignored.txt", "ignored\n"),
            ("logs/x.log", "log\n"),
            ("a.tmp", "tmp\n"),
            ("keep.tmp", "tmp but kept\n"),
        ],
    );
    let b = k.build(&ctx, &["-t", "di"]);
    b.assert_ok();
    assert_eq!(
        k.output_of("di", "cat /listing"),
        ".\n..\n.dockerignore\nDockerfile\nkeep.tmp\nkept.txt\n"
    );
    std::fs::write(ctx.join("ignored.txt"), "edited\n").expect("edit");
    std::fs::write(ctx.join("logs/y.log"), "new\n").expect("add");
    let again = k.build(&ctx, &["-t", "di"]);
    again.assert_ok();
    assert!(again.executed().is_empty(), "{:?}", again.executed());
    std::fs::write(ctx.join("kept.txt"), "edited\n").expect("edit");
    let third = k.build(&ctx, &["-t", "di"]);
    third.assert_ok();
    assert_eq!(third.executed().len(), 2, "{:?}", third.executed());
}

#[test]
fn a_base_reimported_with_the_same_layers_keeps_the_cache() {
    let Some(k) = Kiln::new("reimported base") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[("Dockerfile", "FROM busybox\nRUN echo once > /f\n")],
    );
    k.build(&ctx, &["-t", "app"]).assert_ok();
    let before = k.run(&["inspect", "--format", "{{.Id}}", "busybox"]);
    // A docker-archive round trip gives the base a new manifest over the same layers.
    let saved = k.dir.path().join("bb.tar");
    let out = k.run(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    common::assert_success(&out, "save");
    common::assert_success(&k.run(&["rmi", "busybox"]), "rmi");
    common::assert_success(&k.run(&["load", "-i", saved.to_str().unwrap()]), "load");
    let after = k.run(&["inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(before.stdout, after.stdout, "same image ID");
    let b = k.build(&ctx, &["-t", "app"]);
    b.assert_ok();
    assert_eq!(b.runs_executed(), Vec::<String>::new(), "{:?}", b.steps());
}

#[test]
fn other_dockerfile_stdin_and_iidfile() {
    let Some(k) = Kiln::new("file_stdin_iid") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            ("Dockerfile", "FROM busybox\nRUN exit 1\n"),
            (
                "other.Dockerfile",
                "FROM busybox\nCOPY hello /\nRUN cat /hello\n",
            ),
            ("hello", "hello from the context\n"),
        ],
    );
    let iid = k.dir.path().join("iid");
    let dockerfile = ctx.join("other.Dockerfile");
    let b = k.build(
        &ctx,
        &[
            "-f",
            dockerfile.to_str().expect("utf-8"),
            "-t",
            "other",
            "--iidfile",
            iid.to_str().expect("utf-8"),
        ],
    );
    b.assert_ok();
    let run = b.runs_executed();
    assert_eq!(b.stdout_of(&run[0]), "hello from the context\n");
    let id = std::fs::read_to_string(&iid).expect("iidfile written");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let inspect = k.run(&["inspect", "other"]);
    common::assert_success(&inspect, "inspect");
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    let inspected = json
        .get(0)
        .unwrap_or(&json)
        .get("Id")
        .and_then(|v| v.as_str())
        .expect("Id")
        .to_string();
    assert_eq!(inspected, id);

    let s = k.build_stdin("FROM busybox\nRUN echo from-stdin\n", &["-t", "stdin"]);
    s.assert_ok();
    assert!(s.all_logs().contains("from-stdin"));
    assert!(k.image_exists("stdin"));
    // No context: a COPY has nothing to read.
    let c = k.build_stdin("FROM busybox\nCOPY hello /\n", &[]);
    assert!(!c.ok());
}

#[test]
fn print_modes_do_not_execute() {
    let Some(k) = Kiln::new("print_modes") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "# the base\nARG BASE=busybox\nFROM ${BASE} AS base\nRUN exit 1\n\
             FROM base AS final\nENV GREETING=hi\nLABEL x=y\nCMD [\"echo\"]\n",
        )],
    );
    for (mode, expect) in [
        ("config", "GREETING=hi"),
        ("llb", "exit 1"),
        ("outline", "BASE"),
        ("targets", "final"),
    ] {
        let out = k.run(&["build", "--print", mode, ctx.to_str().expect("utf-8")]);
        common::assert_success(&out, mode);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "--print={mode}: {text}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("exit code"));
    }
    let images = k.run(&["images"]);
    let listing = String::from_utf8_lossy(&images.stdout);
    assert_eq!(listing.lines().filter(|l| l.contains("busybox")).count(), 1);
    assert_eq!(listing.lines().count(), 2, "only busybox: {listing}");
}

#[test]
fn two_builds_on_one_root_at_the_same_time_both_succeed() {
    let Some(k) = Kiln::new("concurrent_builds") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f /f\nRUN sleep 0.3 && cat /f > /g\nRUN echo done\n",
            ),
            ("f", "content\n"),
        ],
    );
    let spawn = |tag: &str| {
        k.command()
            .args(["build", "--progress", "plain", "-t", tag])
            .arg(&ctx)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kiln build")
    };
    let a = spawn("one");
    let b = spawn("two");
    let a = a.wait_with_output().expect("wait");
    let b = b.wait_with_output().expect("wait");
    common::assert_success(&a, "first concurrent build");
    common::assert_success(&b, "second concurrent build");
    assert_eq!(k.output_of("one", "cat /g"), "content\n");
    assert_eq!(k.output_of("two", "cat /g"), "content\n");
    let check = k.run(&["system", "check"]);
    common::assert_success(&check, "system check");
}

/// A pseudo-random delay from the clock (no rand dependency for one test).
fn jitter(max_ms: u64, salt: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64;
    let mixed =
        (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(6364136223846793005);
    Duration::from_millis((mixed >> 33) % max_ms)
}

#[test]
fn sigkill_twenty_times_then_the_next_build_succeeds_and_the_store_checks() {
    let Some(k) = Kiln::new("sigkill_loop") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG N\nCOPY f /f\nRUN echo $N > /n && sleep 0.1\n\
                 RUN sleep 0.1 && cat /n /f > /g\nRUN sleep 0.1 && wc -c /g > /h\n",
            ),
            ("f", "x\n"),
        ],
    );
    for i in 0..20u64 {
        // A different build arg each time, so every attempt has work left to interrupt.
        std::fs::write(ctx.join("f"), format!("round {i}\n")).expect("edit");
        let mut child = k
            .command()
            .args(["build", "--progress", "plain", "-t", "killed"])
            .arg("--build-arg")
            .arg(format!("N={i}"))
            .arg(&ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kiln build");
        std::thread::sleep(jitter(700, i));
        let _ = child.kill();
        let _ = child.wait();
    }
    let b = k.build(&ctx, &["-t", "survivor", "--build-arg", "N=final"]);
    b.assert_ok();
    assert_eq!(k.output_of("survivor", "cat /g"), "final\nround 19\n");
    let check = k.run(&["system", "check"]);
    common::assert_success(&check, "system check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(!report.contains("problem"), "{report}");
    assert!(report.contains("consistent"), "{report}");
}

#[test]
fn run_security_insecure_needs_the_entitlement_and_then_runs_unconfined() {
    let Some(k) = Kiln::new("security insecure") else {
        return;
    };
    let dockerfile = "FROM busybox\n\
                      RUN grep -E '^(Seccomp|CapEff):' /proc/self/status\n\
                      RUN --security=insecure grep -E '^(Seccomp|CapEff):' /proc/self/status\n";
    let refused = k.build_stdin(dockerfile, &[]);
    assert!(!refused.ok());
    assert!(
        refused.stderr().contains("--allow security.insecure"),
        "{}",
        refused.stderr()
    );
    let b = k.build_stdin(dockerfile, &["--no-cache", "--allow", "security.insecure"]);
    b.assert_ok();
    let steps = b.steps();
    let normal = steps
        .iter()
        .find(|s| s.ends_with("/proc/self/status") && !s.contains("insecure"));
    let insecure = steps.iter().find(|s| s.contains("--security=insecure"));
    let normal = b.stdout_of(normal.expect("the plain RUN"));
    let insecure = b.stdout_of(insecure.expect("the insecure RUN"));
    // The default step is filtered with Docker's capabilities; the insecure one has neither.
    assert!(normal.contains("Seccomp:\t2"), "{normal}");
    assert!(normal.contains("CapEff:\t00000000a80425fb"), "{normal}");
    assert!(insecure.contains("Seccomp:\t0"), "{insecure}");
    assert!(!insecure.contains("a80425fb"), "{insecure}");
    // Now cached, the step is still refused to a build without the grant.
    let again = k.build_stdin(dockerfile, &[]);
    assert!(!again.ok(), "a cached insecure step slipped through");
    assert!(
        again.stderr().contains("--allow security.insecure"),
        "{}",
        again.stderr()
    );
    let bad = k.build_stdin(dockerfile, &["--allow", "everything"]);
    assert!(
        bad.stderr().contains("unknown entitlement"),
        "{}",
        bad.stderr()
    );
}
