//! Buildah's conformance contexts and Dockerfiles (`../shared/conformance/buildah-conformance`,
//! read at run time, never copied here), built by kiln and by BuildKit 0.24 and compared. The
//! table below is the runnable subset of the suite's README: the cases whose Dockerfile is on
//! disk (the others live in Buildah's Go code) and that need nothing we lack; each skipped case
//! says why. `KILN_CONFORMANCE_CASES=a,b` runs only the named cases; `KILN_CONFORMANCE_VERBOSE=1` prints
//! each verdict.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::reference::{self, Spec, Verdict, set_test_dates};

/// Where a case's build context comes from (the suite's rules).
#[derive(Clone, Copy)]
enum Ctx {
    /// The contents of `testdata/<dir>`; the Dockerfile is inside it.
    Dir(&'static str),
    /// A context holding only the Dockerfile.
    OnlyDockerfile,
}

/// What the test writes into the context before the build (as upstream does at test time).
#[derive(Clone, Copy)]
enum Setup {
    None,
    /// `app/jkl?/file.txt`, `app/n?pe/file.txt`, `app/st*uv/file.txt`: glob characters in names.
    GlobNames,
    /// An executable `true` in the context root (busybox, which acts as `true` by its name).
    TrueBinary,
    /// `.dockerignore` with these lines.
    Dockerignore(&'static str),
}

struct Case {
    name: &'static str,
    ctx: Ctx,
    /// Relative to `testdata`.
    dockerfile: &'static str,
    args: &'static [(&'static str, &'static str)],
    setup: Setup,
    /// Both must fail, kiln's error pointing at this Dockerfile line.
    fails_at: Option<u32>,
    /// Why the case cannot run here.
    skip: Option<&'static str>,
}

const fn case(name: &'static str, ctx: Ctx, dockerfile: &'static str) -> Case {
    Case {
        name,
        ctx,
        dockerfile,
        args: &[],
        setup: Setup::None,
        fails_at: None,
        skip: None,
    }
}

const fn fails(mut c: Case, line: u32) -> Case {
    c.fails_at = Some(line);
    c
}

const fn args(mut c: Case, a: &'static [(&'static str, &'static str)]) -> Case {
    c.args = a;
    c
}

const fn setup(mut c: Case, s: Setup) -> Case {
    c.setup = s;
    c
}

const fn skip(mut c: Case, why: &'static str) -> Case {
    c.skip = Some(why);
    c
}

use Ctx::{Dir, OnlyDockerfile as Only};

// One case per line, as the suite's README lists them.
#[rustfmt::skip]
const CASES: &[Case] = &[
    skip(case("shell test", Only, "Dockerfile.shell"), "runs /bin/bash (our base is busybox)"),
    setup(case("copy-escape-glob", Dir("copy-escape-glob"), "copy-escape-glob/Dockerfile"), Setup::GlobNames),
    case("copy file to root", Only, "Dockerfile.copyfrom_1"),
    case("copy file to same file", Only, "Dockerfile.copyfrom_2"),
    case("copy file to workdir", Only, "Dockerfile.copyfrom_3"),
    case("copy file to workdir rename", Only, "Dockerfile.copyfrom_3_1"),
    case("copy folder contents to higher level", Only, "Dockerfile.copyfrom_4"),
    case("copy wildcard folder contents to higher level", Only, "Dockerfile.copyfrom_5"),
    case("copy folder with dot contents to higher level", Only, "Dockerfile.copyfrom_6"),
    case("copy root file to different root name", Only, "Dockerfile.copyfrom_7"),
    case("copy nested file to different root name", Only, "Dockerfile.copyfrom_8"),
    case("copy file to deeper directory with explicit slash", Only, "Dockerfile.copyfrom_9"),
    case("copy file to deeper directory without explicit slash", Only, "Dockerfile.copyfrom_10"),
    case("copy directory to deeper directory without explicit slash", Only, "Dockerfile.copyfrom_11"),
    case("copy directory to root without explicit slash", Only, "Dockerfile.copyfrom_12"),
    case("copy directory trailing to root without explicit slash", Only, "Dockerfile.copyfrom_13"),
    case("multi stage base", Only, "Dockerfile.reusebase"),
    case("directory", Dir("dir"), "dir/Dockerfile"),
    case("copy to dir", Dir("copy"), "copy/Dockerfile"),
    case("copy dir", Dir("copydir"), "copydir/Dockerfile"),
    case("copy from symlink source", Dir("copysymlink"), "copysymlink/Dockerfile"),
    case("copy-symlink-2", Dir("copysymlink"), "copysymlink/Dockerfile2"),
    case("copy to renamed file", Dir("copyrename"), "copyrename/Dockerfile"),
    case("copy with --chown", Dir("copychown"), "copychown/Dockerfile"),
    case("directory with slash", Dir("overlapdirwithslash"), "overlapdirwithslash/Dockerfile"),
    case("directory without slash", Dir("overlapdirwithoutslash"), "overlapdirwithoutslash/Dockerfile"),
    fails(case("environment", Only, "Dockerfile.env"), 12),
    case("edgecases", Only, "Dockerfile.edgecases"),
    case("exposed default", Only, "Dockerfile.exposedefault"),
    skip(case("add", Only, "Dockerfile.add"), "downloads from github.com (no internet here)"),
    case("run with JSON", Only, "Dockerfile.run.args"),
    case("wildcard", Dir("wildcard"), "wildcard/Dockerfile"),
    case("volume", Dir("volume"), "volume/Dockerfile"),
    case("volumerun", Dir("volumerun"), "volumerun/Dockerfile"),
    skip(case("mount", Dir("mount"), "mount/Dockerfile"), "tests buildah's own --volume option"),
    skip(case("transient-mount", Dir("transientmount"), "transientmount/Dockerfile"), "tests buildah's own --volume option"),
    case("dockerfile-in-subdirectory", Dir("subdir"), "subdir/subdir/Dockerfile"),
    fails(case("copy-integration1", Dir("dockerignore/integration1"), "dockerignore/integration1/Dockerfile"), 3),
    case("copy-integration2", Dir("dockerignore/integration2"), "dockerignore/integration2/Dockerfile"),
    fails(case("copy-integration3", Dir("dockerignore/integration3"), "dockerignore/integration3/Dockerfile"), 4),
    case("copy-empty-1", Dir("copyempty"), "copyempty/Dockerfile"),
    case("copy-empty-2", Dir("copyempty"), "copyempty/Dockerfile2"),
    case("copy-absolute-directory-1", Dir("copyblahblub"), "copyblahblub/Dockerfile"),
    case("copy-absolute-directory-2", Dir("copyblahblub"), "copyblahblub/Dockerfile2"),
    case("copy-absolute-directory-3", Dir("copyblahblub"), "copyblahblub/Dockerfile3"),
    case("dockerignore-minimal-test", Dir("dockerignore/minimal_test"), "dockerignore/minimal_test/Dockerfile"),
    case("dockerignore-is-even-there", Dir("dockerignore/empty"), "dockerignore/empty/Dockerfile"),
    setup(case("dockerignore-irrelevant", Dir("dockerignore/empty"), "dockerignore/empty/Dockerfile"), Setup::Dockerignore("**/*-a\n!**/*-c\n")),
    case("add-parent-symlink", Dir("add/parent-symlink"), "add/parent-symlink/Dockerfile"),
    case("add-parent-dangling", Dir("add/parent-dangling"), "add/parent-dangling/Dockerfile"),
    case("add-parent-clean", Dir("add/parent-clean"), "add/parent-clean/Dockerfile"),
    case("add-archive-1", Dir("add/archive"), "add/archive/Dockerfile.1"),
    case("add-archive-2", Dir("add/archive"), "add/archive/Dockerfile.2"),
    case("add-archive-3", Dir("add/archive"), "add/archive/Dockerfile.3"),
    case("add-archive-4", Dir("add/archive"), "add/archive/Dockerfile.4"),
    case("add-archive-5", Dir("add/archive"), "add/archive/Dockerfile.5"),
    case("add-archive-6", Dir("add/archive"), "add/archive/Dockerfile.6"),
    case("add-archive-7", Dir("add/archive"), "add/archive/Dockerfile.7"),
    case("add-dir-not-dir", Dir("add/dir-not-dir"), "add/dir-not-dir/Dockerfile"),
    case("add-not-dir-dir", Dir("add/not-dir-dir"), "add/not-dir-dir/Dockerfile"),
    case("add-populated-dir-not-dir", Dir("add/populated-dir-not-dir"), "add/populated-dir-not-dir/Dockerfile"),
    fails(case("dockerignore-allowlist-subdir-nofile-dir", Dir("dockerignore/allowlist/subdir-nofile"), "dockerignore/allowlist/subdir-nofile/Dockerfile"), 2),
    fails(case("dockerignore-allowlist-subdir-nofile-file", Dir("dockerignore/allowlist/subdir-nofile"), "dockerignore/allowlist/subdir-nofile/Dockerfile"), 2),
    case("dockerignore-allowlist-subdir-file-dir", Dir("dockerignore/allowlist/subdir-file"), "dockerignore/allowlist/subdir-file/Dockerfile"),
    case("dockerignore-allowlist-subdir-file-file", Dir("dockerignore/allowlist/subdir-file"), "dockerignore/allowlist/subdir-file/Dockerfile"),
    case("dockerignore-allowlist-nothing-dot", Dir("dockerignore/allowlist/nothing-dot"), "dockerignore/allowlist/nothing-dot/Dockerfile"),
    case("dockerignore-allowlist-nothing-slash", Dir("dockerignore/allowlist/nothing-slash"), "dockerignore/allowlist/nothing-slash/Dockerfile"),
    case("dockerignore-allowlist-subsubdir-file", Dir("dockerignore/allowlist/subsubdir-file"), "dockerignore/allowlist/subsubdir-file/Dockerfile"),
    case("dockerignore-allowlist-subsubdir-nofile", Dir("dockerignore/allowlist/subsubdir-nofile"), "dockerignore/allowlist/subsubdir-nofile/Dockerfile"),
    case("dockerignore-allowlist-subsubdir-nosubdir", Dir("dockerignore/allowlist/subsubdir-nosubdir"), "dockerignore/allowlist/subsubdir-nosubdir/Dockerfile"),
    case("dockerignore-allowlist-alternating", Dir("dockerignore/allowlist/alternating"), "dockerignore/allowlist/alternating/Dockerfile"),
    fails(case("dockerignore-allowlist-alternating-nothing", Dir("dockerignore/allowlist/alternating-nothing"), "dockerignore/allowlist/alternating-nothing/Dockerfile"), 7),
    fails(case("dockerignore-allowlist-alternating-other", Dir("dockerignore/allowlist/alternating-other"), "dockerignore/allowlist/alternating-other/Dockerfile"), 7),
    case("tar-g", Dir("tar-g"), "tar-g/Dockerfile"),
    case("dockerignore-exceptions-skip", Dir("dockerignore/exceptions-skip"), "dockerignore/exceptions-skip/Dockerfile"),
    case("dockerignore-exceptions-weirdness-1", Dir("dockerignore/exceptions-weirdness-1"), "dockerignore/exceptions-weirdness-1/Dockerfile"),
    case("dockerignore-exceptions-weirdness-2", Dir("dockerignore/exceptions-weirdness-2"), "dockerignore/exceptions-weirdness-2/Dockerfile"),
    case("multistage-builtin-args", Only, "Dockerfile.margs"),
    case("heredoc-copy", Dir("heredoc"), "heredoc/Dockerfile.heredoc_copy"),
    case("replace-symlink-with-directory", Dir("replace/symlink-with-directory"), "replace/symlink-with-directory/Dockerfile"),
    case("replace-directory-with-symlink", Dir("replace/symlink-with-directory"), "replace/symlink-with-directory/Dockerfile.2"),
    case("replace-symlink-with-directory-subdir", Dir("replace/symlink-with-directory"), "replace/symlink-with-directory/Dockerfile.3"),
    case("replace-directory-with-symlink-subdir", Dir("replace/symlink-with-directory"), "replace/symlink-with-directory/Dockerfile.4"),
    case("env-precedence", Dir("env/precedence"), "env/precedence/Dockerfile"),
    case("multistage-copyback", Dir("multistage/copyback"), "multistage/copyback/Dockerfile"),
    case("heredoc-quoting", Only, "Dockerfile.heredoc-quoting"),
    case("chown-volume", Dir("chown-volume"), "chown-volume/Dockerfile"),
    args(case("builtins", Dir("builtins"), "builtins/Dockerfile"), &[("SOURCE", "source"), ("BUSYBOX", "mirror.gcr.io/busybox"), ("ALPINE", "mirror.gcr.io/alpine"), ("OWNERID", "0"), ("SECONDBASE", "localhost/no-such-image")]),
    skip(case("header-builtin", Dir("header-builtin"), "header-builtin/Dockerfile"), "needs two glibc busybox images pinned by digest and fedora's python image"),
    args(case("copyglob-1", Dir("copyglob"), "copyglob/Dockerfile"), &[("SOURCE", "**/*.txt")]),
    args(case("copyglob-2", Dir("copyglob"), "copyglob/Dockerfile"), &[("SOURCE", "**/sub/*.txt")]),
    args(case("copyglob-3", Dir("copyglob"), "copyglob/Dockerfile"), &[("SOURCE", "e/**/*sub/*.txt")]),
    args(case("copyglob-4", Dir("copyglob"), "copyglob/Dockerfile"), &[("SOURCE", "e/**/**/*sub/*.txt")]),
    setup(case("mount-targets-new", Dir("mount-targets"), "mount-targets/Dockerfile"), Setup::TrueBinary),
    setup(case("mount-targets-old", Dir("mount-targets"), "mount-targets/Dockerfile"), Setup::TrueBinary),
    setup(case("mount-targets-mount", Dir("mount-targets"), "mount-targets/Dockerfile.mount"), Setup::TrueBinary),
    skip(case("quoted and inherited arg", Only, "Dockerfile.quoted-arg"), "runs bash's printf %q (our base is busybox)"),
];

fn testdata() -> Option<PathBuf> {
    let dir = reference::shared_root()?.join("conformance/buildah-conformance/testdata");
    dir.is_dir().then_some(dir)
}

/// Lays out `case`'s context under `dir`; returns the spec.
fn prepare(case: &Case, testdata: &Path, dir: &Path) -> Spec {
    let ctx = dir.join("context");
    let df_src = testdata.join(case.dockerfile);
    let dockerfile = match case.ctx {
        Ctx::Dir(d) => {
            let st = Command::new("cp")
                .arg("-a")
                .arg(testdata.join(d))
                .arg(&ctx)
                .status()
                .expect("cp -a");
            assert!(st.success(), "copy the context of {}", case.name);
            ctx.join(
                Path::new(case.dockerfile)
                    .strip_prefix(d)
                    .expect("the Dockerfile lies in the context"),
            )
        }
        Ctx::OnlyDockerfile => {
            std::fs::create_dir_all(&ctx).expect("context dir");
            let to = ctx.join(df_src.file_name().expect("name"));
            std::fs::copy(&df_src, &to).expect("copy the Dockerfile");
            to
        }
    };
    match case.setup {
        Setup::None => {}
        Setup::GlobNames => {
            for rel in [
                "app/jkl?/file.txt",
                "app/n?pe/file.txt",
                "app/st*uv/file.txt",
            ] {
                let p = ctx.join(rel);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, format!("{rel}\n")).expect("write");
            }
        }
        Setup::TrueBinary => {
            let busybox = kiln_testutil::busybox_binary().expect("busybox");
            std::fs::copy(busybox, ctx.join("true")).expect("copy busybox as true");
        }
        Setup::Dockerignore(lines) => {
            let p = ctx.join(".dockerignore");
            let _ = std::fs::remove_file(&p);
            std::fs::write(p, lines).expect("write .dockerignore");
        }
    }
    set_test_dates(&ctx);
    let mut spec = Spec::new(&ctx);
    spec.dockerfile = dockerfile;
    for (k, v) in case.args {
        spec = spec.arg(k, v);
    }
    spec
}

/// The Dockerfile line a BuildKit error points at (`Dockerfile:7`, `Dockerfile.4:3`).
fn reference_line(log: &str) -> Option<u32> {
    log.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("Dockerfile")?;
        let (_, line) = rest.split_once(':')?;
        line.trim().parse().ok()
    })
}

/// Whether kiln's error output points at `line` of the Dockerfile (`--> FILE:LINE:COL`).
fn names_line(log: &str, line: u32) -> bool {
    log.contains(&format!(":{line}:"))
}

fn judge(case: &Case, verdict: &Verdict) -> Result<&'static str, String> {
    match (case.fails_at, verdict) {
        (None, Verdict::Same(_)) => Ok("same image"),
        (Some(line), Verdict::BothFailed { kiln, reference }) => {
            // BuildKit computes cache keys in parallel, so when several steps fail it may
            // report any of them: kiln must name the suite's line or the one BuildKit named.
            let theirs = reference_line(reference);
            if names_line(kiln, line) || theirs.is_some_and(|l| names_line(kiln, l)) {
                Ok("both fail")
            } else {
                Err(format!(
                    "both failed, but kiln's error does not point at line {line} (BuildKit: {theirs:?}):\n{}",
                    reference::tail(kiln, 12)
                ))
            }
        }
        // The suite expects a failure that BuildKit 0.24 does not have: BuildKit is the
        // reference, so kiln must build the same image.
        (Some(_), Verdict::Same(_)) => Ok("same image (BuildKit builds it)"),
        (Some(_), other) => Err(format!("must fail like BuildKit, got {}", other.summary())),
        // The suite expects success where BuildKit 0.24 fails (it was written against
        // Docker's classic builder): kiln must fail at the same step.
        (None, Verdict::BothFailed { kiln, reference }) => match reference_line(reference) {
            Some(l) if names_line(kiln, l) => Ok("both fail (as BuildKit does)"),
            theirs => Err(format!(
                "both failed, kiln not at BuildKit's line {theirs:?}: {}",
                verdict.summary()
            )),
        },
        (None, other) => Err(other.summary()),
    }
}

#[test]
fn buildah_conformance_cases_match_buildkit() {
    let Some(testdata) = testdata() else {
        eprintln!("skipped: the Buildah conformance data (../shared/conformance) is absent");
        return;
    };
    let Some(pair) = reference::pair("buildah conformance cases") else {
        return;
    };
    let only: Option<Vec<String>> = std::env::var("KILN_CONFORMANCE_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| n == c.name)))
        .collect();
    let runnable: Vec<&Case> = selected
        .iter()
        .copied()
        .filter(|c| c.skip.is_none())
        .collect();
    for c in selected.iter().filter(|c| c.skip.is_some()) {
        eprintln!("skipped case {:?}: {}", c.name, c.skip.unwrap_or_default());
    }
    // Two cases at a time: each already runs its two builders side by side.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(case) = runnable.get(i) else { break };
                    let dir = pair.scratch_dir(case.name);
                    let spec = prepare(case, &testdata, &dir);
                    let verdict = pair.compare(&spec);
                    let judged = judge(case, &verdict);
                    if std::env::var_os("KILN_CONFORMANCE_VERBOSE").is_some() {
                        eprintln!("{}: {}", case.name, verdict.summary());
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    results
                        .lock()
                        .expect("results")
                        .push((i, case.name, judged));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|r| r.0);
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    eprintln!(
        "buildah conformance: {} of {} runnable cases as BuildKit 0.24 builds them ({} skipped)",
        results.len() - failed.len(),
        results.len(),
        selected.len() - runnable.len()
    );
    for (_, name, r) in &results {
        eprintln!(
            "  {name:<60} {}",
            r.as_ref().copied().unwrap_or("DIFFERENT")
        );
    }
    assert!(
        failed.is_empty(),
        "{} case(s) differ from BuildKit 0.24:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}
