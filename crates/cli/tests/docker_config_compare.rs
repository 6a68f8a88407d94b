//! `kiln build --print=config` against the config `docker build` (BuildKit) writes for the same
//! Dockerfile and the same base image, field for field. Runs when Debian's docker.io (dockerd
//! and the 20.10 client with embedded BuildKit) is installed and we are root; otherwise it says
//! it was skipped. Its dockerd is the private one of `tests/common/dockerd.rs` (namespaces of
//! its own; the test fails if it changed the host).

use std::process::Command;

mod common;
use common::dockerd::Dockerd;

const BASE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every instruction that changes the config, with expansion, both ENV forms, exec and shell
/// forms, and inherited values from the base.
const DOCKERFILE: &str = r#"FROM busybox
ARG VERSION=1.2
ARG PORTS="8080 9090/udp"
ENV APP_HOME=/srv/app VERSION=$VERSION
ENV LEGACY value with spaces
LABEL org.example.version="$VERSION" other=plain
EXPOSE $PORTS 7000
VOLUME ["/data", "/logs"]
VOLUME /cache
WORKDIR $APP_HOME
WORKDIR sub
USER nobody:nogroup
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=4 CMD wget -q -O- http://localhost/ || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/echo", "entry"]
CMD ["default", "args"]
"#;

/// The config fields Docker and kiln must agree on.
const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

fn skip(why: &str) {
    eprintln!("skipped: docker config comparison: {why}");
}

/// The Docker client for `d`, with BuildKit (the 20.10 client embeds it).
fn docker(d: &Dockerd) -> Command {
    let mut c = d.command();
    c.env("DOCKER_BUILDKIT", "1");
    c
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Docker writes empty maps and lists as null or leaves them out; compare those as absent.
fn normalized(v: Option<&serde_json::Value>) -> serde_json::Value {
    match v {
        None | Some(serde_json::Value::Null) => serde_json::Value::Null,
        Some(serde_json::Value::Object(m)) if m.is_empty() => serde_json::Value::Null,
        Some(serde_json::Value::Array(a)) if a.is_empty() => serde_json::Value::Null,
        Some(serde_json::Value::String(s)) if s.is_empty() => serde_json::Value::Null,
        Some(other) => other.clone(),
    }
}

#[test]
fn print_config_matches_docker_buildkit() {
    if kiln_testutil::busybox_binary().is_err() {
        return skip("busybox-static is not installed");
    }
    let Some(dockerd) = Dockerd::start("docker config comparison") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("busybox.tar");
    kiln_testutil::write_busybox_rootfs_tar(&rootfs).unwrap();
    let changes = ["CMD [\"sh\"]".to_string(), format!("ENV {BASE_PATH}")];

    let mut import = docker(&dockerd);
    import.arg("import");
    for c in &changes {
        import.args(["-c", c]);
    }
    run_ok(import.arg(&rootfs).arg("busybox:latest"), "docker import");
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let root = work.path().join("root");
    let mut kimport = Command::new(kiln);
    kimport
        .arg("--root")
        .arg(&root)
        .arg("import")
        .arg(&rootfs)
        .arg("busybox");
    for c in &changes {
        kimport.args(["-c", c]);
    }
    run_ok(&mut kimport, "kiln import");

    let context = work.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
    let id = run_ok(
        docker(&dockerd)
            .args(["build", "-q", "--build-arg", "VERSION=2.0"])
            .arg(&context),
        "docker build",
    );
    let inspect = run_ok(
        docker(&dockerd).args(["image", "inspect", id.trim()]),
        "docker image inspect",
    );
    let docker_json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let docker_config = &docker_json[0]["Config"];

    let printed = run_ok(
        Command::new(kiln)
            .arg("--root")
            .arg(&root)
            .args(["build", "--print=config", "--build-arg", "VERSION=2.0"])
            .arg(&context),
        "kiln build --print=config",
    );
    let kiln_json: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let kiln_config = kiln_json.get("config").unwrap_or(&kiln_json);

    // Guard against a vacuous pass: both sides must carry what the Dockerfile set.
    for (who, config) in [("docker", docker_config), ("kiln", kiln_config)] {
        assert_eq!(
            config["ExposedPorts"].as_object().map(|m| m.len()),
            Some(3),
            "{who} config: {config}"
        );
        assert!(config["Healthcheck"].is_object(), "{who} config: {config}");
        assert_eq!(config["User"], "nobody:nogroup", "{who} config: {config}");
    }
    let mut differences = Vec::new();
    for field in FIELDS {
        let (d, k) = (
            normalized(docker_config.get(*field)),
            normalized(kiln_config.get(*field)),
        );
        if d != k {
            differences.push(format!("{field}:\n  docker: {d}\n  kiln:   {k}"));
        }
    }
    assert!(
        differences.is_empty(),
        "kiln's config differs from docker build's:\n{}",
        differences.join("\n")
    );
}
