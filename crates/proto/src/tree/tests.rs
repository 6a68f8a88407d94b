//! Tree tests: the encoding is pinned, decoding refuses what encoding would never write, and
//! property tests check the round trip and that an edit changes exactly its ancestors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read};

use kiln_llb::Digest;
use proptest::prelude::*;

use super::*;
use crate::v1::BlobKind;

fn meta(mode: u32) -> Metadata {
    Metadata {
        mode,
        uid: 0,
        gid: 0,
        mtime_secs: 1_700_000_000,
        mtime_nanos: 5,
    }
}

fn file(path: &str, content: &[u8]) -> Input {
    Input {
        path: path.into(),
        meta: meta(0o644),
        kind: InputKind::File {
            size: content.len() as u64,
            digest: Digest::of(content),
        },
    }
}

fn dir(path: &str) -> Input {
    Input {
        path: path.into(),
        meta: meta(0o755),
        kind: InputKind::Dir,
    }
}

fn link(path: &str, target: &str) -> Input {
    Input {
        path: path.into(),
        meta: meta(0o777),
        kind: InputKind::Symlink {
            target: target.into(),
        },
    }
}

fn sample() -> Tree {
    Tree::build([
        file("Dockerfile", b"FROM busybox\n"),
        dir("src"),
        file("src/main.rs", b"fn main() {}\n"),
        file("src/lib/a.txt", b"a"),
        link("latest", "src/main.rs"),
    ])
    .unwrap()
}

#[test]
fn encoding_is_pinned() {
    // Changing the node encoding changes every context digest: it must be deliberate (bump the
    // magic's version) and this golden value updated with it.
    let tree = sample();
    assert_eq!(
        tree.root().to_string(),
        "sha256:91b91d462cc9f100c671a24dca5bfb105da6915dc07081e704fe44d1b7943e57"
    );
    let root = tree.node(&tree.root()).unwrap();
    let names: Vec<&str> = root.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Dockerfile", "latest", "src"]);
    assert!(root.bytes().starts_with(MAGIC));
}

#[test]
fn implicit_directories_get_default_metadata() {
    let tree = sample();
    let walk: BTreeMap<String, Entry> = tree.walk().into_iter().collect();
    assert_eq!(walk["src/lib"].meta.mode, 0o755);
    assert_eq!(walk["src/lib"].meta.mtime_secs, 0);
    assert_eq!(walk["src"].meta.mtime_secs, 1_700_000_000);
    assert_eq!(tree.file_count(), 3);
    assert_eq!(tree.total_bytes(), 13 + 13 + 1);
}

#[test]
fn bad_paths_are_refused_by_name() {
    for (path, needle) in [
        ("/etc/passwd", "empty name"),
        ("../x", "\"..\" is not allowed"),
        ("a/./b", "\".\" is not allowed"),
        ("a//b", "empty name"),
        ("a/", "empty name"),
        ("", "empty name"),
    ] {
        let err = Tree::build([file(path, b"x")]).unwrap_err().to_string();
        assert!(err.contains(needle), "{path:?}: {err}");
        assert!(err.contains(&format!("{path:?}")), "{path:?}: {err}");
    }
    let dup = Tree::build([file("a", b"1"), file("a", b"2")]).unwrap_err();
    assert_eq!(dup.to_string(), "context path \"a\" appears twice");
    let parent = Tree::build([file("a", b"1"), file("a/b", b"2")]).unwrap_err();
    assert_eq!(
        parent.to_string(),
        "context path \"a/b\" is inside \"a\", which is not a directory"
    );
    let leaf = Tree::build([file("a/b", b"2"), link("a", "x")]).unwrap_err();
    assert!(
        leaf.to_string().contains("other paths are inside it"),
        "{leaf}"
    );
    let mut typed = file("a", b"1");
    typed.meta.mode = 0o100644;
    assert!(
        Tree::build([typed])
            .unwrap_err()
            .to_string()
            .contains("file type bits")
    );
}

/// Hand-made node bytes with one entry named `name` (a file).
fn node_with_names(names: &[&[u8]]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
    for name in names {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        out.push(1);
        for _ in 0..3 {
            out.extend_from_slice(&0o644u32.to_be_bytes()[..]);
        }
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&1u64.to_be_bytes());
        out.extend_from_slice(Digest::of(b"x").as_bytes());
    }
    out
}

#[test]
fn encoding_matches_the_documented_layout() {
    // docs/dev/remote.md's layout, written out by hand.
    let entry = Entry {
        name: "a".into(),
        meta: Metadata {
            mode: 0o644,
            uid: 0o644,
            gid: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
        },
        kind: EntryKind::File {
            size: 1,
            digest: Digest::of(b"x"),
        },
    };
    assert_eq!(encode(&[entry]), node_with_names(&[b"a"]));
}

#[test]
fn decoding_refuses_what_encoding_never_writes() {
    assert_eq!(decode(&node_with_names(&[b"ok"])).unwrap()[0].name, "ok");
    for (bytes, needle) in [
        (node_with_names(&[b".."]), "not allowed"),
        (node_with_names(&[b"a/b"]), "'/'"),
        (node_with_names(&[b"/etc"]), "'/'"),
        (node_with_names(&[b""]), "empty name"),
        (node_with_names(&[b"b", b"a"]), "not sorted"),
        (node_with_names(&[b"a", b"a"]), "not sorted or repeated"),
        (node_with_names(&[b"\xff"]), "not UTF-8"),
        ([node_with_names(&[b"a"]), vec![0]].concat(), "trailing"),
        (node_with_names(&[b"a"])[..40].to_vec(), "ends early"),
        (b"kiln.tree.9\n\0\0\0\0".to_vec(), "magic"),
        (
            [MAGIC.as_slice(), &u32::MAX.to_be_bytes()].concat(),
            "count",
        ),
    ] {
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
    let bytes = node_with_names(&[b"a"]);
    let err = Node::decode(&Digest::of(b"other"), bytes).unwrap_err();
    assert!(matches!(err, TreeError::NodeDigest { .. }));
}

/// A random context: up to 40 paths over a small alphabet (so directories share names and
/// nest), each a file, symlink or listed directory, without conflicts.
fn arb_inputs() -> impl Strategy<Value = Vec<Input>> {
    let one = (
        prop::collection::vec(0..4usize, 1..5),
        0..3u8,
        any::<u8>(),
        0..0o7777u32,
        any::<i32>(),
    );
    prop::collection::vec(one, 1..40).prop_map(|raw| {
        let names = ["a", "b", "c.txt", "dir"];
        let mut taken: BTreeMap<String, bool> = BTreeMap::new(); // path -> is a directory
        let mut out = Vec::new();
        for (comps, kind, content, mode, mtime) in raw {
            let parts: Vec<&str> = comps.iter().map(|i| names[*i]).collect();
            let path = parts.join("/");
            let prefix_is_leaf =
                (1..parts.len()).any(|n| taken.get(&parts[..n].join("/")) == Some(&false));
            let is_prefix = taken.keys().any(|k| k.starts_with(&format!("{path}/")));
            if taken.contains_key(&path) || prefix_is_leaf || (is_prefix && kind != 2) {
                continue;
            }
            for n in 1..parts.len() {
                taken.entry(parts[..n].join("/")).or_insert(true);
            }
            let m = Metadata {
                mode,
                uid: u32::from(content),
                gid: 7,
                mtime_secs: i64::from(mtime),
                mtime_nanos: u32::from(content) * 1000,
            };
            let kind = match kind {
                0 => InputKind::File {
                    size: 1,
                    digest: Digest::of(&[content]),
                },
                1 => InputKind::Symlink {
                    target: format!("../{content}"),
                },
                _ => InputKind::Dir,
            };
            taken.insert(path.clone(), kind == InputKind::Dir);
            out.push(Input {
                path,
                meta: m,
                kind,
            });
        }
        out
    })
}

/// Directory path ("" for the root) → its node digest.
fn dir_digests(tree: &Tree) -> BTreeMap<String, Digest> {
    let mut out = BTreeMap::from([(String::new(), tree.root())]);
    for (path, entry) in tree.walk() {
        if let EntryKind::Dir { digest } = entry.kind {
            out.insert(path, digest);
        }
    }
    out
}

proptest! {
    #[test]
    fn build_encode_decode_round_trips(inputs in arb_inputs()) {
        let tree = Tree::build(inputs.clone()).unwrap();
        for node in tree.nodes() {
            let decoded = decode(node.bytes()).unwrap();
            prop_assert_eq!(&decoded[..], node.entries());
            prop_assert_eq!(encode(&decoded), node.bytes().to_vec());
            let again = Node::decode(&node.digest(), node.bytes().to_vec()).unwrap();
            prop_assert_eq!(&again, node);
        }
        // Every input is in the walk with its metadata and kind; the rest are implicit dirs.
        let walk: BTreeMap<String, Entry> = tree.walk().into_iter().collect();
        for input in &inputs {
            let entry = &walk[&input.path];
            prop_assert_eq!(entry.meta, input.meta);
            match (&input.kind, &entry.kind) {
                (InputKind::File { size, digest }, EntryKind::File { size: s, digest: d }) => {
                    prop_assert_eq!((size, digest), (s, d));
                }
                (InputKind::Symlink { target }, EntryKind::Symlink { target: t }) => {
                    prop_assert_eq!(target, t);
                }
                (InputKind::Dir, EntryKind::Dir { .. }) => {}
                (a, b) => prop_assert!(false, "{a:?} became {b:?}"),
            }
        }
        let listed: HashSet<&str> = inputs.iter().map(|i| i.path.as_str()).collect();
        for (path, entry) in &walk {
            if !listed.contains(path.as_str()) {
                let is_dir = matches!(entry.kind, EntryKind::Dir { .. });
                prop_assert!(is_dir, "{} is not a directory", path);
                prop_assert_eq!(entry.meta.mode, 0o755);
            }
        }
        // Input order does not matter.
        let mut reversed = inputs.clone();
        reversed.reverse();
        prop_assert_eq!(Tree::build(reversed).unwrap().root(), tree.root());
    }

    #[test]
    fn an_edit_changes_exactly_its_ancestors(inputs in arb_inputs(), pick in any::<prop::sample::Index>()) {
        let files: Vec<usize> = inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.kind, InputKind::File { .. }))
            .map(|(n, _)| n)
            .collect();
        prop_assume!(!files.is_empty());
        let victim = files[pick.index(files.len())];
        let before = Tree::build(inputs.clone()).unwrap();
        let mut edited = inputs.clone();
        let path = edited[victim].path.clone();
        edited[victim].kind = InputKind::File { size: 2, digest: Digest::of(b"edited") };
        let after = Tree::build(edited).unwrap();
        let (b, a) = (dir_digests(&before), dir_digests(&after));
        prop_assert_eq!(b.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
        for (dir, digest) in &b {
            let ancestor = dir.is_empty() || path.starts_with(&format!("{dir}/"));
            prop_assert_eq!(ancestor, a[dir] != *digest, "directory {:?} of edit {:?}", dir, path);
        }
    }
}

/// A worker's store in memory: blobs by digest.
#[derive(Default)]
struct Store(HashMap<Digest, Vec<u8>>);

impl Source for Store {
    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        Ok(self.0.contains_key(digest))
    }
    fn read(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        Ok(self.0.get(digest).cloned())
    }
    fn open(&self, digest: &Digest) -> io::Result<Option<Box<dyn Read + '_>>> {
        Ok(self
            .0
            .get(digest)
            .map(|b| Box::new(&b[..]) as Box<dyn Read + '_>))
    }
}

impl Store {
    /// Answers FindMissing as a worker does (a tree counts only when complete).
    fn find_missing(&self, refs: &[crate::v1::BlobRef]) -> Vec<String> {
        refs.iter()
            .filter(|r| {
                let d: Digest = r.digest.parse().unwrap();
                if r.kind == BlobKind::Tree as i32 {
                    !self.0.contains_key(&d) || !missing_under(&d, self).unwrap().is_empty()
                } else {
                    !self.0.contains_key(&d)
                }
            })
            .map(|r| r.digest.clone())
            .collect()
    }

    /// Runs the client's conversation and uploads the plan; returns it.
    fn sync(&mut self, tree: &Tree, contents: &HashMap<Digest, Vec<u8>>) -> (Plan, usize) {
        let mut diff = Diff::new(tree);
        let mut rounds = 0;
        while !diff.is_done() {
            let missing = self.find_missing(diff.query());
            diff.answer(&missing).unwrap();
            rounds += 1;
        }
        let plan = diff.plan();
        for d in &plan.nodes {
            self.0.insert(*d, tree.node(d).unwrap().bytes().to_vec());
        }
        for d in &plan.files {
            self.0.insert(*d, contents[d].clone());
        }
        (plan, rounds)
    }
}

fn contents(items: &[&[u8]]) -> HashMap<Digest, Vec<u8>> {
    items.iter().map(|c| (Digest::of(c), c.to_vec())).collect()
}

#[test]
fn sync_uploads_only_what_changed() {
    let all = contents(&[b"FROM busybox\n", b"fn main() {}\n", b"a", b"b", b"edited"]);
    let mut worker = Store::default();
    let tree = sample();
    let (first, _) = worker.sync(&tree, &all);
    assert_eq!(first.files.len(), 3);
    assert_eq!(first.nodes.len(), 3); // root, src, src/lib
    assert!(missing_under(&tree.root(), &worker).unwrap().is_empty());

    // A no-op costs one round and nothing to upload.
    let (noop, rounds) = worker.sync(&tree, &all);
    assert_eq!((noop, rounds), (Plan::default(), 1));

    // An edit deep down uploads the file and the nodes on its path, nothing else.
    let edited = Tree::build([
        file("Dockerfile", b"FROM busybox\n"),
        dir("src"),
        file("src/main.rs", b"fn main() {}\n"),
        file("src/lib/a.txt", b"edited"),
        link("latest", "src/main.rs"),
    ])
    .unwrap();
    let (plan, rounds) = worker.sync(&edited, &all);
    assert_eq!(plan.files, vec![Digest::of(b"edited")]);
    assert_eq!(plan.nodes.len(), 3);
    assert_eq!(rounds, 4); // root, src's children, lib's children, then nothing
    // A file whose metadata changed costs its nodes but no content.
    let touched = Tree::build([file("Dockerfile", b"FROM busybox\n"), {
        let mut f = file("b", b"b");
        f.meta.mtime_secs += 1;
        f
    }])
    .unwrap();
    worker.sync(
        &Tree::build([file("Dockerfile", b"FROM busybox\n"), file("b", b"b")]).unwrap(),
        &all,
    );
    let (plan, _) = worker.sync(&touched, &all);
    assert_eq!((plan.files.len(), plan.nodes.len()), (0, 1));
}

#[test]
fn the_worker_names_what_it_lacks_and_an_unasked_answer_is_refused() {
    let tree = sample();
    let mut worker = Store::default();
    let missing = missing_under(&tree.root(), &worker).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].kind, BlobKind::Tree as i32);
    worker.0.insert(
        tree.root(),
        tree.node(&tree.root()).unwrap().bytes().to_vec(),
    );
    let next: BTreeSet<String> = missing_under(&tree.root(), &worker)
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert!(next.contains(&Digest::of(b"FROM busybox\n").to_string()));
    assert_eq!(next.len(), 2); // the Dockerfile and the src node

    let mut diff = Diff::new(&tree);
    let err = diff.answer(&[Digest::of(b"zzz").to_string()]).unwrap_err();
    assert!(matches!(err, TreeError::UnaskedDigest(_)));
}

#[test]
fn materialize_writes_content_modes_links_and_times() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut worker = Store::default();
    let mut tree_inputs = vec![
        file("Dockerfile", b"FROM busybox\n"),
        link("latest", "src/main.rs"),
        link("escape", "/etc/passwd"),
        file("src/lib/a.txt", b"a"),
    ];
    let mut exe = file("src/run.sh", b"#!/bin/sh\n");
    exe.meta.mode = 0o4755;
    tree_inputs.push(exe);
    let mut ro = dir("src");
    ro.meta.mode = 0o555;
    tree_inputs.push(ro);
    let tree = Tree::build(tree_inputs).unwrap();
    let all = contents(&[b"FROM busybox\n", b"a", b"#!/bin/sh\n"]);
    worker.sync(&tree, &all);

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ctx");
    let opts = MaterializeOptions {
        chown: rustix::process::geteuid().is_root(),
        times: true,
    };
    materialize(&tree.root(), &worker, &dest, &opts).unwrap();
    assert_eq!(
        std::fs::read(dest.join("Dockerfile")).unwrap(),
        b"FROM busybox\n"
    );
    assert_eq!(std::fs::read(dest.join("src/lib/a.txt")).unwrap(), b"a");
    assert_eq!(
        std::fs::read_link(dest.join("escape")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    let run = std::fs::metadata(dest.join("src/run.sh")).unwrap();
    assert_eq!(run.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((run.mtime(), run.mtime_nsec()), (1_700_000_000, 5));
    let src = std::fs::metadata(dest.join("src")).unwrap();
    assert_eq!(src.permissions().mode() & 0o7777, 0o555);
    assert_eq!(src.mtime(), 1_700_000_000);
    // Let the temp dir be removed.
    std::fs::set_permissions(dest.join("src"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // A destination with something in it, or a symlink as the destination, is refused.
    let err = materialize(&tree.root(), &worker, &dest, &opts).unwrap_err();
    assert!(matches!(err, TreeError::DestNotEmpty(_)), "{err}");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, tmp.path().join("link")).unwrap();
    let err = materialize(&tree.root(), &worker, &tmp.path().join("link"), &opts).unwrap_err();
    assert!(matches!(err, TreeError::DestNotEmpty(_)), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn materialize_fails_on_missing_or_wrong_content() {
    let tree = Tree::build([file("a", b"abc")]).unwrap();
    let mut worker = Store::default();
    worker.0.insert(
        tree.root(),
        tree.node(&tree.root()).unwrap().bytes().to_vec(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let opts = MaterializeOptions {
        chown: false,
        times: false,
    };
    let err = materialize(&tree.root(), &worker, &tmp.path().join("1"), &opts).unwrap_err();
    assert!(matches!(err, TreeError::MissingFile { .. }), "{err}");
    worker.0.insert(Digest::of(b"abc"), b"abcd".to_vec());
    let err = materialize(&tree.root(), &worker, &tmp.path().join("2"), &opts).unwrap_err();
    assert!(
        err.to_string().contains("has 4 bytes, the tree says 3"),
        "{err}"
    );
    let err = materialize(
        &Digest::of(b"nothing"),
        &worker,
        &tmp.path().join("3"),
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, TreeError::MissingNode(_)));
}

#[test]
fn the_deepest_allowed_tree_fits_a_small_stack_and_one_more_level_is_refused() {
    // tokio's worker threads have 2 MiB stacks; run there-sized.
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let deep = vec!["d"; MAX_DEPTH - 1].join("/") + "/f";
            let tree = Tree::build([file(&deep, b"x")]).unwrap();
            assert_eq!(tree.walk().len(), MAX_DEPTH);
            let mut worker = Store::default();
            worker.sync(&tree, &contents(&[b"x"]));
            let tmp = tempfile::tempdir().unwrap();
            let opts = MaterializeOptions {
                chown: false,
                times: true,
            };
            materialize(&tree.root(), &worker, &tmp.path().join("ctx"), &opts).unwrap();
            assert!(tmp.path().join("ctx").join(&deep).exists());

            let too_deep = vec!["d"; MAX_DEPTH].join("/") + "/f";
            assert!(matches!(
                Tree::build([file(&too_deep, b"x")]),
                Err(TreeError::TooDeep)
            ));
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Reads a materialized directory back as (path, mode, uid, gid, mtime, kind) rows.
fn read_back(root: &std::path::Path) -> BTreeMap<String, (u32, u32, u32, i64, u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = std::fs::symlink_metadata(root.join(&path)).unwrap();
            let kind = if m.file_type().is_symlink() {
                format!(
                    "-> {}",
                    std::fs::read_link(root.join(&path)).unwrap().display()
                )
            } else if m.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else {
                format!("{:?}", std::fs::read(root.join(&path)).unwrap())
            };
            // Symlink modes are always 0777 on Linux and cannot be set.
            let mode = if m.file_type().is_symlink() {
                0o777
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                path,
                (
                    mode,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec() as u32,
                    kind,
                ),
            );
        }
    }
    out
}

/// Makes every directory under `root` writable again so the temp dir can be removed.
fn unlock(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the tree, materializing it gives back exactly its entries, content, modes,
    /// owners (as root) and times.
    #[test]
    fn materialize_reproduces_the_tree(mut inputs in arb_inputs()) {
        let root_user = rustix::process::geteuid().is_root();
        if !root_user {
            // Without root, reading the result back needs owner read (and search) bits.
            for i in &mut inputs {
                i.meta.mode |= if i.kind == InputKind::Dir { 0o700 } else { 0o400 };
            }
        }
        let tree = Tree::build(inputs).unwrap();
        let mut worker = Store::default();
        let all: HashMap<Digest, Vec<u8>> = (0..=255u8).map(|b| (Digest::of(&[b]), vec![b])).collect();
        worker.sync(&tree, &all);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("ctx");
        let opts = MaterializeOptions { chown: root_user, times: true };
        materialize(&tree.root(), &worker, &dest, &opts).unwrap();
        let got = read_back(&dest);
        unlock(&dest);
        let mut want = BTreeMap::new();
        for (path, e) in tree.walk() {
            let kind = match &e.kind {
                EntryKind::File { digest, .. } => format!("{:?}", all[digest]),
                EntryKind::Dir { .. } => "dir".to_string(),
                EntryKind::Symlink { target } => format!("-> {target}"),
            };
            let mode = if matches!(e.kind, EntryKind::Symlink { .. }) { 0o777 } else { e.meta.mode };
            let (uid, gid) = if root_user { (e.meta.uid, e.meta.gid) } else { (got[&path].1, got[&path].2) };
            want.insert(path, (mode, uid, gid, e.meta.mtime_secs, e.meta.mtime_nanos, kind));
        }
        prop_assert_eq!(got, want);
    }
}
