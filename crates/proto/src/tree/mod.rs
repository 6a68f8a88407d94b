//! The build context as a Merkle tree: each directory is a node whose canonical bytes
//! (`encode.rs`) list its entries sorted by name, with each file's content digest and each
//! subdirectory's node digest, so a node's sha256 changes exactly when something below it does.
//!
//! The client builds the tree from its context walk ([`Tree::build`]), asks the worker which
//! nodes and files it lacks (`diff.rs`), and uploads only those; the worker writes the tree into
//! a directory from its content store (`materialize.rs`). The tree never reads files itself:
//! content digests come from the caller (the engine's stat cache).

mod diff;
mod encode;
mod materialize;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_llb::Digest;

pub use diff::{Diff, Plan, missing_under};
pub use encode::{MAGIC, MAX_NAME, MAX_TARGET, decode, encode};
pub use materialize::{MaterializeOptions, Source, materialize};

/// The deepest tree kiln accepts. Far beyond real contexts, and low enough that the recursive
/// build and write (one open directory per level) fit a 2 MiB thread stack and the default
/// 1024 open files.
pub const MAX_DEPTH: usize = 512;

/// The metadata of an entry that a build can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Metadata {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`); no file type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time: COPY keeps it, so it is part of the tree.
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file: its size and the sha256 of its content.
    File { size: u64, digest: Digest },
    /// A directory: its node's digest.
    Dir { digest: Digest },
    /// A symbolic link and its target, kept as written (never followed).
    Symlink { target: String },
}

/// One entry of a directory node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// One path component: not empty, `.` or `..`, without `/` or NUL.
    pub name: String,
    pub meta: Metadata,
    pub kind: EntryKind,
}

/// A directory node: its entries, canonical bytes and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    entries: Vec<Entry>,
    bytes: Vec<u8>,
    digest: Digest,
}

impl Node {
    /// A node from entries in any order; names must be valid and unique.
    pub fn new(mut entries: Vec<Entry>) -> Result<Node, TreeError> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in entries.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(TreeError::Duplicate(pair[0].name.clone()));
            }
        }
        for e in &entries {
            check_name(&e.name).map_err(|reason| TreeError::BadPath {
                path: e.name.clone(),
                reason,
            })?;
        }
        // Decoding what we encode checks the remaining rules (mode bits, target) in one place.
        let bytes = encode(&entries);
        decode(&bytes)?;
        let digest = Digest::of(&bytes);
        Ok(Node {
            entries,
            bytes,
            digest,
        })
    }

    /// A node from bytes received from a peer, checked against the digest it was named by.
    pub fn decode(expected: &Digest, bytes: Vec<u8>) -> Result<Node, TreeError> {
        let digest = Digest::of(&bytes);
        if digest != *expected {
            return Err(TreeError::NodeDigest {
                expected: *expected,
                actual: digest,
            });
        }
        let entries = decode(&bytes)?;
        Ok(Node {
            entries,
            bytes,
            digest,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// What the context walk found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    File { size: u64, digest: Digest },
    Dir,
    Symlink { target: String },
}

/// One path of the context walk: `a/b/c`, relative, `/`-separated, without `.`/`..` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: String,
    pub meta: Metadata,
    pub kind: InputKind,
}

/// A file's content in the tree and where it is in the context (every path that has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlob {
    pub size: u64,
    pub paths: Vec<String>,
}

/// A whole context tree on the client.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Digest,
    nodes: BTreeMap<Digest, Node>,
    files: BTreeMap<Digest, FileBlob>,
    file_count: u64,
    total_bytes: u64,
}

/// Why a tree could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("invalid context path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("context path {0:?} appears twice")]
    Duplicate(String),
    #[error("context path {path:?} is inside {parent:?}, which is not a directory")]
    ParentNotDir { path: String, parent: String },
    #[error("context path {0:?} is listed as a file or symlink, but other paths are inside it")]
    LeafWithChildren(String),
    #[error("invalid tree node at byte {offset}: {reason}")]
    BadNode { offset: usize, reason: String },
    #[error("tree node {expected} has bytes that hash to {actual}")]
    NodeDigest { expected: Digest, actual: Digest },
    #[error("tree node {0} is not in the store")]
    MissingNode(Digest),
    #[error("file content {digest} for {path} is not in the store")]
    MissingFile { digest: Digest, path: String },
    #[error("file content {digest} for {path} has {actual} bytes, the tree says {size}")]
    FileSize {
        digest: Digest,
        path: String,
        size: u64,
        actual: u64,
    },
    #[error("the tree is deeper than {MAX_DEPTH} directories")]
    TooDeep,
    #[error("cannot write the context into {0}: it exists and is not an empty directory")]
    DestNotEmpty(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the worker answered FindMissing with {0}, which was not asked")]
    UnaskedDigest(String),
}

/// Whether `name` can be one entry name. Everything that could leave the directory (`..`, `/`)
/// or confuse a file system (`.`, empty, NUL, too long) is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed as a name"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err("a name cannot contain '/' or NUL".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("name longer than {MAX_NAME} bytes"));
    }
    Ok(())
}

/// The directory being assembled by [`Tree::build`].
#[derive(Default)]
struct DirBuild {
    /// `None` until the walk lists the directory itself (then its metadata is used).
    meta: Option<Metadata>,
    children: BTreeMap<String, Child>,
}

enum Child {
    Leaf(Metadata, InputKind),
    Dir(DirBuild),
}

/// Metadata of a directory the walk did not list but a path runs through.
const IMPLICIT_DIR: Metadata = Metadata {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime_secs: 0,
    mtime_nanos: 0,
};

impl Tree {
    /// Builds the tree of a context walk. Paths may come in any order; a directory the walk
    /// does not list (only paths inside it) gets mode 0755, owner 0:0 and mtime 0. The root
    /// itself is implicit and has no metadata.
    pub fn build(inputs: impl IntoIterator<Item = Input>) -> Result<Tree, TreeError> {
        let mut root = DirBuild::default();
        for input in inputs {
            insert(&mut root, input)?;
        }
        let mut tree = Tree {
            root: Digest::of(b""),
            nodes: BTreeMap::new(),
            files: BTreeMap::new(),
            file_count: 0,
            total_bytes: 0,
        };
        tree.root = tree.seal(root, "")?;
        Ok(tree)
    }

    /// Turns a built directory into nodes, children first; returns its digest.
    fn seal(&mut self, dir: DirBuild, prefix: &str) -> Result<Digest, TreeError> {
        let mut entries = Vec::with_capacity(dir.children.len());
        for (name, child) in dir.children {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let (meta, kind) = match child {
                Child::Dir(sub) => {
                    let meta = sub.meta.unwrap_or(IMPLICIT_DIR);
                    let digest = self.seal(sub, &path)?;
                    (meta, EntryKind::Dir { digest })
                }
                Child::Leaf(meta, InputKind::File { size, digest }) => {
                    self.file_count += 1;
                    self.total_bytes += size;
                    let blob = self.files.entry(digest).or_insert(FileBlob {
                        size,
                        paths: Vec::new(),
                    });
                    if blob.size != size {
                        return Err(TreeError::BadPath {
                            path,
                            reason: format!(
                                "content {digest} given with sizes {} and {size}",
                                blob.size
                            ),
                        });
                    }
                    blob.paths.push(path);
                    (meta, EntryKind::File { size, digest })
                }
                Child::Leaf(meta, InputKind::Symlink { target }) => {
                    (meta, EntryKind::Symlink { target })
                }
                Child::Leaf(_, InputKind::Dir) => unreachable!("directories are Child::Dir"),
            };
            entries.push(Entry { name, meta, kind });
        }
        let node = Node::new(entries).map_err(|e| match e {
            TreeError::BadNode { reason, .. } => TreeError::BadPath {
                path: prefix.to_string(),
                reason,
            },
            other => other,
        })?;
        let digest = node.digest();
        self.nodes.insert(digest, node);
        Ok(digest)
    }

    /// The root node's digest: the context's identity.
    pub fn root(&self) -> Digest {
        self.root
    }

    pub fn node(&self, digest: &Digest) -> Option<&Node> {
        self.nodes.get(digest)
    }

    /// Every distinct node.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Every distinct file content, with the paths that have it.
    pub fn files(&self) -> &BTreeMap<Digest, FileBlob> {
        &self.files
    }

    /// Regular files in the tree (a content at two paths counts twice).
    pub fn file_count(&self) -> u64 {
        self.file_count
    }

    /// Bytes of all regular files (a content at two paths counts twice).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Every entry with its path, depth first in name order.
    pub fn walk(&self) -> Vec<(String, Entry)> {
        let mut out = Vec::new();
        self.walk_into(&self.root, "", &mut out);
        out
    }

    fn walk_into(&self, digest: &Digest, prefix: &str, out: &mut Vec<(String, Entry)>) {
        let Some(node) = self.nodes.get(digest) else {
            return;
        };
        for e in node.entries() {
            let path = if prefix.is_empty() {
                e.name.clone()
            } else {
                format!("{prefix}/{}", e.name)
            };
            out.push((path.clone(), e.clone()));
            if let EntryKind::Dir { digest } = &e.kind {
                self.walk_into(digest, &path, out);
            }
        }
    }
}

fn insert(root: &mut DirBuild, input: Input) -> Result<(), TreeError> {
    let bad = |reason: String| TreeError::BadPath {
        path: input.path.clone(),
        reason,
    };
    if input.path.len() > encode::MAX_TARGET {
        return Err(bad("path longer than 4096 bytes".into()));
    }
    if input.meta.mode & !0o7777 != 0 {
        return Err(bad(format!(
            "mode {:o} has file type bits (give mode & 0o7777)",
            input.meta.mode
        )));
    }
    let parts: Vec<&str> = input.path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(TreeError::TooDeep);
    }
    for part in &parts {
        check_name(part).map_err(|why| bad(format!("component {part:?}: {why}")))?;
    }
    let (last, parents) = parts.split_last().expect("split yields one part at least");
    let mut dir = root;
    for (i, part) in parents.iter().enumerate() {
        let child = dir
            .children
            .entry((*part).to_string())
            .or_insert_with(|| Child::Dir(DirBuild::default()));
        dir = match child {
            Child::Dir(d) => d,
            Child::Leaf(..) => {
                return Err(TreeError::ParentNotDir {
                    path: input.path.clone(),
                    parent: parts[..=i].join("/"),
                });
            }
        };
    }
    match (dir.children.get_mut(*last), input.kind) {
        (None, InputKind::Dir) => {
            dir.children.insert(
                (*last).to_string(),
                Child::Dir(DirBuild {
                    meta: Some(input.meta),
                    children: BTreeMap::new(),
                }),
            );
        }
        // A directory first seen as a parent, now listed itself.
        (Some(Child::Dir(d)), InputKind::Dir) if d.meta.is_none() => d.meta = Some(input.meta),
        (Some(Child::Dir(d)), InputKind::Dir) if d.meta.is_some() => {
            return Err(TreeError::Duplicate(input.path.clone()));
        }
        (None, kind) => {
            if let InputKind::Symlink { target } = &kind
                && (target.is_empty() || target.contains('\0') || target.len() > MAX_TARGET)
            {
                return Err(bad("invalid symlink target".into()));
            }
            dir.children
                .insert((*last).to_string(), Child::Leaf(input.meta, kind));
        }
        (Some(Child::Dir(_)), _) => return Err(TreeError::LeafWithChildren(input.path.clone())),
        (Some(_), _) => return Err(TreeError::Duplicate(input.path.clone())),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
