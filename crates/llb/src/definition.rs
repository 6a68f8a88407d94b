//! A build graph: ops keyed by digest, a root output, and what humans need beside it
//! (progress names, source locations) kept out of the digests.

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;
use crate::encode::op_digest;
use crate::op::{Input, Op};

/// Hints about a vertex that do not change its result, so they stay out of its digest: two
/// builds that differ only here share cache.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OpMetadata {
    /// The progress name, e.g. `[builder 2/4] RUN make`.
    pub name: Option<String>,
    /// Free-form key/value descriptions (for printing and provenance), in order.
    pub description: BTreeMap<String, String>,
    /// Re-run this vertex even if a cached result exists (`--no-cache`).
    pub ignore_cache: bool,
    /// The Dockerfile stage this vertex was lowered for.
    pub stage: Option<String>,
    /// Environment given to an Exec op in addition to `ExecOp::env`. Proxy settings by
    /// convention do not change what a step produces, so, as in BuildKit, they are not part of
    /// the cache key.
    pub proxy_env: Vec<(String, String)>,
}

impl OpMetadata {
    /// Metadata with only a progress name.
    pub fn named(name: impl Into<String>) -> OpMetadata {
        OpMetadata {
            name: Some(name.into()),
            ..OpMetadata::default()
        }
    }

    /// Folds `other` into `self` when the same op is added twice: the first name wins (the
    /// step users see first), ignore-cache is sticky.
    fn merge(&mut self, other: OpMetadata) {
        if self.name.is_none() {
            self.name = other.name;
        }
        if self.stage.is_none() {
            self.stage = other.stage;
        }
        if self.proxy_env.is_empty() {
            self.proxy_env = other.proxy_env;
        }
        for (k, v) in other.description {
            self.description.entry(k).or_insert(v);
        }
        self.ignore_cache |= other.ignore_cache;
    }
}

/// A source file the graph was lowered from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SourceFile {
    /// As the user named it, e.g. `Dockerfile` or `build/Dockerfile.web`.
    pub name: String,
    /// The file's contents, so a renderer can show the offending lines.
    pub data: Vec<u8>,
}

/// A position in a source file; lines and columns count from 1, columns in bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// An inclusive range of positions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

/// Where a vertex came from: ranges in one source file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SourceLocation {
    /// Index into `SourceMap::files`.
    pub file: usize,
    pub ranges: Vec<Range>,
}

/// Vertices mapped back to their source ranges. A vertex made by several instructions (the
/// same op twice) keeps every location.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
    pub locations: BTreeMap<Digest, Vec<SourceLocation>>,
}

impl SourceMap {
    /// Registers a file and returns its index; the same name and contents give the same index.
    pub fn add_file(&mut self, name: impl Into<String>, data: Vec<u8>) -> usize {
        let name = name.into();
        if let Some(i) = self
            .files
            .iter()
            .position(|f| f.name == name && f.data == data)
        {
            return i;
        }
        self.files.push(SourceFile { name, data });
        self.files.len() - 1
    }

    /// Records that `vertex` comes from `location` (deduplicated).
    pub fn add_location(&mut self, vertex: Digest, location: SourceLocation) {
        let entry = self.locations.entry(vertex).or_default();
        if !entry.contains(&location) {
            entry.push(location);
        }
    }
}

/// A graph that cannot be built as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("failed to add vertex: input {0} is not in the definition")]
    UnknownInput(Input),
    #[error("failed to add vertex: input {0} names an output its vertex does not have")]
    UnknownOutput(Input),
    #[error("failed to set root: {0} is not in the definition")]
    UnknownRoot(Input),
}

/// A content-addressed DAG of ops with one root output.
///
/// Vertices can only be added after their inputs, so the graph is acyclic by construction and
/// insertion order is a topological order.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Definition {
    vertices: BTreeMap<Digest, Op>,
    /// Insertion order: every vertex comes after its inputs.
    order: Vec<Digest>,
    metadata: BTreeMap<Digest, OpMetadata>,
    source_map: SourceMap,
    root: Option<Input>,
}

impl Definition {
    pub fn new() -> Definition {
        Definition::default()
    }

    /// Adds `op` (or finds the equal op already there) and returns its digest.
    pub fn add(&mut self, op: Op) -> Result<Digest, DefinitionError> {
        self.add_with_metadata(op, OpMetadata::default())
    }

    /// Adds `op` with metadata. Adding an op that is already present merges the metadata
    /// into the existing vertex's (see `OpMetadata`) and returns the same digest.
    pub fn add_with_metadata(
        &mut self,
        op: Op,
        metadata: OpMetadata,
    ) -> Result<Digest, DefinitionError> {
        for input in op.inputs() {
            if !self.vertices.contains_key(&input.vertex) {
                return Err(DefinitionError::UnknownInput(input));
            }
            if input.output != 0 {
                return Err(DefinitionError::UnknownOutput(input));
            }
        }
        let digest = op_digest(&op);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.vertices.entry(digest) {
            slot.insert(op);
            self.order.push(digest);
        }
        if metadata != OpMetadata::default() {
            self.metadata.entry(digest).or_default().merge(metadata);
        }
        Ok(digest)
    }

    /// Sets the output the build produces.
    pub fn set_root(&mut self, root: Input) -> Result<(), DefinitionError> {
        if !self.vertices.contains_key(&root.vertex) {
            return Err(DefinitionError::UnknownRoot(root));
        }
        self.root = Some(root);
        Ok(())
    }

    pub fn root(&self) -> Option<Input> {
        self.root
    }

    pub fn get(&self, digest: &Digest) -> Option<&Op> {
        self.vertices.get(digest)
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.vertices.contains_key(digest)
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// The metadata of a vertex; the default for one that has none.
    pub fn metadata(&self, digest: &Digest) -> OpMetadata {
        self.metadata.get(digest).cloned().unwrap_or_default()
    }

    pub fn source_map(&self) -> &SourceMap {
        &self.source_map
    }

    pub fn source_map_mut(&mut self) -> &mut SourceMap {
        &mut self.source_map
    }

    /// Every vertex, inputs before the vertices that read them, in the order they were added.
    pub fn topological(&self) -> impl Iterator<Item = (Digest, &Op)> + '_ {
        self.order.iter().map(|d| (*d, &self.vertices[d]))
    }

    /// The vertices `from` needs (itself included), inputs first, in a deterministic
    /// depth-first order following each op's inputs in order.
    pub fn needed_by(&self, from: Digest) -> Vec<Digest> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        // Iterative post-order so a long chain of steps cannot overflow the stack.
        let mut stack: Vec<(Digest, bool)> = vec![(from, false)];
        while let Some((digest, expanded)) = stack.pop() {
            if done.contains(&digest) {
                continue;
            }
            let Some(op) = self.vertices.get(&digest) else {
                continue;
            };
            if expanded {
                done.insert(digest);
                out.push(digest);
                continue;
            }
            stack.push((digest, true));
            for input in op.inputs().iter().rev() {
                if !done.contains(&input.vertex) {
                    stack.push((input.vertex, false));
                }
            }
        }
        out
    }

    /// The vertices the root needs, inputs first; empty without a root.
    pub fn needed(&self) -> Vec<Digest> {
        match self.root {
            Some(root) => self.needed_by(root.vertex),
            None => Vec::new(),
        }
    }

    /// Adds every vertex of `other` (with its metadata, passed through `meta`, and its source
    /// locations) and returns `other`'s root as it is here. Equal ops are one vertex: this is
    /// how the graphs of several platforms become one solve whose shared steps run once.
    pub fn absorb(
        &mut self,
        other: &Definition,
        meta: impl Fn(&Digest, OpMetadata) -> OpMetadata,
    ) -> Result<Option<Input>, DefinitionError> {
        let files: Vec<usize> = other
            .source_map
            .files
            .iter()
            .map(|f| self.source_map.add_file(f.name.clone(), f.data.clone()))
            .collect();
        for digest in &other.order {
            let Some(op) = other.vertices.get(digest) else {
                continue;
            };
            let added = self.add_with_metadata(op.clone(), meta(digest, other.metadata(digest)))?;
            for location in other.source_map.locations.get(digest).into_iter().flatten() {
                let mut location = location.clone();
                location.file = files.get(location.file).copied().unwrap_or(location.file);
                self.source_map.add_location(added, location);
            }
        }
        Ok(other.root)
    }

    /// A copy holding only what the root needs (with their metadata and source locations).
    pub fn pruned(&self) -> Definition {
        let keep: BTreeSet<Digest> = self.needed().into_iter().collect();
        let mut source_map = self.source_map.clone();
        source_map.locations.retain(|d, _| keep.contains(d));
        Definition {
            vertices: self
                .vertices
                .iter()
                .filter(|(d, _)| keep.contains(d))
                .map(|(d, op)| (*d, op.clone()))
                .collect(),
            order: self
                .order
                .iter()
                .filter(|d| keep.contains(d))
                .copied()
                .collect(),
            metadata: self
                .metadata
                .iter()
                .filter(|(d, _)| keep.contains(d))
                .map(|(d, m)| (*d, m.clone()))
                .collect(),
            source_map,
            root: self.root,
        }
    }
}
