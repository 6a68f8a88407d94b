//! Cross-check against Debian's `docker-compose` (v1.29) where v1 and v2 agree: for fixtures
//! that use only rules both implement the same way (merging, extends, anchors, interpolation
//! without `:+`, override files, dependency conditions), v1's `config` output is loaded back
//! through our loader and compared with our own model of the fixture, field by field. Loading
//! both through the same normalizer makes v1's different formatting (string volumes, `90s`,
//! `version: '3.9'`) irrelevant; what is compared is the meaning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_compose::{LoadOptions, Project, Service};
use serde_json::{Value, json};

/// Fixtures whose features v1 reads as v2 does (see research/compose.md, "v1.29 vs v2").
const FIXTURES: &[&str] = &[
    "merge-prod",
    "anchors",
    "extends",
    "search-override",
    "v1-common",
];

/// The fixture's shell environment (`env` file) plus HOME.
fn fixture_env(dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([("HOME".to_string(), "/home/user".to_string())]);
    if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

fn fixture_args(dir: &Path) -> (Vec<String>, PathBuf) {
    let mut files = Vec::new();
    let mut cwd = dir.to_path_buf();
    if let Ok(text) = std::fs::read_to_string(dir.join("args")) {
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("-f", f)) => files.push(f.to_string()),
                Some(("--cwd", c)) => cwd = dir.join(c),
                _ => {}
            }
        }
    }
    (files, cwd)
}

/// What a service means, independent of how it was written.
fn meaning(s: &Service) -> Value {
    let mut ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| json!([p.host_ip, p.target, p.published, p.protocol]))
        .collect();
    ports.sort_by_key(|v| v.to_string());
    let volumes: Vec<Value> = s
        .volumes
        .iter()
        .map(|v| json!([v.kind, v.source, v.target, v.read_only]))
        .collect();
    let deps: BTreeMap<&String, Value> = s
        .depends_on
        .iter()
        .map(|(k, d)| (k, json!(d.condition)))
        .collect();
    json!({
        "image": s.image,
        "build": s.build.as_ref().map(|b| (&b.context, &b.dockerfile)),
        "command": s.command,
        "entrypoint": s.entrypoint,
        "environment": s.environment,
        "ports": ports,
        "volumes": volumes,
        "depends_on": deps,
        "healthcheck": s.healthcheck.as_ref().map(|h| json!([h.test, h.interval, h.timeout, h.retries])),
        "restart": s.restart,
        "cap_add": s.cap_add,
        "labels": s.labels,
        "network_mode": s.network_mode,
    })
}

#[test]
fn v1_config_means_what_we_load() {
    let Ok(out) = Command::new("docker-compose").arg("version").output() else {
        println!("skipped: docker-compose (v1) is not installed");
        return;
    };
    if !out.status.success() {
        println!("skipped: docker-compose does not run");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in FIXTURES {
        let dir = root.join(name);
        let (files, cwd) = fixture_args(&dir);
        let mut cmd = Command::new("docker-compose");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(fixture_env(&dir))
            .current_dir(&cwd);
        for f in &files {
            cmd.args(["-f", f]);
        }
        let out = cmd
            .args(["-p", "x", "config"])
            .output()
            .expect("run docker-compose");
        assert!(
            out.status.success(),
            "{name}: docker-compose config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v1_text = String::from_utf8(out.stdout).unwrap();

        let base = LoadOptions {
            working_dir: cwd.clone(),
            project_name: Some("x".into()),
            environment: fixture_env(&dir),
            files: files.iter().map(PathBuf::from).collect(),
            ..LoadOptions::default()
        };
        let ours = Project::load(&base).unwrap_or_else(|e| panic!("{name}: {}", e.render()));
        let theirs = Project::load(&LoadOptions {
            files: vec!["-".into()],
            stdin: Some(v1_text.clone()),
            project_directory: Some(ours.project.working_dir.clone()),
            ..base
        })
        .unwrap_or_else(|e| panic!("{name}: v1 output does not load: {}\n{v1_text}", e.render()))
        .project;
        let ours = ours.project;
        assert_eq!(
            ours.services.keys().collect::<Vec<_>>(),
            theirs.services.keys().collect::<Vec<_>>(),
            "{name}: services"
        );
        for (svc, s) in &ours.services {
            pretty_assertions::assert_eq!(
                meaning(s),
                meaning(&theirs.services[svc]),
                "{name}: service {svc}\nv1 output:\n{v1_text}"
            );
        }
        assert_eq!(
            ours.volume_names(),
            theirs.volume_names(),
            "{name}: volumes"
        );
        println!("{name}: v1 agrees on {} services", ours.services.len());
    }
}
