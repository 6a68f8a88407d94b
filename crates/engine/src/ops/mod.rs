//! LLB ops as solver operations, one module per op kind as BuildKit's `ops/`: `source` (image,
//! local context, URL), `exec` (RUN in a sandbox over an overlay snapshot), `file` (copies and
//! the other file actions in Rust on a mounted snapshot), `merge` (stacked trees). This module
//! holds what they share: the build's settings, the vertex, and the dispatch of the solver's
//! calls to the op kinds.

mod exec;
mod file;
mod merge;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_image::ImageStore;
use kiln_llb::{Digest, FileAction, NetworkMode, Op, SourceOp};
use kiln_solver::{ContentKey, ExecCtx, Operation};

use crate::error::EngineError;
use crate::mounts::Secrets;
use crate::value::{LocalDir, Value};

pub(crate) use exec::{devices_not_allowed, insecure_not_allowed};
pub(crate) use source::resolve_git_sources;

/// Settings shared by every vertex of one build.
#[derive(Debug)]
pub struct BuildEnv {
    pub images: Arc<ImageStore>,
    /// Local sources by name (`context`, `dockerfile`...).
    pub locals: Vec<(String, Arc<LocalDir>)>,
    /// The empty directory standing in for a missing context, removed with the build.
    pub _empty_context: Option<tempfile::TempDir>,
    /// Unique per build: local sources are keyed by it, so what is read from them is keyed by
    /// content instead.
    pub session: String,
    /// `kiln build --network`: the default for RUN steps.
    pub default_network: NetworkMode,
    /// `kiln build --secret`: what `RUN --mount=type=secret` reads.
    pub secrets: Arc<Secrets>,
    /// The graph's local-source vertices: only copies from these get a content key.
    pub local_sources: Vec<Digest>,
    /// `kiln build --allow security.insecure`: `RUN --security=insecure` may run privileged.
    pub allow_insecure: bool,
    /// The commit each git source's ref resolved to for this build (its cache key).
    pub git_commits: BTreeMap<Digest, String>,
    /// `kiln build --ssh`: what `RUN --mount=type=ssh` is served.
    pub ssh: Arc<crate::ssh::SshAgents>,
    /// `--add-host`, `--ulimit`, `--shm-size`: every RUN step gets them.
    pub run: crate::extras::RunSettings,
}

/// One LLB op of a build, ready for the solver.
pub struct Vertex {
    pub digest: Digest,
    pub op: Op,
    pub ignore_cache: bool,
    /// Environment added to an Exec op outside its digest and cache key (proxy settings).
    pub extra_env: Vec<(String, String)>,
    pub env: Arc<BuildEnv>,
}

impl Operation for Vertex {
    type Value = Value;
    type Error = EngineError;

    fn cache_key_base(&self) -> Vec<u8> {
        let mut key = b"kiln-engine/op/v2\0".to_vec();
        match &self.op {
            Op::Source(SourceOp::Image(image)) => self.image_key(image, &mut key),
            Op::Source(SourceOp::Git(git)) => self.git_key(git, &mut key),
            op => {
                // Inputs by position: their own keys stand for them in the solver's key.
                key.extend_from_slice(&kiln_llb::encode_op_without_inputs(op, &input_indexes(op)));
                if let Op::Source(SourceOp::Local(_)) = op {
                    self.local_key(&mut key);
                }
                if let Op::Exec(_) = op {
                    run_settings_key(&self.env.run, &mut key);
                }
            }
        }
        key
    }

    fn has_content_key(&self) -> bool {
        // Only copies from the build context are keyed by content. Claiming a content key for
        // a copy from another stage would make the solver materialise that stage just to
        // compute a key (and `None` anyway), serialising independent stages.
        matches!(&self.op, Op::File(file) if file.actions.iter().any(|a| matches!(
            a,
            FileAction::Copy(copy) if self.env.local_sources.contains(&copy.source.vertex)
        )))
    }

    async fn content_key(
        &self,
        inputs: &[Value],
        _ctx: &ExecCtx,
    ) -> Result<Option<ContentKey>, EngineError> {
        let Op::File(file) = &self.op else {
            return Ok(None);
        };
        file::content_key(file, &input_indexes(&self.op), inputs).await
    }

    async fn execute(&self, inputs: &[Value], ctx: &ExecCtx) -> Result<Value, EngineError> {
        match &self.op {
            Op::Source(SourceOp::Http(http)) => {
                source::download(self.env.images.clone(), http, self.digest).await
            }
            Op::Source(SourceOp::Git(git)) => {
                let commit = self.env.git_commits.get(&self.digest).cloned();
                source::git_checkout(self.env.images.clone(), git, commit, self.digest).await
            }
            Op::Source(source) => self.source(source),
            Op::Exec(exec) => self.exec(exec, inputs, ctx).await,
            Op::File(file) => file::execute(self, file, inputs).await,
            Op::Merge(merge) => merge::execute(self, merge, inputs).await,
        }
    }

    fn ignore_cache(&self) -> bool {
        self.ignore_cache
    }
}

/// What `--add-host`, `--ulimit` and `--shm-size` add to a RUN step's key (BuildKit keeps them
/// in the exec op): nothing when none is given, so other keys stay as they were.
fn run_settings_key(run: &crate::extras::RunSettings, key: &mut Vec<u8>) {
    if run.extra_hosts.is_empty() && run.ulimits.is_empty() && run.shm_size.is_none() {
        return;
    }
    key.extend_from_slice(b"\0run-settings\0");
    for (name, ip) in &run.extra_hosts {
        key.extend_from_slice(format!("host\0{name}\0{ip}\0").as_bytes());
    }
    for u in &run.ulimits {
        key.extend_from_slice(format!("ulimit\0{}\0{}\0{}\0", u.name, u.soft, u.hard).as_bytes());
    }
    if let Some(size) = run.shm_size {
        key.extend_from_slice(format!("shm\0{size}\0").as_bytes());
    }
}

/// The distinct input vertices of an op in the order the solver graph lists them.
pub fn input_indexes(op: &Op) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for input in op.inputs() {
        if !out.contains(&input.vertex) {
            out.push(input.vertex);
        }
    }
    out
}

/// The solved value of one input vertex, given the op's inputs in [`input_indexes`] order.
fn value_of<'a>(
    index: &[Digest],
    inputs: &'a [Value],
    digest: &Digest,
) -> Result<&'a Value, EngineError> {
    index
        .iter()
        .position(|d| d == digest)
        .and_then(|i| inputs.get(i))
        .ok_or_else(|| EngineError::Bug(format!("input {digest} of a vertex was not solved")))
}

/// Commits a prepared snapshot when its work succeeded, discards it otherwise.
fn commit_or_discard(
    images: &ImageStore,
    active: kiln_executor::snapshot::ActiveSnapshot,
    result: Result<(), EngineError>,
) -> Result<Value, EngineError> {
    match result {
        Ok(()) => Ok(Value::Snapshot(images.snapshots().commit(active)?)),
        Err(e) => {
            let _ = images.snapshots().discard(active);
            Err(e)
        }
    }
}
