//! The canonical byte encoding of ops, whose sha256 is a vertex's digest.
//!
//! Written by hand on purpose: every field is visited in an explicit order, variable-size
//! values are length-prefixed, enums get fixed tags, and nothing depends on `Debug`,
//! `std::hash`, serde or map iteration order. Changing any of it changes every digest, which
//! the golden tests in `tests/golden.rs` catch; bump `VERSION` when doing so on purpose.

use crate::digest::Digest;
use crate::op::{
    CacheSharing, CopyAction, ExecOp, FileAction, FileMode, FileOp, IdOrName, Input, MergeOp,
    Mount, MountKind, MountSource, NetworkMode, Op, Owner, Platform, SecurityMode, SourceOp,
};

/// Prefix of every encoding: a format name and version, so a future encoding can never
/// collide with this one.
pub const VERSION: &[u8] = b"kiln.llb.op/1\0";

/// Prefix of the input-independent encoding ([`encode_op_without_inputs`]).
pub const SHAPE_VERSION: &[u8] = b"kiln.llb.op-shape/1\0";

/// The canonical bytes of `op` (including its inputs' digests).
pub fn encode_op(op: &Op) -> Vec<u8> {
    let mut e = Encoder {
        out: Vec::with_capacity(256),
        inputs: None,
    };
    e.out.extend_from_slice(VERSION);
    e.op(op);
    e.out
}

/// The canonical bytes of `op` with each input written as its position in `inputs` instead of
/// its digest: what the op does, apart from what it is given. A cache key built from these
/// bytes and the inputs' own keys depends on the inputs only through their keys, so an input
/// reached by a different route (a base image re-packaged with the same layers) keys its
/// dependents the same. An input missing from `inputs` is written as its digest.
pub fn encode_op_without_inputs(op: &Op, inputs: &[Digest]) -> Vec<u8> {
    let mut e = Encoder {
        out: Vec::with_capacity(256),
        inputs: Some(inputs),
    };
    e.out.extend_from_slice(SHAPE_VERSION);
    e.op(op);
    e.out
}

/// The digest of `op`: sha256 over its canonical bytes.
pub fn op_digest(op: &Op) -> Digest {
    Digest::of(&encode_op(op))
}

struct Encoder<'a> {
    out: Vec<u8>,
    /// When set, inputs are written by position in this list.
    inputs: Option<&'a [Digest]>,
}

impl Encoder<'_> {
    fn tag(&mut self, tag: u8) {
        self.out.push(tag);
    }

    fn bool(&mut self, b: bool) {
        self.out.push(u8::from(b));
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.out.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }

    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.tag(0),
            Some(v) => {
                self.tag(1);
                f(self, v);
            }
        }
    }

    fn digest(&mut self, d: &Digest) {
        self.out.extend_from_slice(d.as_bytes());
    }

    fn input(&mut self, input: &Input) {
        match self
            .inputs
            .and_then(|list| list.iter().position(|d| *d == input.vertex))
        {
            Some(position) => {
                self.tag(0);
                self.len(position);
            }
            None => {
                if self.inputs.is_some() {
                    self.tag(1);
                }
                self.digest(&input.vertex);
            }
        }
        self.u32(input.output);
    }

    fn platform(&mut self, p: &Platform) {
        self.str(&p.os);
        self.str(&p.architecture);
        self.opt(p.variant.as_ref(), |e, v| e.str(v));
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::Source(source) => {
                self.tag(1);
                self.source(source);
            }
            Op::Exec(exec) => {
                self.tag(2);
                self.exec(exec);
            }
            Op::File(file) => {
                self.tag(3);
                self.file(file);
            }
            Op::Merge(merge) => {
                self.tag(4);
                self.merge(merge);
            }
        }
    }

    fn source(&mut self, source: &SourceOp) {
        match source {
            SourceOp::Scratch => self.tag(1),
            SourceOp::Image(image) => {
                self.tag(2);
                self.str(&image.reference);
                self.opt(image.digest.as_ref(), |e, d| e.digest(d));
                self.platform(&image.platform);
            }
            SourceOp::Local(local) => {
                self.tag(3);
                self.str(&local.name);
                self.strs(&local.include_patterns);
                self.strs(&local.exclude_patterns);
                self.strs(&local.follow_paths);
            }
            SourceOp::Http(http) => {
                self.tag(4);
                self.str(&http.url);
                self.opt(http.checksum.as_ref(), |e, d| e.digest(d));
                self.opt(http.filename.as_ref(), |e, s| e.str(s));
                self.opt(http.chmod.as_ref(), |e, m| e.u32(*m));
            }
            SourceOp::Git(git) => {
                self.tag(5);
                self.str(&git.remote);
                self.opt(git.reference.as_ref(), |e, s| e.str(s));
                self.opt(git.subdir.as_ref(), |e, s| e.str(s));
                self.bool(git.keep_git_dir);
                self.opt(git.checksum.as_ref(), |e, s| e.str(s));
            }
        }
    }

    fn exec(&mut self, exec: &ExecOp) {
        self.strs(&exec.args);
        self.len(exec.env.len());
        for (k, v) in &exec.env {
            self.str(k);
            self.str(v);
        }
        self.str(&exec.cwd);
        self.str(&exec.user);
        self.opt(exec.hostname.as_ref(), |e, s| e.str(s));
        self.input(&exec.root);
        self.len(exec.mounts.len());
        for mount in &exec.mounts {
            self.mount(mount);
        }
        self.len(exec.secret_env.len());
        for secret in &exec.secret_env {
            self.str(&secret.id);
            self.str(&secret.name);
            self.bool(secret.required);
        }
        self.tag(match exec.network {
            NetworkMode::Default => 1,
            NetworkMode::None => 2,
            NetworkMode::Host => 3,
        });
        self.tag(match exec.security {
            SecurityMode::Sandbox => 1,
            SecurityMode::Insecure => 2,
        });
        // Added after the encoding was pinned: written only when there are devices, so the
        // digests of every op without them stay as they were.
        if !exec.devices.is_empty() {
            self.tag(0x44);
            self.len(exec.devices.len());
            for device in &exec.devices {
                self.str(&device.name);
                self.bool(device.required);
            }
        }
        // Likewise: written only for a step of another platform than the host's.
        if let Some(platform) = &exec.platform {
            self.tag(0x50);
            self.str(&platform.to_string());
        }
    }

    fn mount_source(&mut self, source: &MountSource) {
        self.input(&source.input);
        self.str(&source.selector);
    }

    fn mount(&mut self, mount: &Mount) {
        self.str(&mount.target);
        match &mount.kind {
            MountKind::Bind { source, readonly } => {
                self.tag(1);
                self.mount_source(source);
                self.bool(*readonly);
            }
            MountKind::Cache {
                id,
                sharing,
                source,
                uid,
                gid,
                mode,
                readonly,
            } => {
                self.tag(2);
                self.str(id);
                self.tag(match sharing {
                    CacheSharing::Shared => 1,
                    CacheSharing::Private => 2,
                    CacheSharing::Locked => 3,
                });
                self.opt(source.as_ref(), |e, s| e.mount_source(s));
                self.u32(*uid);
                self.u32(*gid);
                self.u32(*mode);
                self.bool(*readonly);
            }
            MountKind::Tmpfs { size } => {
                self.tag(3);
                self.opt(size.as_ref(), |e, s| e.u64(*s));
            }
            MountKind::Secret {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                self.tag(4);
                self.str(id);
                self.u32(*uid);
                self.u32(*gid);
                self.u32(*mode);
                self.bool(*required);
            }
            MountKind::Ssh {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                self.tag(5);
                self.str(id);
                self.u32(*uid);
                self.u32(*gid);
                self.u32(*mode);
                self.bool(*required);
            }
        }
    }

    fn id_or_name(&mut self, v: &IdOrName) {
        match v {
            IdOrName::Id(id) => {
                self.tag(1);
                self.u32(*id);
            }
            IdOrName::Name(name) => {
                self.tag(2);
                self.str(name);
            }
        }
    }

    fn owner(&mut self, owner: Option<&Owner>) {
        self.opt(owner, |e, o| {
            e.id_or_name(&o.user);
            e.opt(o.group.as_ref(), |e, g| e.id_or_name(g));
        });
    }

    fn timestamp(&mut self, t: Option<i64>) {
        self.opt(t.as_ref(), |e, t| e.i64(*t));
    }

    fn file(&mut self, file: &FileOp) {
        self.input(&file.base);
        self.len(file.actions.len());
        for action in &file.actions {
            match action {
                FileAction::Copy(copy) => {
                    self.tag(1);
                    self.copy(copy);
                }
                FileAction::Mkdir(mkdir) => {
                    self.tag(2);
                    self.str(&mkdir.path);
                    self.u32(mkdir.mode);
                    self.bool(mkdir.make_parents);
                    self.owner(mkdir.owner.as_ref());
                    self.timestamp(mkdir.timestamp);
                }
                FileAction::Mkfile(mkfile) => {
                    self.tag(3);
                    self.str(&mkfile.path);
                    self.u32(mkfile.mode);
                    self.bytes(&mkfile.data);
                    self.owner(mkfile.owner.as_ref());
                    self.timestamp(mkfile.timestamp);
                }
                FileAction::Rm(rm) => {
                    self.tag(4);
                    self.str(&rm.path);
                    self.bool(rm.allow_not_found);
                    self.bool(rm.allow_wildcard);
                }
                FileAction::Symlink(symlink) => {
                    self.tag(5);
                    self.str(&symlink.target);
                    self.str(&symlink.path);
                    self.owner(symlink.owner.as_ref());
                    self.timestamp(symlink.timestamp);
                }
            }
        }
    }

    fn copy(&mut self, copy: &CopyAction) {
        self.input(&copy.source);
        self.str(&copy.src);
        self.str(&copy.dest);
        self.owner(copy.owner.as_ref());
        self.opt(copy.mode.as_ref(), |e, m| match m {
            FileMode::Octal(mode) => {
                e.tag(1);
                e.u32(*mode);
            }
            FileMode::Symbolic(s) => {
                e.tag(2);
                e.str(s);
            }
        });
        self.bool(copy.follow_symlinks);
        self.bool(copy.dir_contents_only);
        self.bool(copy.create_dest_path);
        self.bool(copy.allow_wildcard);
        self.bool(copy.allow_empty_wildcard);
        self.strs(&copy.include_patterns);
        self.strs(&copy.exclude_patterns);
        self.bool(copy.parents);
        self.timestamp(copy.timestamp);
        self.bool(copy.unpack);
    }

    fn merge(&mut self, merge: &MergeOp) {
        self.len(merge.inputs.len());
        for input in &merge.inputs {
            self.input(input);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_starts_with_the_version_and_is_length_prefixed() {
        let bytes = encode_op(&Op::Source(SourceOp::Scratch));
        assert_eq!(bytes, [VERSION, &[1, 1]].concat());
        // Two strings "ab","c" and "a","bc" must not encode the same.
        let a = |x: &str, y: &str| {
            op_digest(&Op::Source(SourceOp::Local(crate::op::LocalSource {
                name: String::new(),
                include_patterns: vec![x.into(), y.into()],
                ..Default::default()
            })))
        };
        assert_ne!(a("ab", "c"), a("a", "bc"));
    }

    #[test]
    fn the_shape_encoding_names_inputs_by_position_only() {
        let merge = |a: Digest, b: Digest| {
            Op::Merge(MergeOp {
                inputs: vec![
                    Input {
                        vertex: a,
                        output: 0,
                    },
                    Input {
                        vertex: b,
                        output: 0,
                    },
                ],
            })
        };
        let (a, b, c, d) = (
            Digest::of(b"a"),
            Digest::of(b"b"),
            Digest::of(b"c"),
            Digest::of(b"d"),
        );
        // Different input digests, same positions: same shape, different digests.
        assert_eq!(
            encode_op_without_inputs(&merge(a, b), &[a, b]),
            encode_op_without_inputs(&merge(c, d), &[c, d])
        );
        assert_ne!(op_digest(&merge(a, b)), op_digest(&merge(c, d)));
        // Swapped positions differ, and so does the plain encoding's prefix.
        assert_ne!(
            encode_op_without_inputs(&merge(a, b), &[a, b]),
            encode_op_without_inputs(&merge(b, a), &[a, b])
        );
        assert!(encode_op_without_inputs(&merge(a, b), &[a, b]).starts_with(SHAPE_VERSION));
        // An input outside the list keeps its digest.
        assert_ne!(
            encode_op_without_inputs(&merge(a, b), &[a]),
            encode_op_without_inputs(&merge(a, c), &[a])
        );
    }
}
