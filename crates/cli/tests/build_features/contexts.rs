//! Named contexts (`--build-context NAME=DIR|docker-image://|oci-layout://|URL`) compared with
//! BuildKit 0.24's `context:NAME`, and main contexts from stdin (a tar, compressed or not, or a
//! Dockerfile) and from a URL, which must build the same image as the directory they hold.

use std::io::Write;
use std::process::Stdio;

use crate::common::reference::{self, Spec};
use crate::common::{self};
use crate::{GitServer, built_id, make_repository, serve_bytes};

#[test]
fn named_contexts_match_the_reference() {
    let Some(pair) = reference::pair("named_contexts_match_the_reference") else {
        return;
    };
    let work = pair.scratch_dir("named");
    let served = work.join("served");
    std::fs::create_dir_all(&served).expect("served dir");
    let Some(server) = GitServer::start(&served, "named_contexts_match_the_reference") else {
        return;
    };
    make_repository(
        &work.join("tree"),
        &served.join("lib.git"),
        &[("lib/version", "3\n")],
    );
    let files = work.join("files");
    common::write_files(
        &files,
        &[
            ("conf/app.conf", "port=80\n"),
            ("ignored.log", "x"),
            (".dockerignore", "*.log\n"),
        ],
    );
    reference::set_test_dates(&files);
    // A stage named like a context is replaced by it; an image context stands for a base.
    let ctx = work.join("context");
    common::write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS conf\nRUN exit 1\nFROM tools\nCOPY --from=conf /conf/ /etc/app/\nCOPY --from=files / /files/\nCOPY --from=src /lib/version /lib-version\nRUN ls /files /etc/app > /listing\n",
        )],
    );
    let (layout, digest) = pair.save_layout("distro").expect("distro layout");
    let git = format!("{}#main", server.url("lib.git"));
    let spec = Spec::new(&ctx).flags(
        &[
            "--build-context",
            &format!("conf={}", files.display()),
            "--build-context",
            &format!("files={}", files.display()),
            "--build-context",
            &format!("tools=oci-layout://{}@{digest}", layout.display()),
            "--build-context",
            &format!("src={git}"),
        ],
        &[
            "--local",
            &format!("files={}", files.display()),
            "--opt",
            "context:files=local:files",
            "--opt",
            "context:conf=local:files",
            "--oci-layout",
            &format!("tools={}", layout.display()),
            "--opt",
            &format!("context:tools=oci-layout://tools@{digest}"),
            "--opt",
            &format!("context:src={git}"),
        ],
    );
    let image = pair.compare(&spec).expect_same("named contexts");
    assert!(image.file("/etc/app/app.conf").is_some());
    assert!(
        image.file("/files/ignored.log").is_none(),
        "the context's .dockerignore applies"
    );

    // docker-image:// names an image of the store (no registry needed).
    let k = &pair.kiln;
    let img = work.join("image-context");
    common::write_files(
        &img,
        &[("Dockerfile", "FROM alpine:3.19\nRUN cat /etc/os-release\n")],
    );
    let b = k.build(
        &img,
        &["--build-context", "alpine:3.19=docker-image://distro"],
    );
    b.assert_ok();
    assert!(
        b.stdout_of(&b.runs_executed()[0])
            .contains("Kiln test distro"),
        "{}",
        b.all_logs()
    );
    let b = k.build(&img, &["--build-context", "alpine:3.19=/no/such/dir"]);
    assert!(!b.ok());
    assert!(b.stderr().contains("/no/such/dir"), "{}", b.stderr());
}

#[test]
fn contexts_from_stdin_and_urls_build_the_same_image_as_their_directory() {
    let Some(k) = common::Kiln::new("contexts_from_stdin_and_urls") else {
        return;
    };
    let dir = k.mkdir("ctx");
    common::write_files(
        &dir,
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/sub/file\n",
            ),
            ("sub/file", "from the tarball\n"),
        ],
    );
    reference::set_test_dates(&dir);
    let id = built_id(&k.run(&["build", "-q", dir.to_str().unwrap()]));
    let tar_bytes = |gzip: bool| -> Vec<u8> {
        let out = std::process::Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg(if gzip { "-czf" } else { "-cf" })
            .arg("-")
            .arg(".")
            .output()
            .expect("tar");
        assert!(out.status.success());
        out.stdout
    };
    for gzip in [false, true] {
        let mut child = k
            .command()
            .args(["build", "-q", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln build -");
        let bytes = tar_bytes(gzip);
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&bytes)
            .expect("write the tar");
        let out = child.wait_with_output().expect("kiln build -");
        assert_eq!(built_id(&out), id, "a tar on stdin (gzip: {gzip})");
    }
    // The URL of a tarball, on a loopback server.
    let port = serve_bytes(tar_bytes(true));
    let out = k.run(&[
        "build",
        "-q",
        &format!("http://127.0.0.1:{port}/ctx.tar.gz"),
    ]);
    assert_eq!(built_id(&out), id, "a tarball at a URL");
    // The URL of a plain Dockerfile: no context.
    let port = serve_bytes(b"FROM busybox\nRUN echo from a url > /from\n".to_vec());
    let out = k.run(&[
        "build",
        "-q",
        &format!("http://127.0.0.1:{port}/Dockerfile"),
    ]);
    built_id(&out);
    // Something that is neither is refused.
    let out = k.run(&["build", "-q", "http://127.0.0.1:1/nothing.tar"]);
    assert!(!out.status.success());
}
