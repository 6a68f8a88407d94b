//! Git sources (`ADD <repo>#ref[:subdir]`, `--keep-git-dir`) and git build contexts, from a
//! bare repository behind a `git daemon` on loopback, compared with BuildKit 0.24; and their
//! cache: keyed by the commit a ref resolves to, so a moved branch rebuilds and a tag does not.

use std::process::Command;

use crate::common::reference::Spec;
use crate::common::{self, reference};
use crate::{GitServer, git, make_repository, run};

#[test]
fn git_sources_match_the_reference_and_are_cached_by_commit() {
    let Some(pair) = reference::pair("git_sources_match_the_reference") else {
        return;
    };
    let work = pair.scratch_dir("git-sources");
    let served = work.join("served");
    std::fs::create_dir_all(&served).expect("served dir");
    let Some(server) = GitServer::start(&served, "git_sources_match_the_reference") else {
        return;
    };
    let tree = work.join("tree");
    let first = make_repository(
        &tree,
        &served.join("repo.git"),
        &[
            ("README", "top\n"),
            ("app/version", "1\n"),
            ("app/bin/run.sh", "#!/bin/sh\necho run\n"),
        ],
    );
    let url = server.url("repo.git");
    let ctx = work.join("context");
    common::write_files(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nADD {url}#main:app /app/\nADD {url}#v1 /tagged\nADD --chown=1:2 {url}#{first} /pinned/\nRUN cat /app/version /tagged/README\n"
            ),
        )],
    );
    pair.compare(&Spec::new(&ctx))
        .expect_same("ADD of git sources");

    // Cached: the refs resolve to the same commit.
    let k = &pair.kiln;
    let b = k.build(&ctx, &[]);
    b.assert_ok();
    assert!(b.runs_executed().is_empty(), "{:?}", b.executed());
    // A new commit on main: the step reading main runs again, the tag's is cached.
    common::write_files(&tree, &[("app/version", "2\n")]);
    run(
        git(&tree).args(["commit", "-q", "-am", "two"]),
        "git commit",
    );
    run(
        git(&tree)
            .args(["push", "-q"])
            .arg(served.join("repo.git"))
            .arg("main"),
        "git push",
    );
    let b = k.build(&ctx, &[]);
    b.assert_ok();
    let ran = b.executed();
    assert!(ran.iter().any(|s| s.contains("#main:app")), "{ran:?}");
    assert!(b.stdout_of(&b.runs_executed()[0]).starts_with("2\n"));

    // --keep-git-dir keeps a repository at the commit.
    let keep = work.join("keep");
    common::write_files(
        &keep,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --keep-git-dir {url}#v1 /src\n"),
        )],
    );
    let out_dir = work.join("keep-out");
    let out = k.run(&[
        "build",
        "-o",
        &format!("type=local,dest={}", out_dir.display()),
        keep.to_str().unwrap(),
    ]);
    common::assert_success(&out, "ADD --keep-git-dir");
    let head = run(
        Command::new("git")
            .arg("--git-dir")
            .arg(out_dir.join("src/.git"))
            .args(["rev-parse", "HEAD"]),
        "git rev-parse in the kept .git",
    );
    assert_eq!(head.trim(), first);
    assert!(!work.join("context/.git").exists());

    // A ref that does not exist fails the step, naming it.
    common::write_files(
        &keep,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {url}#nosuch /src\n"),
        )],
    );
    let b = k.build(&keep, &[]);
    assert!(!b.ok());
    assert!(b.stderr().contains("nosuch"), "{}", b.stderr());
}

#[test]
fn git_contexts_build_like_the_reference() {
    let Some(pair) = reference::pair("git_contexts_build_like_the_reference") else {
        return;
    };
    let work = pair.scratch_dir("git-context");
    let served = work.join("served");
    std::fs::create_dir_all(&served).expect("served dir");
    let Some(server) = GitServer::start(&served, "git_contexts_build_like_the_reference") else {
        return;
    };
    let bare = served.join("ctx.git");
    make_repository(
        &work.join("tree"),
        &bare,
        &[
            (
                "sub/Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n",
            ),
            ("sub/data.txt", "data\n"),
            ("other.txt", "not in the subdir\n"),
        ],
    );
    let url = format!("{}#main:sub", server.url("ctx.git"));
    let k = &pair.kiln;
    let kiln_tar = work.join("kiln.tar");
    let out = k
        .command()
        .args(["build", "-q", "-o"])
        .arg(format!("type=oci,dest={}", kiln_tar.display()))
        .arg(&url)
        .output()
        .expect("kiln build");
    let git_id = crate::built_id(&out);
    // The reference reads the context and the Dockerfile from the repository itself.
    let ref_tar = work.join("reference.tar");
    pair.build_reference_context(&url, &ref_tar)
        .expect("the reference builds the git context");
    let diffs = pair.compare_archives(&kiln_tar, &ref_tar);
    assert!(
        diffs.is_empty(),
        "git context differs from BuildKit's: {diffs:?}"
    );

    // The same repository as a file:// URL and as a path to the bare repository.
    for context in [
        format!("file://{}#main:sub", bare.display()),
        format!("{}#main:sub", bare.display()),
    ] {
        let out = k
            .command()
            .args(["build", "-q"])
            .arg(&context)
            .output()
            .expect("kiln build");
        assert_eq!(crate::built_id(&out), git_id, "{context}");
    }
}
