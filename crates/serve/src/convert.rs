//! `kiln.v1` messages to the engine's types and back: the build request (with outputs made to
//! write into the build's artifact directory), progress events, the result and the failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use kiln_engine::{
    BuildError, BuildRequest, CacheExport, CacheImport, CacheMode, EventKind, Progress, SshSpec,
    Stream,
};

use crate::extras;
use kiln_image::{Output, OutputKind};
use kiln_llb::{NetworkMode, Platform};
use kiln_proto::v1 as pb;
use pb::build_down::Msg;

/// Why a request cannot be run, with the gRPC code it gets.
#[derive(Debug)]
pub(crate) enum Refusal {
    Invalid(String),
    NotSupported(String),
}

impl Refusal {
    pub(crate) fn to_failure(&self) -> pb::BuildFailure {
        let (kind, message) = match self {
            Refusal::Invalid(m) => (pb::FailureKind::Invalid, m.clone()),
            Refusal::NotSupported(m) => (pb::FailureKind::NotSupported, m.clone()),
        };
        pb::BuildFailure {
            kind: kind as i32,
            message,
            ..Default::default()
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

fn unsupported(message: impl Into<String>) -> Refusal {
    Refusal::NotSupported(format!("not supported yet: {}", message.into()))
}

/// One output as the engine writes it on the worker: image outputs as asked, every other kind
/// into `artifacts/N` (the client fetches it with Download and unpacks it where it asked).
fn output(index: usize, o: &pb::Output, artifacts: &Path) -> Result<Output, Refusal> {
    let kind = match pb::OutputKind::try_from(o.kind) {
        Ok(pb::OutputKind::Image) => "image",
        Ok(pb::OutputKind::Oci) => "oci",
        Ok(pb::OutputKind::Docker) => "docker",
        // A directory comes back as a tar of it, unpacked by the client.
        Ok(pb::OutputKind::Local | pb::OutputKind::Tar) => "tar",
        _ => {
            return Err(invalid(format!(
                "outputs[{index}].kind: unknown value {}",
                o.kind
            )));
        }
    };
    // BuildKit's syntax, parsed by the same code as `-o` on the command line.
    let mut spec = format!("type={kind}");
    if kind != "image" {
        spec.push_str(&format!(
            ",dest={}",
            artifacts.join(index.to_string()).display()
        ));
    }
    if !o.names.is_empty() && kind != "tar" {
        spec.push_str(&format!(",name={}", o.names.join(";")));
    }
    if o.push {
        spec.push_str(",push=true");
    }
    if let Some(m) = o.oci_mediatypes {
        spec.push_str(&format!(",oci-mediatypes={m}"));
    }
    match pb::Compression::try_from(o.compression) {
        Ok(pb::Compression::Unspecified) => {}
        Ok(pb::Compression::None) => spec.push_str(",compression=uncompressed"),
        Ok(pb::Compression::Gzip) => spec.push_str(",compression=gzip"),
        Ok(pb::Compression::Zstd) => spec.push_str(",compression=zstd"),
        Err(_) => {
            return Err(invalid(format!(
                "outputs[{index}].compression: unknown value {}",
                o.compression
            )));
        }
    }
    if let Some(level) = o.compression_level {
        spec.push_str(&format!(",compression-level={level}"));
    }
    spec.parse::<Output>()
        .map_err(|e| invalid(format!("outputs[{index}]: {e}")))
}

fn cache_mode(mode: i32, field: &str) -> Result<CacheMode, Refusal> {
    match pb::CacheMode::try_from(mode) {
        Ok(pb::CacheMode::Unspecified | pb::CacheMode::Min) => Ok(CacheMode::Min),
        Ok(pb::CacheMode::Max) => Ok(CacheMode::Max),
        Err(_) => Err(invalid(format!("{field}: unknown value {mode}"))),
    }
}

/// The engine's request for `r`, with the context at `context` (already materialized) and
/// file outputs written under `artifacts`.
pub(crate) fn request(
    r: &pb::BuildRequest,
    context: Option<&Path>,
    named_dirs: &HashMap<usize, PathBuf>,
    artifacts: &Path,
) -> Result<BuildRequest, Refusal> {
    let name = if r.dockerfile_name.is_empty() {
        "Dockerfile"
    } else {
        &r.dockerfile_name
    };
    let mut req = BuildRequest::new(context.map(Path::to_path_buf), r.dockerfile.clone(), name);
    let o = &mut req.options;
    o.build_args = r
        .build_args
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    o.target = (!r.target.is_empty()).then(|| r.target.clone());
    o.labels = r
        .labels
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    o.platform = r.platform.as_ref().map(|p| Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
    });
    o.no_cache = r.no_cache;
    o.no_cache_filter = r.no_cache_filter.clone();
    o.network = match pb::NetworkMode::try_from(r.network) {
        Ok(pb::NetworkMode::Unspecified | pb::NetworkMode::Default) => NetworkMode::Default,
        Ok(pb::NetworkMode::Host) => NetworkMode::Host,
        Ok(pb::NetworkMode::None) => NetworkMode::None,
        Err(_) => return Err(invalid(format!("network: unknown value {}", r.network))),
    };
    o.source_date_epoch = r.source_date_epoch;
    o.hostname = (!r.hostname.is_empty()).then(|| r.hostname.clone());
    req.tags = r.tags.clone();
    req.max_parallelism = (r.max_parallelism > 0).then_some(r.max_parallelism as usize);
    req.pull = r.pull;
    // The agents are the client's: the session reaches them over the stream.
    req.extras.ssh = r
        .ssh
        .iter()
        .map(|s| SshSpec {
            id: if s.id.is_empty() {
                "default".into()
            } else {
                s.id.clone()
            },
            paths: Vec::new(),
        })
        .collect();
    extras::run_settings(r, &mut req.extras.run).map_err(invalid)?;
    req.extras.provenance = extras::provenance(r.provenance).map_err(invalid)?;
    req.extras.origin = extras::origin(r.origin.as_ref()).map_err(invalid)?;
    req.extras.contexts = extras::contexts(r, named_dirs).map_err(|e| match e {
        extras::ContextError::Invalid(m) => invalid(m),
        extras::ContextError::Unsupported(m) => unsupported(m),
    })?;
    req.explain = r.explain;
    for (i, c) in r.cache_from.iter().enumerate() {
        match &c.source {
            Some(pb::cache_import::Source::Registry(reg)) => {
                req.cache_from.push(CacheImport::Registry {
                    reference: reg.reference.clone(),
                })
            }
            Some(pb::cache_import::Source::ClientDir(_)) => {
                return Err(unsupported(
                    "--cache-from type=local with a remote builder (use type=registry)",
                ));
            }
            None => return Err(invalid(format!("cache_from[{i}]: no source"))),
        }
    }
    for (i, c) in r.cache_to.iter().enumerate() {
        match &c.dest {
            Some(pb::cache_export::Dest::Registry(reg)) => {
                req.cache_to.push(CacheExport::Registry {
                    reference: reg.reference.clone(),
                    mode: cache_mode(reg.mode, &format!("cache_to[{i}].mode"))?,
                    ignore_error: reg.ignore_error,
                })
            }
            Some(pb::cache_export::Dest::Inline(_)) => req.cache_to.push(CacheExport::Inline),
            Some(pb::cache_export::Dest::ClientDir(_)) => {
                return Err(unsupported(
                    "--cache-to type=local with a remote builder (use type=registry)",
                ));
            }
            None => return Err(invalid(format!("cache_to[{i}]: no destination"))),
        }
    }
    for (i, o) in r.outputs.iter().enumerate() {
        let out = output(i, o, artifacts)?;
        // `--push` of the CLI arrives as push on the image output.
        req.outputs.push(out);
    }
    req.push = false;
    for e in &r.entitlements {
        match e.as_str() {
            "security.insecure" => req.allow_insecure = true,
            "network.host" => {}
            "device" => req.extras.run.allow_devices = true,
            other => return Err(invalid(format!("unknown entitlement {other:?}"))),
        }
    }
    if let Some(commit) = &r.commit {
        let mut spec = match pb::Compression::try_from(commit.compression) {
            Ok(pb::Compression::Unspecified) => None,
            Ok(pb::Compression::None) => Some("uncompressed".to_string()),
            Ok(pb::Compression::Gzip) => Some("gzip".to_string()),
            Ok(pb::Compression::Zstd) => Some("zstd".to_string()),
            Err(_) => {
                return Err(invalid(format!(
                    "commit.compression: unknown value {}",
                    commit.compression
                )));
            }
        };
        if let (Some(s), Some(level)) = (&mut spec, commit.level) {
            s.push_str(&format!(",level={level}"));
        }
        if let Some(spec) = spec {
            req.commit.compression = spec
                .parse()
                .map_err(|e| invalid(format!("commit.compression: {e}")))?;
        }
    }
    Ok(req)
}

fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// One engine progress report as the message clients see.
pub(crate) fn progress(p: Progress) -> Option<Msg> {
    Some(match p {
        Progress::Steps(steps) => Msg::Vertices(pb::Vertices {
            vertices: steps
                .into_iter()
                .map(|(digest, name)| pb::VertexInfo {
                    digest: digest.to_string(),
                    name,
                    ..Default::default()
                })
                .collect(),
        }),
        Progress::Vertex(e) => {
            use pb::vertex_event::Kind;
            let kind = match e.kind {
                EventKind::Cached { key, content } => Kind::Cached(pb::Cached {
                    key: key.to_string(),
                    content,
                }),
                EventKind::Started => Kind::Started(pb::Started {}),
                EventKind::Log { stream, data } => Kind::Log(pb::Log {
                    stream: match stream {
                        Stream::Stdout => pb::LogStream::Stdout,
                        Stream::Stderr => pb::LogStream::Stderr,
                    } as i32,
                    data,
                }),
                EventKind::Completed { key, duration } => Kind::Completed(pb::Completed {
                    key: key.to_string(),
                    duration_nanos: duration.as_nanos() as u64,
                }),
                EventKind::Failed { error, duration } => Kind::Failed(pb::Failed {
                    error,
                    duration_nanos: duration.as_nanos() as u64,
                }),
                EventKind::Cancelled { duration } => Kind::Cancelled(pb::Cancelled {
                    duration_nanos: duration.as_nanos() as u64,
                }),
            };
            Msg::Event(pb::VertexEvent {
                vertex: e.vertex.to_string(),
                number: e.number,
                time_unix_nanos: nanos(e.time),
                kind: Some(kind),
            })
        }
        Progress::Warning(message) => Msg::Warning(pb::Warning {
            message,
            ..Default::default()
        }),
        // Notices travel as warnings without a vertex, marked so the client tells them apart.
        Progress::Info(message) => Msg::Warning(pb::Warning {
            message,
            vertex: INFO_MARK.into(),
            location: None,
        }),
        Progress::Explain(steps) => Msg::Explain(extras::explanations(steps)),
    })
}

/// The `vertex` of a `Warning` that is an engine notice, not a warning.
pub const INFO_MARK: &str = "info";

fn range(r: &kiln_llb::Range) -> pb::SourceRange {
    pb::SourceRange {
        start_line: r.start.line,
        start_column: r.start.column,
        end_line: r.end.line,
        end_column: r.end.column,
    }
}

/// A failed build as the message clients see.
pub(crate) fn failure(e: &BuildError) -> pb::BuildFailure {
    match e {
        BuildError::Frontend { diagnostic, .. } => pb::BuildFailure {
            kind: pb::FailureKind::Frontend as i32,
            message: e.to_string(),
            diagnostic: Some(pb::Diagnostic {
                severity: match diagnostic.severity {
                    kiln_frontend::diagnostic::Severity::Error => pb::Severity::Error,
                    kiln_frontend::diagnostic::Severity::Warning => pb::Severity::Warning,
                } as i32,
                message: diagnostic.message.clone(),
                file: diagnostic.file.clone().unwrap_or_default(),
                span: diagnostic.span.map(|s| pb::SourceRange {
                    start_line: s.start.line,
                    start_column: s.start.column,
                    end_line: s.end.line,
                    end_column: s.end.column,
                }),
                help: diagnostic.help.clone().unwrap_or_default(),
                notes: diagnostic.notes.clone(),
            }),
            step: None,
        },
        BuildError::Invalid(m) => pb::BuildFailure {
            kind: pb::FailureKind::Invalid as i32,
            message: m.clone(),
            ..Default::default()
        },
        BuildError::Step {
            vertex,
            name,
            message,
            location,
        } => pb::BuildFailure {
            kind: pb::FailureKind::Step as i32,
            message: e.to_string(),
            diagnostic: None,
            step: Some(pb::StepFailure {
                vertex: vertex.to_string(),
                name: name.clone(),
                message: message.clone(),
                location: location.as_ref().map(|l| pb::SourceLocation {
                    file: l.file.clone(),
                    ranges: l.ranges.iter().map(range).collect(),
                }),
            }),
        },
        BuildError::Cancelled => pb::BuildFailure {
            kind: pb::FailureKind::Cancelled as i32,
            message: "build cancelled".into(),
            ..Default::default()
        },
        BuildError::Engine(engine) => {
            let message = chain(engine);
            let kind = if message.starts_with("not supported yet") {
                pb::FailureKind::NotSupported
            } else {
                pb::FailureKind::Worker
            };
            pb::BuildFailure {
                kind: kind as i32,
                message,
                ..Default::default()
            }
        }
    }
}

/// An error and its causes on one line, each once.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether an output is a file the client fetches.
pub(crate) fn is_artifact(o: &Output) -> bool {
    o.kind != OutputKind::Image
}
