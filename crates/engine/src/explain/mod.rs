//! `kiln build --explain`: for each step that ran instead of coming from the cache, why. Every
//! build records what went into each step's key (its own key material as named facts, the
//! steps it builds on with their keys, the context files it copies) under the store root; a
//! build compares each step that ran with that record and names the difference: a context file,
//! a build argument or environment value, the base image, an earlier step, or a step the cache
//! never saw. The design is in `docs/dev/explain.md`.

mod reason;
mod record;

pub use reason::{Reason, StepExplanation};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_llb::{Definition, Digest, FileAction, Op, SourceOp};
use kiln_solver::{Event, EventKind};

use crate::build::BuildRequest;
use crate::ops::{BuildEnv, input_indexes};
use record::{InputRecord, Records, StepRecord};

/// What happened to a vertex in this build.
#[derive(Debug, Clone, Default)]
struct Outcome {
    ran: bool,
    key: Option<String>,
}

/// One build's explain state: the last records, and what this build did so far.
pub(crate) struct Session {
    root: PathBuf,
    path: PathBuf,
    last: Records,
    build_args: BTreeMap<String, String>,
    outcomes: Arc<Mutex<HashMap<Digest, Outcome>>>,
}

/// Which build definition a build is: the same context, Dockerfile and target share records.
fn definition_id(request: &BuildRequest) -> String {
    let canonical = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let context = request
        .context
        .as_deref()
        .map(canonical)
        .unwrap_or("-".into());
    let dockerfile = match &request.dockerfile_path {
        Some(p) => canonical(p),
        None => request.dockerfile_name.clone(),
    };
    let target = request.options.target.clone().unwrap_or_default();
    blake3::hash(format!("{context}\0{dockerfile}\0{target}").as_bytes())
        .to_hex()
        .to_string()
}

/// A step's identity across builds: its stage, its number in the stage and its instruction
/// (`builder#2 RUN`), from its progress name (`[builder 2/4] RUN make`). Vertices without a
/// step name (the context, inline documents) are not steps.
fn step_identity(name: &str) -> Option<String> {
    let rest = name.strip_prefix('[')?;
    let (inner, text) = rest.split_once("] ")?;
    if inner == "internal" {
        return None;
    }
    let (label, position) = match inner.rsplit_once(' ') {
        Some((label, pos)) => (label, pos),
        None => ("", inner),
    };
    let number = position.split_once('/')?.0;
    let keyword = text.split_whitespace().next().unwrap_or_default();
    Some(format!("{label}#{number} {keyword}"))
}

impl Session {
    pub(crate) fn open(root: &std::path::Path, request: &BuildRequest) -> Session {
        let path = record::records_path(root, &definition_id(request));
        Session {
            root: root.to_path_buf(),
            last: record::load(&path),
            path,
            build_args: request.options.build_args.iter().cloned().collect(),
            outcomes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Notes what the solver reported about a vertex.
    pub(crate) fn observe(&self, event: &Event<Digest>) {
        let mut outcomes = self.outcomes.lock().expect("explain outcomes");
        let o = outcomes.entry(event.vertex).or_default();
        match &event.kind {
            EventKind::Started | EventKind::Failed { .. } => o.ran = true,
            EventKind::Completed { key, .. } => {
                o.ran = true;
                o.key = Some(key.to_string());
            }
            EventKind::Cached { key, .. } => o.key = Some(key.to_string()),
            EventKind::Log { .. } | EventKind::Cancelled { .. } => {}
        }
    }

    /// Records what went into each step's key in this build, and explains the steps that ran.
    /// Failing to save the records is not the build's failure: the next explain knows less.
    pub(crate) fn finish(&self, definition: &Definition, env: &BuildEnv) -> Vec<StepExplanation> {
        let outcomes = self.outcomes.lock().expect("explain outcomes").clone();
        let mut ids: HashMap<Digest, (String, String)> = HashMap::new();
        for (digest, _) in definition.topological() {
            if let Some(name) = definition.metadata(&digest).name
                && let Some(id) = step_identity(&name)
                && !ids.values().any(|(i, _)| *i == id)
            {
                ids.insert(digest, (id, name));
            }
        }
        let mut now: BTreeMap<String, StepRecord> = BTreeMap::new();
        let mut order = Vec::new();
        for (digest, op) in definition.topological() {
            let Some((id, name)) = ids.get(&digest) else {
                continue;
            };
            let Some(outcome) = outcomes.get(&digest) else {
                continue;
            };
            let mut rec = StepRecord {
                name: name.clone(),
                key: outcome.key.clone(),
                ..StepRecord::default()
            };
            collect_facts(definition, op, &mut rec.facts, true);
            for input in input_indexes(op) {
                rec.inputs.push(match ids.get(&input) {
                    Some((iid, iname)) => InputRecord::Step {
                        id: iid.clone(),
                        name: iname.clone(),
                        key: outcomes.get(&input).and_then(|o| o.key.clone()),
                    },
                    None => {
                        if let Some(inner) = definition.get(&input) {
                            collect_facts(definition, inner, &mut rec.facts, false);
                        }
                        InputRecord::Internal
                    }
                });
            }
            // The same output key means the same files (a context copy's key is its content
            // key), so an unchanged step reuses last time's listing instead of listing again.
            let last = self.last.steps.get(id);
            if let Some(last) = last.filter(|l| l.key.is_some() && l.key == outcome.key) {
                rec.listing = last.listing.clone();
            } else if let Some(listing) = context_listing(definition, op, env)
                && let Ok(lid) = record::save_listing(&self.root, &listing)
            {
                rec.listing = Some(lid);
            }
            order.push((digest, id.clone(), outcome.ran, outcome.key.is_some()));
            now.insert(id.clone(), rec);
        }

        let mut arg_names: BTreeSet<String> = self.build_args.keys().cloned().collect();
        arg_names.extend(self.last.build_args.keys().cloned());
        let mut explained = Vec::new();
        for (digest, id, ran, _) in &order {
            if !ran {
                continue;
            }
            let rec = &now[id];
            let reasons = if definition.metadata(digest).ignore_cache {
                vec![Reason::NoCache]
            } else {
                match self.last.steps.get(id) {
                    None => vec![Reason::NeverSeen],
                    Some(last) => {
                        let listings = match (&last.listing, &rec.listing) {
                            (Some(a), Some(b)) if a != b => Some((
                                record::load_listing(&self.root, a).unwrap_or_default(),
                                record::load_listing(&self.root, b).unwrap_or_default(),
                            )),
                            (None, Some(b)) => Some((
                                Vec::new(),
                                record::load_listing(&self.root, b).unwrap_or_default(),
                            )),
                            _ => None,
                        };
                        let found = reason::Comparison {
                            last,
                            now: rec,
                            build_args: &arg_names,
                            listings,
                            input_steps: &now,
                            input_steps_last: &self.last.steps,
                        }
                        .reasons();
                        if found.is_empty() {
                            vec![Reason::CacheMissing]
                        } else {
                            found
                        }
                    }
                }
            };
            explained.push(StepExplanation {
                vertex: digest.to_string(),
                name: rec.name.clone(),
                reasons,
            });
        }

        // Keep the last record of a step this build did not reach (or that failed), forget
        // steps the Dockerfile no longer has.
        let current: BTreeSet<&String> = ids.values().map(|(id, _)| id).collect();
        let mut records = Records {
            version: 0,
            build_args: self.build_args.clone(),
            steps: self
                .last
                .steps
                .iter()
                .filter(|(id, _)| current.contains(id))
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect(),
        };
        for (_, id, _, has_key) in &order {
            if *has_key {
                records.steps.insert(id.clone(), now[id].clone());
            }
        }
        if let Err(e) = record::save(&self.path, &records) {
            tracing::warn!(error = %e, "failed to save the explain records");
        }
        explained
    }
}

/// A step's own key material as named facts (and, for inputs that are not steps of their own,
/// theirs). `own` adds the catch-all `definition` fact.
fn collect_facts(
    definition: &Definition,
    op: &Op,
    facts: &mut BTreeMap<String, String>,
    own: bool,
) {
    if own {
        let encoded = kiln_llb::encode_op_without_inputs(op, &input_indexes(op));
        facts.insert(
            "definition".into(),
            blake3::hash(&encoded).to_hex().to_string(),
        );
    }
    match op {
        Op::Source(SourceOp::Image(image)) => {
            let digest = image.digest.map(|d| d.to_string()).unwrap_or_default();
            facts.insert("image".into(), format!("{}@{digest}", image.reference));
        }
        Op::Source(SourceOp::Http(http)) => {
            facts.insert("url".into(), http.url.clone());
        }
        Op::Source(SourceOp::Git(git)) => {
            let reference = git.reference.clone().unwrap_or_default();
            facts.insert("git source".into(), format!("{}#{reference}", git.remote));
        }
        Op::Source(SourceOp::Scratch | SourceOp::Local(_)) | Op::Merge(_) => {}
        Op::Exec(exec) => {
            facts.insert("command".into(), exec.args.join(" "));
            for (k, v) in &exec.env {
                facts.insert(format!("env {k}"), v.clone());
            }
            facts.insert("workdir".into(), exec.cwd.clone());
            facts.insert("user".into(), exec.user.clone());
        }
        Op::File(file) => {
            for (n, action) in file.actions.iter().enumerate() {
                let (key, value) = match action {
                    FileAction::Copy(c) => {
                        let mut v = format!("{} -> {}", c.src, c.dest);
                        if let Some(o) = &c.owner {
                            v.push_str(&format!(" --chown={o}"));
                        }
                        if let Some(m) = &c.mode {
                            v.push_str(&format!(" --chmod={m:?}"));
                        }
                        for e in &c.exclude_patterns {
                            v.push_str(&format!(" --exclude={e}"));
                        }
                        (format!("copy {}", n + 1), v)
                    }
                    FileAction::Mkfile(m) => (
                        format!("inline file {}", m.path),
                        format!(
                            "{} bytes, sha256:{}",
                            m.data.len(),
                            kiln_llb::Digest::of(&m.data).hex()
                        ),
                    ),
                    FileAction::Mkdir(m) => (format!("mkdir {}", m.path), format!("{:o}", m.mode)),
                    FileAction::Rm(r) => (format!("rm {}", r.path), String::new()),
                    FileAction::Symlink(s) => (format!("symlink {}", s.path), s.target.clone()),
                };
                facts.insert(key, value);
            }
        }
    }
    // An internal input of an internal input (a file on scratch) adds its facts too.
    if !own {
        for input in input_indexes(op) {
            if let Some(inner) = definition.get(&input)
                && definition
                    .metadata(&input)
                    .name
                    .as_deref()
                    .and_then(step_identity)
                    .is_none()
            {
                collect_facts(definition, inner, facts, false);
            }
        }
    }
}

/// The context files a file op copies, when it copies from the context.
fn context_listing(
    definition: &Definition,
    op: &Op,
    env: &BuildEnv,
) -> Option<Vec<(String, String)>> {
    let Op::File(file) = op else { return None };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut any = false;
    for action in &file.actions {
        let FileAction::Copy(copy) = action else {
            continue;
        };
        let Some(Op::Source(SourceOp::Local(local))) = definition.get(&copy.source.vertex) else {
            continue;
        };
        let Some((_, dir)) = env.locals.iter().find(|(name, _)| *name == local.name) else {
            continue;
        };
        any = true;
        if let Ok(listing) = crate::context::listing(dir, copy) {
            out.extend(listing);
        }
    }
    out.sort();
    out.dedup();
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_identities_come_from_progress_names() {
        assert_eq!(
            step_identity("[builder 2/4] RUN make"),
            Some("builder#2 RUN".into())
        );
        assert_eq!(step_identity("[2/3] COPY . /app"), Some("#2 COPY".into()));
        assert_eq!(
            step_identity("[stage-1 1/2] FROM docker.io/library/busybox:latest@sha256:00"),
            Some("stage-1#1 FROM".into())
        );
        assert_eq!(step_identity("[internal] load build context"), None);
        assert_eq!(step_identity("preparing inline document"), None);
    }
}
