//! ADD end to end: local archives extracted (plain tar, gzip, bzip2, xz, zstd), `--unpack=false`
//! and COPY keeping them, `--chown` on extracted entries, entries that try to escape the
//! destination, and ADD from a URL served on loopback (name, Last-Modified, checksum).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::{Kiln, write_files};

/// One tar entry for [`tar_bytes`].
struct Entry<'a> {
    name: &'a str,
    kind: u8,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: b'0',
        data,
        link: "",
        mode: 0o644,
        uid: 1234,
        gid: 2345,
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}", width = field.len() - 1);
    field[..text.len()].copy_from_slice(text.as_bytes());
}

/// A minimal ustar archive writer, so the test controls every header (including hostile ones).
fn tar_bytes(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        octal(&mut h[100..108], e.mode as u64);
        octal(&mut h[108..116], e.uid as u64);
        octal(&mut h[116..124], e.gid as u64);
        octal(&mut h[124..136], e.data.len() as u64);
        octal(&mut h[136..148], 1_600_000_000);
        h[156] = e.kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Compresses `data` with an external tool (`gzip`, `bzip2`, `xz`, `zstd`); `None` if absent.
fn compress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let Some(k) = Kiln::new("add_archives") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    let mut dockerfile = String::from("FROM busybox\n");
    let mut checks = Vec::new();
    for (tool, ext) in [
        ("", "tar"),
        ("gzip", "tar.gz"),
        ("bzip2", "tar.bz2"),
        ("xz", "tar.xz"),
        ("zstd", "tar.zst"),
    ] {
        let inner = format!("dir-{}/file", ext.replace('.', "-"));
        let body = format!("from {ext}\n");
        let tar = tar_bytes(&[file(&inner, body.as_bytes())]);
        let bytes = if tool.is_empty() {
            tar
        } else {
            match compress(tool, &tar) {
                Some(b) => b,
                None => {
                    eprintln!("{tool} not installed: not testing .{ext}");
                    continue;
                }
            }
        };
        std::fs::write(ctx.join(format!("a.{ext}")), bytes).expect("write archive");
        dockerfile.push_str(&format!("ADD a.{ext} /out/\n"));
        checks.push(format!("cat /out/{inner}"));
    }
    dockerfile.push_str(
        "ADD --unpack=false a.tar.gz /kept/\nCOPY a.tar /copied/\n\
         ADD --chown=100:200 a.tar /owned\nADD a.tar /recorded/\n\
         ADD notes.txt /plain/\n",
    );
    write_files(
        &ctx,
        &[
            ("Dockerfile", &dockerfile),
            ("notes.txt", "not an archive\n"),
        ],
    );
    let b = k.build(&ctx, &["-t", "added"]);
    b.assert_ok();
    let script = format!(
        "{} && ls /kept && ls /copied && stat -c '%u:%g %n' /owned/dir-tar/file /owned/dir-tar \
         /recorded/dir-tar/file && cat /plain/notes.txt",
        checks.join(" && ")
    );
    let got = k.output_of("added", &script);
    let mut want = String::new();
    for c in &checks {
        let ext = c
            .trim_start_matches("cat /out/dir-")
            .trim_end_matches("/file")
            .replacen('-', ".", 2);
        want.push_str(&format!("from {ext}\n"));
    }
    want.push_str("a.tar.gz\na.tar\n");
    // `--chown` is for the entries; a directory the archive only implies is root's, as in
    // BuildKit (checked against it by conformance_buildkit's row 29).
    want.push_str("100:200 /owned/dir-tar/file\n0:0 /owned/dir-tar\n");
    // Without --chown the owners recorded in the archive are kept.
    want.push_str("1234:2345 /recorded/dir-tar/file\n");
    want.push_str("not an archive\n");
    assert_eq!(got, want);
}

#[test]
fn add_keeps_archive_entries_inside_the_destination() {
    let Some(k) = Kiln::new("add_escape") else {
        return;
    };
    let ctx = k.mkdir("ctx");
    let link = |name, target| Entry {
        name,
        kind: b'2',
        data: b"",
        link: target,
        mode: 0o777,
        uid: 0,
        gid: 0,
    };
    let dir = Entry {
        name: "etc/",
        kind: b'5',
        data: b"",
        link: "",
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let evil = tar_bytes(&[
        file("../../../escaped-dotdot", b"dotdot\n"),
        file("/abs-file", b"absolute\n"),
        dir,
        link("link", "/etc"),
        // Written through the absolute symlink: as BuildKit extracts inside a chroot of the
        // destination, `/etc` is the destination's `etc`, never the image's or the host's.
        file("link/through-link", b"through\n"),
    ]);
    std::fs::write(ctx.join("evil.tar"), evil).expect("write");
    // Through a link whose target the destination lacks, the entry has nowhere to go: the
    // build fails (BuildKit: "open /missing/x: no such file or directory").
    let dangling = tar_bytes(&[link("missing", "/nowhere"), file("missing/x", b"x\n")]);
    std::fs::write(ctx.join("dangling.tar"), dangling).expect("write");
    write_files(
        &ctx,
        &[
            ("Dockerfile", "FROM busybox\nADD evil.tar /dest/\n"),
            (
                "Dockerfile.dangling",
                "FROM busybox\nADD dangling.tar /dest/\n",
            ),
        ],
    );
    let b = k.build(&ctx, &["-t", "evil"]);
    b.assert_ok();
    let got = k.output_of(
        "evil",
        "cat /dest/escaped-dotdot /dest/abs-file /dest/etc/through-link && readlink /dest/link \
         && ! test -e /etc/through-link && echo ok",
    );
    assert_eq!(got, "dotdot\nabsolute\nthrough\n/etc\nok\n");
    assert!(
        !Path::new("/etc/through-link").exists(),
        "wrote on the host"
    );
    assert!(!Path::new("/escaped-dotdot").exists(), "wrote on the host");
    let failed = k.build(
        &ctx,
        &["-f", ctx.join("Dockerfile.dangling").to_str().unwrap()],
    );
    assert!(!failed.ok(), "extracting through a dangling link must fail");
    assert!(!Path::new("/nowhere").exists(), "wrote on the host");
}

/// Serves `body` at any path on 127.0.0.1 for `requests` connections, with Last-Modified.
fn serve(body: &'static [u8], requests: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 01 Jan 2020 00:00:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn add_from_a_url_names_the_file_keeps_last_modified_and_checks_the_digest() {
    let Some(k) = Kiln::new("add_url") else {
        return;
    };
    let body: &'static [u8] = b"downloaded body\n";
    let port = serve(body, 8);
    let digest = {
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(body)?;
                c.wait_with_output()
            })
            .expect("sha256sum");
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .expect("digest")
        )
    };
    let dockerfile = format!(
        "FROM busybox\nADD http://127.0.0.1:{port}/files/payload.txt /dl/\n\
         ADD --checksum={digest} http://127.0.0.1:{port}/other/checked.txt /checked\n"
    );
    let b = k.build_stdin(&dockerfile, &["-t", "url"]);
    b.assert_ok();
    let got = k.output_of(
        "url",
        "cat /dl/payload.txt /checked && stat -c '%Y %a' /dl/payload.txt",
    );
    assert_eq!(got, "downloaded body\ndownloaded body\n1577836800 600\n");

    let bad = format!(
        "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/x.txt /x\n",
        "0".repeat(64)
    );
    let b = k.build_stdin(&bad, &["-t", "badsum"]);
    assert!(!b.ok());
    assert!(b.stderr().contains("digest mismatch"), "{}", b.stderr());
    assert!(!k.image_exists("badsum"));

    // A URL archive is not extracted unless --unpack=true.
    let tar: &'static [u8] =
        Box::leak(tar_bytes(&[file("inner.txt", b"inside\n")]).into_boxed_slice());
    let port = serve(tar, 4);
    let dockerfile = format!(
        "FROM busybox\nADD http://127.0.0.1:{port}/t.tar /kept/\n\
         ADD --unpack=true http://127.0.0.1:{port}/t.tar /unpacked/\n"
    );
    let b = k.build_stdin(&dockerfile, &["-t", "urltar"]);
    b.assert_ok();
    assert_eq!(
        k.output_of("urltar", "ls /kept && cat /unpacked/inner.txt"),
        "t.tar\ninside\n"
    );
}
