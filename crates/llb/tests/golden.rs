//! Golden digests of fixed graphs (so a change to the canonical encoding is deliberate), and
//! the promise that metadata never changes a digest while every op field does.

use kiln_llb::*;

/// One modification of an op field.
type Change<T> = Box<dyn Fn(&mut T)>;

fn scratch(def: &mut Definition) -> Input {
    Input::new(def.add(Op::Source(SourceOp::Scratch)).unwrap())
}

fn image(def: &mut Definition) -> Input {
    Input::new(
        def.add(Op::Source(SourceOp::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            digest: Some(Digest::of(b"busybox manifest")),
            platform: Platform::parse("linux/amd64").unwrap(),
        })))
        .unwrap(),
    )
}

fn context(def: &mut Definition) -> Input {
    Input::new(
        def.add(Op::Source(SourceOp::Local(LocalSource {
            name: "context".into(),
            include_patterns: vec![],
            exclude_patterns: vec!["*.tmp".into()],
            follow_paths: vec!["src".into()],
        })))
        .unwrap(),
    )
}

fn run(root: Input, extra: Vec<Mount>) -> ExecOp {
    ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/src".into(),
        user: String::new(),
        hostname: None,
        root,
        mounts: extra,
        secret_env: vec![],
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        devices: Vec::new(),
        platform: None,
    }
}

/// A small multi-step graph: image → mkdir → copy from context → run with a cache mount.
fn sample() -> (Definition, Digest) {
    let mut def = Definition::new();
    let base = image(&mut def);
    let ctx = context(&mut def);
    let workdir = def
        .add(Op::File(FileOp {
            base,
            actions: vec![FileAction::Mkdir(MkdirAction {
                path: "/src".into(),
                mode: 0o755,
                make_parents: true,
                owner: None,
                timestamp: None,
            })],
        }))
        .unwrap();
    let mut copy = CopyAction::new(ctx, "/src", "/src/");
    copy.owner = Owner::parse("daemon:1");
    copy.mode = Some(FileMode::parse("0644").unwrap());
    let copied = def
        .add(Op::File(FileOp {
            base: Input::new(workdir),
            actions: vec![FileAction::Copy(copy)],
        }))
        .unwrap();
    let exec = run(
        Input::new(copied),
        vec![Mount {
            target: "/root/.cache".into(),
            kind: MountKind::Cache {
                id: "/root/.cache".into(),
                sharing: CacheSharing::Shared,
                source: None,
                uid: 0,
                gid: 0,
                mode: 0o755,
                readonly: false,
            },
        }],
    );
    let run = def.add(Op::Exec(exec)).unwrap();
    def.set_root(Input::new(run)).unwrap();
    (def, run)
}

#[test]
fn golden_scratch() {
    assert_eq!(
        op_digest(&Op::Source(SourceOp::Scratch)).to_string(),
        "sha256:008f6ba982a1a0f8150be4d25a22a5244bcf5d1d07bd7b417a21ae1cc6bb6bf6"
    );
}

#[test]
fn golden_sample_graph() {
    let (def, run) = sample();
    let all: Vec<String> = def
        .topological()
        .map(|(d, op)| format!("{} {d}", op.kind()))
        .collect();
    assert_eq!(
        all,
        [
            "source sha256:fb8d29928f1603cde9b7303dc7912ee0d43c03ae5f5a0f3369fb312342faed46",
            "source sha256:14ad88ea5776b6ac13e6be1dd99f9e23e55030d95761178a5e79f0c07b4ebf96",
            "file sha256:ed19682cfd35bfb10001eb895ace809f4f61d0a68a8d961715ae51237418dbbf",
            "file sha256:c2ffdbb08f469379338958451d5053dfff4b64bdd07a2fcfbc54ba3e2246567e",
            "exec sha256:9d06a7edb8b93c9b59d72298084eb4c903bb496877fc30b7f68b5b49219fc14a",
        ]
    );
    assert_eq!(def.root(), Some(Input::new(run)));
}

#[test]
fn golden_merge_and_sources() {
    let mut def = Definition::new();
    let s = scratch(&mut def);
    let http = def
        .add(Op::Source(SourceOp::Http(HttpSource {
            url: "https://example.invalid/a.tar.gz".into(),
            checksum: Some(Digest::of(b"a")),
            filename: Some("a.tar.gz".into()),
            chmod: Some(0o644),
        })))
        .unwrap();
    let git = def
        .add(Op::Source(SourceOp::Git(GitSource {
            remote: "https://example.invalid/repo.git".into(),
            reference: Some("v1".into()),
            subdir: None,
            keep_git_dir: false,
            checksum: None,
        })))
        .unwrap();
    let merged = def
        .add(Op::Merge(MergeOp {
            inputs: vec![s, Input::new(http), Input::new(git)],
        }))
        .unwrap();
    assert_eq!(
        [http, git, merged].map(|d| d.to_string()),
        [
            "sha256:dbe003108746a61b928bdb640e47a4ace9f537d1eecb0ffa5f3d11b010816ed8",
            "sha256:66be938b62462332c3013ce553083aca510db21dbc42e475e30aa04706a0d1fc",
            "sha256:4b0b3d2b3ef389e83e2c08be1a28b1f193316ae0e01c5d21144933e4afeef288",
        ]
    );
}

#[test]
fn metadata_and_source_map_do_not_change_digests() {
    let (plain, run) = sample();
    let mut annotated = Definition::new();
    // Same ops, added with metadata this time.
    for (digest, op) in plain.topological() {
        let meta = OpMetadata {
            name: Some(format!("[stage-0 1/3] {}", op.kind())),
            ignore_cache: true,
            stage: Some("builder".into()),
            proxy_env: vec![("HTTP_PROXY".into(), "http://proxy:3128".into())],
            ..OpMetadata::default()
        };
        let d = annotated.add_with_metadata(op.clone(), meta).unwrap();
        assert_eq!(d, digest);
        let file = annotated
            .source_map_mut()
            .add_file("Dockerfile", b"FROM busybox\n".to_vec());
        let range = Range {
            start: Position { line: 1, column: 1 },
            end: Position {
                line: 1,
                column: 12,
            },
        };
        annotated.source_map_mut().add_location(
            d,
            SourceLocation {
                file,
                ranges: vec![range],
            },
        );
    }
    assert_eq!(annotated.metadata(&run).stage.as_deref(), Some("builder"));
    assert_eq!(annotated.source_map().locations.len(), plain.len());
}

#[test]
fn every_exec_field_changes_the_digest() {
    let mut def = Definition::new();
    let root = image(&mut def);
    let other = context(&mut def);
    let base = run(root, vec![]);
    let d0 = op_digest(&Op::Exec(base.clone()));
    let variants: Vec<Change<ExecOp>> = vec![
        Box::new(|e| e.args.push("x".into())),
        Box::new(|e| e.env.push(("A".into(), "1".into()))),
        Box::new(|e| e.env[0].1.push('x')),
        Box::new(|e| e.cwd = "/".into()),
        Box::new(|e| e.user = "nobody".into()),
        Box::new(|e| e.hostname = Some("h".into())),
        Box::new(move |e| e.root = other),
        Box::new(|e| e.network = NetworkMode::None),
        Box::new(|e| e.network = NetworkMode::Host),
        Box::new(|e| e.security = SecurityMode::Insecure),
        Box::new(|e| {
            e.secret_env.push(SecretEnv {
                id: "s".into(),
                name: "S".into(),
                required: false,
            })
        }),
        Box::new(|e| {
            e.mounts.push(Mount {
                target: "/t".into(),
                kind: MountKind::Tmpfs { size: None },
            })
        }),
        Box::new(|e| {
            e.mounts.push(Mount {
                target: "/t".into(),
                kind: MountKind::Tmpfs { size: Some(1) },
            })
        }),
        Box::new(move |e| {
            e.mounts.push(Mount {
                target: "/t".into(),
                kind: MountKind::Bind {
                    source: MountSource {
                        input: other,
                        selector: "/".into(),
                    },
                    readonly: true,
                },
            })
        }),
        Box::new(move |e| {
            e.mounts.push(Mount {
                target: "/t".into(),
                kind: MountKind::Bind {
                    source: MountSource {
                        input: other,
                        selector: "/".into(),
                    },
                    readonly: false,
                },
            })
        }),
        Box::new(|e| {
            e.mounts.push(Mount {
                target: "/s".into(),
                kind: MountKind::Secret {
                    id: "s".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o400,
                    required: false,
                },
            })
        }),
        Box::new(|e| {
            e.mounts.push(Mount {
                target: "/s".into(),
                kind: MountKind::Ssh {
                    id: "s".into(),
                    uid: 0,
                    gid: 0,
                    mode: 0o400,
                    required: false,
                },
            })
        }),
    ];
    let mut seen = std::collections::BTreeSet::from([d0]);
    for (i, change) in variants.iter().enumerate() {
        let mut e = base.clone();
        change(&mut e);
        let d = op_digest(&Op::Exec(e));
        assert!(
            seen.insert(d),
            "exec variant {i} did not produce a new digest"
        );
    }
}

#[test]
fn every_copy_field_changes_the_digest() {
    let mut def = Definition::new();
    let base = scratch(&mut def);
    let ctx = context(&mut def);
    let copy = CopyAction::new(ctx, "/a", "/b");
    let op = |c: CopyAction| {
        op_digest(&Op::File(FileOp {
            base,
            actions: vec![FileAction::Copy(c)],
        }))
    };
    let variants: Vec<Change<CopyAction>> = vec![
        Box::new(move |c| c.source = base),
        Box::new(|c| c.src = "/a2".into()),
        Box::new(|c| c.dest = "/b/".into()),
        Box::new(|c| c.owner = Owner::parse("1")),
        Box::new(|c| c.owner = Owner::parse("1:1")),
        Box::new(|c| c.owner = Owner::parse("root")),
        Box::new(|c| c.mode = Some(FileMode::Octal(0o755))),
        Box::new(|c| c.mode = Some(FileMode::Symbolic("a+x".into()))),
        Box::new(|c| c.follow_symlinks = false),
        Box::new(|c| c.dir_contents_only = false),
        Box::new(|c| c.create_dest_path = false),
        Box::new(|c| c.allow_wildcard = false),
        Box::new(|c| c.allow_empty_wildcard = false),
        Box::new(|c| c.include_patterns.push("x".into())),
        Box::new(|c| c.exclude_patterns.push("x".into())),
        Box::new(|c| c.parents = true),
        Box::new(|c| c.timestamp = Some(0)),
        Box::new(|c| c.unpack = true),
    ];
    let mut seen = std::collections::BTreeSet::from([op(copy.clone())]);
    for (i, change) in variants.iter().enumerate() {
        let mut c = copy.clone();
        change(&mut c);
        assert!(
            seen.insert(op(c)),
            "copy variant {i} did not produce a new digest"
        );
    }
    // Other file actions, and action order.
    let mkdir = FileAction::Mkdir(MkdirAction {
        path: "/d".into(),
        mode: 0o755,
        make_parents: true,
        owner: None,
        timestamp: None,
    });
    let mkfile = FileAction::Mkfile(MkfileAction {
        path: "/f".into(),
        mode: 0o644,
        data: b"hi".to_vec(),
        owner: None,
        timestamp: None,
    });
    let rm = FileAction::Rm(RmAction {
        path: "/f".into(),
        allow_not_found: true,
        allow_wildcard: false,
    });
    let ln = FileAction::Symlink(SymlinkAction {
        target: "/d".into(),
        path: "/l".into(),
        owner: None,
        timestamp: None,
    });
    let file = |actions: Vec<FileAction>| op_digest(&Op::File(FileOp { base, actions }));
    for actions in [
        vec![mkdir.clone()],
        vec![mkfile.clone()],
        vec![rm.clone()],
        vec![ln.clone()],
        vec![mkdir.clone(), mkfile.clone()],
        vec![mkfile, mkdir],
    ] {
        assert!(seen.insert(file(actions)));
    }
}

#[test]
fn adding_requires_known_inputs_and_dedups() {
    let mut def = Definition::new();
    let missing = Input::new(Digest::of(b"nothing"));
    assert_eq!(
        def.add(Op::Merge(MergeOp {
            inputs: vec![missing]
        })),
        Err(DefinitionError::UnknownInput(missing))
    );
    let s = scratch(&mut def);
    let again = scratch(&mut def);
    assert_eq!(s, again);
    assert_eq!(def.len(), 1);
    let bad = Input {
        vertex: s.vertex,
        output: 1,
    };
    assert_eq!(
        def.add(Op::Merge(MergeOp { inputs: vec![bad] })),
        Err(DefinitionError::UnknownOutput(bad))
    );
    assert!(def.set_root(missing).is_err());
}

#[test]
fn needed_walks_only_what_the_root_uses() {
    let (mut def, run) = sample();
    // An unrelated vertex (an unused stage) is in the graph but not needed.
    let unused = def
        .add(Op::Source(SourceOp::Image(ImageSource {
            reference: "docker.io/library/alpine:latest".into(),
            digest: None,
            platform: Platform::parse("linux/amd64").unwrap(),
        })))
        .unwrap();
    let needed = def.needed();
    assert_eq!(needed.len(), 5);
    assert_eq!(needed.last(), Some(&run));
    assert!(!needed.contains(&unused));
    // Inputs come first.
    for (i, d) in needed.iter().enumerate() {
        for input in def.get(d).unwrap().inputs() {
            assert!(needed[..i].contains(&input.vertex));
        }
    }
    let pruned = def.pruned();
    assert_eq!(pruned.len(), 5);
    assert!(!pruned.contains(&unused));
    assert_eq!(pruned.needed(), needed);
}
