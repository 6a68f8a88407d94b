//! Syntax-level behaviour with our own inputs: directives, escapes, continuations, warnings,
//! BOM/CRLF, spans, byte-level errors and the dump format.

use kiln_frontend::diagnostic::{Position, Severity};
use kiln_frontend::syntax::{self, Args};

fn dump(src: &str) -> String {
    syntax::parse(src.as_bytes())
        .unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", src)))
        .dump()
}

#[test]
fn directives_are_read_only_at_the_top() {
    let src = "# Syntax = docker/dockerfile:1\n#ESCAPE=`\n# check=skip=all\nFROM a\nRUN x `\n  y\n";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    let names: Vec<_> = ast
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("syntax", "docker/dockerfile:1"),
            ("escape", "`"),
            ("check", "skip=all")
        ]
    );
    assert_eq!(ast.escape, '`');
    assert_eq!(ast.dump(), "(from \"a\")\n(run \"x   y\")");
    assert_eq!(ast.directives[1].span.start, Position::new(2, 1));

    // After a normal comment or a blank line, a directive is only a comment.
    let ast = syntax::parse(b"# hello\n# escape=`\nFROM a\nRUN x \\\n y\n").expect("parses");
    assert!(ast.directives.is_empty());
    assert_eq!(ast.escape, '\\');
    assert_eq!(ast.dump(), "(from \"a\")\n(run \"x  y\")");
    let ast = syntax::parse(b"\n# escape=`\nFROM a\n").expect("parses");
    assert!(ast.directives.is_empty());
}

#[test]
fn duplicate_and_invalid_directives_fail() {
    let err = syntax::parse(b"# syntax=a\n# SYNTAX=b\nFROM x\n").expect_err("duplicate");
    assert_eq!(err.message, "only one syntax parser directive can be used");
    assert_eq!(err.span.expect("span").start, Position::new(2, 1));
    let err = syntax::parse(b"# escape=x\nFROM x\n").expect_err("bad escape");
    assert!(
        err.message.contains("invalid escape token 'x'"),
        "{}",
        err.message
    );
}

#[test]
fn continuations_comments_and_empty_lines() {
    let src = "FROM a\nRUN one \\\n# comment inside\n  two \\   \n\n  three\n";
    assert_eq!(dump(src), "(from \"a\")\n(run \"one   two   three\")");
    // A continuation at the end of the file is fine.
    assert_eq!(dump("FROM a\nRUN x \\"), "(from \"a\")\n(run \"x\")");
    // An escaped escape is not a continuation.
    assert_eq!(
        dump("FROM a\nRUN echo \\\\\nRUN y\n"),
        "(from \"a\")\n(run \"echo \\\\\\\\\")\n(run \"y\")"
    );
}

#[test]
fn empty_continuation_lines_warn_once_per_instruction() {
    let src = "
FROM alpine:3.6

RUN valid \\
    continuation

RUN something \\

    following \\

    more

RUN another \\

    thing

RUN non-indented \\
# this is a comment
   after-comment

RUN indented \\
    # this is an indented comment
    comment
\t";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    let msgs: Vec<_> = ast.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "Empty continuation line found in: RUN something     following     more",
            "Empty continuation line found in: RUN another     thing"
        ]
    );
    assert!(ast.warnings.iter().all(|w| w.severity == Severity::Warning));
    assert_eq!(ast.warnings[0].span.expect("span").start.line, 8);
}

#[test]
fn bom_crlf_and_case() {
    let src = b"\xef\xbb\xbfFrOm alpine\r\nrun echo hi\r\n";
    let ast = syntax::parse(src).expect("parses");
    assert_eq!(ast.dump(), "(from \"alpine\")\n(run \"echo hi\")");
    assert_eq!(ast.children[0].keyword.value, "FrOm");
    assert_eq!(ast.children[0].keyword.span.start, Position::new(1, 1));
}

#[test]
fn spans_point_at_words_across_continuations() {
    let src = "FROM a\nCOPY --from=b \\\n    src1 \\\n  dest\n";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    let copy = &ast.children[1];
    assert_eq!(copy.flags[0].value, "--from=b");
    assert_eq!(copy.flags[0].span.start, Position::new(2, 6));
    assert_eq!(copy.flags[0].span.end, Position::new(2, 14));
    let Args::Words(words) = &copy.args else {
        panic!("{:?}", copy.args)
    };
    assert_eq!(words[0].span.start, Position::new(3, 5));
    assert_eq!(words[1].value, "dest");
    assert_eq!(words[1].span.start, Position::new(4, 3));
    assert_eq!(words[1].span.end, Position::new(4, 7));
    assert_eq!(
        (copy.span.start, copy.span.end),
        (Position::new(2, 1), Position::new(4, 7))
    );
    assert_eq!(copy.original, "COPY --from=b     src1   dest");
}

#[test]
fn non_ascii_columns_count_characters() {
    let src = "FROM a\nLABEL é=\"ü\" x=[1\n";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    let Args::Pairs(pairs) = &ast.children[1].args else {
        panic!("not pairs")
    };
    assert_eq!(pairs[1].key.value, "x");
    assert_eq!(pairs[1].key.span.start, Position::new(2, 13));
}

#[test]
fn json_errors_point_at_the_element() {
    let err = syntax::parse(b"FROM a\nCMD [\"echo\", 1]\n").expect_err("not strings");
    let span = err.span.expect("span");
    assert_eq!(
        (span.start, span.end),
        (Position::new(2, 14), Position::new(2, 15))
    );
}

#[test]
fn invalid_utf8_is_located() {
    let err = syntax::parse(b"FROM a\nRUN echo \xff\n").expect_err("invalid utf-8");
    assert!(err.message.contains("invalid UTF-8"), "{}", err.message);
    assert_eq!(err.span.expect("span").start, Position::new(2, 10));
}

#[test]
fn overlong_lines_are_rejected() {
    let long = format!("FROM a\nLABEL x={}\n", "a".repeat(65_536));
    let err = syntax::parse(long.as_bytes()).expect_err("too long");
    assert_eq!(
        err.message,
        "dockerfile line greater than max allowed size of 65535"
    );
    assert_eq!(err.span.expect("span").start.line, 2);
    // 65535 bytes is still fine.
    let ok = format!("FROM a\nLABEL x={}\n", "a".repeat(65_535 - 8));
    assert!(syntax::parse(ok.as_bytes()).is_ok());
}

#[test]
fn unknown_instructions_stay_in_the_ast() {
    assert_eq!(
        dump("FROM a\nRUNN --x=1 echo\n"),
        "(from \"a\")\n(runn [\"--x=1\"] \"\")"
    );
}

#[test]
fn flags_are_only_taken_from_the_front() {
    assert_eq!(
        dump("FROM a\nCOPY --a=\"x y\" -- --b c d\n"),
        "(from \"a\")\n(copy [\"--a=x y\"] \"--b\" \"c\" \"d\")"
    );
}

#[test]
fn quoting_in_dump_matches_go() {
    assert_eq!(
        dump("FROM a\nRUN [\"\\u00a0\\t\\u0001\", \"♥\"]\n"),
        "(from \"a\")\n(run \"\\u00a0\\t\\x01\" \"♥\")"
    );
}

#[test]
fn large_files_parse() {
    // Not a timing assertion; the parser's linear behaviour is measured by the benchmark-free
    // sanity of this test finishing promptly in debug builds.
    let mut src = String::from("FROM alpine\n");
    for i in 0..10_000 {
        src.push_str(&format!("RUN echo {i} && \\\n    echo more {i}\n"));
    }
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    assert_eq!(ast.children.len(), 10_001);
}
