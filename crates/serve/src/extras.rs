//! The build inputs of protocol 2 as the engine's `BuildExtras` (RUN settings, provenance,
//! the context's origin, named contexts) and step explanations as `kiln.v1` messages.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_engine::{
    ContextOrigin, ContextSpec, ExplainReason, ProvenanceMode, RunSettings, StepExplanation, Ulimit,
};
use kiln_proto::v1 as pb;

/// `extra_hosts`, `ulimits` and `shm_size` into `run`.
pub(crate) fn run_settings(r: &pb::BuildRequest, run: &mut RunSettings) -> Result<(), String> {
    for (i, h) in r.extra_hosts.iter().enumerate() {
        let ip =
            h.ip.parse()
                .map_err(|_| format!("extra_hosts[{i}].ip: {:?} is not an IP address", h.ip))?;
        if h.name.is_empty() || h.name.contains(char::is_whitespace) {
            return Err(format!("extra_hosts[{i}].name: invalid host {:?}", h.name));
        }
        run.extra_hosts.push((h.name.clone(), ip));
    }
    for (i, u) in r.ulimits.iter().enumerate() {
        if u.name.is_empty() || u.soft > u.hard {
            return Err(format!(
                "ulimits[{i}]: invalid ulimit {}={}:{}",
                u.name, u.soft, u.hard
            ));
        }
        run.ulimits.push(Ulimit {
            name: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        });
    }
    run.shm_size = r.shm_size;
    Ok(())
}

pub(crate) fn provenance(mode: i32) -> Result<Option<ProvenanceMode>, String> {
    match pb::ProvenanceMode::try_from(mode) {
        Ok(pb::ProvenanceMode::Unspecified) => Ok(None),
        Ok(pb::ProvenanceMode::Min) => Ok(Some(ProvenanceMode::Min)),
        Ok(pb::ProvenanceMode::Max) => Ok(Some(ProvenanceMode::Max)),
        Err(_) => Err(format!("provenance: unknown value {mode}")),
    }
}

pub(crate) fn origin(o: Option<&pb::ContextOrigin>) -> Result<Option<ContextOrigin>, String> {
    Ok(match o.and_then(|o| o.kind.as_ref()) {
        None => None,
        Some(pb::context_origin::Kind::Git(g)) => Some(ContextOrigin::Git {
            url: g.url.clone(),
            commit: g.commit.clone(),
        }),
        Some(pb::context_origin::Kind::Url(u)) => Some(ContextOrigin::Url {
            url: u.url.clone(),
            digest: u
                .digest
                .parse()
                .map_err(|e| format!("origin.url.digest: {e}"))?,
        }),
    })
}

pub(crate) enum ContextError {
    Invalid(String),
    Unsupported(String),
}

/// The named contexts, with the directories already written for the `dir` ones (by index).
pub(crate) fn contexts(
    r: &pb::BuildRequest,
    dirs: &HashMap<usize, PathBuf>,
) -> Result<Vec<(String, ContextSpec)>, ContextError> {
    let mut out = Vec::new();
    for (i, nc) in r.named_contexts.iter().enumerate() {
        if nc.name.is_empty() {
            return Err(ContextError::Invalid(format!(
                "named_contexts[{i}].name: empty"
            )));
        }
        let spec = match &nc.source {
            Some(pb::named_context::Source::Dir(_)) => match dirs.get(&i) {
                Some(dir) => ContextSpec::Dir(dir.clone()),
                None => {
                    return Err(ContextError::Invalid(format!(
                        "named_contexts[{i}]: no tree"
                    )));
                }
            },
            Some(pb::named_context::Source::Image(reference)) => {
                ContextSpec::parse(&format!("docker-image://{reference}"))
                    .map_err(|e| ContextError::Invalid(format!("named_contexts[{i}].image: {e}")))?
            }
            Some(pb::named_context::Source::Url(url)) => match ContextSpec::parse(url) {
                Ok(spec @ ContextSpec::Url(_)) => spec,
                Ok(_) => {
                    return Err(ContextError::Unsupported(format!(
                        "--build-context {}={url} with a remote builder",
                        nc.name
                    )));
                }
                Err(e) => {
                    return Err(ContextError::Invalid(format!(
                        "named_contexts[{i}].url: {e}"
                    )));
                }
            },
            None => {
                return Err(ContextError::Invalid(format!(
                    "named_contexts[{i}]: no source"
                )));
            }
        };
        out.push((nc.name.clone(), spec));
    }
    Ok(out)
}

/// `--explain`'s answer as the message clients print.
pub(crate) fn explanations(steps: Vec<StepExplanation>) -> pb::Explanations {
    pb::Explanations {
        steps: steps
            .into_iter()
            .map(|s| pb::StepExplanation {
                vertex: s.vertex,
                name: s.name,
                reasons: s.reasons.into_iter().map(reason).collect(),
            })
            .collect(),
    }
}

fn reason(r: ExplainReason) -> pb::ExplainReason {
    let of =
        |kind: &str, name: String, old: Option<String>, new: Option<String>| pb::ExplainReason {
            kind: kind.into(),
            name,
            old,
            new,
            count: 0,
        };
    match r {
        ExplainReason::NeverSeen => of("never-seen", String::new(), None, None),
        ExplainReason::ContextFile { path, old, new } => of("context-file", path, old, new),
        ExplainReason::MoreContextFiles { count } => pb::ExplainReason {
            kind: "more-context-files".into(),
            count: count as u64,
            ..Default::default()
        },
        ExplainReason::BuildArg { name, old, new } => of("build-arg", name, old, new),
        ExplainReason::Env { name, old, new } => of("env", name, old, new),
        ExplainReason::BaseImage { name, old, new } => of("base-image", name, Some(old), Some(new)),
        ExplainReason::EarlierStep { name } => of("earlier-step", name, None, None),
        ExplainReason::Instruction { what, old, new } => of("instruction", what, old, new),
        ExplainReason::NoCache => of("no-cache", String::new(), None, None),
        ExplainReason::CacheMissing => of("cache-missing", String::new(), None, None),
    }
}
