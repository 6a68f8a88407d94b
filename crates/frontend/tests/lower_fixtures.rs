//! Data-driven lowering tests: every `fixtures/lower/*.Dockerfile` is lowered with a fake image
//! resolver and the options written in its `# kiln-test:` comment lines; the graph dump and the
//! image config (or the rendered error) are compared as insta snapshots.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_frontend::lower::{BuildOptions, ImageResolver, ResolvedImage, lower};
use kiln_frontend::print;
use kiln_llb::image::{History, ImageConfig, RootFs, RunConfig};
use kiln_llb::{Digest, NetworkMode, Platform};

/// Images the fake registry knows, with configs shaped like the real ones.
pub struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let layer = |n: &str| Digest::of(n.as_bytes());
        let base = |env: Vec<&str>, cmd: Option<Vec<&str>>| ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            config: RunConfig {
                env: env.into_iter().map(str::to_owned).collect(),
                cmd: cmd.map(|c| c.into_iter().map(str::to_owned).collect()),
                ..RunConfig::default()
            },
            created: Some("2024-01-01T00:00:00Z".into()),
            history: vec![
                History {
                    created_by: "ADD rootfs / # buildkit".into(),
                    ..History::default()
                },
                History {
                    created_by: "CMD [\"sh\"]".into(),
                    empty_layer: true,
                    ..History::default()
                },
            ],
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer(reference)],
            },
            ..ImageConfig::default()
        };
        let config = match reference {
            "docker.io/library/busybox:latest" | "docker.io/library/busybox:1.36" => base(
                vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                Some(vec!["sh"]),
            ),
            "docker.io/library/alpine:latest" => base(
                vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                Some(vec!["/bin/sh"]),
            ),
            // An image without PATH, with a CMD, a WORKDIR, a user and ONBUILD triggers.
            "docker.io/library/withtriggers:latest" => {
                let mut c = base(vec!["LANG=C.UTF-8"], Some(vec!["test"]));
                c.config.working_dir = "/app".into();
                c.config.user = "daemon".into();
                c.config.on_build = vec![
                    "RUN echo from-trigger > /trigger".into(),
                    "ENV TRIGGERED=1".into(),
                ];
                c.config.labels.insert("base.label".into(), "kept".into());
                c
            }
            // An image with no layers at all (FROM it is like FROM scratch).
            "docker.io/library/empty:latest" => {
                let mut c = base(vec![], None);
                c.rootfs.diff_ids.clear();
                c.history.clear();
                c
            }
            _ => {
                return Err(format!(
                    "pull access denied, repository does not exist or may require authorization: {reference}"
                ));
            }
        };
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            digest: Some(Digest::of(format!("manifest of {reference}").as_bytes())),
            config,
        })
    }
}

/// Options from `# kiln-test: key value` lines.
fn options(text: &str, name: &str) -> BuildOptions {
    let mut opts = BuildOptions {
        platform: Some(Platform::parse("linux/amd64").unwrap()),
        dockerfile_name: format!("{name}.Dockerfile"),
        ..BuildOptions::default()
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# kiln-test:") else {
            continue;
        };
        let rest = rest.trim();
        let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let kv = || {
            value
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap()
        };
        match key {
            "build-arg" => opts.build_args.push(kv()),
            "label" => {
                opts.labels.insert(kv().0, kv().1);
            }
            "target" => opts.target = Some(value.to_owned()),
            "platform" => opts.platform = Some(Platform::parse(value).unwrap()),
            "no-cache" => opts.no_cache = true,
            "no-cache-filter" => opts.no_cache_filter.push(value.to_owned()),
            "network" => {
                opts.network = if value == "none" {
                    NetworkMode::None
                } else {
                    NetworkMode::Host
                }
            }
            "dockerignore" => opts.dockerignore.push(value.to_owned()),
            "source-date-epoch" => opts.source_date_epoch = Some(value.parse().unwrap()),
            "hostname" => opts.hostname = Some(value.to_owned()),
            other => panic!("unknown kiln-test option {other}"),
        }
    }
    opts
}

fn render(text: &str, name: &str) -> String {
    let opts = options(text, name);
    match lower(text.as_bytes(), &opts, &FakeResolver) {
        Ok(lowered) => format!(
            "== llb ==\n{}\n== image config ==\n{}\n== outline ==\n{}",
            print::llb_text(&lowered.definition),
            print::image_config(&lowered.config),
            print::outline(&lowered.outline)
        ),
        Err(d) => {
            assert!(
                d.span.is_some()
                    || d.message.contains("target stage")
                    || d.message.contains("SOURCE_DATE_EPOCH"),
                "error without a location: {d:?}"
            );
            format!("== error ==\n{}", d.render(&opts.dockerfile_name, text))
        }
    }
}

#[test]
fn lower_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lower");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut seen = BTreeMap::new();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("Dockerfile") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let out = render(&text, &name);
        seen.insert(name.clone(), ());
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, input_file => &path }, {
            insta::assert_snapshot!(format!("lower_{name}"), out);
        });
    }
    assert!(!seen.is_empty(), "no fixtures found in {}", dir.display());
}
