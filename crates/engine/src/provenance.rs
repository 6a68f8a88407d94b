//! `--provenance`: a SLSA v1 provenance predicate in an in-toto statement about the built image,
//! attached to it as BuildKit attaches attestations (`kiln_image::attest`). It records what went
//! in: the base images by digest, git sources and the context's git commit, downloads with
//! their checksums, the build arguments and the ids of secrets and ssh agents (never their
//! values), kiln's version; `mode=max` adds every step of the graph and the Dockerfile.

use std::collections::BTreeMap;

use kiln_image::attest::Statement;
use kiln_image::{Image, ImageStore};
use kiln_llb::{Definition, Digest, Op, SourceOp};
use serde_json::{Value, json};

use crate::build::BuildRequest;
use crate::error::EngineError;
use crate::extras::{ContextOrigin, ProvenanceMode};

/// SLSA provenance v1's predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// in-toto's statement type (v1).
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The builder's id, kiln's repository (its version is in `runDetails.builder.version`).
const BUILDER_ID: &str = env!("CARGO_PKG_REPOSITORY");

/// What kind of build the predicate describes: kiln's Dockerfile builds, as
/// `docs/dev/provenance.md` documents the fields.
fn build_type() -> String {
    format!("{BUILDER_ID}/docs/dev/provenance.md#dockerfile-v1")
}

/// What the solve knows that the provenance records.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub mode: ProvenanceMode,
    pub definition: Definition,
    /// The commit each git source resolved to.
    pub git_commits: BTreeMap<Digest, String>,
    /// When the build started (RFC 3339).
    pub started: String,
    /// The build's session id.
    pub session: String,
}

/// Builds the statement and attaches it to `image`, whose `names` then point at the index.
/// Returns the index's descriptor.
pub(crate) fn attach(
    images: &ImageStore,
    request: &BuildRequest,
    inputs: &Inputs,
    image: &Image,
    names: &[String],
) -> Result<kiln_oci::Descriptor, EngineError> {
    let json = statement(request, inputs, image, names, &kiln_image::now_rfc3339());
    let bytes =
        serde_json::to_vec(&json).map_err(|e| EngineError::Bug(format!("provenance json: {e}")))?;
    Ok(images.attach_attestations(
        image,
        &[Statement {
            predicate_type: SLSA_PROVENANCE_V1.into(),
            json: bytes,
        }],
        names,
    )?)
}

/// `os/arch[/variant]`, percent-encoded for a package URL qualifier.
fn purl_platform(os: &str, arch: &str, variant: Option<&str>) -> String {
    let mut p = format!("{os}%2F{arch}");
    if let Some(v) = variant {
        p.push_str(&format!("%2F{v}"));
    }
    p
}

/// A package URL for an image reference (`pkg:docker/busybox@latest?platform=linux%2Famd64`).
fn image_purl(reference: &str, platform: &str) -> String {
    match kiln_llb::Reference::parse(reference) {
        Ok(r) => {
            let version = r.tag().unwrap_or("latest").to_owned();
            format!(
                "pkg:docker/{}@{version}?platform={platform}",
                r.familiar_name()
            )
        }
        Err(_) => format!("pkg:docker/{reference}?platform={platform}"),
    }
}

/// The statement as JSON (keys in a fixed order).
pub(crate) fn statement(
    request: &BuildRequest,
    inputs: &Inputs,
    image: &Image,
    names: &[String],
    finished: &str,
) -> Value {
    let config = &image.config;
    let platform = purl_platform(&config.os, &config.architecture, config.variant.as_deref());
    let digest = json!({ "sha256": image.manifest_digest.hex() });
    let mut subject: Vec<Value> = names
        .iter()
        .filter(|n| !n.starts_with("sha256:"))
        .map(|n| json!({ "name": image_purl(n, &platform), "digest": digest }))
        .collect();
    if subject.is_empty() {
        subject.push(json!({ "name": "_", "digest": digest }));
    }
    json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": subject,
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": build_definition(request, inputs),
            "runDetails": run_details(request, inputs, finished),
        },
    })
}

fn build_definition(request: &BuildRequest, inputs: &Inputs) -> Value {
    let options = &request.options;
    let mut args = serde_json::Map::new();
    for (k, v) in &options.build_args {
        args.insert(format!("build-arg:{k}"), Value::String(v.clone()));
    }
    if let Some(t) = &options.target {
        args.insert("target".into(), Value::String(t.clone()));
    }
    if let Some(p) = &options.platform {
        args.insert("platform".into(), Value::String(p.to_string()));
    }
    for (k, v) in &options.labels {
        args.insert(format!("label:{k}"), Value::String(v.clone()));
    }
    for (name, _) in &request.extras.contexts {
        args.insert(
            format!("context:{name}"),
            Value::String("named context".into()),
        );
    }
    if options.no_cache {
        args.insert("no-cache".into(), Value::String(String::new()));
    }
    let secrets: Vec<Value> = request
        .secrets
        .0
        .iter()
        .map(|(id, _)| json!({ "id": id }))
        .collect();
    let ssh: Vec<Value> = request
        .extras
        .ssh
        .iter()
        .map(|s| json!({ "id": s.id }))
        .collect();
    let mut external = json!({
        "request": {
            "frontend": "dockerfile.v0",
            "args": args,
            "secrets": secrets,
            "ssh": ssh,
        },
    });
    let mut dependencies = resolved_dependencies(inputs);
    match &request.extras.origin {
        Some(ContextOrigin::Git { url, commit }) => {
            external["configSource"] = json!({
                "uri": url,
                "digest": { "sha1": commit },
                "path": request.dockerfile_name,
            });
            dependencies.push(json!({ "uri": url, "digest": { "sha1": commit } }));
        }
        Some(ContextOrigin::Url { url, digest }) => {
            external["configSource"] = json!({
                "uri": url,
                "digest": { "sha256": digest.hex() },
                "path": request.dockerfile_name,
            });
            dependencies.push(json!({ "uri": url, "digest": { "sha256": digest.hex() } }));
        }
        None => {}
    }
    let mut internal = json!({ "builderPlatform": kiln_llb::Platform::host().to_string() });
    if inputs.mode == ProvenanceMode::Max {
        internal["buildConfig"] = build_config(&inputs.definition);
    }
    json!({
        "buildType": build_type(),
        "externalParameters": external,
        "internalParameters": internal,
        "resolvedDependencies": dependencies,
    })
}

/// Every input the graph fetched from outside: images by manifest digest, git sources by
/// commit, downloads by their checksum when the Dockerfile gave one.
fn resolved_dependencies(inputs: &Inputs) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (digest, op) in inputs.definition.topological() {
        let Op::Source(source) = op else { continue };
        let entry = match source {
            SourceOp::Image(image) => {
                let p = &image.platform;
                let platform = purl_platform(&p.os, &p.architecture, p.variant.as_deref());
                let mut e = json!({ "uri": image_purl(&image.reference, &platform) });
                if let Some(d) = &image.digest {
                    e["digest"] = json!({ "sha256": d.hex() });
                }
                e
            }
            SourceOp::Git(git) => {
                let uri = match &git.reference {
                    Some(r) => format!("{}#{r}", git.remote),
                    None => git.remote.clone(),
                };
                let mut e = json!({ "uri": uri });
                if let Some(commit) = inputs.git_commits.get(&digest) {
                    e["digest"] = json!({ "sha1": commit });
                }
                e
            }
            SourceOp::Http(http) => {
                let mut e = json!({ "uri": http.url });
                if let Some(d) = &http.checksum {
                    e["digest"] = json!({ "sha256": d.hex() });
                }
                e
            }
            SourceOp::Scratch | SourceOp::Local(_) => continue,
        };
        if seen.insert(entry.to_string()) {
            out.push(entry);
        }
    }
    out
}

/// `mode=max`: every step of the graph, inputs first, with its kind, name and inputs.
fn build_config(definition: &Definition) -> Value {
    let ids: BTreeMap<Digest, String> = definition
        .topological()
        .enumerate()
        .map(|(i, (d, _))| (d, format!("step{i}")))
        .collect();
    let steps: Vec<Value> = definition
        .topological()
        .map(|(d, op)| {
            let meta = definition.metadata(&d);
            let inputs: Vec<String> = op
                .inputs()
                .iter()
                .filter_map(|i| ids.get(&i.vertex).map(|id| format!("{id}:{}", i.output)))
                .collect();
            let mut step = json!({
                "id": ids[&d],
                "digest": d.to_string(),
                "op": op.kind(),
                "inputs": inputs,
            });
            if let Some(name) = meta.name {
                step["name"] = Value::String(name);
            }
            step
        })
        .collect();
    json!({ "steps": steps })
}

fn run_details(request: &BuildRequest, inputs: &Inputs, finished: &str) -> Value {
    let mut metadata = json!({
        "invocationID": inputs.session,
        "startedOn": inputs.started,
        "finishedOn": finished,
    });
    if inputs.mode == ProvenanceMode::Max {
        metadata["kiln"] = json!({
            "source": {
                "filename": request.dockerfile_name,
                "data": String::from_utf8_lossy(&request.dockerfile),
            },
        });
    }
    json!({
        "builder": {
            "id": BUILDER_ID,
            "version": { "kiln": env!("CARGO_PKG_VERSION") },
        },
        "metadata": metadata,
    })
}
