//! `kiln build --check` against BuildKit 0.24's lint (`requestid=frontend.lint`) on a Dockerfile
//! that breaks every rule, and what a violation does to a build: a warning in every progress
//! mode, a failure with `# check=error=true`.

use std::collections::BTreeSet;

use kiln_frontend::checks::Rule;

use crate::common::{self, reference};

/// Breaks every rule BuildKit ships except InvalidBaseImagePlatform (which needs a base image
/// resolved for another platform through a registry), experimental ones included.
const EVERY_RULE: &str = r#"# check=experimental=all
ARG BASE=busybox
ARG TAG=
# not a description
ARG VERSION=1
FROM scratch AS Builder
MAINTAINER someone@example.com
from scratch as second
FROM scratch as third
FROM busybox AS builder2
RUN echo a \

  && echo b
ENV API_TOKEN=abc
ARG DB_PASSWORD
ENV FOO bar
LABEL key value
WORKDIR relative/dir
ENV PATHX=$HOME/bin
COPY $SRCDIR /app/
COPY ignored.txt /x/
CMD echo hi
CMD ["x"]
ENTRYPOINT echo hi
EXPOSE 80/TCP
EXPOSE 127.0.0.1:8080:80
copy a b
HEALTHCHECK CMD true
HEALTHCHECK NONE
FROM ${BSAE:-busybox} AS fromundefined
FROM --platform=linux/amd64 busybox AS constplat
FROM --platform=$TARGETPLATFORM busybox AS redundant
FROM busybox AS builder2
FROM scratch AS context
FROM busybox:${TAG} AS tagged
# Some comment
FROM busybox AS described
"#;

/// (rule, line) of every warning `kiln build --check` printed as JSON.
fn kiln_check(k: &common::Kiln, dir: &std::path::Path, args: &[&str]) -> (Vec<(String, u32)>, i32) {
    let out = k
        .command()
        .args(["build", "--call=check,format=json"])
        .args(args)
        .arg(dir)
        .output()
        .expect("run kiln build --check");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--check json: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let found = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            (
                w["rule"].as_str().unwrap_or_default().to_owned(),
                w["line"].as_u64().unwrap_or_default() as u32,
            )
        })
        .collect();
    (found, out.status.code().unwrap_or(-1))
}

#[test]
fn check_reports_the_rules_and_lines_of_the_reference_lint() {
    let Some(pair) = reference::pair("check_reports_the_rules_and_lines_of_the_reference_lint")
    else {
        return;
    };
    let dir = pair.scratch_dir("lint").join("context");
    common::write_files(
        &dir,
        &[
            ("Dockerfile", EVERY_RULE),
            (".dockerignore", "ignored.txt\n"),
            ("ignored.txt", "x"),
            ("a", "a"),
        ],
    );
    let args = [("TAG", "latest")];
    let mut theirs = pair
        .lint_reference(&dir, &args)
        .expect("the reference's lint");
    let (mut ours, code) = kiln_check(&pair.kiln, &dir, &["--build-arg", "TAG=latest"]);
    assert_eq!(code, 1, "--check exits 1 when rules are violated");
    theirs.sort();
    ours.sort();
    assert_eq!(
        ours, theirs,
        "rule names and lines differ from BuildKit 0.24's"
    );
    let rules: BTreeSet<&str> = ours.iter().map(|(r, _)| r.as_str()).collect();
    for rule in Rule::ALL {
        if rule != Rule::InvalidBaseImagePlatform {
            assert!(rules.contains(rule.name()), "{rule} was not exercised");
        }
    }
}

#[test]
fn a_violation_is_a_warning_and_check_error_true_fails_the_build() {
    let Some(k) = common::Kiln::new("a_violation_is_a_warning") else {
        return;
    };
    let dir = k.mkdir("warn");
    common::write_files(&dir, &[("Dockerfile", "FROM busybox\nCMD echo hi\n")]);
    let b = k.build(&dir, &[]);
    b.assert_ok();
    let warnings = b.messages("warning");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("JSONArgsRecommended: ") && w.ends_with("(Dockerfile:2:1)")),
        "{warnings:?}"
    );
    // The human report names the rule, the file and line, and exits 1.
    let out = k.run(&["build", "--check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Check complete, 1 warning has been found!"),
        "{text}"
    );
    assert!(text.contains("warning: JSONArgsRecommended: "), "{text}");
    assert!(text.contains("--> Dockerfile:2:1"), "{text}");
    // A skipped rule is no violation.
    let skip = k.mkdir("skip");
    common::write_files(
        &skip,
        &[(
            "Dockerfile",
            "# check=skip=JSONArgsRecommended\nFROM busybox\nCMD echo hi\n",
        )],
    );
    let out = k.run(&["build", "--check", skip.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no warnings found"));
    // error=true: the build fails before anything runs, naming every violated rule.
    let strict = k.mkdir("strict");
    common::write_files(
        &strict,
        &[(
            "Dockerfile",
            "# check=error=true\nFROM busybox\nMAINTAINER me\nRUN echo ran\nCMD echo hi\n",
        )],
    );
    let b = k.build(&strict, &[]);
    assert!(!b.ok(), "a violation with error=true fails the build");
    assert!(
        b.stderr()
            .contains("lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated"),
        "{}",
        b.stderr()
    );
    assert!(b.executed().is_empty(), "nothing ran: {:?}", b.executed());
    // --call=targets and outline are the --print views under buildx's names.
    let out = k.run(&["build", "--call=targets", strict.to_str().unwrap()]);
    common::assert_success(&out, "--call=targets");
    let out = k.run(&["build", "--call=frobnicate", strict.to_str().unwrap()]);
    assert!(!out.status.success());
}
