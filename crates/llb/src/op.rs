//! The closed set of operations a build graph is made of, and the values they carry.
//!
//! Everything that can change an op's result is a field here and enters its digest (see
//! `encode`); hints for humans live in `definition::OpMetadata` instead.

use std::fmt;

use crate::digest::Digest;

/// One output of a vertex: the vertex's digest and which of its outputs (0 for every op kind
/// today: Exec's output 0 is its root filesystem, File's and Merge's their single result).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Input {
    pub vertex: Digest,
    pub output: u32,
}

impl Input {
    /// Output 0 of `vertex`, the only output any op has today.
    pub const fn new(vertex: Digest) -> Input {
        Input { vertex, output: 0 }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.vertex, self.output)
    }
}

/// An operation. The enum is closed on purpose: the solver, the cache and the engine match on
/// it exhaustively, so a new kind of op is a deliberate change everywhere.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    Source(SourceOp),
    Exec(ExecOp),
    File(FileOp),
    Merge(MergeOp),
}

impl Op {
    /// The inputs this op reads, in the order the canonical encoding visits them. An input may
    /// appear more than once (two copies from the same stage).
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Op::Source(_) => Vec::new(),
            Op::Exec(exec) => {
                let mut inputs = vec![exec.root];
                for mount in &exec.mounts {
                    match &mount.kind {
                        MountKind::Bind { source, .. } => inputs.push(source.input),
                        MountKind::Cache {
                            source: Some(source),
                            ..
                        } => inputs.push(source.input),
                        MountKind::Cache { source: None, .. }
                        | MountKind::Tmpfs { .. }
                        | MountKind::Secret { .. }
                        | MountKind::Ssh { .. } => {}
                    }
                }
                inputs
            }
            Op::File(file) => {
                let mut inputs = vec![file.base];
                for action in &file.actions {
                    if let FileAction::Copy(copy) = action {
                        inputs.push(copy.source);
                    }
                }
                inputs
            }
            Op::Merge(merge) => merge.inputs.clone(),
        }
    }

    /// A short kind name for printing ("source", "exec", "file", "merge").
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
        }
    }
}

/// A platform as OCI spells it (`linux/amd64`, `linux/arm/v7`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// Why a platform string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformParseError(pub String);

impl Platform {
    /// A normalized platform: the spellings Go's `runtime.GOARCH` and uname use map to OCI's
    /// (`x86_64` → `amd64`, `aarch64` → `arm64`, `arm` without variant → `arm/v7`), so equal
    /// platforms compare equal.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let mut arch = architecture.to_ascii_lowercase();
        let mut variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty());
        match arch.as_str() {
            "x86_64" | "x86-64" | "amd64" => {
                arch = "amd64".into();
                if variant.as_deref() == Some("v1") {
                    variant = None;
                }
            }
            "aarch64" | "arm64" => {
                arch = "arm64".into();
                if matches!(variant.as_deref(), Some("8" | "v8")) {
                    variant = None;
                }
            }
            "armhf" => {
                arch = "arm".into();
                variant = Some("v7".into());
            }
            "armel" => {
                arch = "arm".into();
                variant = Some("v6".into());
            }
            "arm" => {
                variant = Some(match variant.as_deref() {
                    None | Some("7" | "7l" | "v7l") => "v7".into(),
                    Some("6") => "v6".into(),
                    Some("5") => "v5".into(),
                    Some("8") => "v8".into(),
                    Some(other) => other.to_owned(),
                });
            }
            "i386" | "i686" => arch = "386".into(),
            "ppc64el" => arch = "ppc64le".into(),
            _ => {}
        }
        Platform {
            os,
            architecture: arch,
            variant,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformParseError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformParseError(s.to_owned())),
        }
    }

    /// The platform this binary was compiled for, which is the one it runs on: the default
    /// target of a build, as in BuildKit.
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// Whether an image for `self` satisfies a request for `wanted`, as containerd's default
    /// platform matcher decides: equal after normalization, so `linux/arm64` matches
    /// `linux/arm64/v8`, while `linux/arm/v7` and `linux/arm/v6` are different platforms.
    pub fn matches(&self, wanted: &Platform) -> bool {
        self == wanted
    }

    /// Parses a comma-separated list (`linux/amd64,linux/arm64`), dropping repeats and keeping
    /// the order given.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformParseError> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(PlatformParseError(s.to_owned()));
            }
            let p = Platform::parse(part)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Where bytes enter the graph.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SourceOp {
    /// The empty filesystem (`FROM scratch`).
    Scratch,
    Image(ImageSource),
    Local(LocalSource),
    Http(HttpSource),
    Git(GitSource),
}

/// A container image's root filesystem.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImageSource {
    /// Canonical reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest when the frontend resolved it; pinning it makes the op's digest
    /// change when the tag moves.
    pub digest: Option<Digest>,
    pub platform: Platform,
}

/// Files from the client side: the build context (or another named local directory).
/// The file contents enter cache keys at solve time as a digest of exactly the selected files.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LocalSource {
    /// Which local directory, e.g. `context`.
    pub name: String,
    /// Only paths matching one of these (gitignore-style, like `.dockerignore`) are sent; empty
    /// means everything.
    pub include_patterns: Vec<String>,
    /// Paths matching these are left out (from `.dockerignore`, and `COPY --exclude`).
    pub exclude_patterns: Vec<String>,
    /// Paths the build will read, so a transfer can start with them; a hint that also
    /// narrows what is sent.
    pub follow_paths: Vec<String>,
}

/// A file downloaded over HTTP(S).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HttpSource {
    pub url: String,
    /// When given, the download must have this digest.
    pub checksum: Option<Digest>,
    /// The name of the single file in the result; by default the last URL path segment.
    pub filename: Option<String>,
    /// Mode of the written file; default 0600 like BuildKit.
    pub chmod: Option<u32>,
}

/// A git repository checkout.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GitSource {
    pub remote: String,
    /// Branch, tag or commit; the default branch when `None`.
    pub reference: Option<String>,
    /// Only this directory of the checkout.
    pub subdir: Option<String>,
    pub keep_git_dir: bool,
    /// Expected commit, when given.
    pub checksum: Option<String>,
}

/// A process run in a sandbox over a root filesystem. Output 0 is the root filesystem after the
/// process exits; changes to other read-write mounts are discarded (cache mounts persist in
/// their cache, outside the graph).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// Environment in order. Proxy variables are not here: they are `OpMetadata::proxy_env`,
    /// kept out of the digest because by convention they do not change results.
    pub env: Vec<(String, String)>,
    /// Absolute working directory.
    pub cwd: String,
    /// `user[:group]` as written in USER, resolved against the rootfs at run time; empty = root.
    pub user: String,
    pub hostname: Option<String>,
    pub root: Input,
    pub mounts: Vec<Mount>,
    /// Secrets exposed as environment variables rather than files.
    pub secret_env: Vec<SecretEnv>,
    pub network: NetworkMode,
    pub security: SecurityMode,
    /// Devices the step asks for (`RUN --device`), in order.
    pub devices: Vec<Device>,
    /// The platform the step's programs are built for when it is not the build host's
    /// (`None`: the host's). The engine runs such a step through the kernel's binfmt_misc
    /// emulator for it, and refuses it with a clear error when there is none.
    pub platform: Option<Platform>,
}

/// A device a RUN step asks for: a host device node (`/dev/fuse`) or a CDI device name
/// (`vendor.com/class=name`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Device {
    pub name: String,
    /// Fail the step when the device is missing (else it runs without it).
    pub required: bool,
}

/// A mount inside an Exec op's sandbox.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mount {
    /// Absolute path inside the sandbox.
    pub target: String,
    pub kind: MountKind,
}

/// A path inside another vertex's output.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MountSource {
    pub input: Input,
    /// Path inside the input to mount, `/` for all of it.
    pub selector: String,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MountKind {
    /// Another vertex's output. Read-write binds see their own writes during the run; the
    /// writes are then discarded.
    Bind { source: MountSource, readonly: bool },
    /// A persistent directory shared across builds, keyed by `id`.
    Cache {
        id: String,
        sharing: CacheSharing,
        /// Initial contents for a new cache.
        source: Option<MountSource>,
        uid: u32,
        gid: u32,
        mode: u32,
        readonly: bool,
    },
    Tmpfs {
        /// Bytes; the kernel default when `None`.
        size: Option<u64>,
    },
    /// A secret file provided by the client, never stored in a layer.
    Secret {
        id: String,
        uid: u32,
        gid: u32,
        mode: u32,
        required: bool,
    },
    /// An ssh-agent socket forwarded from the client.
    Ssh {
        id: String,
        uid: u32,
        gid: u32,
        mode: u32,
        required: bool,
    },
}

/// How concurrent builds share one cache mount.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CacheSharing {
    /// Everyone writes into the same directory at the same time.
    Shared,
    /// A second user gets a fresh copy instead of waiting.
    Private,
    /// A second user waits until the first is done.
    Locked,
}

/// A secret given to an Exec op as an environment variable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretEnv {
    pub id: String,
    pub name: String,
    pub required: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum NetworkMode {
    /// The engine's default: a private network namespace with outbound access.
    #[default]
    Default,
    /// Only loopback.
    None,
    /// The host's network namespace (needs an entitlement).
    Host,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    /// All capabilities, no seccomp, no masked paths (needs an entitlement).
    Insecure,
}

/// A sequence of filesystem actions applied, in order, on top of `base`; the result is output 0.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileOp {
    pub base: Input,
    pub actions: Vec<FileAction>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir(MkdirAction),
    Mkfile(MkfileAction),
    Rm(RmAction),
    Symlink(SymlinkAction),
}

/// Copies `src` (a path or wildcard in `source`) to `dest` (a path in the result).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CopyAction {
    pub source: Input,
    /// Absolute path inside `source`; may contain a `/./` pivot when `parents` is set.
    pub src: String,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: String,
    pub owner: Option<Owner>,
    pub mode: Option<FileMode>,
    /// Follow a symlink named by `src` itself (not symlinks inside copied directories).
    pub follow_symlinks: bool,
    /// When `src` is a directory, copy what it contains rather than the directory itself.
    pub dir_contents_only: bool,
    /// Create missing parents of `dest`.
    pub create_dest_path: bool,
    pub allow_wildcard: bool,
    /// A wildcard that matches nothing copies nothing instead of failing.
    pub allow_empty_wildcard: bool,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// Keep the source's parent directories (`COPY --parents`), from the `/./` pivot if any.
    pub parents: bool,
    /// Unix seconds to set as mtime on everything written.
    pub timestamp: Option<i64>,
    /// If the source is a tar archive (plain, gzip, bzip2, xz, zstd), extract it (ADD).
    pub unpack: bool,
}

impl CopyAction {
    /// A copy with BuildKit's defaults for COPY: wildcards allowed, parents created, no owner
    /// or mode change.
    pub fn new(source: Input, src: impl Into<String>, dest: impl Into<String>) -> CopyAction {
        CopyAction {
            source,
            src: src.into(),
            dest: dest.into(),
            owner: None,
            mode: None,
            follow_symlinks: true,
            dir_contents_only: true,
            create_dest_path: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            include_patterns: Vec::new(),
            exclude_patterns: Vec::new(),
            parents: false,
            timestamp: None,
            unpack: false,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MkdirAction {
    pub path: String,
    pub mode: u32,
    pub make_parents: bool,
    pub owner: Option<Owner>,
    pub timestamp: Option<i64>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MkfileAction {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
    pub owner: Option<Owner>,
    pub timestamp: Option<i64>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RmAction {
    pub path: String,
    pub allow_not_found: bool,
    pub allow_wildcard: bool,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SymlinkAction {
    /// What the link points to.
    pub target: String,
    /// Where the link is created.
    pub path: String,
    pub owner: Option<Owner>,
    pub timestamp: Option<i64>,
}

/// Ownership to apply. Names are resolved when the op runs, against `/etc/passwd` and
/// `/etc/group` of the destination filesystem. Without a group: a user given by id gets the
/// same number as gid, a user given by name gets its primary group (as BuildKit does).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Owner {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

impl Owner {
    /// Parses `user[:group]` where each part is a number or a name. Returns `None` for an empty
    /// user part.
    pub fn parse(s: &str) -> Option<Owner> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        if user.is_empty() {
            return None;
        }
        let part = |p: &str| match p.parse::<u32>() {
            Ok(id) => IdOrName::Id(id),
            Err(_) => IdOrName::Name(p.to_owned()),
        };
        let group = match group {
            Some("") => return None,
            Some(g) => Some(part(g)),
            None => None,
        };
        Some(Owner {
            user: part(user),
            group,
        })
    }
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "{id}"),
            IdOrName::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.user)?;
        if let Some(group) = &self.group {
            write!(f, ":{group}")?;
        }
        Ok(())
    }
}

/// A `--chmod` value, validated when it is parsed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FileMode {
    /// Permission bits, at most 0o7777.
    Octal(u32),
    /// `chmod(1)` symbolic clauses such as `u=rw,g=r,o=r` or `a+X`, applied to each copied
    /// entry's own mode.
    Symbolic(String),
}

/// The message is BuildKit's word for word, because users and tests grep for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
pub struct ChmodError(pub String);

impl FileMode {
    /// Parses an octal mode (at most 07777) or, failing that, a symbolic one.
    pub fn parse(s: &str) -> Result<FileMode, ChmodError> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(s, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(FileMode::Octal(mode)),
                _ => Err(ChmodError(s.to_owned())),
            };
        }
        if parse_symbolic(s).is_some() {
            Ok(FileMode::Symbolic(s.to_owned()))
        } else {
            Err(ChmodError(s.to_owned()))
        }
    }

    /// The mode an entry whose current permission bits are `current` gets.
    pub fn apply(&self, current: u32, is_dir: bool) -> u32 {
        match self {
            FileMode::Octal(mode) => *mode,
            FileMode::Symbolic(s) => {
                // Validated on construction through `parse`; a hand-built invalid value leaves
                // the mode alone rather than guessing.
                let Some(clauses) = parse_symbolic(s) else {
                    return current & 0o7777;
                };
                let mut mode = current & 0o7777;
                for clause in clauses {
                    mode = clause.apply(mode, current, is_dir);
                }
                mode
            }
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileMode::Octal(mode) => write!(f, "{mode:04o}"),
            FileMode::Symbolic(s) => f.write_str(s),
        }
    }
}

struct SymbolicClause {
    who: u32,
    op: u8,
    perms: Vec<u8>,
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl SymbolicClause {
    fn apply(&self, mode: u32, original: u32, is_dir: bool) -> u32 {
        let mut bits = 0u32;
        for &p in &self.perms {
            bits |= match p {
                b'r' => 0o444,
                b'w' => 0o222,
                b'x' => 0o111,
                // X: execute only for directories or files already executable by someone.
                b'X' if is_dir || original & 0o111 != 0 => 0o111,
                b'X' => 0,
                b's' => 0o6000,
                b't' => 0o1000,
                _ => 0,
            };
        }
        let bits = bits & self.who;
        match self.op {
            b'+' => mode | bits,
            b'-' => mode & !bits,
            // `=` clears the who's permission bits (not their special bits unless named).
            _ => (mode & !(self.who & 0o777)) | bits,
        }
    }
}

fn parse_symbolic(s: &str) -> Option<Vec<SymbolicClause>> {
    let mut clauses = Vec::new();
    for clause in s.split(',') {
        let bytes = clause.as_bytes();
        let mut i = 0;
        let mut who = 0u32;
        while i < bytes.len() && matches!(bytes[i], b'u' | b'g' | b'o' | b'a') {
            who |= match bytes[i] {
                b'u' => WHO_U,
                b'g' => WHO_G,
                b'o' => WHO_O,
                _ => WHO_U | WHO_G | WHO_O,
            };
            i += 1;
        }
        if who == 0 {
            who = WHO_U | WHO_G | WHO_O;
        }
        // One clause may chain several operations: `u+r-w`.
        let mut any = false;
        while i < bytes.len() {
            let op = bytes[i];
            if !matches!(op, b'+' | b'-' | b'=') {
                return None;
            }
            i += 1;
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b'r' | b'w' | b'x' | b'X' | b's' | b't') {
                i += 1;
            }
            clauses.push(SymbolicClause {
                who,
                op,
                perms: bytes[start..i].to_vec(),
            });
            any = true;
        }
        if !any {
            return None;
        }
    }
    Some(clauses)
}

/// Stacks inputs: later inputs' files win over earlier ones (`COPY --link` results on a base).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MergeOp {
    pub inputs: Vec<Input>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_errors_match_buildkit() {
        assert_eq!(FileMode::parse("0644"), Ok(FileMode::Octal(0o644)));
        assert_eq!(FileMode::parse("7777"), Ok(FileMode::Octal(0o7777)));
        assert_eq!(FileMode::parse("0"), Ok(FileMode::Octal(0)));
        assert_eq!(
            FileMode::parse("64a").unwrap_err().to_string(),
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        );
        assert!(FileMode::parse("10000").is_err());
        assert!(FileMode::parse("89").is_err());
        assert!(FileMode::parse("").is_err());
        assert!(FileMode::parse("u+q").is_err());
    }

    #[test]
    fn chmod_symbolic_applies_like_chmod() {
        let m = |s: &str| FileMode::parse(s).unwrap();
        assert_eq!(m("go-w").apply(0o666, false), 0o644);
        assert_eq!(m("u=rw,g=r,o=r").apply(0o777, false), 0o644);
        assert_eq!(m("a+X").apply(0o644, false), 0o644);
        assert_eq!(m("a+X").apply(0o644, true), 0o755);
        assert_eq!(m("a+X").apply(0o744, false), 0o755);
        assert_eq!(m("u+rw,g+r,o-x,o+w").apply(0o751, true), 0o752);
        assert_eq!(m("+x").apply(0o600, false), 0o711);
        assert_eq!(m("u+s").apply(0o755, false), 0o4755);
    }

    #[test]
    fn owner_parses_ids_and_names() {
        assert_eq!(
            Owner::parse("1000:nobody"),
            Some(Owner {
                user: IdOrName::Id(1000),
                group: Some(IdOrName::Name("nobody".into()))
            })
        );
        assert_eq!(
            Owner::parse("daemon"),
            Some(Owner {
                user: IdOrName::Name("daemon".into()),
                group: None
            })
        );
        assert_eq!(Owner::parse(""), None);
        assert_eq!(Owner::parse("a:"), None);
        assert_eq!(Owner::parse("1:2").unwrap().to_string(), "1:2");
    }

    #[test]
    fn platforms_normalize() {
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("Linux/ARM/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert!(Platform::parse("linux").is_err());
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(Platform::parse("linux/arm64/v8").unwrap().matches(&arm64));
        assert!(arm64.matches(&Platform::parse("linux/aarch64").unwrap()));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(!Platform::parse("linux/arm/v6").unwrap().matches(&v7));
        assert!(!v7.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert!(!arm64.matches(&Platform::parse("linux/amd64").unwrap()));
        assert_eq!(
            Platform::parse_list("linux/amd64, linux/arm64,linux/amd64")
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["linux/amd64", "linux/arm64"]
        );
        assert!(Platform::parse_list("linux/amd64,").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert_eq!(Platform::host().os, "linux");
    }
}
