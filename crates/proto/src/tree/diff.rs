//! Which parts of a tree must travel. The client asks `FindMissing` top-down: first the root;
//! for a node the worker lacks, its subdirectories and files in the next batch, and so on. A
//! node the worker has stands for its whole subtree, so an unchanged directory costs one digest
//! however large it is, and a one-file edit costs one batch per level on its path.
//!
//! The worker's side, [`missing_under`], walks what it stores and names what it lacks, so a
//! worker that was asked to build a tree it does not fully have can ask for exactly that.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use kiln_llb::Digest;

use super::materialize::{Source, load_node};
use super::{EntryKind, Tree, TreeError};
use crate::v1::{BlobKind, BlobRef};

/// The client's top-down `FindMissing` conversation over one tree.
#[derive(Debug)]
pub struct Diff<'t> {
    tree: &'t Tree,
    batch: Vec<BlobRef>,
    asked: HashSet<Digest>,
    nodes: BTreeSet<Digest>,
    files: BTreeSet<Digest>,
}

/// What to upload: nodes and file contents the worker lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Missing nodes; upload each node's [`Node::bytes`](super::Node::bytes).
    pub nodes: Vec<Digest>,
    /// Missing file contents; read them from any of [`Tree::files`]'s paths.
    pub files: Vec<Digest>,
    /// Bytes of the missing files and nodes, uncompressed.
    pub bytes: u64,
}

impl<'t> Diff<'t> {
    pub fn new(tree: &'t Tree) -> Diff<'t> {
        let root = tree.root();
        Diff {
            tree,
            batch: vec![node_ref(tree, &root)],
            asked: HashSet::from([root]),
            nodes: BTreeSet::new(),
            files: BTreeSet::new(),
        }
    }

    /// The next `FindMissing` batch; empty when the conversation is over.
    pub fn query(&self) -> &[BlobRef] {
        &self.batch
    }

    /// Takes the worker's answer to [`Diff::query`] and prepares the next batch.
    pub fn answer(&mut self, missing: &[String]) -> Result<(), TreeError> {
        let asked: BTreeMap<&str, &BlobRef> =
            self.batch.iter().map(|b| (b.digest.as_str(), b)).collect();
        let mut next = Vec::new();
        for m in missing {
            let Some(blob) = asked.get(m.as_str()) else {
                return Err(TreeError::UnaskedDigest(m.clone()));
            };
            let digest: Digest = m.parse().map_err(|_| TreeError::UnaskedDigest(m.clone()))?;
            if blob.kind == BlobKind::File as i32 {
                self.files.insert(digest);
                continue;
            }
            self.nodes.insert(digest);
            let node = self
                .tree
                .node(&digest)
                .expect("asked nodes are in the tree");
            for entry in node.entries() {
                let (d, r) = match &entry.kind {
                    EntryKind::Dir { digest } => (*digest, node_ref(self.tree, digest)),
                    EntryKind::File { size, digest } => (
                        *digest,
                        BlobRef {
                            digest: digest.to_string(),
                            size: *size,
                            kind: BlobKind::File as i32,
                        },
                    ),
                    EntryKind::Symlink { .. } => continue,
                };
                if self.asked.insert(d) {
                    next.push(r);
                }
            }
        }
        self.batch = next;
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        self.batch.is_empty()
    }

    /// What the worker lacks, once [`Diff::is_done`].
    pub fn plan(&self) -> Plan {
        let mut bytes = 0;
        for d in &self.nodes {
            bytes += self.tree.node(d).map_or(0, |n| n.bytes().len() as u64);
        }
        for d in &self.files {
            bytes += self.tree.files()[d].size;
        }
        Plan {
            nodes: self.nodes.iter().copied().collect(),
            files: self.files.iter().copied().collect(),
            bytes,
        }
    }
}

fn node_ref(tree: &Tree, digest: &Digest) -> BlobRef {
    BlobRef {
        digest: digest.to_string(),
        size: tree.node(digest).map_or(0, |n| n.bytes().len() as u64),
        kind: BlobKind::Tree as i32,
    }
}

/// The worker's side: every node and file content under `root` that `source` lacks. A missing
/// node hides its subtree (its children are unknown until it arrives), so a caller repeats this
/// after each upload round until it returns nothing; then the tree is complete.
pub fn missing_under(root: &Digest, source: &dyn Source) -> Result<Vec<BlobRef>, TreeError> {
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(*root, 0usize)];
    while let Some((digest, depth)) = stack.pop() {
        if depth > super::MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        let node = match load_node(source, &digest) {
            Ok(n) => n,
            Err(TreeError::MissingNode(d)) => {
                missing.push(BlobRef {
                    digest: d.to_string(),
                    size: 0,
                    kind: BlobKind::Tree as i32,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in node.entries() {
            match &entry.kind {
                EntryKind::Dir { digest } if seen.insert(*digest) => {
                    stack.push((*digest, depth + 1));
                }
                EntryKind::File { size, digest } if seen.insert(*digest) => {
                    let has = source.contains(digest).map_err(|e| TreeError::Io {
                        what: "look up",
                        path: digest.to_string(),
                        source: e,
                    })?;
                    if !has {
                        missing.push(BlobRef {
                            digest: digest.to_string(),
                            size: *size,
                            kind: BlobKind::File as i32,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(missing)
}
