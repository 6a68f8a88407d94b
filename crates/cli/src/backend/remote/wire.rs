//! The engine's build request as `kiln.v1` carries it (`to_wire`), with the inputs a worker
//! of protocol 1 cannot take refused by name, and `--explain`'s answer read back.

use kiln_engine::{BuildRequest, ContextSpec, ExplainReason, ProvenanceMode, StepExplanation};
use kiln_image::OutputKind;
use kiln_llb::NetworkMode;
use kiln_proto::v1 as pb;

use super::walk::Walked;

/// The first protocol that carries `--ssh`, named contexts, RUN settings, provenance and
/// `--explain`.
const EXTRAS_PROTOCOL: u32 = 2;

/// The engine's request as `kiln.v1` sends it, to a worker speaking `protocol`, with the
/// trees of the `--build-context` directories by index.
pub(super) fn to_wire(
    r: &BuildRequest,
    walked: Option<&Walked>,
    named: &[(usize, &Walked)],
    load: bool,
    protocol: u32,
) -> anyhow::Result<pb::BuildRequest> {
    use kiln_engine::{CacheExport, CacheImport, CacheMode};
    let o = &r.options;
    if protocol < EXTRAS_PROTOCOL {
        refuse_for_protocol_1(r, protocol)?;
    }
    let mode = |m: &CacheMode| match m {
        CacheMode::Min => pb::CacheMode::Min as i32,
        CacheMode::Max => pb::CacheMode::Max as i32,
    };
    let mut cache_from = Vec::new();
    for c in &r.cache_from {
        match c {
            CacheImport::Registry { reference } => cache_from.push(pb::CacheImport {
                source: Some(pb::cache_import::Source::Registry(pb::RegistryCache {
                    reference: reference.clone(),
                    ..Default::default()
                })),
            }),
            CacheImport::Local { .. } => anyhow::bail!(
                "not supported yet: --cache-from type=local with --builder (use type=registry)"
            ),
        }
    }
    let mut cache_to = Vec::new();
    for c in &r.cache_to {
        cache_to.push(pb::CacheExport {
            dest: Some(match c {
                CacheExport::Registry {
                    reference,
                    mode: m,
                    ignore_error,
                } => pb::cache_export::Dest::Registry(pb::RegistryCache {
                    reference: reference.clone(),
                    mode: mode(m),
                    ignore_error: *ignore_error,
                }),
                CacheExport::Inline => pb::cache_export::Dest::Inline(pb::InlineCache {}),
                CacheExport::Local { .. } => anyhow::bail!(
                    "not supported yet: --cache-to type=local with --builder (use type=registry)"
                ),
            }),
        });
    }
    if r.platforms.len() > 1 {
        anyhow::bail!(
            "not supported yet: several --platform values with --builder (build each platform \
             on its own, or build locally)"
        );
    }
    let mut outputs: Vec<pb::Output> = r.outputs.iter().map(output).collect();
    let wants_image = load || r.push;
    if wants_image
        && !outputs
            .iter()
            .any(|o| o.kind == pb::OutputKind::Image as i32)
    {
        outputs.push(pb::Output {
            kind: pb::OutputKind::Image as i32,
            ..Default::default()
        });
    }
    for out in outputs
        .iter_mut()
        .filter(|o| o.kind == pb::OutputKind::Image as i32)
    {
        out.push |= r.push;
        out.load |= load;
    }
    Ok(pb::BuildRequest {
        dockerfile: r.dockerfile.clone(),
        dockerfile_name: r.dockerfile_name.clone(),
        context: walked.map(|w| pb::ContextRef {
            root: w.summary.root.to_string(),
            files: w.summary.files,
            bytes: w.summary.bytes,
        }),
        dockerignore: Vec::new(),
        target: o.target.clone().unwrap_or_default(),
        build_args: o
            .build_args
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        labels: o
            .labels
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        platform: o.platform.as_ref().map(|p| pb::Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().unwrap_or_default(),
        }),
        no_cache: o.no_cache,
        no_cache_filter: o.no_cache_filter.clone(),
        network: match o.network {
            NetworkMode::Default => pb::NetworkMode::Default,
            NetworkMode::Host => pb::NetworkMode::Host,
            NetworkMode::None => pb::NetworkMode::None,
        } as i32,
        source_date_epoch: o.source_date_epoch,
        tags: r.tags.clone(),
        max_parallelism: r.max_parallelism.unwrap_or(0) as u32,
        pull: r.pull,
        secrets: r
            .secrets
            .0
            .iter()
            .map(|(id, _)| pb::SecretSpec { id: id.clone() })
            .collect(),
        ssh: r
            .extras
            .ssh
            .iter()
            .map(|s| pb::SshSpec { id: s.id.clone() })
            .collect(),
        cache_from,
        cache_to,
        outputs,
        entitlements: [
            (r.allow_insecure, "security.insecure"),
            (r.extras.run.allow_devices, "device"),
        ]
        .iter()
        .filter(|(yes, _)| *yes)
        .map(|(_, e)| e.to_string())
        .collect(),
        commit: Some(commit(&r.commit)),
        hostname: o.hostname.clone().unwrap_or_default(),
        description: r
            .context
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_else(|| "stdin".into()),
        extra_hosts: r
            .extras
            .run
            .extra_hosts
            .iter()
            .map(|(name, ip)| pb::HostEntry {
                name: name.clone(),
                ip: ip.to_string(),
            })
            .collect(),
        ulimits: r
            .extras
            .run
            .ulimits
            .iter()
            .map(|u| pb::Ulimit {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        shm_size: r.extras.run.shm_size,
        provenance: match r.extras.provenance {
            None => pb::ProvenanceMode::Unspecified,
            Some(ProvenanceMode::Min) => pb::ProvenanceMode::Min,
            Some(ProvenanceMode::Max) => pb::ProvenanceMode::Max,
        } as i32,
        explain: r.explain,
        named_contexts: named_contexts(r, named)?,
        origin: r.extras.origin.as_ref().map(|o| pb::ContextOrigin {
            kind: Some(match o {
                kiln_engine::ContextOrigin::Git { url, commit } => {
                    pb::context_origin::Kind::Git(pb::GitOrigin {
                        url: url.clone(),
                        commit: commit.clone(),
                    })
                }
                kiln_engine::ContextOrigin::Url { url, digest } => {
                    pb::context_origin::Kind::Url(pb::UrlOrigin {
                        url: url.clone(),
                        digest: digest.to_string(),
                    })
                }
            }),
        }),
    })
}

/// `--build-context`s: directories as the trees walked for them, images and URLs by name (the
/// worker resolves them); an OCI layout on the client's disk is refused.
fn named_contexts(
    r: &BuildRequest,
    named: &[(usize, &Walked)],
) -> anyhow::Result<Vec<pb::NamedContext>> {
    let mut out = Vec::new();
    for (i, (name, spec)) in r.extras.contexts.iter().enumerate() {
        let source = match spec {
            ContextSpec::Dir(_) => {
                let Some((_, w)) = named.iter().find(|(n, _)| *n == i) else {
                    anyhow::bail!("--build-context {name}: its directory was not walked");
                };
                pb::named_context::Source::Dir(pb::ContextRef {
                    root: w.summary.root.to_string(),
                    files: w.summary.files,
                    bytes: w.summary.bytes,
                })
            }
            ContextSpec::Image(reference) => pb::named_context::Source::Image(reference.clone()),
            ContextSpec::Url(url) => pb::named_context::Source::Url(url.clone()),
            ContextSpec::OciLayout { path, .. } => anyhow::bail!(
                "not supported yet: --build-context {name}=oci-layout://{} with --builder",
                path.display()
            ),
        };
        out.push(pb::NamedContext {
            name: name.clone(),
            source: Some(source),
        });
    }
    Ok(out)
}

/// `--explain`'s answer from the worker, as the local engine gives it.
pub(super) fn explanations(e: pb::Explanations) -> Vec<StepExplanation> {
    e.steps
        .into_iter()
        .map(|s| StepExplanation {
            vertex: s.vertex,
            name: s.name,
            reasons: s.reasons.into_iter().map(reason).collect(),
        })
        .collect()
}

fn reason(r: pb::ExplainReason) -> ExplainReason {
    let (name, old, new) = (r.name, r.old, r.new);
    match r.kind.as_str() {
        "never-seen" => ExplainReason::NeverSeen,
        "context-file" => ExplainReason::ContextFile {
            path: name,
            old,
            new,
        },
        "more-context-files" => ExplainReason::MoreContextFiles {
            count: r.count as usize,
        },
        "build-arg" => ExplainReason::BuildArg { name, old, new },
        "env" => ExplainReason::Env { name, old, new },
        "base-image" => ExplainReason::BaseImage {
            name,
            old: old.unwrap_or_default(),
            new: new.unwrap_or_default(),
        },
        "earlier-step" => ExplainReason::EarlierStep { name },
        "instruction" => ExplainReason::Instruction {
            what: name,
            old,
            new,
        },
        "no-cache" => ExplainReason::NoCache,
        "cache-missing" => ExplainReason::CacheMissing,
        // A kind from a newer worker: said in its own words rather than dropped.
        other => ExplainReason::Instruction {
            what: other.to_string(),
            old,
            new,
        },
    }
}

/// The build inputs protocol 1 does not carry: refused by name rather than dropped, so a
/// remote build never differs silently from the local one.
fn refuse_for_protocol_1(r: &BuildRequest, protocol: u32) -> anyhow::Result<()> {
    let extras = &r.extras;
    let run = &extras.run;
    let asked = [
        (r.explain, "--explain"),
        (!extras.contexts.is_empty(), "--build-context"),
        (!extras.ssh.is_empty(), "--ssh"),
        (!run.extra_hosts.is_empty(), "--add-host"),
        (!run.ulimits.is_empty(), "--ulimit"),
        (run.shm_size.is_some(), "--shm-size"),
        (run.allow_devices, "--allow device"),
        (extras.provenance.is_some(), "--provenance"),
    ];
    match asked.iter().find(|(yes, _)| *yes) {
        Some((_, flag)) => anyhow::bail!(
            "the builder speaks kiln protocol {protocol}, which does not carry {flag} \
             (protocol {EXTRAS_PROTOCOL} does): upgrade the worker's kiln"
        ),
        None => Ok(()),
    }
}

/// The commit compression as the worker parses it back (`kind[,level=N]`).
fn commit(c: &kiln_image::CommitOptions) -> pb::CommitOptions {
    let (compression, level) = compression_of(&c.compression.to_string());
    pb::CommitOptions {
        compression,
        level,
        flavor: pb::Flavor::Unspecified as i32,
    }
}

fn compression_of(text: &str) -> (i32, Option<i32>) {
    let mut parts = text.split(',');
    let kind = match parts.next().unwrap_or("") {
        "zstd" => pb::Compression::Zstd,
        "uncompressed" | "none" => pb::Compression::None,
        _ => pb::Compression::Gzip,
    } as i32;
    let level = parts
        .find_map(|p| p.strip_prefix("level="))
        .and_then(|l| l.parse().ok());
    (kind, level)
}

fn output(o: &kiln_image::Output) -> pb::Output {
    let (compression, compression_level) = match &o.compression {
        Some(c) => {
            let (k, l) = compression_of(&c.to_string());
            (k, l)
        }
        None => (pb::Compression::Unspecified as i32, None),
    };
    pb::Output {
        kind: match o.kind {
            OutputKind::Image => pb::OutputKind::Image,
            OutputKind::Oci => pb::OutputKind::Oci,
            OutputKind::Docker => pb::OutputKind::Docker,
            OutputKind::Local => pb::OutputKind::Local,
            OutputKind::Tar => pb::OutputKind::Tar,
        } as i32,
        names: o.names.clone(),
        tar: o.tar,
        oci_mediatypes: o.oci_mediatypes,
        push: o.push,
        load: false,
        compression,
        compression_level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> BuildRequest {
        BuildRequest::new(None, b"FROM scratch\n".to_vec(), "Dockerfile")
    }

    #[test]
    fn protocol_1_workers_get_no_input_they_would_ignore() {
        let mut r = request();
        r.extras
            .ssh
            .push(kiln_engine::SshSpec::parse("default").unwrap());
        let e = to_wire(&r, None, &[], false, 1).unwrap_err().to_string();
        assert!(e.contains("protocol 1") && e.contains("--ssh"), "{e}");
        let wire = to_wire(&r, None, &[], false, 2).unwrap();
        assert_eq!(wire.ssh[0].id, "default");

        let mut r = request();
        r.explain = true;
        r.extras.run.shm_size = Some(1 << 26);
        r.extras.run.allow_devices = true;
        r.extras.provenance = Some(ProvenanceMode::Max);
        assert!(to_wire(&r, None, &[], false, 1).is_err());
        let wire = to_wire(&r, None, &[], false, 2).unwrap();
        assert!(wire.explain);
        assert_eq!(wire.shm_size, Some(1 << 26));
        assert_eq!(wire.entitlements, vec!["device".to_string()]);
        assert_eq!(wire.provenance, pb::ProvenanceMode::Max as i32);
        // A plain build is the same for both.
        assert!(to_wire(&request(), None, &[], false, 1).is_ok());
    }

    #[test]
    fn explanations_come_back_as_the_engine_made_them() {
        let reasons = vec![
            ExplainReason::ContextFile {
                path: "a.txt".into(),
                old: Some("file 0644 blake3:aa".into()),
                new: Some("file 0644 blake3:bb".into()),
            },
            ExplainReason::MoreContextFiles { count: 3 },
            ExplainReason::BaseImage {
                name: "busybox".into(),
                old: "sha256:1".into(),
                new: "sha256:2".into(),
            },
            ExplainReason::Instruction {
                what: "command".into(),
                old: None,
                new: Some("make".into()),
            },
            ExplainReason::NeverSeen,
            ExplainReason::CacheMissing,
        ];
        // The worker's side of the mapping, spelled out: kind names are serde's.
        let wire = pb::Explanations {
            steps: vec![pb::StepExplanation {
                vertex: "sha256:v".into(),
                name: "[1/2] COPY a.txt /".into(),
                reasons: reasons
                    .iter()
                    .map(|r| {
                        let v = serde_json::to_value(r).unwrap();
                        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
                        pb::ExplainReason {
                            kind: s("kind").unwrap(),
                            name: s("path").or(s("name")).or(s("what")).unwrap_or_default(),
                            old: s("old"),
                            new: s("new"),
                            count: v.get("count").and_then(|c| c.as_u64()).unwrap_or(0),
                        }
                    })
                    .collect(),
            }],
        };
        let back = explanations(wire);
        assert_eq!(back[0].reasons, reasons);
        assert_eq!(back[0].name, "[1/2] COPY a.txt /");
    }
}
