//! The reference builder for differential tests: BuildKit v0.24 from `../shared/tools/buildkit`,
//! started once per test binary with its own root and socket under /tmp, next to one kiln store.
//! Both builders get the same base images (exported from the kiln store as OCI layouts and
//! handed to BuildKit as named contexts), build the same context, and their OCI archives are
//! compared as images (`imagefs`). A watchdog process stops the daemon and removes both state
//! directories when the test binary exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Kiln;
use super::imagefs::{Compare, Image, differences};

/// Base names the tests use, and which local image stands for each. `distro` is busybox plus
/// the `/etc` files of a distribution (`os-release`, `nsswitch.conf`) that some cases read.
const BASES: &[(&str, &str)] = &[
    ("busybox", "busybox"),
    ("mirror.gcr.io/busybox", "busybox"),
    ("mirror.gcr.io/alpine", "distro"),
    ("quay.io/libpod/centos:7", "distro"),
];

/// A distribution's users and groups (as CentOS lists them), for `--chown` by name.
const DISTRO_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\n\
daemon:x:2:2:daemon:/sbin:/sbin/nologin\nadm:x:3:4:adm:/var/adm:/sbin/nologin\n\
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin\nmail:x:8:12:mail:/var/spool/mail:/sbin/nologin\n\
nobody:x:99:99:Nobody:/:/sbin/nologin\n";
const DISTRO_GROUP: &str = "root:x:0:\nbin:x:1:\ndaemon:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n\
disk:x:6:\nlp:x:7:\nmem:x:8:\nkmem:x:9:\nwheel:x:10:\nmail:x:12:\nnobody:x:99:\n";

/// The fixed mtime of files the harness writes (the Buildah suite's `testDate`).
pub const TEST_DATE: u64 = 1_485_449_953;

/// A BuildKit daemon and a kiln store with the same base images.
pub struct Pair {
    pub kiln: Kiln,
    script: PathBuf,
    state: PathBuf,
    cache_home: PathBuf,
    base_flags: Vec<String>,
    /// When the pair was set up (seconds): mtimes from later are build-time ones.
    pub started: u64,
    work: PathBuf,
}

static PAIR: OnceLock<Result<Pair, String>> = OnceLock::new();

/// The shared pair, or `None` after printing `skipped: <why>` when the reference cannot run.
pub fn pair(test: &str) -> Option<&'static Pair> {
    match PAIR.get_or_init(Pair::start) {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("skipped: {test}: {why}");
            None
        }
    }
}

/// `../shared` (or `$KILN_SHARED_DIR`) when it exists.
pub fn shared_root() -> Option<PathBuf> {
    let dir = match std::env::var_os("KILN_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    dir.is_dir().then_some(dir)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sets `path`'s mtime (without following a symlink) to [`TEST_DATE`].
pub fn set_test_date(path: &Path) {
    let _ = Command::new("touch")
        .args(["-h", "-d", &format!("@{TEST_DATE}")])
        .arg(path)
        .status();
}

/// Sets every mtime under `dir` (and of `dir`) to [`TEST_DATE`].
pub fn set_test_dates(dir: &Path) {
    let _ = Command::new("find")
        .arg(dir)
        .args([
            "-exec",
            "touch",
            "-h",
            "-d",
            &format!("@{TEST_DATE}"),
            "{}",
            "+",
        ])
        .status();
}

impl Pair {
    fn start() -> Result<Pair, String> {
        if !super::nix_is_root() {
            return Err("needs root (sandboxes, overlay mounts, buildkitd)".into());
        }
        let shared = shared_root().ok_or("../shared is absent")?;
        let script = shared.join("tools/buildkit/buildkit.sh");
        if !script.is_file() {
            return Err(format!(
                "the reference BuildKit is absent ({})",
                script.display()
            ));
        }
        for tool in ["runc", "xz"] {
            if !have(tool) {
                return Err(format!("{tool} is not installed (buildkitd needs it)"));
            }
        }
        let kiln = Kiln::new("the BuildKit reference").ok_or("no kiln store with busybox")?;
        let work = tempfile::Builder::new()
            .prefix("kiln-bk-ref-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?
            .keep();
        let state = work.join("buildkit");
        // The unpacked binaries live in the build tree, not in the user's cache.
        let cache_home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("buildkit-ref");
        let started = now();
        let mut pair = Pair {
            kiln,
            script,
            state,
            cache_home,
            base_flags: Vec::new(),
            started,
            work,
        };
        pair.spawn_watchdog()?;
        pair.prepare_bases()?;
        pair.start_daemon()?;
        Ok(pair)
    }

    /// Starts buildkitd as `buildkit.sh start` does (the binaries it unpacked, the same flags,
    /// the pid where `buildkit.sh stop` finds it), but with everything it writes under the
    /// pair's directory: its config moves the tracing socket out of `/run/buildkit`, a runc
    /// wrapper keeps runc's state out of `/run/runc`, and `$TMPDIR` holds its temporary
    /// mount points.
    fn start_daemon(&self) -> Result<(), String> {
        let unpacked = self
            .script_cmd("ctl")
            .arg(&self.state)
            .arg("--version")
            .output()
            .map_err(|e| e.to_string())?;
        if !unpacked.status.success() {
            return Err(format!(
                "could not unpack the reference BuildKit: {}",
                String::from_utf8_lossy(&unpacked.stderr)
            ));
        }
        let bin = self.cache_home.join("kiln-ref-buildkit-v0.24.0");
        let (state, tmp) = (&self.state, self.work.join("tmp"));
        for dir in [state, &tmp] {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let config = state.join("buildkitd.toml");
        let otel = state.join("otel-grpc.sock");
        std::fs::write(
            &config,
            format!("[otel]\n  socketPath = {:?}\n", otel.display().to_string()),
        )
        .map_err(|e| e.to_string())?;
        let runc = state.join("runc");
        std::fs::write(
            &runc,
            format!(
                "#!/bin/sh\nexec runc --root {:?} \"$@\"\n",
                state.join("runc-state").display().to_string()
            ),
        )
        .map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(state.join("buildkitd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("setsid")
            .arg(bin.join("buildkitd"))
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(state.join("root"))
            .arg("--addr")
            .arg(format!("unix://{}", state.join("buildkitd.sock").display()))
            .args(["--oci-worker=true", "--containerd-worker=false"])
            .arg("--oci-worker-binary")
            .arg(&runc)
            .args(["--allow-insecure-entitlement", "network.host"])
            .args(["--allow-insecure-entitlement", "security.insecure"])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start buildkitd: {e}"))?;
        std::fs::write(state.join("buildkitd.pid"), child.id().to_string())
            .map_err(|e| e.to_string())?;
        for _ in 0..150 {
            let up = self
                .script_cmd("ctl")
                .arg(state)
                .args(["debug", "workers"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Err(format!(
            "buildkitd did not come up: {}",
            std::fs::read_to_string(state.join("buildkitd.log")).unwrap_or_default()
        ))
    }

    fn script_cmd(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.arg(verb).env("XDG_CACHE_HOME", &self.cache_home);
        cmd
    }

    /// A detached shell that waits for this process to exit, then stops buildkitd, unmounts
    /// whatever it left under its root, and removes the daemon's and the kiln store's dirs.
    fn spawn_watchdog(&self) -> Result<(), String> {
        const WATCHDOG: &str = r#"parent=$1; script=$2; state=$3; shift 3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
"$script" stop "$state" >/dev/null 2>&1
for dir in "$@"; do
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf "$dir"
done"#;
        Command::new("setsid")
            .args(["sh", "-c", WATCHDOG, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.script)
            .arg(&self.state)
            .arg(&self.work)
            .arg(self.kiln.dir.path())
            .env("XDG_CACHE_HOME", &self.cache_home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the watchdog: {e}"))?;
        Ok(())
    }

    /// Builds `distro`, tags the base names in kiln, and exports each image as an OCI layout
    /// for BuildKit's named contexts.
    fn prepare_bases(&mut self) -> Result<(), String> {
        let ctx = self.work.join("distro-context");
        super::write_files(
            &ctx,
            &[
                (
                    "Dockerfile",
                    "FROM busybox\nCOPY etc/ /etc/\nCOPY --chmod=755 usr/bin/script /usr/bin/\n",
                ),
                (
                    "etc/os-release",
                    "NAME=\"Kiln test distro\"\nID=kilntest\nVERSION_ID=1\n",
                ),
                (
                    "etc/nsswitch.conf",
                    "passwd: files\ngroup: files\nhosts: files dns\n",
                ),
                ("etc/passwd", DISTRO_PASSWD),
                // util-linux's `script`, which a CentOS image has (a case lists it).
                ("usr/bin/script", "#!/bin/sh\nexec \"$@\"\n"),
                ("etc/group", DISTRO_GROUP),
            ],
        );
        set_test_dates(&ctx);
        let b = self.kiln.build(&ctx, &["-t", "distro"]);
        if !b.ok() {
            return Err(format!("build the distro base: {}", b.stderr()));
        }
        let mut digests = std::collections::BTreeMap::new();
        for image in ["busybox", "distro"] {
            let (layout, digest) = self.save_layout(image)?;
            self.base_flags.push("--oci-layout".into());
            self.base_flags
                .push(format!("{image}={}", layout.display()));
            digests.insert(image, digest);
        }
        for (name, image) in BASES {
            if *name != "busybox" {
                let out = self.kiln.run(&["tag", image, name]);
                if !out.status.success() {
                    return Err(format!("kiln tag {image} {name} failed"));
                }
            }
            self.base_flags.push("--opt".into());
            self.base_flags.push(format!(
                "context:{name}=oci-layout://{image}@{}",
                digests[image]
            ));
        }
        Ok(())
    }

    /// Saves a kiln image as an OCI layout under the pair's work dir: (layout, manifest
    /// digest).
    pub fn save_layout(&self, image: &str) -> Result<(PathBuf, String), String> {
        let tar = self.work.join(format!("{image}.oci.tar"));
        let out = self.kiln.run(&[
            "save",
            "--format",
            "oci",
            image,
            "-o",
            tar.to_str().ok_or("non-utf8 path")?,
        ]);
        if !out.status.success() {
            return Err(format!(
                "kiln save {image}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let layout = self.work.join(format!("layout-{image}"));
        std::fs::create_dir_all(&layout).map_err(|e| e.to_string())?;
        let st = Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-xf")
            .arg(&tar)
            .status()
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&tar);
        if !st.success() {
            return Err(format!("unpack the layout of {image}"));
        }
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(layout.join("index.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .ok_or("no manifest in the saved layout")?
            .to_string();
        Ok((layout, digest))
    }

    /// The buildctl flags that make `FROM name` in the reference use the kiln image `image`
    /// (an OCI layout as a named context, as the harness's own bases are given).
    pub fn reference_base(&self, name: &str, image: &str) -> Result<Vec<String>, String> {
        let (layout, digest) = self.save_layout(image)?;
        Ok(vec![
            "--oci-layout".into(),
            format!("{image}={}", layout.display()),
            "--opt".into(),
            format!("context:{name}=oci-layout://{image}@{digest}"),
        ])
    }

    /// The reference's build checks (`requestid=frontend.lint`) of `context/Dockerfile`:
    /// (rule, line) of every warning, in its order.
    pub fn lint_reference(
        &self,
        context: &Path,
        build_args: &[(&str, &str)],
    ) -> Result<Vec<(String, u32)>, String> {
        let mut cmd = self.script_cmd("ctl");
        cmd.arg(&self.state)
            .args(["build", "--frontend", "dockerfile.v0"])
            .arg("--local")
            .arg(format!("context={}", context.display()))
            .arg("--local")
            .arg(format!("dockerfile={}", context.display()))
            .args(["--opt", "cmdline="])
            .args(["--opt", "requestid=frontend.lint"])
            .args(&self.base_flags);
        for (k, v) in build_args {
            cmd.arg("--opt").arg(format!("build-arg:{k}={v}"));
        }
        let out = cmd.output().map_err(|e| format!("spawn buildctl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        // The text report: `WARNING: RULE - URL`, the message, then `Dockerfile:LINE`.
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found = Vec::new();
        let mut rule: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("WARNING: ") {
                rule = rest.split_whitespace().next().map(str::to_owned);
            } else if let (Some(r), Some(n)) = (&rule, line.strip_prefix("Dockerfile:"))
                && let Ok(n) = n.trim().parse()
            {
                found.push((r.clone(), n));
                rule = None;
            }
        }
        Ok(found)
    }

    /// A fresh directory under the pair's work dir.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        tempfile::Builder::new()
            .prefix(&format!("{}-", name.replace(['/', ' '], "_")))
            .tempdir_in(&self.work)
            .expect("tempdir")
            .keep()
    }

    /// Builds `spec` with kiln into `out` (an OCI archive). `$KILN_REFERENCE_KILN` names another
    /// kiln binary to measure (an older build, say) against the same store.
    pub fn build_kiln(&self, spec: &Spec, out: &Path) -> Result<(), String> {
        let mut cmd = self.kiln.command();
        if let Some(other) = std::env::var_os("KILN_REFERENCE_KILN") {
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            cmd = Command::new(other);
            cmd.args(args).env_remove("KILN_ROOT");
        }
        cmd.args(["build", "--progress", "plain"])
            .arg("-f")
            .arg(&spec.dockerfile)
            .arg("-o")
            .arg(format!("type=oci,dest={}", out.display()));
        for (k, v) in &spec.args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(t) = &spec.target {
            cmd.args(["--target", t]);
        }
        for (id, file) in &spec.secrets {
            cmd.arg("--secret")
                .arg(format!("id={id},src={}", file.display()));
        }
        cmd.args(&spec.kiln_args);
        cmd.arg(&spec.context);
        run_logged(cmd)
    }

    /// Builds `spec` with the reference BuildKit into `out` (an OCI archive).
    pub fn build_reference(&self, spec: &Spec, out: &Path) -> Result<(), String> {
        let df_dir = spec
            .dockerfile
            .parent()
            .expect("the Dockerfile's directory");
        let df_name = spec.dockerfile.file_name().expect("the Dockerfile's name");
        let mut cmd = self.script_cmd("ctl");
        cmd.arg(&self.state)
            .args([
                "build",
                "--progress",
                "plain",
                "--frontend",
                "dockerfile.v0",
            ])
            .arg("--local")
            .arg(format!("context={}", spec.context.display()))
            .arg("--local")
            .arg(format!("dockerfile={}", df_dir.display()))
            .arg("--opt")
            .arg(format!("filename={}", df_name.to_string_lossy()))
            // Keep `# syntax=` lines from sending BuildKit to a registry for another frontend.
            .args(["--opt", "cmdline="])
            .args(&self.base_flags)
            .arg("--output")
            .arg(format!("type=oci,dest={}", out.display()));
        for (k, v) in &spec.args {
            cmd.arg("--opt").arg(format!("build-arg:{k}={v}"));
        }
        if let Some(t) = &spec.target {
            cmd.arg("--opt").arg(format!("target={t}"));
        }
        for (id, file) in &spec.secrets {
            cmd.arg("--secret")
                .arg(format!("id={id},src={}", file.display()));
        }
        cmd.args(&spec.reference_args);
        run_logged(cmd)
    }

    /// Builds a remote context (a git URL) with the reference, which reads the Dockerfile from
    /// it, into `out` (an OCI archive).
    pub fn build_reference_context(&self, url: &str, out: &Path) -> Result<(), String> {
        let mut cmd = self.script_cmd("ctl");
        cmd.arg(&self.state)
            .args([
                "build",
                "--progress",
                "plain",
                "--frontend",
                "dockerfile.v0",
            ])
            .arg("--opt")
            .arg(format!("context={url}"))
            .args(["--opt", "cmdline="])
            .args(&self.base_flags)
            .arg("--output")
            .arg(format!("type=oci,dest={}", out.display()));
        run_logged(cmd)
    }

    /// The differences between two OCI archives as images (empty: the same image).
    pub fn compare_archives(&self, ours: &Path, reference: &Path) -> Vec<String> {
        match (
            Image::from_oci_archive(ours),
            Image::from_oci_archive(reference),
        ) {
            (Ok(a), Ok(b)) => differences(
                &a,
                &b,
                Compare {
                    build_started: self.started,
                },
            ),
            (a, b) => vec![format!(
                "unreadable output: kiln {:?}, buildkit {:?}",
                a.err(),
                b.err()
            )],
        }
    }

    /// Builds `spec` with both and compares the results.
    pub fn compare(&self, spec: &Spec) -> Verdict {
        let dir = self.scratch_dir("out");
        let (ko, ro) = (dir.join("kiln.tar"), dir.join("buildkit.tar"));
        let (k, r) = std::thread::scope(|s| {
            let k = s.spawn(|| self.build_kiln(spec, &ko));
            let r = self.build_reference(spec, &ro);
            (k.join().expect("kiln build thread"), r)
        });
        let verdict = match (k, r) {
            (Ok(()), Ok(())) => {
                let read = |p: &Path| Image::from_oci_archive(p);
                match (read(&ko), read(&ro)) {
                    (Ok(a), Ok(b)) => {
                        let diffs = differences(
                            &a,
                            &b,
                            Compare {
                                build_started: self.started,
                            },
                        );
                        if diffs.is_empty() {
                            Verdict::Same(Box::new(a))
                        } else {
                            Verdict::Differ(diffs)
                        }
                    }
                    (a, b) => Verdict::Differ(vec![format!(
                        "unreadable output: kiln {:?}, buildkit {:?}",
                        a.err(),
                        b.err()
                    )]),
                }
            }
            (Err(k), Err(r)) => Verdict::BothFailed {
                kiln: k,
                reference: r,
            },
            (Err(k), Ok(())) => Verdict::OnlyKilnFailed(k),
            (Ok(()), Err(r)) => Verdict::OnlyReferenceFailed(r),
        };
        let _ = std::fs::remove_dir_all(&dir);
        verdict
    }
}

fn run_logged(mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("spawn: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(log)
    }
}

/// One build, as both builders get it.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
    /// `--secret id=ID,src=FILE` for both builders.
    pub secrets: Vec<(String, PathBuf)>,
    /// More flags for `kiln build` (before the context).
    pub kiln_args: Vec<String>,
    /// More flags for `buildctl build`.
    pub reference_args: Vec<String>,
}

impl Spec {
    /// `context/Dockerfile`.
    pub fn new(context: &Path) -> Spec {
        Spec {
            context: context.to_path_buf(),
            dockerfile: context.join("Dockerfile"),
            ..Spec::default()
        }
    }

    pub fn arg(mut self, k: &str, v: &str) -> Spec {
        self.args.push((k.into(), v.into()));
        self
    }

    /// The same setting for both builders: kiln's flags and buildctl's.
    pub fn flags(mut self, kiln: &[&str], reference: &[&str]) -> Spec {
        self.kiln_args.extend(kiln.iter().map(|s| s.to_string()));
        self.reference_args
            .extend(reference.iter().map(|s| s.to_string()));
        self
    }
}

/// How the two builds of one spec compare.
#[derive(Debug)]
pub enum Verdict {
    /// Both built the same image (kiln's is kept for further assertions).
    Same(Box<Image>),
    Differ(Vec<String>),
    BothFailed {
        kiln: String,
        reference: String,
    },
    OnlyKilnFailed(String),
    OnlyReferenceFailed(String),
}

impl Verdict {
    /// One line for a summary.
    pub fn summary(&self) -> String {
        match self {
            Verdict::Same(_) => "identical".into(),
            Verdict::Differ(d) => format!("{} difference(s):\n    {}", d.len(), d.join("\n    ")),
            Verdict::BothFailed { kiln, reference } => format!(
                "both failed:\n--- kiln:\n{}\n--- buildkit:\n{}",
                tail(kiln, 8),
                tail(reference, 8)
            ),
            Verdict::OnlyKilnFailed(k) => format!("only kiln failed:\n{}", tail(k, 15)),
            Verdict::OnlyReferenceFailed(r) => format!("only buildkit failed:\n{}", tail(r, 15)),
        }
    }

    /// Panics with the differences unless both built the same image; returns kiln's image.
    pub fn expect_same(self, what: &str) -> Image {
        match self {
            Verdict::Same(image) => *image,
            other => panic!("{what}: kiln and BuildKit 0.24 differ: {}", other.summary()),
        }
    }

    /// Panics unless both builders failed; returns kiln's error output.
    pub fn expect_both_fail(self, what: &str) -> String {
        match self {
            Verdict::BothFailed { kiln, .. } => kiln,
            other => panic!(
                "{what}: expected both builders to fail, got {}",
                other.summary()
            ),
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
