//! Lowering properties that hold across Dockerfiles: unused stages stay out of the graph and
//! out of the target's digests, metadata never changes digests, and every error is located.

use kiln_frontend::lower::{BuildOptions, ImageResolver, ResolvedImage, lower};
use kiln_llb::image::{ImageConfig, RootFs};
use kiln_llb::{Digest, Op, Platform};

struct Busybox;

impl ImageResolver for Busybox {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        if !reference.starts_with("docker.io/library/busybox") {
            return Err(format!("{reference}: not found"));
        }
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![Digest::of(b"busybox layer")],
            },
            ..ImageConfig::default()
        };
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            digest: Some(Digest::of(b"busybox manifest")),
            config,
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        platform: Some(Platform::parse("linux/amd64").unwrap()),
        ..BuildOptions::default()
    }
}

fn digests(dockerfile: &str) -> Vec<Digest> {
    let lowered = lower(dockerfile.as_bytes(), &opts(), &Busybox).unwrap();
    lowered.definition.needed()
}

#[test]
fn a_change_to_an_unneeded_stage_leaves_the_target_unchanged() {
    let a = "FROM busybox AS unused\nRUN false\nFROM busybox AS base\nRUN echo hi > /hi\nFROM scratch\nCOPY --from=base /hi /hi\n";
    let b = "FROM busybox AS unused\nRUN echo something else && false\nCOPY big /\nFROM busybox AS base\nRUN echo hi > /hi\nFROM scratch\nCOPY --from=base /hi /hi\n";
    assert_eq!(digests(a), digests(b));
    // And the unused stage's RUN is not in the graph at all.
    let lowered = lower(a.as_bytes(), &opts(), &Busybox).unwrap();
    for (_, op) in lowered.definition.topological() {
        if let Op::Exec(exec) = op {
            assert!(
                !exec.args.iter().any(|a| a.contains("false")),
                "unused stage leaked: {:?}",
                exec.args
            );
        }
    }
    // A change in the needed stage does change the target.
    let c = a.replace("echo hi", "echo bye");
    assert_ne!(digests(a), digests(&c));
}

#[test]
fn a_context_change_for_one_copy_does_not_touch_another_stage() {
    // Each COPY reads the context narrowed to its own paths, so adding a COPY of another file
    // in a sibling stage leaves this stage's vertices as they were.
    let a = "FROM scratch AS one\nCOPY a /a\nFROM scratch AS two\nCOPY b /b\nFROM scratch\nCOPY --from=one /a /a\nCOPY --from=two /b /b\n";
    let b = a.replace("COPY b /b\nFROM", "COPY b /b\nCOPY c /c\nFROM");
    let first: Vec<Digest> = digests(a);
    let second: Vec<Digest> = digests(&b);
    // Stage one's copy vertex (and the context narrowed to `a`) appear in both graphs.
    let shared = first.iter().filter(|d| second.contains(d)).count();
    assert!(
        shared >= 3,
        "expected stage one's vertices to be shared, got {shared}"
    );
}

#[test]
fn progress_names_do_not_change_digests() {
    // The same RUN in differently named stages gets different progress names but the same op.
    let a = digests("FROM busybox AS alpha\nRUN make\n");
    let b = digests("FROM busybox AS beta\nRUN make\n");
    assert_eq!(a, b);
}

#[test]
fn every_error_is_located_and_renders_with_a_caret() {
    let cases = [
        "FROM scratch\nCOPY --chmod=64a foo /\n",
        "FROM scratch\nCOPY --from=$X . .\n",
        "FROM scratch\nADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d foo /\n",
        "FROM busybox\nRUN --mount=type=tmp,target=/x true\n",
        "FROM busybox\nRUN --mont=type=cache true\n",
        "FROM nosuch\n",
        "FROM busybox\nSTOPSIGNAL NOPE\n",
        "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nFROM a\n",
        "ARG X=${X:?missing}\nFROM busybox\n",
        "FROM scratch\nFNTRYPOINT [\"x\"]\n",
        "FROM busybox\nRUN --network=bogus true\n",
        "FROM busybox\nEXPOSE abc\n",
    ];
    for case in cases {
        let err = lower(case.as_bytes(), &opts(), &Busybox).expect_err(case);
        let span = err
            .span
            .unwrap_or_else(|| panic!("no location for {case:?}: {err:?}"));
        let rendered = err.render("Dockerfile", case);
        assert!(rendered.contains('^'), "{rendered}");
        assert!(
            rendered.contains(&format!("Dockerfile:{}:", span.start.line)),
            "{rendered}"
        );
    }
}

#[test]
fn chmod_error_has_buildkit_wording() {
    let err = lower(b"FROM scratch\nCOPY --chmod=64a foo /\n", &opts(), &Busybox).unwrap_err();
    assert_eq!(
        err.message,
        "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
    );
    assert_eq!(err.span.unwrap().start.line, 2);
}
