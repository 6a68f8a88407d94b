//! A value passed with `--secret` (from a file and from the environment) is used by RUN steps
//! and then found nowhere: not in any layer (decompressed), history entry, config, cache record
//! or other metadata, exported cache, `kiln save` archive, progress log kept under the root,
//! `--metadata-file`, `inspect`/`history` output or the build's own output. The test greps
//! every file under the root, decompressing what is compressed.

use std::io::Read;
use std::path::{Path, PathBuf};

mod common;
use common::Kiln;

/// Every file under `dir` (not following symlinks).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The bytes of a file and, when it is gzip or zstd, its decompressed bytes too.
fn readable(path: &Path) -> Vec<Vec<u8>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut d = Vec::new();
        if flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut d)
            .is_ok()
        {
            out.push(d);
        }
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        && let Ok(d) = zstd::stream::decode_all(&bytes[..])
    {
        out.push(d);
    }
    out.push(bytes);
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Fails naming every file under `dir` that holds `secret` (plain or decompressed).
fn assert_nowhere(dir: &Path, secret: &str) -> usize {
    let all = files(dir);
    let leaks: Vec<&PathBuf> = all
        .iter()
        .filter(|p| readable(p).iter().any(|b| contains(b, secret)))
        .collect();
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
    all.len()
}

#[test]
fn a_secret_is_used_by_run_and_found_nowhere_afterwards() {
    let Some(k) = Kiln::new("a_secret_is_used_by_run_and_found_nowhere_afterwards") else {
        return;
    };
    let file_secret = format!("KILN-FILE-SECRET-{}-7d1e", std::process::id());
    let env_secret = format!("KILN-ENV-SECRET-{}-93ac", std::process::id());
    let outside = k.mkdir("outside");
    let secret_file = outside.join("token");
    std::fs::write(&secret_file, &file_secret).unwrap();
    let ctx = k.mkdir("ctx");
    // The steps use the secrets (and prove it without printing them), and try the usual ways a
    // value ends up in an image by accident: a file under the mount target's directory, the
    // environment, a layer written while the secret is mounted.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok test \"$(wc -c < /run/secrets/tok)\" -gt 10 && echo file-secret-seen && ls -la /run/secrets > /listing\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/token,required=true test -s /etc/app/token && echo target-secret-seen && echo done > /etc/app/other\n\
         RUN --mount=type=secret,id=envtok test \"$(wc -c < /run/secrets/envtok)\" -gt 10 && echo env-secret-seen\n\
         ENV NOT_SECRET=1\n\
         RUN echo after > /after\n",
    )
    .unwrap();
    let cache = k.mkdir("cache");
    let meta = k.dir.path().join("metadata.json");
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let cache_arg = format!("type=local,dest={},mode=max", cache.display());
    let meta_arg = meta.display().to_string();
    let mut build = k.command();
    build
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "sec",
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_SECRET",
            "--cache-to",
            &cache_arg,
            "--metadata-file",
            &meta_arg,
        ])
        .arg(&ctx)
        .env("KILN_TEST_SECRET", &env_secret);
    let out = build.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    for seen in ["file-secret-seen", "target-secret-seen", "env-secret-seen"] {
        assert!(
            log.contains(seen),
            "a step did not get its secret ({seen}): {log}"
        );
    }
    // The same build again with the tty display, whose full log is kept under the root, from
    // the cache (so cache records are read back too).
    let mut again = k.command();
    again
        .args([
            "build",
            "--progress",
            "tty",
            "-t",
            "sec2",
            "--secret",
            &secret_arg,
        ])
        .args(["--secret", "id=envtok,env=KILN_TEST_SECRET"])
        .arg(&ctx)
        .env("KILN_TEST_SECRET", &env_secret);
    let out2 = again.output().unwrap();
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    let logs = files(&k.root().join("logs"));
    assert!(!logs.is_empty(), "the tty build kept no log under the root");

    let saved = k.dir.path().join("saved.tar");
    let save = k.run(&["save", "-o", saved.to_str().unwrap(), "sec"]);
    assert!(save.status.success());
    let inspect = k.run(&["inspect", "sec"]);
    let history = k.run(&["history", "--no-trunc", "sec"]);
    for secret in [&file_secret, &env_secret] {
        for (what, bytes) in [
            ("the build's stderr", &out.stderr),
            ("the build's stdout", &out.stdout),
            ("the cached build's output", &out2.stdout),
            ("the cached build's stderr", &out2.stderr),
            ("inspect", &inspect.stdout),
            ("history", &history.stdout),
        ] {
            assert!(!contains(bytes, secret), "the secret is in {what}");
        }
        let under_root = assert_nowhere(&k.root(), secret);
        let in_cache = assert_nowhere(&cache, secret);
        assert!(!contains(&std::fs::read(&meta).unwrap(), secret));
        // The saved archive's layers are plain tars.
        for b in readable(&saved) {
            assert!(!contains(&b, secret), "the secret is in the saved image");
        }
        assert!(under_root > 10 && in_cache > 2, "too few files looked at");
    }
    // The secret's mount point leaves nothing of the secret in the image: the file the step
    // wrote beside it is there, the secret file itself is not (or is empty).
    let root = k.dir.path().join("fs");
    let out = k.run(&[
        "build",
        "-o",
        &format!("type=local,dest={}", root.display()),
        "--secret",
        &secret_arg,
        "--secret",
        "id=envtok,env=KILN_TEST_SECRET",
        ctx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app/other")).unwrap(),
        "done\n"
    );
    assert!(std::fs::metadata(root.join("etc/app/token")).map_or(true, |m| m.len() == 0));
    assert!(std::fs::metadata(root.join("run/secrets/tok")).map_or(true, |m| m.len() == 0));
    assert_nowhere(&root, &file_secret);
}
