//! Our own cases for each difference issue 16 found against BuildKit 0.24, one test per
//! behaviour, each built by kiln and by the reference and compared as images. The contexts are
//! written here (never copied from upstream); a test whose builds must fail checks that both
//! fail and that kiln says why.

use std::path::PathBuf;

use crate::common::imagefs::{Image, Kind};
use crate::common::reference::{self, Pair, Spec, set_test_dates};

/// A context for `test` with `files` (path, bytes) in it, mtimes set to the fixed test date.
fn context(test: &str, files: &[(&str, &[u8])]) -> Option<(&'static Pair, PathBuf)> {
    let pair = reference::pair(test)?;
    let dir = pair.scratch_dir(test).join("context");
    for (rel, data) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
    }
    std::fs::create_dir_all(&dir).expect("context dir");
    set_test_dates(&dir);
    Some((pair, dir))
}

/// Builds `dockerfile` over `files` with both builders; both must give the same image.
fn same(test: &str, files: &[(&str, &[u8])], dockerfile: &str) -> Option<Image> {
    let mut all = files.to_vec();
    all.push(("Dockerfile", dockerfile.as_bytes()));
    let (pair, dir) = context(test, &all)?;
    Some(pair.compare(&Spec::new(&dir)).expect_same(test))
}

/// Builds with both; both must fail. Returns kiln's error output.
fn both_fail(test: &str, files: &[(&str, &[u8])], dockerfile: &str) -> Option<String> {
    let mut all = files.to_vec();
    all.push(("Dockerfile", dockerfile.as_bytes()));
    let (pair, dir) = context(test, &all)?;
    Some(pair.compare(&Spec::new(&dir)).expect_both_fail(test))
}

fn is_file(image: &Image, path: &str) -> bool {
    matches!(image.file(path).map(|n| &n.kind), Some(Kind::File { .. }))
}

/// A tar archive of `entries`: (name, type flag, link target, data).
fn tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if !link.is_empty() {
            h.set_link_name(link).expect("link name");
        }
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

#[test]
fn run_sets_home_from_passwd() {
    let Some(image) = same(
        "run_sets_home_from_passwd",
        &[],
        r#"FROM busybox AS users
RUN mkdir -m 777 /out && echo "$HOME" > /out/root
USER nobody
RUN echo "$HOME" > /out/nobody
USER 1234
RUN echo "$HOME" > /out/uid-without-passwd-entry
USER root
ENV HOME=/custom
RUN echo "$HOME" > /out/from-env

FROM scratch
COPY --from=busybox /bin/busybox /busybox
RUN ["/busybox", "sh", "-c", "/busybox echo \"$HOME\" > /home; /busybox id > /id"]
COPY --from=users /out /out
"#,
    ) else {
        return;
    };
    for f in ["/out/root", "/out/nobody", "/home", "/id"] {
        assert!(is_file(&image, f), "{f} missing");
    }
}

#[test]
fn copy_double_star_matches_one_component() {
    let files: &[(&str, &[u8])] = &[
        ("top.txt", b"top\n"),
        ("a/one.txt", b"one\n"),
        ("a/b/two.txt", b"two\n"),
        ("a/b/c/three.txt", b"three\n"),
        ("x/sub/s.txt", b"s\n"),
        ("x/y/sub/deep.txt", b"deep\n"),
    ];
    let Some(image) = same(
        "copy_double_star_matches_one_component",
        files,
        "FROM scratch\nCOPY **/*.txt /one/\nCOPY **/sub/*.txt /two/\nCOPY a/**/*.txt /three/\n",
    ) else {
        return;
    };
    assert!(image.file("/one/one.txt").is_some());
    assert!(image.file("/one/two.txt").is_none(), "** is not recursive");
}

#[test]
fn copy_wildcard_onto_a_file_path_copies_each_match_there() {
    let Some(image) = same(
        "copy_wildcard_onto_a_file_path_copies_each_match_there",
        &[("d/a/f.txt", b"first\n"), ("d/b/f.txt", b"second\n")],
        "FROM scratch\nCOPY d/*/f.txt /dest/file.txt\n",
    ) else {
        return;
    };
    assert!(is_file(&image, "/dest/file.txt"));
}

#[test]
fn dockerignore_exception_reincludes_below_an_excluded_directory() {
    same(
        "dockerignore_exception_reincludes_below_an_excluded_directory",
        &[
            (
                ".dockerignore",
                b"dir\n!dir/keep/file\n*.log\n!important.log\n",
            ),
            ("dir/drop", b"drop\n"),
            ("dir/keep/file", b"keep\n"),
            ("dir/keep/other", b"other\n"),
            ("a.log", b"a\n"),
            ("important.log", b"i\n"),
        ],
        "FROM scratch\nCOPY . /ctx/\nCOPY dir /dir/\n",
    );
}

#[test]
fn copy_of_an_excluded_source_fails_as_not_found() {
    let Some(err) = both_fail(
        "copy_of_an_excluded_source_fails_as_not_found",
        &[
            (".dockerignore", b"secret\nall/\n"),
            ("secret", b"s\n"),
            ("all/x", b"x\n"),
        ],
        "FROM scratch\nCOPY secret /\n",
    ) else {
        return;
    };
    assert!(err.contains("not found"), "{err}");
    // A directory whose every path is excluded is not there either.
    let Some(err) = both_fail(
        "copy_of_an_excluded_directory_fails_as_not_found",
        &[(".dockerignore", b"all\n"), ("all/x", b"x\n")],
        "FROM scratch\nCOPY all /all\n",
    ) else {
        return;
    };
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn copy_directory_onto_a_symlink_fails() {
    let files: &[(&str, &[u8])] = &[
        ("one/entry/file", b"file\n"),
        ("two/entry/other", b"other\n"),
        ("target", b"t\n"),
    ];
    // `one` makes /tree/entry a symlink to a file, then a directory lands on it.
    let Some((pair, dir)) = context("copy_directory_onto_a_symlink_fails", files) else {
        return;
    };
    std::fs::remove_dir_all(dir.join("one/entry")).expect("rm");
    std::os::unix::fs::symlink("../target", dir.join("one/entry")).expect("symlink");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY target /target\nCOPY one/ /tree/\nCOPY two/ /tree/\n",
    )
    .expect("write");
    let err = pair
        .compare(&Spec::new(&dir))
        .expect_both_fail("copy_directory_onto_a_symlink_fails");
    assert!(err.contains("cannot copy to non-directory"), "{err}");
}

#[test]
fn copy_file_onto_a_directory_fails() {
    let Some(err) = both_fail(
        "copy_file_onto_a_directory_fails",
        &[("one/entry/file", b"f\n"), ("two/entry", b"not a dir\n")],
        "FROM scratch\nCOPY one/ /tree/\nCOPY two/ /tree/\n",
    ) else {
        return;
    };
    assert!(err.contains("cannot replace to directory"), "{err}");
}

#[test]
fn copy_directory_metadata_follows_the_source() {
    let Some((pair, dir)) = context(
        "copy_directory_metadata_follows_the_source",
        &[("src/etc/conf", b"c\n"), ("src/new/file", b"n\n")],
    ) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    for (d, mode) in [("src/etc", 0o750), ("src/new", 0o700)] {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nCOPY src/ /\nCOPY src /fresh\nCOPY src/new /var/\n",
    )
    .expect("write");
    set_test_dates(&dir);
    pair.compare(&Spec::new(&dir))
        .expect_same("copy_directory_metadata_follows_the_source");
}

#[test]
fn add_tar_through_a_parent_symlink_stays_in_the_destination() {
    use tar::EntryType as T;
    let archive = tar(&[
        ("up", T::Symlink, "..", b""),
        ("up/escaped/file", T::Regular, "", b"inside\n"),
        ("abs", T::Symlink, "/", b""),
        ("abs/rooted", T::Regular, "", b"rooted\n"),
    ]);
    same(
        "add_tar_through_a_parent_symlink_stays_in_the_destination",
        &[("a.tar", &archive)],
        "FROM busybox\nADD a.tar /dest/\n",
    );
}

#[test]
fn add_tar_pax_global_header_is_not_a_path() {
    let mut b = tar::Builder::new(Vec::new());
    let record = b"26 comment=kiln test data\n";
    let mut g = tar::Header::new_ustar();
    g.set_entry_type(tar::EntryType::XGlobalHeader);
    g.set_size(record.len() as u64);
    b.append_data(&mut g, "tmp/pax_global_header", &record[..])
        .expect("global header");
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "content.txt", &b"data\n"[..])
        .expect("file");
    let archive = b.into_inner().expect("finish");
    same(
        "add_tar_pax_global_header_is_not_a_path",
        &[("g.tar", &archive)],
        "FROM scratch\nADD g.tar /\n",
    );
}

#[test]
fn copy_parents_keeps_paths_after_the_pivot() {
    same(
        "copy_parents_keeps_paths_after_the_pivot",
        &[
            ("foo1/foo2/bar", b"bar\n"),
            ("foo1/foo2/baz", b"baz\n"),
            ("foo1/other", b"other\n"),
            ("x/y/./z/f", b"f\n"),
            ("p/a/b/c/d/e", b"e\n"),
        ],
        "FROM scratch\nCOPY --parents foo1/foo2/bar /\nWORKDIR /test\n\
         COPY --parents foo1/foo2/ba* .\nCOPY --parents p/a/b/./c/d /out/\n\
         COPY --parents foo1/*/bar /glob/\n",
    );
}

#[test]
fn copy_exclude_is_relative_to_each_source() {
    same(
        "copy_exclude_is_relative_to_each_source",
        &[
            ("dir/x.txt", b"1\n"),
            ("dir/keep", b"k\n"),
            ("dir/sub/x.txt", b"2\n"),
            ("dir/sub/y.md", b"3\n"),
        ],
        "FROM scratch\nCOPY --exclude=*.txt dir /e1/\nCOPY --exclude=sub/*.txt dir /e2/\n\
         COPY --exclude=dir/*.txt dir /e3/\nCOPY --exclude=x.txt dir/* /e4/\n\
         COPY --exclude=**/*.txt . /e5/\n",
    );
}

#[test]
fn copy_link_creates_parent_directories_like_buildkit() {
    same(
        "copy_link_creates_parent_directories_like_buildkit",
        &[("f", b"f\n"), ("d/g", b"g\n")],
        "FROM busybox\nCOPY --link f /usr/local/bin/\nCOPY --link f /new/deeper/\n\
         COPY --link d /var/d\nCOPY --link --chown=33:33 f /owned/x/f\n",
    );
}

#[test]
fn copy_symbolic_chmod_leaves_created_directories_0755() {
    same(
        "copy_symbolic_chmod_leaves_created_directories_0755",
        &[("f", b"f\n"), ("d/e/g", b"g\n")],
        "FROM scratch\nCOPY --chmod=u=rwx,go= f /sym/a/f\nCOPY --chmod=go-w d /symd/new/\n\
         COPY --chmod=a+X d /x/\nCOPY --chmod=750 f /octal/b/f\n",
    );
}

#[test]
fn copy_chown_follows_buildkit_rules() {
    same(
        "copy_chown_follows_buildkit_rules",
        &[("f", b"f\n")],
        "FROM busybox\nRUN echo 'u:x:1000:2000::/:/bin/sh' >> /etc/passwd && echo 'g:x:3000:' >> /etc/group\n\
         COPY --chown=u f /o/byname\nCOPY --chown=1000 f /o/byid\nCOPY --chown=nosuch f /o/unknown\n\
         COPY --chown=u:nosuchgroup f /o/unknowngroup\nCOPY --chown=u:g f /o/u-g\nCOPY --chown=5:g f /o/5-g\n",
    );
}

#[test]
fn run_mount_cache_from_a_stage_is_seeded_from_it() {
    same(
        "run_mount_cache_from_a_stage_is_seeded_from_it",
        &[],
        "FROM busybox AS seed\nRUN mkdir -p /seed/dir && echo seeded > /seed/dir/file\n\
         FROM busybox\nRUN --mount=type=cache,from=seed,source=/seed,target=/cache,id=kiln-conform-seed \
         cp -r /cache /copied && ls -la /cache > /listing.txt 2>&1; true\n",
    );
}

#[test]
fn run_heredoc_with_a_command_runs_as_the_shell_would() {
    same(
        "run_heredoc_with_a_command_runs_as_the_shell_would",
        &[],
        "FROM busybox\nRUN mkdir /h\n\
RUN <<EOT sh -e\necho \"zero=$0 args=$#\" > /h/command\necho second >> /h/command\nEOT\n\
RUN <<EOF\n#!/bin/sh\necho \"shebang $0\" > /h/shebang\nEOF\n\
RUN <<-EOF\n\techo tabs > /h/tabs\n\tEOF\n\
RUN <<'EOF'\necho \"$HOME quoted\" > /h/quoted\nEOF\n\
RUN cat <<A <<B > /h/two\na\nA\nb\nB\n\
RUN <<EOF cat > /h/stdin\nfrom stdin $HOME\nEOF\n\
RUN <<-EOF sh\n\techo \"dash $0\" > /h/dash-command\n\tEOF\n\
RUN <<EOF\necho \"plain $0\" > /h/plain\nEOF\n",
    );
}
