//! Dockerfile behaviours from the research checklist (our own Dockerfiles, written from the
//! paraphrased cases in `research/buildkit-integration-cases.md` sections A–H): COPY wildcards,
//! trailing slashes, WORKDIR-relative paths, symlinked sources, `--chown` by name, `--chmod`,
//! COPY from an image, USER resolution as `id` prints it, WORKDIR created as the user, heredoc
//! RUN/COPY, ONBUILD from a stage, ARG/ENV as RUN sees them, case-insensitive stage names,
//! `.dockerignore` patterns and the per-Dockerfile ignore file, and located errors.

mod common;

use common::{Kiln, write_files};

const CASES: &str = r#"ARG a1="foo bar" a2=box
ARG a3="$a2-foo"

FROM busybox AS Users
RUN mkdir -m 777 /r
USER daemon
RUN id > /r/daemon
WORKDIR /mydir
RUN stat -c '%U %G' /mydir > /r/workdir-owner
USER 1234
RUN id > /r/u1234
USER 1234:1234
RUN id > /r/u1234-1234
USER daemon:nogroup
RUN id > /r/daemon-nogroup
USER root
RUN id > /r/root

FROM busybox AS heredocs
ARG name=world
COPY <<EOF /h/single
single file
EOF
COPY <<EOF <<EOF2 /h/double/
first file
EOF
second file
EOF2
COPY <<EOF /h/expanded
Hello ${name}!
EOF
COPY <<'EOF' /h/quoted
Hello ${name}!
EOF
COPY <<-EOF /h/tabs
	bar
EOF
RUN <<EOF
echo "i am" >> /h/run
whoami >> /h/run
EOF

FROM busybox AS onbase
RUN mkdir /out
ONBUILD RUN echo -n 11 >> /out/foo

FROM onbase AS onmid
RUN cp /out/foo /out/bar

FROM busy$a2 AS final
ARG a3 a4="123 456" a1
RUN mkdir /r && echo "$a1:$a3:$a4" > /r/01-args
ARG NOVAL
ARG EMPTY=
RUN env > /tmp/env && if grep -q '^EMPTY=$' /tmp/env && ! grep -q '^NOVAL=' /tmp/env; then echo ok; else echo bad; fi > /r/02-argenv
ARG my_arg
ENV my_env="my_arg=${my_arg:-def_val}"
ENV cut="${my_env%%e*}"
RUN echo "$my_env $cut" > /r/03-env
COPY testfile /sample/
RUN cat /sample/testfile > /r/04-slash
WORKDIR /test1
WORKDIR test2
COPY foo ./
ADD foo ./bar/baz
RUN pwd > /r/05-workdir && cat /test1/test2/foo /test1/test2/bar/baz >> /r/05-workdir
WORKDIR /
COPY *.go /gofiles/
COPY sub/* /subdest/
COPY sub/dir1/ /x/
RUN ls /gofiles /subdest > /r/06-wild && cat /x/dir2/foo >> /r/06-wild
COPY link-to-bar /linkcopy
RUN test ! -L /linkcopy && cat /linkcopy > /r/07-symlink
COPY --chown=daemon foo /own1
COPY --chown=1000:nogroup foo /own2
ARG owner=operator
COPY --chown=${owner}:${owner} foo /own3
RUN stat -c '%U %G' /own1 > /r/08-chown && stat -c '%u %G' /own2 >> /r/08-chown && stat -c '%U %G' /own3 >> /r/08-chown
COPY --chmod=0640 foo /m1
COPY --chmod=755 foo /m2
RUN stat -c '%a' /m1 /m2 > /r/09-chmod
COPY --from=busybox /etc/passwd /frompasswd
RUN head -1 /frompasswd > /r/10-from-image
COPY --from=USERS /r/ /users/
COPY --from=heredocs /h/ /h/
COPY --from=onmid /out/bar /onbuild
ENTRYPOINT ["/nosuchcmd"]
RUN ["ls", "/onbuild"]
"#;

#[test]
fn checklist_behaviours_in_one_build() {
    let Some(k) = Kiln::new("checklist") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            ("Dockerfile", CASES),
            ("testfile", "testfile\n"),
            ("foo", "foo-content\n"),
            ("bar", "bar-content\n"),
            ("a.go", "a\n"),
            ("b.go", "b\n"),
            ("sub/dir1/dir2/foo", "subfoo\n"),
            ("sub/file", "subfile\n"),
        ],
    );
    std::os::unix::fs::symlink("bar", ctx.join("link-to-bar")).expect("symlink");
    let b = k.build(&ctx, &["-t", "cases", "--build-arg", "my_arg=override"]);
    b.assert_ok();
    let got = k.output_of(
        "cases",
        "cd /r && for f in *; do echo \"== $f\"; cat $f; done; \
         cd /users && for f in *; do echo \"== $f\"; cat $f; done; \
         cd /h && for f in single double/EOF double/EOF2 expanded quoted tabs run; do echo \"== $f\"; cat $f; done; \
         echo \"== onbuild\"; cat /onbuild; echo",
    );
    let want = "\
== 01-args
foo bar:box-foo:123 456
== 02-argenv
ok
== 03-env
my_arg=override my_arg=ov
== 04-slash
testfile
== 05-workdir
/test1/test2
foo-content
foo-content
== 06-wild
/gofiles:
a.go
b.go

/subdest:
dir2
file
subfoo
== 07-symlink
bar-content
== 08-chown
daemon daemon
1000 nogroup
operator operator
== 09-chmod
640
755
== 10-from-image
root:x:0:0:root:/root:/bin/sh
== daemon
uid=1(daemon) gid=1(daemon) groups=1(daemon)
== daemon-nogroup
uid=1(daemon) gid=65534(nogroup) groups=65534(nogroup)
== root
uid=0(root) gid=0(root) groups=0(root),10(wheel)
== u1234
uid=1234 gid=0(root) groups=0(root)
== u1234-1234
uid=1234 gid=1234 groups=1234
== workdir-owner
daemon daemon
== single
single file
== double/EOF
first file
== double/EOF2
second file
== expanded
Hello world!
== quoted
Hello ${name}!
== tabs
bar
== run
i am
root
== onbuild
11
";
    assert_eq!(got, want);
}

#[test]
fn stage_and_dockerfile_errors_are_located() {
    let Some(k) = Kiln::new("located_errors") else {
        return;
    };
    for (dockerfile, needles) in [
        (
            "ARG foo=bar\n",
            &["dockerfile contains no stages to build"][..],
        ),
        (
            "FROM busybox\nCOPY --chmod=64a foo /\n",
            &["invalid chmod parameter", "Dockerfile:2"][..],
        ),
        (
            "FROM busybox\nRUN --mont=type=tmpfs,target=/x true\n",
            &["unknown flag: --mont", "Dockerfile:2"][..],
        ),
        (
            "FROM busybox\nRUN invalidcmd\n",
            &[
                "/bin/sh -c invalidcmd",
                "did not complete successfully",
                "Dockerfile:2",
            ][..],
        ),
        (
            "FROM busybox\nRUN echo start && \\\n  false\n",
            &["Dockerfile:2", "false"][..],
        ),
    ] {
        let b = k.build_stdin(dockerfile, &["-t", "err"]);
        assert!(!b.ok(), "{dockerfile:?} should fail");
        let err = b.stderr();
        for needle in needles {
            assert!(
                err.contains(needle),
                "{dockerfile:?}: no {needle:?} in\n{err}"
            );
        }
        assert!(!k.image_exists("err"));
    }
}

#[test]
fn dockerignore_patterns_and_the_per_dockerfile_ignore_file() {
    let Some(k) = Kiln::new("dockerignore_cases") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /c/\nRUN ls -A /c > /listing\n",
            ),
            (
                "Dockerfile2",
                "FROM busybox\nCOPY . /c/\nRUN ls -A /c > /listing\n",
            ),
            (".dockerignore", "ba*\nDockerfile*\n!bay\n.dockerignore\n"),
            ("Dockerfile2.dockerignore", "foo\n"),
            ("foo", "foo\n"),
            ("bar", "bar\n"),
            ("baz", "baz\n"),
            ("bay", "bay\n"),
        ],
    );
    let b = k.build(&ctx, &["-t", "ign1"]);
    b.assert_ok();
    assert_eq!(k.output_of("ign1", "cat /listing"), "bay\nfoo\n");
    let file2 = ctx.join("Dockerfile2");
    let b = k.build(&ctx, &["-t", "ign2", "-f", file2.to_str().expect("utf-8")]);
    b.assert_ok();
    assert_eq!(
        k.output_of("ign2", "cat /listing"),
        ".dockerignore\nDockerfile\nDockerfile2\nDockerfile2.dockerignore\nbar\nbay\nbaz\n"
    );
}

#[test]
fn copy_link_stacks_layers_over_the_base() {
    let Some(k) = Kiln::new("copy_link") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox AS a\nRUN mkdir /out && echo from-stage > /out/x\n\
                 FROM busybox\nWORKDIR /var/www\nCOPY --link testfile .\n\
                 COPY --link --from=a /out/x ./y\nCOPY --link --chmod=0600 testfile /etc/\n\
                 RUN cat /var/www/testfile /var/www/y && stat -c %a /etc/testfile && head -1 /etc/passwd\n",
            ),
            ("testfile", "linked\n"),
        ],
    );
    let b = k.build(&ctx, &["-t", "linked"]);
    b.assert_ok();
    let run = b.runs_executed();
    let last = run
        .iter()
        .find(|s| s.contains("cat /var/www"))
        .expect("the RUN");
    assert_eq!(
        b.stdout_of(last),
        "linked\nfrom-stage\n600\nroot:x:0:0:root:/root:/bin/sh\n"
    );
    let again = k.build(&ctx, &["-t", "linked"]);
    again.assert_ok();
    assert!(again.executed().is_empty(), "{:?}", again.executed());
}
