//! Typed instructions: every instruction's fields, typed flags, stages and meta ARGs, and the
//! validation done before variables are known.

use std::time::Duration;

use kiln_frontend::instructions::{
    Dockerfile, Healthcheck, Instruction, InstructionKind, NetworkMode, SecurityMode, ShellOrExec,
    Source, parse_instructions,
};
use kiln_frontend::syntax;

fn parse(src: &str) -> Dockerfile {
    Dockerfile::parse(src.as_bytes()).unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", src)))
}

fn instrs(src: &str) -> Vec<Instruction> {
    parse(src).stages.remove(0).instructions
}

fn error(src: &str) -> String {
    match Dockerfile::parse(src.as_bytes()) {
        Ok(df) => panic!("should fail: {df:?}"),
        Err(d) => d.message,
    }
}

fn values(words: &[syntax::Word]) -> Vec<&str> {
    words.iter().map(|w| w.value.as_str()).collect()
}

#[test]
fn stages_and_meta_args() {
    let df = parse(
        "# syntax=docker/dockerfile:1\nARG BASE=alpine\nARG V\nFROM --platform=$BUILDPLATFORM $BASE AS Build\nRUN true\nfrom scratch\nCOPY --from=build /a /b\n",
    );
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.meta_args.len(), 2);
    let InstructionKind::Arg(arg) = &df.meta_args[0].kind else {
        panic!("not ARG")
    };
    assert_eq!(arg.args[0].name.value, "BASE");
    assert_eq!(
        arg.args[0].value.as_ref().map(|v| v.value.as_str()),
        Some("alpine")
    );
    assert_eq!(df.stages.len(), 2);
    let from = &df.stages[0].from;
    assert_eq!(from.image.value, "$BASE");
    assert_eq!(from.name.as_ref().map(|n| n.value.as_str()), Some("build"));
    assert_eq!(
        from.platform.as_ref().map(|p| p.value.as_str()),
        Some("$BUILDPLATFORM")
    );
    assert_eq!(df.stages[0].instructions.len(), 1);
    assert_eq!(df.stages[1].from.image.value, "scratch");
    assert!(df.stages[1].from.name.is_none());
}

#[test]
fn run_flags_are_typed() {
    let i = instrs(
        "FROM a\nRUN --mount=type=cache,target=/c --mount=type=secret,id=x --network=none --security=insecure make\nRUN [\"echo\", \"hi\"]\n",
    );
    let InstructionKind::Run(run) = &i[0].kind else {
        panic!("not RUN")
    };
    assert_eq!(
        values(&run.mounts),
        ["type=cache,target=/c", "type=secret,id=x"]
    );
    assert_eq!(run.network, NetworkMode::None);
    assert_eq!(run.security, SecurityMode::Insecure);
    assert!(matches!(&run.cmd, ShellOrExec::Shell(w) if w.value == "make"));
    let InstructionKind::Run(run) = &i[1].kind else {
        panic!("not RUN")
    };
    assert!(matches!(&run.cmd, ShellOrExec::Exec(w) if values(w) == ["echo", "hi"]));
    assert_eq!(run.network, NetworkMode::Default);
}

#[test]
fn copy_and_add_flags() {
    let i = instrs(
        "FROM a\nCOPY --from=build --chown=1:2 --chmod=$MODE --link --parents --exclude=*.md --exclude=x a b /dst/\nADD --link=false --keep-git-dir=true --checksum=sha256:abc --unpack=FALSE https://x/y.tar /d\nCOPY [\"a b\", \"/c d/\"]\n",
    );
    let InstructionKind::Copy(c) = &i[0].kind else {
        panic!("not COPY")
    };
    assert_eq!(c.from.as_ref().map(|w| w.value.as_str()), Some("build"));
    assert_eq!(c.chown.as_ref().map(|w| w.value.as_str()), Some("1:2"));
    assert_eq!(c.chmod.as_ref().map(|w| w.value.as_str()), Some("$MODE"));
    assert!(c.link && c.parents && !c.json);
    assert_eq!(values(&c.exclude), ["*.md", "x"]);
    let srcs: Vec<_> = c
        .sources
        .iter()
        .map(|s| match s {
            Source::Path(w) => w.value.as_str(),
            Source::Heredoc { .. } => "<heredoc>",
        })
        .collect();
    assert_eq!(srcs, ["a", "b"]);
    assert_eq!(c.dest.value, "/dst/");

    let InstructionKind::Add(a) = &i[1].kind else {
        panic!("not ADD")
    };
    assert!(!a.link);
    assert_eq!(a.keep_git_dir, Some(true));
    assert_eq!(a.unpack, Some(false));
    assert_eq!(
        a.checksum.as_ref().map(|w| w.value.as_str()),
        Some("sha256:abc")
    );

    let InstructionKind::Copy(c) = &i[2].kind else {
        panic!("not COPY")
    };
    assert!(c.json);
    assert_eq!(c.dest.value, "/c d/");
}

#[test]
fn env_label_arg_keep_raw_values() {
    let i = instrs(
        "FROM a\nENV A=\"x y\" B=$A\nENV LEGACY some value\nLABEL \"com.example\"=1\nARG X Y=\"2\" Z=\n",
    );
    let InstructionKind::Env(env) = &i[0].kind else {
        panic!("not ENV")
    };
    let kv: Vec<_> = env
        .pairs
        .iter()
        .map(|p| (p.key.value.as_str(), p.value.value.as_str(), p.legacy))
        .collect();
    assert_eq!(kv, [("A", "\"x y\"", false), ("B", "$A", false)]);
    let InstructionKind::Env(env) = &i[1].kind else {
        panic!("not ENV")
    };
    assert_eq!(env.pairs[0].value.value, "some value");
    assert!(env.pairs[0].legacy);
    let InstructionKind::Label(label) = &i[2].kind else {
        panic!("not LABEL")
    };
    assert_eq!(label.pairs[0].key.value, "\"com.example\"");
    let InstructionKind::Arg(arg) = &i[3].kind else {
        panic!("not ARG")
    };
    let decls: Vec<_> = arg
        .args
        .iter()
        .map(|a| {
            (
                a.name.value.as_str(),
                a.value.as_ref().map(|v| v.value.as_str()),
            )
        })
        .collect();
    assert_eq!(decls, [("X", None), ("Y", Some("\"2\"")), ("Z", Some(""))]);
}

#[test]
fn simple_instructions() {
    let i = instrs(
        "FROM a\nCMD [\"a\"]\nENTRYPOINT exec me\nSHELL [\"/bin/bash\", \"-c\"]\nEXPOSE 80/tcp 443\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /x /y\nUSER app:app\nWORKDIR /srv/app\nSTOPSIGNAL SIGTERM\nMAINTAINER me <me@example.com>\n",
    );
    let names: Vec<_> = i.iter().map(Instruction::name).collect();
    assert_eq!(
        names,
        [
            "CMD",
            "ENTRYPOINT",
            "SHELL",
            "EXPOSE",
            "VOLUME",
            "VOLUME",
            "USER",
            "WORKDIR",
            "STOPSIGNAL",
            "MAINTAINER"
        ]
    );
    match &i[3].kind {
        InstructionKind::Expose(e) => assert_eq!(values(&e.ports), ["80/tcp", "443"]),
        other => panic!("{other:?}"),
    }
    match &i[5].kind {
        InstructionKind::Volume(v) => assert_eq!(values(&v.paths), ["/x", "/y"]),
        other => panic!("{other:?}"),
    }
    match &i[9].kind {
        InstructionKind::Maintainer(m) => assert_eq!(m.name.value, "me <me@example.com>"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn healthcheck_options() {
    let i = instrs(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s --retries=3 CMD curl -f http://localhost/\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"/bin/check\"]\n",
    );
    let InstructionKind::Healthcheck(Healthcheck::Cmd(h)) = &i[0].kind else {
        panic!("not HEALTHCHECK CMD")
    };
    assert_eq!(h.interval, Some(Duration::from_secs(90)));
    assert_eq!(h.timeout, Some(Duration::from_millis(500)));
    assert_eq!(h.start_period, Some(Duration::ZERO));
    assert_eq!(h.start_interval, None);
    assert_eq!(h.retries, Some(3));
    assert!(matches!(&h.cmd, ShellOrExec::Shell(w) if w.value == "curl -f http://localhost/"));
    assert!(matches!(
        i[1].kind,
        InstructionKind::Healthcheck(Healthcheck::None)
    ));
    let InstructionKind::Healthcheck(Healthcheck::Cmd(h)) = &i[2].kind else {
        panic!("not HEALTHCHECK CMD")
    };
    assert!(matches!(&h.cmd, ShellOrExec::Exec(w) if values(w) == ["/bin/check"]));
}

#[test]
fn flag_errors() {
    assert_eq!(error("FROM a\nCOPY --form=x a b\n"), "unknown flag: --form");
    assert_eq!(
        error("FROM a\nCOPY --from a b\n"),
        "missing a value on flag: --from"
    );
    assert_eq!(
        error("FROM a\nCOPY --link= a b\n"),
        "missing a value on flag: --link"
    );
    assert_eq!(
        error("FROM a\nCOPY --link=yes a b\n"),
        "expecting boolean value for flag --link, not: yes"
    );
    assert_eq!(
        error("FROM a\nCOPY --chown=1 --chown=2 a b\n"),
        "duplicate flag specified: --chown"
    );
    assert_eq!(error("FROM a\nENV --x=1 A=b\n"), "unknown flag: --x");
    assert_eq!(error("FROM --plaform=x a\n"), "unknown flag: --plaform");
    let d = Dockerfile::parse(b"FROM a\nCOPY --form=x a b\n").expect_err("typo");
    assert_eq!(d.help.as_deref(), Some("did you mean --from?"));
}

#[test]
fn validation_errors() {
    assert_eq!(error("FROM a\nRUNN x\n"), "unknown instruction: RUNN");
    let d = Dockerfile::parse(b"FROM a\ncopyy a b\n").expect_err("typo");
    assert_eq!(d.help.as_deref(), Some("did you mean COPY?"));
    assert_eq!(error("FROM a AT b\n"), "expected AS, found AT");
    assert_eq!(
        error("FROM a AS b c\n"),
        "FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a b\n"),
        "FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a\nWORKDIR\n"),
        "WORKDIR requires exactly one argument"
    );
    assert_eq!(
        error("FROM a\nEXPOSE\n"),
        "EXPOSE requires at least one argument"
    );
    assert_eq!(error("FROM a\nENV\n"), "ENV requires at least one argument");
    assert_eq!(error("FROM a\nARG =x\n"), "ARG names can not be blank");
    assert_eq!(
        error("FROM a\nVOLUME [\" \"]\n"),
        "VOLUME specified can not be an empty string"
    );
    assert_eq!(
        error("FROM a\nSHELL []\n"),
        "SHELL requires at least one argument"
    );
    assert_eq!(error("FROM a\nRUN\n"), "RUN requires at least one argument");
    assert_eq!(
        error("FROM a\nHEALTHCHECK CMD\n"),
        "missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        error("FROM a\nHEALTHCHECK NONE x\n"),
        "HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        error("FROM a\nHEALTHCHECK --timeout=10us CMD x\n"),
        "interval \"timeout\" cannot be less than 1ms"
    );
    assert_eq!(
        error("FROM a\nHEALTHCHECK --retries=x CMD x\n"),
        "invalid value for --retries: \"x\""
    );
    assert_eq!(
        error("FROM a\nRUN --security=x y\n"),
        "security \"x\" is not valid"
    );
    assert_eq!(
        error("FROM a\nONBUILD FROM b\n"),
        "FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("FROM a\nONBUILD MAINTAINER b\n"),
        "MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("ENV A=b\nFROM a\n"),
        "ENV instruction comes before any FROM"
    );
    assert_eq!(error("ARG A\n"), "the Dockerfile has no FROM instruction");
}

#[test]
fn keywords_are_case_insensitive_and_spans_kept() {
    let ast = syntax::parse(b"from a\nrUn echo hi\n").expect("parses");
    let list = parse_instructions(&ast).expect("typed");
    assert_eq!(list[1].name(), "RUN");
    assert_eq!(list[1].keyword, "rUn");
    assert_eq!(list[1].original, "rUn echo hi");
    assert_eq!((list[1].span.start.line, list[1].span.start.column), (2, 1));
}

#[test]
fn onbuild_keeps_the_trigger_text() {
    let i = instrs("FROM a\nONBUILD   COPY --chown=1 . /app\n");
    let InstructionKind::Onbuild(ob) = &i[0].kind else {
        panic!("not ONBUILD")
    };
    assert_eq!(ob.expression, "COPY --chown=1 . /app");
    assert_eq!(ob.inner.name(), "COPY");
    assert_eq!(ob.inner.span.start.column, 11);
}
