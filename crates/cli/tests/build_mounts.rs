//! `RUN --mount` end to end: cache mounts persist across builds with their uid/gid/mode and
//! leave nothing in the image, tmpfs with a size, bind mounts from a stage and from the
//! context (read-only unless `rw`, whose writes vanish), secrets from `--secret` as files and
//! environment variables, a missing required secret.

mod common;

use common::{Kiln, write_files};

const DOCKERFILE: &str = "\
FROM busybox AS src
RUN mkdir /data && echo from-stage > /data/f

FROM busybox
ARG ROUND
RUN --mount=type=cache,target=/cache,uid=1001,gid=1002,mode=0751 \
    stat -c '%u %g %a' /cache > /cache-stat && echo $ROUND >> /cache/log && wc -l < /cache/log > /cache-count
RUN --mount=type=tmpfs,target=/scratch,size=1m touch /scratch/x && grep ' /scratch ' /proc/mounts > /tmpfs-line
RUN test ! -e /scratch/x
RUN --mount=type=bind,from=src,source=/data,target=/bound \
    cat /bound/f > /bind-out && (touch /bound/w 2>/dev/null && echo writable || echo readonly) >> /bind-out
RUN --mount=type=bind,from=src,source=/data,target=/bound,rw touch /bound/w && ls /bound > /rw-out
RUN --mount=type=bind,from=src,source=/data,target=/bound test ! -e /bound/w && echo discarded > /rw-after
RUN --mount=type=bind,target=/ctx cat /ctx/ctxfile > /ctx-out
RUN --mount=type=bind,target=/ctx,rw test ! -e /ctx/hidden.txt && rm /ctx/ctxfile && echo ignored-ok > /ignored-out
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-len
RUN --mount=type=secret,id=tok,env=TOK test \"$TOK\" = s3cret && echo env-ok > /secret-env
";

#[test]
fn run_mounts_cache_tmpfs_bind_and_secrets() {
    let Some(k) = Kiln::new("run_mounts") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    write_files(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("ctxfile", "from the context\n"),
            (".dockerignore", "hidden.txt\n"),
            ("hidden.txt", "ignored\n"),
        ],
    );
    let secret = k.dir.path().join("tok");
    std::fs::write(&secret, "s3cret").expect("write secret");
    let secret_flag = format!("id=tok,src={}", secret.display());
    let b = k.build(
        &ctx,
        &[
            "-t",
            "mounts",
            "--build-arg",
            "ROUND=1",
            "--secret",
            &secret_flag,
        ],
    );
    b.assert_ok();
    let got = k.output_of(
        "mounts",
        "cat /cache-stat /cache-count /bind-out /rw-out /rw-after /ctx-out /ignored-out /secret-len /secret-env \
         && cut -d' ' -f4 /tmpfs-line | tr , '\\n' | grep size",
    );
    assert_eq!(
        got,
        "1001 1002 751\n1\nfrom-stage\nreadonly\nf\nw\ndiscarded\nfrom the context\nignored-ok\n6\nenv-ok\nsize=1024k\n"
    );

    // A second round sees what the first left in the cache.
    let b = k.build(
        &ctx,
        &[
            "-t",
            "mounts2",
            "--build-arg",
            "ROUND=2",
            "--secret",
            &secret_flag,
        ],
    );
    b.assert_ok();
    assert_eq!(k.output_of("mounts2", "cat /cache-count"), "2\n");
    // The cache contents stay out of the image: only the (empty) mount point may remain.
    assert_eq!(
        k.output_of("mounts2", "ls -A /cache 2>/dev/null | wc -l"),
        "0\n"
    );
}

#[test]
fn a_missing_required_secret_fails_the_step() {
    let Some(k) = Kiln::new("missing_secret") else {
        return;
    };
    let b = k.build_stdin(
        "FROM busybox\nRUN --mount=type=secret,id=absent,required cat /run/secrets/absent\n",
        &["-t", "nosecret"],
    );
    assert!(!b.ok());
    assert!(
        b.stderr().contains("secret absent") && b.stderr().contains("not found"),
        "{}",
        b.stderr()
    );
    assert!(!k.image_exists("nosecret"));
}
