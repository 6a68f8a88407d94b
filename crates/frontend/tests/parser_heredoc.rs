//! Heredoc parsing with our own Dockerfiles (the cases BuildKit keeps in Go code):
//! openers, bodies, chomping, quoting, fd prefixes, several per line, ONBUILD, and errors.

use kiln_frontend::instructions::{self, InstructionKind, Source};
use kiln_frontend::syntax::{self, Heredoc};

fn heredocs(src: &str) -> Vec<Vec<Heredoc>> {
    let ast =
        syntax::parse(src.as_bytes()).unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", src)));
    ast.children.into_iter().map(|n| n.heredocs).collect()
}

/// (name, content, expand, chomp, fd) of one heredoc.
type Summary = (String, String, bool, bool, Option<u32>);

fn summary(src: &str) -> Vec<Vec<Summary>> {
    heredocs(src)
        .into_iter()
        .map(|hs| {
            hs.into_iter()
                .map(|h| (h.name, h.content, h.expand, h.chomp, h.fd))
                .collect()
        })
        .collect()
}

fn h(name: &str, content: &str, expand: bool, chomp: bool) -> Summary {
    (name.into(), content.into(), expand, chomp, None)
}

#[test]
fn basic_bodies_and_flags() {
    let src = "FROM alpine
RUN <<EMPTY
EMPTY
RUN 3<<EMPTY2
EMPTY2
RUN <<INDENT
\tfoo
\tbar
INDENT
RUN <<-UNINDENT
\tbaz
\tquux
\tUNINDENT
RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND
RUN <<COMMENT
# internal comment
echo foo bar # trailing comment
COMMENT
RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT
";
    let got = summary(src);
    assert_eq!(got[0], vec![]);
    assert_eq!(got[1], vec![h("EMPTY", "", true, false)]);
    assert_eq!(
        got[2],
        vec![("EMPTY2".into(), String::new(), true, false, Some(3))]
    );
    assert_eq!(got[3], vec![h("INDENT", "\tfoo\n\tbar\n", true, false)]);
    assert_eq!(got[4], vec![h("UNINDENT", "\tbaz\n\tquux\n", true, true)]);
    assert_eq!(
        got[5],
        vec![h("NOEXPAND", "\tdon't expand $NAME\n", false, true)]
    );
    assert_eq!(
        got[6],
        vec![h(
            "COMMENT",
            "# internal comment\necho foo bar # trailing comment\n",
            true,
            false
        )]
    );
    assert_eq!(got[7], vec![h("MOUNT", "echo hello\n", true, false)]);
    assert_eq!(got.len(), 8);
}

#[test]
fn several_heredocs_and_quoted_delimiters() {
    let src = "FROM alpine
COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2
COPY <<X <<Y /dest
Y
X
X
Y
RUN <<COMPLEX python3
print('hello world')
COMPLEX
RUN <<eo'f'
echo foo
eof
RUN <<'e'o\\'f
echo foo
eo'f
RUN <<'one two'
echo bar
one two
RUN <<$EOF
$EOF
RUN <<  EOF  > foo
EOF
";
    let got = summary(src);
    assert_eq!(
        got[1],
        vec![
            h("FILE1", "content 1\n", true, false),
            h("FILE2", "content 2\n", true, false)
        ]
    );
    assert_eq!(
        got[2],
        vec![h("X", "Y\n", true, false), h("Y", "X\n", true, false)]
    );
    assert_eq!(
        got[3],
        vec![h("COMPLEX", "print('hello world')\n", true, false)]
    );
    assert_eq!(got[4], vec![h("eof", "echo foo\n", false, false)]);
    assert_eq!(got[5], vec![h("eo'f", "echo foo\n", false, false)]);
    assert_eq!(got[6], vec![h("one two", "echo bar\n", false, false)]);
    assert_eq!(got[7], vec![h("$EOF", "", true, false)]);
    assert_eq!(got[8], vec![h("EOF", "", true, false)]);
}

#[test]
fn not_heredocs() {
    let src = "FROM alpine
USER <<INVALID
INVALID
RUN \"<<NOHEREDOC\"
RUN [\"<<EOF\"]
RUN ['<<EOF']
";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    // USER does not take heredocs, so the body line is an instruction of its own.
    assert_eq!(ast.children[2].keyword.value, "INVALID");
    assert!(ast.children.iter().all(|n| n.heredocs.is_empty()));
}

#[test]
fn onbuild_heredoc_and_expression() {
    let src = "FROM alpine
ONBUILD RUN <<EOF
echo hi
EOF
";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    assert_eq!(ast.children[1].heredocs.len(), 1);
    assert_eq!(ast.dump(), "(from \"alpine\")\n(onbuild (run \"<<EOF\"))");
    let instrs = instructions::parse_instructions(&ast).expect("typed");
    let InstructionKind::Onbuild(ob) = &instrs[1].kind else {
        panic!("not onbuild")
    };
    assert_eq!(ob.expression, "RUN <<EOF\necho hi\nEOF");
    let InstructionKind::Run(run) = &ob.inner.kind else {
        panic!("inner not RUN")
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
}

#[test]
fn copy_heredoc_sources_are_typed() {
    let src = "FROM alpine
COPY <<-EOF a.txt /dest/
\tline
\tEOF
";
    let df = instructions::Dockerfile::parse(src.as_bytes()).expect("typed");
    let InstructionKind::Copy(copy) = &df.stages[0].instructions[0].kind else {
        panic!("not COPY")
    };
    assert_eq!(copy.dest.value, "/dest/");
    match &copy.sources[..] {
        [Source::Heredoc { heredoc, .. }, Source::Path(p)] => {
            assert_eq!(heredoc.name, "EOF");
            assert_eq!(heredoc.body(), "line\n");
            assert_eq!(p.value, "a.txt");
        }
        other => panic!("unexpected sources {other:?}"),
    }
}

#[test]
fn heredoc_destination_is_rejected() {
    let src = "FROM alpine\nCOPY a <<EOF\nx\nEOF\n";
    let err = instructions::Dockerfile::parse(src.as_bytes()).expect_err("should fail");
    assert_eq!(err.message, "COPY cannot accept a heredoc as a destination");
    assert_eq!(err.span.expect("span").start.line, 2);
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let src = "FROM alpine\nRUN <<EOF\necho hi\n";
    let err = syntax::parse(src.as_bytes()).expect_err("should fail");
    assert_eq!(err.message, "unterminated heredoc");
    assert_eq!(err.span.expect("span").start.line, 2);
}

#[test]
fn heredoc_spans_and_crlf() {
    let src = "FROM alpine\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nRUN true\r\n";
    let ast = syntax::parse(src.as_bytes()).expect("parses");
    let run = &ast.children[1];
    assert_eq!((run.span.start.line, run.span.end.line), (2, 4));
    assert_eq!(run.heredocs[0].content, "echo hi\r\n");
    let hs = run.heredocs[0].span;
    assert_eq!((hs.start.line, hs.end.line), (3, 4));
    assert_eq!(ast.children[2].span.start.line, 5);
}
