//! `deploy/kubernetes/` parses as YAML and says what docs/remote.md promises: a StatefulSet of
//! `kiln serve` with a volume per replica, TLS from a Secret, resource requests and a gRPC
//! health readiness probe on the port a headless Service names.

use std::collections::BTreeMap;
use std::path::Path;

use saphyr_parser::{Event, Parser};

/// A YAML value, enough for manifests (no anchors needed).
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Scalar(String),
    Seq(Vec<Yaml>),
    Map(BTreeMap<String, Yaml>),
}

impl Yaml {
    fn get(&self, path: &str) -> &Yaml {
        let mut v = self;
        for key in path.split('.') {
            v = match (v, key.parse::<usize>()) {
                (Yaml::Seq(items), Ok(i)) => &items[i],
                (Yaml::Map(m), _) => m.get(key).unwrap_or_else(|| panic!("no {key} in {path}")),
                _ => panic!("cannot index {key} in {path}"),
            };
        }
        v
    }

    fn str(&self, path: &str) -> &str {
        match self.get(path) {
            Yaml::Scalar(s) => s,
            other => panic!("{path} is not a scalar: {other:?}"),
        }
    }
}

fn parse(text: &str) -> Vec<Yaml> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<(Yaml, Option<String>)> = Vec::new();
    let mut docs = Vec::new();
    loop {
        let (event, _) = parser
            .next_event()
            .expect("events")
            .unwrap_or_else(|e| panic!("invalid YAML: {}", e.info()));
        let value = match event {
            Event::StreamEnd => return docs,
            Event::Scalar(text, ..) => Yaml::Scalar(text.to_string()),
            Event::SequenceStart(..) => {
                stack.push((Yaml::Seq(Vec::new()), None));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push((Yaml::Map(BTreeMap::new()), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => stack.pop().expect("balanced").0,
            _ => continue,
        };
        match stack.last_mut() {
            None => docs.push(value),
            Some((Yaml::Seq(items), _)) => items.push(value),
            Some((Yaml::Map(map), key)) => match key.take() {
                None => match value {
                    Yaml::Scalar(k) => *key = Some(k),
                    other => panic!("a non-scalar key: {other:?}"),
                },
                Some(k) => {
                    map.insert(k, value);
                }
            },
            Some((Yaml::Scalar(_), _)) => unreachable!("scalars hold nothing"),
        }
    }
}

fn manifest(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("manifest");
    let mut docs = parse(&text);
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

#[test]
fn the_kubernetes_manifests_parse_and_fit_together() {
    let sts = manifest("statefulset.yaml");
    let svc = manifest("service.yaml");
    let secret = manifest("secret.example.yaml");
    assert_eq!(sts.str("kind"), "StatefulSet");
    assert_eq!(svc.str("kind"), "Service");
    assert_eq!(secret.str("kind"), "Secret");

    // Headless Service, selecting the pods, naming the port the probe uses.
    assert_eq!(svc.str("spec.clusterIP"), "None");
    assert_eq!(sts.str("spec.serviceName"), svc.str("metadata.name"));
    let labels = sts.get("spec.template.metadata.labels");
    assert_eq!(svc.get("spec.selector"), labels);
    assert_eq!(sts.get("spec.selector.matchLabels"), labels);

    let c = sts.get("spec.template.spec.containers.0");
    let args: Vec<&str> = match c.get("args") {
        Yaml::Seq(items) => items
            .iter()
            .map(|a| match a {
                Yaml::Scalar(s) => s.as_str(),
                _ => panic!("args are strings"),
            })
            .collect(),
        _ => panic!("args is a list"),
    };
    assert_eq!(args[0], "serve");
    let port = c.str("ports.0.containerPort");
    assert!(
        args.contains(&format!("--addr=tcp://0.0.0.0:{port}").as_str()),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.starts_with("--tls-dir=")),
        "mTLS, never plaintext"
    );
    assert!(args.iter().any(|a| a.starts_with("--root=")));
    assert_eq!(c.str("readinessProbe.grpc.port"), port);
    assert_eq!(c.str("readinessProbe.grpc.service"), "kiln.v1.Kiln");
    assert!(matches!(c.get("resources.requests.cpu"), Yaml::Scalar(_)));
    assert!(matches!(
        c.get("resources.requests.memory"),
        Yaml::Scalar(_)
    ));

    // A volume per replica at --root, the Secret at --tls-dir.
    let claim = sts.str("spec.volumeClaimTemplates.0.metadata.name");
    let mounts = c.get("volumeMounts");
    let Yaml::Seq(mounts) = mounts else {
        panic!("volumeMounts is a list")
    };
    let mount_of = |name: &str| {
        mounts
            .iter()
            .find(|m| m.str("name") == name)
            .unwrap_or_else(|| panic!("no mount {name}"))
            .str("mountPath")
            .to_string()
    };
    assert!(args.contains(&format!("--root={}", mount_of(claim)).as_str()));
    assert!(args.contains(&format!("--tls-dir={}", mount_of("tls")).as_str()));
    assert_eq!(
        sts.str("spec.template.spec.volumes.0.secret.secretName"),
        secret.str("metadata.name")
    );
    let Yaml::Map(data) = secret.get("stringData") else {
        panic!("stringData is a map")
    };
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        assert!(matches!(data.get(file), Some(Yaml::Scalar(_))), "{file}");
    }
}
