//! Seed inputs made by code: tars of every entry kind and of the classic escape tricks, image
//! archives with real digests (so mutations start deep inside the verifier), manifests,
//! configs, registry answers and a cache document. `tests/replay.rs` writes them to
//! `fuzz/corpus/<target>/` when run with `KILN_FUZZ_WRITE_SEEDS=1`; the files are committed.

use std::io::Write;

use kiln_oci::export::{DockerArchiveOptions, DockerLayers, NamedImage};
use kiln_oci::{Descriptor, Digest, MemoryBlobs, media_type};

/// Every seed: (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };
    for (name, bytes) in layers() {
        add("layer_apply", &name, bytes);
    }
    for (name, bytes) in archives() {
        add("image_archive", &name, bytes.clone());
        add("image_dir", &name, bytes);
    }
    add("image_dir", "link-to-outside", link_to_outside_layout());
    for (name, text) in manifests() {
        add("oci_manifest", &name, text.into_bytes());
    }
    for (name, text) in configs() {
        add("oci_config", &name, text.into_bytes());
    }
    for (name, text) in registry_answers() {
        add("registry_response", name, text.as_bytes().to_vec());
    }
    add("cache_document", "document", cache_document().into_bytes());
    add(
        "cache_document",
        "inline",
        format!(
            r#"{{"version":1,"records":[{{"keys":["{k}"],"outputKey":"{k}","chain":[0,1,2]}}]}}"#,
            k = "0f".repeat(32)
        )
        .into_bytes(),
    );
    for (name, text) in dockerfiles() {
        add("dockerfile", name, text.as_bytes().to_vec());
    }
    add(
        "dockerignore",
        "patterns",
        b"# comment\n*.log\n!keep.log\nbuild/\n**/node_modules\n[a-c]?.txt\n\\!literal\n\0a.log\nkeep.log\nbuild/x/y\nsrc/node_modules/m\nb1.txt\n"
            .to_vec(),
    );
    for (name, text) in compose_files() {
        add("compose", name, text.as_bytes().to_vec());
    }
    out
}

/// A tar of entries made with `f`.
fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().expect("an in-memory tar")
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
    b.append_data(&mut h, path, data).expect("append a file");
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, path, &[][..]).expect("append a dir");
}

fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
    let mut h = header(kind, 0, 0o777);
    b.append_link(&mut h, path, target).expect("append a link");
}

/// Writes a raw ustar header with `name` as given (the builder refuses `..` and absolute
/// names, which is the point of these seeds).
fn raw(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, data: &[u8]) {
    let mut h = header(kind, data.len() as u64, 0o644);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, data).expect("append a raw entry");
}

fn layers() -> Vec<(String, Vec<u8>)> {
    use tar::EntryType as E;
    let mut out = vec![
        (
            "basic".to_owned(),
            tar_of(|b| {
                dir(b, "a");
                file(b, "a/f", b"hello\n");
                link(b, E::Symlink, "a/l", "f");
                link(b, E::Link, "a/h", "a/f");
                let mut h = header(E::Fifo, 0, 0o600);
                b.append_data(&mut h, "a/fifo", &[][..]).unwrap();
                file(b, "a/.hidden", b"");
            }),
        ),
        (
            "whiteouts".to_owned(),
            tar_of(|b| {
                dir(b, "d");
                file(b, "d/.wh..wh..opq", b"");
                file(b, ".wh.gone", b"");
                file(b, "d/.wh.also-gone", b"");
                file(b, "d/kept", b"kept");
            }),
        ),
        (
            "through-existing-symlinks".to_owned(),
            tar_of(|b| {
                file(b, "escape/pwned", b"x");
                file(b, "abs/pwned", b"x");
                file(b, "etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
                link(b, E::Link, "h", "escape/secret");
                link(b, E::Link, "h2", "etc/passwd");
            }),
        ),
        (
            "dotdot-and-absolute".to_owned(),
            tar_of(|b| {
                raw(b, E::Regular, "../outside/pwned", b"x");
                raw(b, E::Regular, "/tmp/kiln-fuzz-absolute", b"x");
                raw(b, E::Regular, "a/../../outside/pwned", b"x");
                raw(b, E::Link, "h", b"");
            }),
        ),
        (
            "symlink-then-write-through".to_owned(),
            tar_of(|b| {
                link(b, E::Symlink, "d", "../outside");
                file(b, "d/pwned", b"x");
                link(b, E::Symlink, "e", "/");
                file(b, "e/tmp/kiln-fuzz-pwned", b"x");
                dir(b, "f");
                link(b, E::Symlink, "f", "../outside");
                file(b, "f/x", b"x");
            }),
        ),
        (
            "devices".to_owned(),
            tar_of(|b| {
                for (name, kind, major, minor) in [
                    ("mem", E::Char, 1, 1),
                    ("sda", E::Block, 8, 0),
                    ("null", E::Char, 1, 3),
                ] {
                    let mut h = header(kind, 0, 0o666);
                    h.set_device_major(major).unwrap();
                    h.set_device_minor(minor).unwrap();
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
            }),
        ),
        (
            "pax-long-names-xattrs".to_owned(),
            tar_of(|b| {
                let long = format!("{}/file", "d".repeat(150));
                let mut h = header(E::Regular, 3, 0o4755);
                b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
                b.append_pax_extensions([
                    ("SCHILY.xattr.user.kiln", &b"fuzz"[..]),
                    ("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02"[..]),
                    ("mtime", &b"1700000000.5"[..]),
                ])
                .unwrap();
                file(b, "x", b"with pax");
                let mut h = header(E::Symlink, 0, 0o777);
                b.append_link(&mut h, "longlink", "t".repeat(200)).unwrap();
            }),
        ),
    ];
    out.push(("sparse".to_owned(), sparse(8192, b"tail")));
    out.push(("sparse-huge-hole".to_owned(), sparse(1 << 31, b"x")));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&out[0].1).unwrap();
    out.push(("basic.tar.gz".to_owned(), gz.finish().unwrap()));
    out
}

/// A GNU sparse file: a hole of `hole` bytes, then `data`.
fn sparse(hole: u64, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    {
        let gnu = h.as_gnu_mut().expect("a GNU header");
        gnu.sparse[0].set_offset(hole);
        gnu.sparse[0].set_length(data.len() as u64);
        gnu.set_real_size(hole + data.len() as u64);
    }
    h.set_path("sparse").unwrap();
    h.set_cksum();
    let mut block = data.to_vec();
    block.resize(512, 0);
    tar_of(|b| b.append(&h, &block[..]).unwrap())
}

/// A small image in memory: one gzip layer (a real tar), its config and manifest.
fn image(blobs: &MemoryBlobs) -> Descriptor {
    let tar = tar_of(|b| {
        dir(b, "etc");
        file(b, "etc/hostname", b"fuzz\n");
        link(b, tar::EntryType::Symlink, "link", "etc/hostname");
    });
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_len = layer.len();
    let layer_digest = blobs.insert(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"history":[{{"created_by":"fuzz"}}]}}"#
    );
    let config_digest = blobs.insert(config.clone().into_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":{layer_len}}}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        config.len(),
        media_type::OCI_LAYER_GZIP
    );
    let size = manifest.len() as u64;
    let digest = blobs.insert(manifest.into_bytes());
    Descriptor::new(media_type::OCI_MANIFEST, digest, size)
}

fn archives() -> Vec<(String, Vec<u8>)> {
    let blobs = MemoryBlobs::new();
    let images = [NamedImage {
        name: Some("docker.io/library/fuzz:1".into()),
        descriptor: image(&blobs),
    }];
    let oci = kiln_oci::write_oci_archive(Vec::new(), &blobs, &images).expect("an oci archive");
    let docker = kiln_oci::write_docker_archive(
        Vec::new(),
        &blobs,
        &images,
        &DockerArchiveOptions {
            layers: DockerLayers::Uncompressed,
            temp_dir: None,
        },
    )
    .expect("a docker archive");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&oci).unwrap();
    vec![
        ("oci.tar".to_owned(), oci),
        ("docker.tar".to_owned(), docker),
        ("oci.tar.gz".to_owned(), gz.finish().unwrap()),
    ]
}

/// An OCI layout whose only layer blob is a symlink to `../../../outside/secret`, with a
/// config and manifest that would accept the secret's bytes as that layer.
fn link_to_outside_layout() -> Vec<u8> {
    let secret = b"kiln-fuzz-outside-secret-0123456";
    let d = Digest::of(secret);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#
    );
    let cd = Digest::of(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{d}","size":{}}}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        config.len(),
        media_type::OCI_LAYER,
        secret.len()
    );
    let md = Digest::of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{md}","size":{}}}]}}"#,
        media_type::OCI_MANIFEST,
        manifest.len()
    );
    tar_of(|b| {
        file(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        file(b, "index.json", index.as_bytes());
        file(b, &format!("blobs/sha256/{}", cd.hex()), config.as_bytes());
        file(
            b,
            &format!("blobs/sha256/{}", md.hex()),
            manifest.as_bytes(),
        );
        link(
            b,
            tar::EntryType::Symlink,
            &format!("blobs/sha256/{}", d.hex()),
            "../../../outside/secret",
        );
    })
}

fn manifests() -> Vec<(String, String)> {
    let d = Digest::of(b"x");
    let desc =
        |mt: &str, size: u64| format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{size}}}"#);
    vec![
        (
            "oci-manifest".into(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{},{}],"annotations":{{"a":"b"}}}}"#,
                media_type::OCI_MANIFEST,
                desc(media_type::OCI_CONFIG, 100),
                desc(media_type::OCI_LAYER_GZIP, 1000),
                desc(media_type::OCI_LAYER_ZSTD, 18446744073709551615)
            ),
        ),
        (
            "docker-manifest".into(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
                media_type::DOCKER_MANIFEST,
                desc(media_type::DOCKER_CONFIG, 10),
                desc(media_type::DOCKER_LAYER_GZIP, 10)
            ),
        ),
        (
            "oci-index".into(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":5,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},{{"mediaType":"{}","digest":"{d}","size":5,"platform":{{"architecture":"amd64","os":"linux"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#,
                media_type::OCI_INDEX,
                media_type::OCI_MANIFEST,
                media_type::OCI_MANIFEST
            ),
        ),
        (
            "docker-list".into(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":5,"platform":{{"architecture":"amd64","os":"linux","os.features":["x"]}}}}]}}"#,
                media_type::DOCKER_MANIFEST_LIST,
                media_type::DOCKER_MANIFEST
            ),
        ),
        (
            "schema1".into(),
            r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.into(),
        ),
        (
            "artifact-with-subject".into(),
            format!(
                r#"{{"schemaVersion":2,"artifactType":"application/x","config":{},"layers":[],"subject":{}}}"#,
                desc("application/vnd.oci.empty.v1+json", 2),
                desc(media_type::OCI_MANIFEST, 7)
            ),
        ),
    ]
}

fn configs() -> Vec<(String, String)> {
    vec![
        (
            "full".into(),
            r#"{"architecture":"amd64","os":"linux","variant":"v8","os.version":"10","os.features":["a"],"author":"me","created":"2024-01-02T03:04:05.123456789Z","config":{"User":"1000:1000","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin","A=b=c"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Volumes":{"/data":{}},"WorkingDir":"/w","Labels":{"k":"v"},"StopSignal":"SIGTERM","Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Retries":3},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"]},"rootfs":{"type":"layers","diff_ids":["sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"ADD x /","comment":"c"},{"created_by":"ENV a=b","empty_layer":true}]}"#.into(),
        ),
        (
            "docker-legacy".into(),
            r#"{"architecture":"arm64","os":"linux","config":null,"container_config":{"Cmd":null},"docker_version":"20.10","rootfs":{"type":"layers","diff_ids":[]},"history":null}"#.into(),
        ),
        ("minimal".into(), r#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#.into()),
    ]
}

fn registry_answers() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "token",
            r#"{"token":"eyJhbGciOiJub25lIn0.e30.","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}"#,
        ),
        ("access-token", r#"{"access_token":"abc","token":""}"#),
        ("token-with-newline", "{\"token\":\"a\\r\\nX-Injected: 1\"}"),
        (
            "errors",
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},{"code":"DENIED"}]}"#,
        ),
        ("html", "<html><body>502 Bad Gateway</body></html>\n"),
        (
            "bearer",
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        ),
        ("basic", r#"Basic realm="x""#),
        (
            "escaped",
            r#"Bearer realm="https://a/\"quoted\"",service=unquoted,error="insufficient_scope""#,
        ),
        ("content-range", "bytes 1048576-3145727/3145728"),
        (
            "location",
            "/v2/a/b/blobs/uploads/0f3e?_state=abc&digest=sha256:00",
        ),
        ("location-absolute", "https://other.example:443/upload?x=1"),
    ]
}

fn cache_document() -> String {
    let d = Digest::of(b"layer");
    format!(
        r#"{{"version":1,"layers":[{{"mediaType":"{}","digest":"{d}","size":5,"diffID":"{d}"}}],"records":[{{"keys":["{k}","{k2}"],"outputKey":"{k}","chain":[0]}},{{"keys":["{k2}"],"outputKey":"{k2}","chain":[]}}],"created":{{"{k}":"2024-01-01T00:00:00Z"}}}}"#,
        media_type::OCI_LAYER_GZIP,
        k = "ab".repeat(32),
        k2 = "cd".repeat(32)
    )
}

fn dockerfiles() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "multistage",
            "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE} AS build\nWORKDIR /src\nCOPY --chown=1:1 --chmod=755 . .\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s \\\n    echo hi > /out\nFROM scratch\nCOPY --from=build /out /\nENTRYPOINT [\"/out\"]\n",
        ),
        (
            "heredoc",
            "FROM busybox\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-X /f\n\tcontent\nX\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN x\nSHELL [\"/bin/sh\",\"-c\"]\n",
        ),
        (
            "escape-directive",
            "# escape=`\nFROM busybox\nRUN echo a `\n  b\nENV A=\"${B:-c}\" D=${E:+f}\nLABEL \"k\"=\"v\"\n",
        ),
    ]
}

fn compose_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "services",
            "name: fuzz\nservices:\n  web:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo ${SET:-x}\"]\n    ports: [\"8080:80\", \"127.0.0.1:9000:9000/udp\"]\n    depends_on:\n      db: {condition: service_healthy}\n    environment:\n      A: b\n    volumes: [\"data:/data\", \"./src:/src:ro\"]\n  db:\n    image: busybox\n    healthcheck: {test: [\"CMD\", \"true\"], interval: 1s}\nvolumes:\n  data: {}\n",
        ),
        (
            "anchors",
            "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    environment: !reset {}\n  b:\n    <<: [*base]\n    extends: {service: a}\n",
        ),
    ]
}
