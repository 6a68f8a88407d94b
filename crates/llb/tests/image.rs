//! The image config serializes byte for byte as BuildKit writes it and reads what Docker and
//! other tools write (nulls, unknown fields).

use std::collections::{BTreeMap, BTreeSet};

use kiln_llb::Digest;
use kiln_llb::image::{Healthcheck, History, ImageConfig, RootFs, RunConfig};
use pretty_assertions::assert_eq;

fn full() -> ImageConfig {
    ImageConfig {
        architecture: "amd64".into(),
        author: None,
        config: RunConfig {
            user: "nobody".into(),
            exposed_ports: BTreeSet::from(["80/tcp".into(), "53/udp".into()]),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "Z=1".into(),
                "A=2".into(),
            ],
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), "serve".into()]),
            cmd: Some(vec!["--port".into(), "80".into()]),
            volumes: BTreeSet::from(["/data".into()]),
            working_dir: "/srv".into(),
            labels: BTreeMap::from([("z".into(), "last".into()), ("a".into(), "first".into())]),
            stop_signal: "SIGTERM".into(),
            args_escaped: false,
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: 30_000_000_000,
                timeout: 5_000_000_000,
                start_period: 0,
                start_interval: 0,
                retries: 3,
            }),
            on_build: vec!["RUN echo hi".into()],
            shell: vec!["/bin/bash".into(), "-c".into()],
        },
        created: Some("2024-01-02T03:04:05Z".into()),
        history: vec![
            History {
                created: Some("2024-01-02T03:04:05Z".into()),
                created_by: "COPY a b # buildkit".into(),
                comment: "buildkit.dockerfile.v0".into(),
                ..History::default()
            },
            History {
                created_by: "EXPOSE map[53/udp:{} 80/tcp:{}]".into(),
                empty_layer: true,
                ..History::default()
            },
        ],
        inline_cache: None,
        os: "linux".into(),
        os_features: vec![],
        os_version: None,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![Digest::of(b"layer")],
        },
        variant: None,
    }
}

#[test]
fn serializes_with_docker_names_order_and_omissions() {
    let json = serde_json::to_string(&full()).unwrap();
    let layer = Digest::of(b"layer");
    let expected = concat!(
        r#"{"architecture":"amd64","config":{"User":"nobody","ExposedPorts":{"53/udp":{},"80/tcp":{}},"#,
        r#""Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","Z=1","A=2"],"#,
        r#""Entrypoint":["/bin/sh","-c","serve"],"Cmd":["--port","80"],"Volumes":{"/data":{}},"WorkingDir":"/srv","#,
        r#""Labels":{"a":"first","z":"last"},"StopSignal":"SIGTERM","#,
        r#""Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Timeout":5000000000,"Retries":3},"#,
        r#""OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"]},"created":"2024-01-02T03:04:05Z","#,
        r#""history":[{"created":"2024-01-02T03:04:05Z","created_by":"COPY a b # buildkit","comment":"buildkit.dockerfile.v0"},"#,
        r#"{"created_by":"EXPOSE map[53/udp:{} 80/tcp:{}]","empty_layer":true}],"os":"linux","#,
        r#""rootfs":{"type":"layers","diff_ids":["LAYER"]}}"#
    )
    .replace("LAYER", &layer.to_string());
    assert_eq!(json, expected);
}

#[test]
fn empty_config_omits_everything_docker_omits() {
    let c = ImageConfig {
        architecture: "arm64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"architecture":"arm64","config":{},"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
    );
    // A reset Cmd (Some(empty)) is written like no Cmd, as Go's omitempty does.
    let mut reset = c.clone();
    reset.config.cmd = Some(vec![]);
    assert_eq!(
        serde_json::to_string(&reset).unwrap(),
        serde_json::to_string(&c).unwrap()
    );
}

#[test]
fn round_trips() {
    let c = full();
    let back: ImageConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn reads_docker_style_configs_with_nulls_and_unknown_fields() {
    let json = r#"{
        "architecture": "amd64",
        "config": {
            "Hostname": "", "AttachStdin": false, "Image": "sha256:abc",
            "Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": null, "Volumes": null,
            "ExposedPorts": null, "Labels": null, "OnBuild": null, "WorkingDir": ""
        },
        "container_config": {"Cmd": ["x"]},
        "created": "2023-05-19T20:19:23.397352765Z",
        "docker_version": "20.10.23",
        "history": [{"created": "2023-05-19T20:19:23Z", "created_by": "/bin/sh -c #(nop) ADD file:x in / "},
                    {"created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": null}
    }"#;
    let c: ImageConfig = serde_json::from_str(json).unwrap();
    assert_eq!(c.config.env, ["PATH=/bin"]);
    assert_eq!(c.config.cmd, Some(vec!["sh".to_owned()]));
    assert_eq!(c.config.entrypoint, None);
    assert!(
        c.config.volumes.is_empty() && c.config.labels.is_empty() && c.config.on_build.is_empty()
    );
    assert_eq!(c.history.len(), 2);
    assert!(c.history[1].empty_layer);
    assert!(c.rootfs.diff_ids.is_empty());
    assert_eq!(c.created.as_deref(), Some("2023-05-19T20:19:23.397352765Z"));
}
