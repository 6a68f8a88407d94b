//! Table tests for shell expansion beyond the BuildKit data files: pattern trimming and
//! replacement, the backtick escape, heredoc bodies, word splitting, options and errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kiln_frontend::shell::{Env, Lexer, MAX_NESTING, NoEnv, ShellErrorKind};

fn env() -> Vec<(String, String)> {
    [
        ("FILE", "archive.tar.gz"),
        ("PATHV", "/usr/local/bin/tool"),
        ("DASHES", "x-y-z"),
        ("STARS", "**lead*trail**"),
        ("BRACES", "a}b}c"),
        ("PFX", "archive."),
        ("EMPTY", ""),
        ("SPACED", "one  two"),
        ("HOME", "/root"),
        ("TEMPLATE", "<$0>"),
        ("DOLLARS", "a$$b"),
        ("GREEK", "αβγαβγ"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[track_caller]
fn check(lexer: &Lexer, cases: &[(&str, &str)]) {
    let env = env();
    let mut failures = Vec::new();
    for (input, want) in cases {
        match lexer.process_word(input, &env) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{input:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[track_caller]
fn check_err(lexer: &Lexer, cases: &[(&str, &str)]) {
    let env = env();
    let mut failures = Vec::new();
    for (input, want) in cases {
        match lexer.process_word(input, &env) {
            Err(e) if e.to_string() == *want => {}
            other => failures.push(format!("{input:?}: want error {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn prefix_and_suffix_trimming() {
    check(
        &Lexer::new('\\'),
        &[
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${FILE%.*}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${PATHV##*/}", "tool"),
            ("${PATHV%/*}", "/usr/local/bin"),
            ("${FILE#archive}", ".tar.gz"),
            ("${FILE#nomatch}", "archive.tar.gz"),
            ("${FILE%nomatch}", "archive.tar.gz"),
            ("${FILE#}", "archive.tar.gz"),
            ("${FILE%%}", "archive.tar.gz"),
            // `*` alone: shortest prefix is empty, longest is everything.
            ("${FILE#*}", "archive.tar.gz"),
            ("${FILE##*}", ""),
            ("${FILE%?}", "archive.tar.g"),
            ("${FILE#??????}", "e.tar.gz"),
            // the pattern may come from a variable
            ("${FILE#$PFX}", "tar.gz"),
            ("${FILE#$EMPTY}", "archive.tar.gz"),
            // escaped wildcards are literal; `\}` does not close the substitution
            ("${STARS#\\*}", "*lead*trail**"),
            ("${STARS##\\*\\*}", "lead*trail**"),
            ("${STARS%\\*}", "**lead*trail*"),
            ("${STARS%%\\**}", ""),
            ("${STARS%%t*\\*}", "**lead*"),
            ("${BRACES%\\}*}", "a}b"),
            ("${BRACES%%\\}*}", "a"),
            ("${BRACES#*\\}}", "b}c"),
            // quotes inside the pattern are removed; `[` is literal (no bracket expressions)
            ("${FILE#\"arch\"}", "ive.tar.gz"),
            ("${FILE#[a]}", "archive.tar.gz"),
            // multi-byte values trim by character
            ("${GREEK#*β}", "γαβγ"),
            ("${GREEK##*β}", "γ"),
            ("${GREEK%β*}", "αβγα"),
            ("${GREEK%%β*}", "α"),
            // unset variables trim to empty
            ("${NOPE#a}", ""),
            ("x${NOPE%%*}y", "xy"),
        ],
    );
}

#[test]
fn replacement() {
    check(
        &Lexer::new('\\'),
        &[
            ("${DASHES/-/+}", "x+y-z"),
            ("${DASHES//-/+}", "x+y+z"),
            ("${DASHES/?/Q}", "Q-y-z"),
            ("${DASHES//?/Q}", "QQQQQ"),
            ("${DASHES/-*/}", "x"),
            ("${DASHES//*/Q}", "Q"),
            ("${DASHES/nomatch/Q}", "x-y-z"),
            ("${DASHES/-/}", "xy-z"),
            ("${PATHV//\\//:}", ":usr:local:bin:tool"),
            // the replacement keeps escapes: BuildKit inserts `\/` literally
            ("${PATHV/\\/usr/\\/opt}", "\\/opt/local/bin/tool"),
            ("${DASHES/y/$HOME}", "x-/root-z"),
            // an empty pattern matches the empty string before the first character
            ("${DASHES/$EMPTY/>}", ">x-y-z"),
            ("${DASHES//$EMPTY/.}", ".x.-.y.-.z."),
            // the replacement is a Go regexp template: `$0` is the match, `$$` a dollar
            ("${DASHES/y/$TEMPLATE}", "x-<y>-z"),
            ("${DASHES/y/$DOLLARS}", "x-a$b-z"),
            // raw escapes stay, and a `$` not followed by a name is literal
            ("${DASHES/y/\\$\\$}", "x-\\$\\$-z"),
            ("${NOPE/a/b}", ""),
            ("${NOPE///}", ""),
            ("${GREEK//β/-}", "α-γα-γ"),
        ],
    );
}

#[test]
fn pattern_errors() {
    check_err(
        &Lexer::new('\\'),
        &[
            (
                "${FILE:#a}",
                "failed to process \"${FILE:#a}\": unsupported modifier (:#) in substitution",
            ),
            (
                "${FILE:%%a}",
                "failed to process \"${FILE:%%a}\": unsupported modifier (:%) in substitution",
            ),
            (
                "${FILE#\\x}",
                "failed to process \"${FILE#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
            (
                "${FILE#a",
                "failed to process \"${FILE#a\": syntax error: missing '}'",
            ),
            (
                "${DASHES//-}",
                "failed to process \"${DASHES//-}\": syntax error: missing '/' in ${}",
            ),
            (
                "${DASHES/-/+",
                "failed to process \"${DASHES/-/+\": syntax error: missing '}'",
            ),
        ],
    );
}

#[test]
fn error_messages_match_buildkit() {
    check_err(
        &Lexer::new('\\'),
        &[
            (
                "${NOPE:?}",
                "failed to process \"${NOPE:?}\": NOPE: is not allowed to be unset",
            ),
            (
                "${NOPE?}",
                "failed to process \"${NOPE?}\": NOPE: is not allowed to be unset",
            ),
            (
                "${EMPTY:?}",
                "failed to process \"${EMPTY:?}\": EMPTY: is not allowed to be empty",
            ),
            (
                "${NOPE:?set $HOME}",
                "failed to process \"${NOPE:?set $HOME}\": NOPE: set /root",
            ),
            (
                "${}",
                "failed to process \"${}\": syntax error: bad substitution",
            ),
            (
                "${:-x}",
                "failed to process \"${:-x}\": syntax error: bad substitution",
            ),
            (
                "${X:=1}",
                "failed to process \"${X:=1}\": unsupported modifier (:=) in substitution",
            ),
            (
                "${X=1}",
                "failed to process \"${X=1}\": unsupported modifier (=) in substitution",
            ),
            (
                "${X",
                "failed to process \"${X\": syntax error: missing '}'",
            ),
            (
                "'abc",
                "failed to process \"'abc\": unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"abc",
                "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote",
            ),
        ],
    );
    // `${X?}` on a set but empty variable is fine; only `:?` rejects empty.
    check(
        &Lexer::new('\\'),
        &[("[${EMPTY?}]", "[]"), ("${HOME:?}", "/root")],
    );
    let err = Lexer::new('\\')
        .process_word("${NOPE:?gone}", &NoEnv)
        .unwrap_err();
    assert_eq!(
        err.kind,
        ShellErrorKind::Required {
            name: "NOPE".into(),
            message: "gone".into()
        }
    );
}

#[test]
fn backtick_escape_mode() {
    let lexer = Lexer::new('`');
    check(
        &lexer,
        &[
            // the whole point of the backtick: backslashes are ordinary (Windows paths)
            ("C:\\Program Files\\app", "C:\\Program Files\\app"),
            ("he\\$HOME", "he\\/root"),
            ("he`$HOME", "he$HOME"),
            ("\"he`\"llo\"", "he\"llo"),
            ("\"a`$HOME\"", "a$HOME"),
            ("\"a``b\"", "a`b"),
            // before an ordinary character the escape stays inside double quotes
            ("\"a`b\"", "a`b"),
            ("a`b", "ab"),
            ("a``", "a`"),
            ("trailing`", "trailing"),
            ("'`$HOME'", "`$HOME"),
            ("${NOPE:-`}}", "}"),
        ],
    );
    let env = env();
    assert_eq!(
        lexer.process_words("a` b c", &env).unwrap(),
        vec!["a b", "c"]
    );
    assert!(lexer.process_word("\"open`\"", &env).is_err());
}

#[test]
fn heredoc_bodies() {
    let env = env();
    let lexer = Lexer::new('`');
    let cases: &[(&str, &str)] = &[
        ("\"quotes in file\"\n", "\"quotes in file\"\n"),
        ("'single $HOME'\n", "'single /root'\n"),
        ("\\\n", "\n"),
        ("\\\\\n", "\\\n"),
        ("\\$\n", "$\n"),
        ("\\$HOME is $HOME\n", "$HOME is /root\n"),
        ("line one\\\nline two\n", "line one\nline two\n"),
        // BuildKit drops a backslash before any character in a heredoc body
        ("a\\tb\n", "atb\n"),
        ("${NOPE:-\"dflt\"}\n", "\"dflt\"\n"),
        ("cat <<EOF\n#not a comment\n", "cat <<EOF\n#not a comment\n"),
        ("`backtick`\n", "`backtick`\n"),
    ];
    let mut failures = Vec::new();
    for (body, want) in cases {
        match lexer.process_heredoc(body, &env) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{body:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        Lexer::heredoc(),
        Lexer::new('\\').with_skip_process_quotes(true)
    );
    assert!(lexer.process_heredoc("${NOPE:?must be set}", &env).is_err());
}

#[test]
fn word_splitting() {
    let lexer = Lexer::new('\\');
    let env = env();
    let cases: &[(&str, &[&str])] = &[
        ("80 443/tcp", &["80", "443/tcp"]),
        ("$SPACED", &["one", "two"]),
        ("\"$SPACED\"", &["one  two"]),
        ("a\\ b", &["a b"]),
        ("a \"\" b", &["a", "b"]),
        ("\"\"", &[]),
        ("", &[]),
        ("  lead  trail  ", &["lead", "trail"]),
        ("${NOPE:-8080}/udp", &["8080/udp"]),
        // BuildKit loses "a" here (a shared buffer); we keep it
        ("a${NOPE:-b}", &["ab"]),
        ("x${SPACED}y", &["xone", "twoy"]),
        ("cat << EOF", &["cat", "<< EOF"]),
        ("cmd <in >out", &["cmd", "<in", ">out"]),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        match lexer.process_words(input, &env) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{input:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // process_word keeps the spaces that process_words splits on
    assert_eq!(
        lexer.process_word("x${SPACED}y", &env).unwrap(),
        "xone  twoy"
    );
}

#[test]
fn matched_and_unmatched_variables() {
    let lexer = Lexer::new('\\');
    let env = env();
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    let (value, matched) = lexer
        .process_word_with_matches("${NOPE:-$HOME} $FILE ${EMPTY:+x} $1", &env)
        .unwrap();
    assert_eq!(value, "/root archive.tar.gz  ");
    assert_eq!(matched, set(&["EMPTY", "FILE", "HOME"]));

    let full = lexer
        .expand("${NOPE:-$HOME} $FILE '$QUOTED' ${OTHER}", &env)
        .unwrap();
    assert_eq!(full.unmatched, set(&["NOPE", "OTHER"]));
    assert_eq!(full.words, vec!["/root", "archive.tar.gz", "$QUOTED"]);
    // an escaped reference is not a lookup
    assert!(lexer.expand("\\$NOPE", &env).unwrap().unmatched.is_empty());
}

#[test]
fn raw_options() {
    let env = env();
    let skip_unset = Lexer::new('\\').with_skip_unset_env(true);
    check(
        &skip_unset,
        &[
            ("$NOPE ${NOPE} $HOME", "$NOPE ${NOPE} /root"),
            ("${NOPE:-x} ${NOPE+y}", "${NOPE:-x} ${NOPE+y}"),
            ("${NOPE/a/b} ${NOPE//a/b}", "${NOPE/a/b} ${NOPE//a/b}"),
            ("${NOPE?}", "${NOPE?}"),
        ],
    );
    let raw = Lexer::new('\\').with_raw_quotes(true);
    check(&raw, &[("'a'\"b $HOME\"c", "'a'\"b /root\"c")]);
    let raw_esc = Lexer::new('\\')
        .with_raw_quotes(true)
        .with_raw_escapes(true);
    check(
        &raw_esc,
        &[("a\\ b", "a\\ b"), ("\"x\\\"y\"", "\"x\\\"y\"")],
    );
    assert_eq!(
        raw_esc.process_words("<<'EOF' \"a b\"", &env).unwrap(),
        vec!["<<'EOF'", "\"a b\""]
    );
    let no_quotes = Lexer::new('\\').with_skip_process_quotes(true);
    check(&no_quotes, &[("'$HOME'", "'/root'"), ("\"a\"", "\"a\"")]);
}

#[test]
fn env_implementations() {
    let lexer = Lexer::new('\\');
    let mut btree = BTreeMap::new();
    btree.insert("A".to_string(), "bt".to_string());
    let mut hash = HashMap::new();
    hash.insert("A".to_string(), "hm".to_string());
    let list = vec![("A", "first"), ("B", "b"), ("A", "last")];
    assert_eq!(lexer.process_word("$A", &btree).unwrap(), "bt");
    assert_eq!(lexer.process_word("$A", &hash).unwrap(), "hm");
    assert_eq!(lexer.process_word("$A$B", &list).unwrap(), "lastb");
    assert_eq!(
        lexer.process_word("$A$B", list.as_slice()).unwrap(),
        "lastb"
    );
    let dynamic: &dyn Env = &btree;
    assert_eq!(lexer.process_word("${A}x", dynamic).unwrap(), "btx");
    assert_eq!(lexer.process_word("[$A]", &NoEnv).unwrap(), "[]");
    // a leading byte-order mark is dropped, as BuildKit's scanner drops it; later ones stay
    assert_eq!(lexer.process_word("\u{feff}$A", &btree).unwrap(), "bt");
    assert_eq!(
        lexer.process_word("x\u{feff}", &btree).unwrap(),
        "x\u{feff}"
    );
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let lexer = Lexer::new('\\');
    let nested = |n: usize| format!("{}x{}", "${NOPE:-".repeat(n), "}".repeat(n));
    assert_eq!(lexer.process_word(&nested(100), &NoEnv).unwrap(), "x");
    // the limit itself fits on a test thread's small stack, in quotes too
    assert_eq!(
        lexer.process_word(&nested(MAX_NESTING), &NoEnv).unwrap(),
        "x"
    );
    let quoted_max = format!(
        "{}x{}",
        "\"${NOPE:-".repeat(MAX_NESTING),
        "}\"".repeat(MAX_NESTING)
    );
    assert_eq!(lexer.process_word(&quoted_max, &NoEnv).unwrap(), "x");
    let err = lexer.process_word(&nested(100_000), &NoEnv).unwrap_err();
    assert_eq!(err.kind, ShellErrorKind::TooDeep);
    // quotes in between do not get around the limit
    let quoted = format!("{}x{}", "\"${NOPE:-".repeat(5_000), "}\"".repeat(5_000));
    assert_eq!(
        lexer.process_word(&quoted, &NoEnv).unwrap_err().kind,
        ShellErrorKind::TooDeep
    );
}
