//! Build checks as lowering runs them: which rules fire where, the `# check=` directive and the
//! `BUILDKIT_DOCKERFILE_CHECK` build argument, `error=true`, `--check`'s every-stage mode and
//! the checks that need a resolved base image. The rule names and lines against BuildKit 0.24
//! itself are compared in the CLI's `build_checks` test.

use std::collections::BTreeMap;

use kiln_frontend::checks::Rule;
use kiln_frontend::lower::{
    BuildOptions, ImageResolver, Lowered, NamedContext, ResolvedImage, lower,
};
use kiln_llb::image::{ImageConfig, RootFs, RunConfig};
use kiln_llb::{Digest, Platform};

/// Every image exists; `arm:latest` is built for linux/arm64, the rest for what was asked.
struct Images;

impl ImageResolver for Images {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let (os, arch) = if reference.contains("/arm:") {
            ("linux".to_owned(), "arm64".to_owned())
        } else {
            (platform.os.clone(), platform.architecture.clone())
        };
        if reference.contains("missing") {
            return Err(format!("{reference}: not found"));
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            digest: Some(Digest::of(reference.as_bytes())),
            config: ImageConfig {
                os,
                architecture: arch,
                config: RunConfig {
                    env: vec!["PATH=/bin".into(), "HOME=/root".into()],
                    ..RunConfig::default()
                },
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![Digest::of(b"layer")],
                },
                ..ImageConfig::default()
            },
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        platform: Some(Platform::parse("linux/amd64").unwrap()),
        ..BuildOptions::default()
    }
}

fn lowered(text: &str, o: &BuildOptions) -> Lowered {
    lower(text.as_bytes(), o, &Images).unwrap_or_else(|d| panic!("lowering failed: {d}"))
}

/// (rule, line) of every warning.
fn found(text: &str, o: &BuildOptions) -> Vec<(String, u32)> {
    lowered(text, o)
        .warnings
        .iter()
        .map(|w| (w.rule.name().to_owned(), w.span.start.line))
        .collect()
}

fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(r, l)| ((*r).to_owned(), *l)).collect()
}

#[test]
fn a_clean_dockerfile_has_no_warnings() {
    let text = "FROM busybox AS build\nWORKDIR /src\nCOPY . .\nRUN make\nFROM scratch\nCOPY --from=build /src/out /\nCMD [\"/out\"]\n";
    assert_eq!(found(text, &opts()), Vec::new());
}

#[test]
fn undefined_variables_are_found_with_a_suggestion() {
    let text = "FROM busybox\nARG DECLARED\nENV GREETING=hi\nCOPY $DECLARED $GRETING /dst/\n";
    let l = lowered(text, &opts());
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    let w = &l.warnings[0];
    assert_eq!((w.rule, w.span.start.line), (Rule::UndefinedVar, 4));
    assert!(w.message.contains("$GRETING"), "{}", w.message);
    assert!(
        w.message.contains("did you mean $GREETING?"),
        "{}",
        w.message
    );
}

#[test]
fn the_directive_skips_rules_and_the_build_arg_overrides_it() {
    let text = "# check=skip=JSONArgsRecommended\nFROM busybox\nCMD echo hi\nMAINTAINER me\n";
    assert_eq!(found(text, &opts()), pairs(&[("MaintainerDeprecated", 4)]));
    let mut o = opts();
    o.build_args
        .push(("BUILDKIT_DOCKERFILE_CHECK".into(), "skip=all".into()));
    assert_eq!(found(text, &o), Vec::new());
    let bad = "# check=skip=A;colour=red\nFROM busybox\n";
    let err = lower(bad.as_bytes(), &opts(), &Images).unwrap_err();
    assert!(
        err.message.contains("failed to parse check options"),
        "{}",
        err.message
    );
    assert_eq!(err.span.map(|s| s.start.line), Some(1));
}

#[test]
fn error_true_fails_the_build_naming_every_rule() {
    let text = "# check=error=true\nFROM busybox\nCMD echo hi\nMAINTAINER me\n";
    let err = lower(text.as_bytes(), &opts(), &Images).unwrap_err();
    assert_eq!(
        err.message,
        "lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated"
    );
    assert_eq!(err.notes.len(), 2, "{:?}", err.notes);
    assert!(err.notes[0].contains("(Dockerfile:3:1)"), "{:?}", err.notes);
    // Without violations the directive changes nothing.
    lowered("# check=error=true\nFROM busybox\nCMD [\"sh\"]\n", &opts());
}

#[test]
fn a_normal_build_checks_only_the_stages_it_builds_and_check_mode_all() {
    let text = "FROM busybox AS unused\nCMD echo unused\nFROM busybox\nCMD echo used\n";
    assert_eq!(found(text, &opts()), pairs(&[("JSONArgsRecommended", 4)]));
    let mut o = opts();
    o.check_only = true;
    assert_eq!(
        found(text, &o),
        pairs(&[("JSONArgsRecommended", 2), ("JSONArgsRecommended", 4)])
    );
    // With a target, only what it needs, as BuildKit's lint.
    o.target = Some("unused".into());
    assert_eq!(found(text, &o), pairs(&[("JSONArgsRecommended", 2)]));
}

#[test]
fn check_mode_reports_an_error_beside_the_warnings() {
    let mut o = opts();
    o.check_only = true;
    // The missing base stops lowering before any stage is dispatched, so only the checks of
    // the parsed Dockerfile have run (as in BuildKit).
    let l = lowered(
        "FROM busybox\nMAINTAINER me\nCMD echo hi\nFROM missing\n",
        &o,
    );
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(l.warnings[0].rule, Rule::MaintainerDeprecated);
    let e = l.check_error.expect("the missing base is an error");
    assert!(e.message.contains("missing"), "{}", e.message);
    let l = lowered("# check=error=true\nFROM busybox\nCMD echo hi\n", &o);
    assert_eq!(
        l.check_error.map(|e| e.message),
        Some("lint violation found for rules: JSONArgsRecommended".to_owned())
    );
}

#[test]
fn a_base_for_another_platform_is_reported() {
    let text = "FROM arm:latest\nRUN true\n";
    assert_eq!(
        found(text, &opts()),
        pairs(&[("InvalidBaseImagePlatform", 1)])
    );
}

#[test]
fn from_line_rules() {
    let text = "ARG BASE=busybox\nARG TAG=\nFROM ${BSAE:-busybox} AS a\nFROM busybox:${TAG} AS b\nFROM --platform=$TARGETPLATFORM busybox AS c\nFROM --platform=linux/amd64 busybox AS d\nFROM --platform=linux/amd64 busybox AS amd64-stage\n";
    let mut o = opts();
    o.build_args.push(("TAG".into(), "1".into()));
    o.check_only = true;
    assert_eq!(
        found(text, &o),
        pairs(&[
            ("UndefinedArgInFrom", 3),
            ("InvalidDefaultArgInFrom", 4),
            ("RedundantTargetPlatform", 5),
            ("FromPlatformFlagConstDisallowed", 6),
        ])
    );
}

#[test]
fn experimental_rules_run_only_when_asked() {
    let text = "# check=experimental=CopyIgnoredFile\nFROM busybox\nCOPY secret.txt /\n";
    let mut o = opts();
    o.dockerignore = vec!["secret.txt".into()];
    assert_eq!(found(text, &o), pairs(&[("CopyIgnoredFile", 3)]));
    let text = "FROM busybox\nCOPY secret.txt /\n";
    assert_eq!(found(text, &o), Vec::new());
}

#[test]
fn named_contexts_replace_stages_and_images() {
    let mut o = opts();
    o.named_contexts = BTreeMap::from([
        (
            "base".to_owned(),
            NamedContext::Local {
                source: "named:base".into(),
            },
        ),
        (
            "alpine:3".to_owned(),
            NamedContext::Image {
                reference: "docker.io/library/busybox:latest".into(),
            },
        ),
    ]);
    // `base` is replaced (its RUN never runs); `alpine:3` resolves as busybox.
    let text = "FROM busybox AS base\nRUN exit 1\nFROM alpine:3\nCOPY --from=base /f /f\n";
    let l = lowered(text, &o);
    let dump = kiln_frontend::print::llb_text(&l.definition);
    assert!(!dump.contains("exit 1"), "{dump}");
    assert!(dump.contains("named:base"), "{dump}");
    assert!(dump.contains("docker.io/library/busybox:latest"), "{dump}");
    assert!(!dump.contains("alpine"), "{dump}");
}
