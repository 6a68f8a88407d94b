//! Table tests of `.dockerignore` parsing and matching: `**`, exceptions, last match wins,
//! cleaning, comments, syntax errors, directory pruning and the per-Dockerfile ignore file.

use kiln_frontend::dockerignore::{
    Dockerignore, DockerignoreError, PatternMatcher, locate_for_dockerfile, read_for_dockerfile,
};

/// (ignore file, [(path, excluded?)])
type Case<'a> = (&'a str, &'a [(&'a str, bool)]);

#[track_caller]
fn run(cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (text, paths) in cases {
        let matcher = match Dockerignore::parse(text) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{text:?}: parse failed: {e}"));
                continue;
            }
        };
        for (path, want) in *paths {
            let got = matcher.is_excluded(path);
            if got != *want {
                failures.push(format!(
                    "{text:?} on {path:?}: want excluded={want}, got {got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn literal_and_single_star_patterns() {
    run(&[
        (
            "foo",
            &[
                ("foo", true),
                ("foo/bar", true),
                ("foo/bar/baz.txt", true),
                ("foobar", false),
                ("a/foo", false),
            ],
        ),
        (
            "*.md",
            &[
                ("README.md", true),
                ("docs/README.md", false),
                ("md", false),
            ],
        ),
        (
            "*/*.md",
            &[("docs/a.md", true), ("a.md", false), ("docs/x/a.md", false)],
        ),
        (
            "docs/*",
            &[("docs/a", true), ("docs/a/b", true), ("docs", false)],
        ),
        (
            "?.txt",
            &[("a.txt", true), ("ab.txt", false), ("/.txt", false)],
        ),
        (
            "[ab].txt",
            &[("a.txt", true), ("b.txt", true), ("c.txt", false)],
        ),
        ("[^ab].txt", &[("c.txt", true), ("a.txt", false)]),
        ("[a-c]*", &[("build", true), ("dist", false)]),
        ("f\\*o", &[("f*o", true), ("fxo", false)]),
        ("a.b", &[("a.b", true), ("axb", false)]),
        ("a+(b)|{c}$", &[("a+(b)|{c}$", true), ("aab", false)]),
    ]);
}

#[test]
fn double_star_leading_middle_trailing() {
    run(&[
        // leading: any depth, including none
        (
            "**/*.go",
            &[
                ("main.go", true),
                ("a/b/c.go", true),
                ("a/b/c.golang", false),
            ],
        ),
        (
            "**/node_modules",
            &[
                ("node_modules", true),
                ("a/node_modules/x", true),
                ("a/my_node_modules", false),
            ],
        ),
        // `**` followed by literals is a plain suffix test, as in moby
        (
            "**.log",
            &[("x.log", true), ("a/b.log", true), ("a/log", false)],
        ),
        ("**", &[("anything", true), ("a/b/c", true)]),
        // middle: zero or more directories
        (
            "a/**/z",
            &[
                ("a/z", true),
                ("a/b/z", true),
                ("a/b/c/z", true),
                ("a/b/c/y", false),
                ("b/a/z", false),
            ],
        ),
        (
            "src/**/test/*.rs",
            &[
                ("src/test/a.rs", true),
                ("src/x/y/test/a.rs", true),
                ("src/x/test/a/b.rs", false),
            ],
        ),
        // trailing: everything below; `dir/**` does not match `dir` itself
        (
            "build/**",
            &[
                ("build/x", true),
                ("build/x/y", true),
                ("build", false),
                ("buildx/y", false),
            ],
        ),
        (
            "build**",
            &[("build", true), ("buildx/y", true), ("rebuild", false)],
        ),
        ("a*/**", &[("ab/c", true), ("ab", false), ("b/c", false)]),
    ]);
}

#[test]
fn exceptions_and_last_match_wins() {
    run(&[
        // an exception re-includes a path under an excluded directory
        (
            "dir\n!dir/keep",
            &[
                ("dir/keep", false),
                ("dir/keep/inner", false),
                ("dir/other", true),
                ("dir", true),
            ],
        ),
        (
            "*.md\n!README.md",
            &[("README.md", false), ("CHANGES.md", true)],
        ),
        // the last matching line decides
        ("!README.md\n*.md", &[("README.md", true)]),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            &[
                ("README.md", false),
                ("README-secret.md", true),
                ("a.md", true),
            ],
        ),
        // exceptions with wildcards under an excluded tree
        (
            "vendor\n!vendor/**/LICENSE",
            &[
                ("vendor/a/LICENSE", false),
                ("vendor/LICENSE", false),
                ("vendor/a/x.go", true),
            ],
        ),
        // an exception for a directory re-includes its contents
        (
            "*\n!src\n!Cargo.toml",
            &[
                ("src/main.rs", false),
                ("Cargo.toml", false),
                ("target/debug", true),
                ("README", true),
            ],
        ),
        // the exception matches a parent of the file, so it wins (last match)
        ("*/x\n!foo", &[("foo/x", false), ("bar/x", true)]),
        // excluding again below a re-included directory
        (
            "a\n!a/b\na/b/c",
            &[("a/b/c/d", true), ("a/b/e", false), ("a/z", true)],
        ),
    ]);
}

#[test]
fn cleaning_comments_and_whitespace() {
    run(&[
        ("/foo", &[("foo", true), ("foo/x", true)]),
        ("./foo", &[("foo", true)]),
        ("foo/", &[("foo", true), ("foo/x", true)]),
        ("foo//bar", &[("foo/bar", true)]),
        ("foo/../bar", &[("bar", true), ("foo", false)]),
        ("foo/./bar/", &[("foo/bar", true)]),
        (
            "!/foo\nfoo\n!./foo/keep",
            &[("foo/keep", false), ("foo/x", true)],
        ),
        ("  spaced  \t", &[("spaced", true)]),
        ("! spaced", &[("spaced", false)]),
        // comments only at the start of a line; an indented `#` is a pattern
        (
            "# comment\n  # not-a-comment",
            &[("comment", false), ("# not-a-comment", true)],
        ),
        (
            "\u{feff}# bom then comment\nreal",
            &[("real", true), ("# bom then comment", false)],
        ),
        ("a\r\nb\r\n", &[("a", true), ("b", true)]),
        // a pattern climbing out of the context matches nothing inside it
        ("../foo", &[("foo", false)]),
        // paths given to the matcher are cleaned too
        (
            "foo",
            &[("./foo/x", true), ("/foo", true), ("bar/../foo", true)],
        ),
        // the context root itself is never excluded
        ("*\n**", &[(".", false), ("", false), ("/", false)]),
        ("", &[("anything", false)]),
    ]);
}

#[test]
fn syntax_errors_carry_the_line() {
    let cases: &[(&str, DockerignoreError)] = &[
        ("ok\n!\n", DockerignoreError::IllegalExclusion { line: 2 }),
        (
            "ok\n\n  !  \n",
            DockerignoreError::IllegalExclusion { line: 3 },
        ),
        // `!/` cleans to `!`
        ("!/", DockerignoreError::IllegalExclusion { line: 1 }),
        (
            "# c\n[abc",
            DockerignoreError::BadPattern {
                line: 2,
                pattern: "[abc".into(),
            },
        ),
        (
            "a[]b",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "a[]b".into(),
            },
        ),
        // as in filepath.Match, `]` cannot open a class (no "first `]` is literal" rule)
        (
            "[]a]",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "[]a]".into(),
            },
        ),
        (
            "[^]a]",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "[^]a]".into(),
            },
        ),
        (
            "[z-a]",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "[z-a]".into(),
            },
        ),
        (
            "[a-]",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "[a-]".into(),
            },
        ),
        (
            "x\\",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "x\\".into(),
            },
        ),
        (
            "!bad[",
            DockerignoreError::BadPattern {
                line: 1,
                pattern: "bad[".into(),
            },
        ),
    ];
    for (text, want) in cases {
        match Dockerignore::parse(text) {
            Err(e) => assert_eq!(&e, want, "{text:?}"),
            Ok(m) => panic!("{text:?} parsed into {m:?}, want {want}"),
        }
    }
    assert_eq!(
        Dockerignore::parse("[").unwrap_err().to_string(),
        "invalid pattern \"[\" (line 1): syntax error in pattern"
    );
    // valid bracket forms
    for text in ["[\\]]", "[a\\-]x]", "[*?]", "x]", "[^\\]]"] {
        assert!(Dockerignore::parse(text).is_ok(), "{text:?} should parse");
    }
    // an escaped `]` is a member of the class
    assert!(Dockerignore::parse("[\\]]").unwrap().is_excluded("]"));
}

#[test]
fn pattern_lists_for_copy_exclude() {
    let m = PatternMatcher::new(&["*.tmp", " !keep.tmp ", "cache/"]).unwrap();
    assert!(m.is_excluded("x.tmp"));
    assert!(!m.is_excluded("keep.tmp"));
    assert!(m.is_excluded("cache/blob"));
    assert!(m.has_exceptions());
    assert_eq!(m.patterns().len(), 3);
    assert_eq!(m.patterns()[1].as_str(), "keep.tmp");
    assert!(m.patterns()[1].is_exception());
    assert_eq!(
        PatternMatcher::new(&["a", "!"]).unwrap_err(),
        DockerignoreError::IllegalExclusion { line: 2 }
    );
    assert!(PatternMatcher::new::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn can_skip_dir_decisions() {
    // (ignore file, [(dir, can skip?)])
    let cases: &[Case<'_>] = &[
        (
            "node_modules",
            &[
                ("node_modules", true),
                ("src", false),
                ("node_modules/x", true),
            ],
        ),
        // not excluded: must walk
        ("*.log", &[("logs", false)]),
        // an exception under the directory forces a walk of it, but not of its siblings
        (
            "dir\n!dir/keep",
            &[("dir", false), ("dir/other", true), ("dir/keep", false)],
        ),
        (
            "vendor\nbuild\n!vendor/**/LICENSE",
            &[("vendor", false), ("build", true)],
        ),
        // wildcard exceptions are checked per component
        (
            "*\n!src/*.rs",
            &[("src", false), ("target", true), ("srcx", true)],
        ),
        ("*\n!*/keep", &[("a", false), ("b", false)]),
        (
            "*\n!a/b/c",
            &[("a", false), ("a/b", false), ("a/x", true), ("z", true)],
        ),
        // exceptions that only match the directory itself or above cannot re-include below
        // (and re-including the directory means it is not excluded at all)
        ("a\n!a", &[("a", false)]),
        ("a/b\n!a", &[("a/b", false)]),
        ("x\n!y", &[("x", true)]),
        // leading `**` can match anywhere
        ("dist\n!**/keep.txt", &[("dist", false)]),
        // trailing `**` exception
        (
            "out\n!out/keep/**",
            &[("out", false), ("out/keep", false), ("out/drop", true)],
        ),
        ("out\n!keep/**", &[("out", true)]),
        // bracket expressions are handled conservatively
        ("lib\n![l]ib/x", &[("lib", false)]),
        // the root is never skipped
        ("*", &[(".", false), ("", false)]),
    ];
    let mut failures = Vec::new();
    for (text, dirs) in cases {
        let m = Dockerignore::parse(text).unwrap();
        for (dir, want) in *dirs {
            let got = m.can_skip_dir(dir);
            if got != *want {
                failures.push(format!(
                    "{text:?} dir {dir:?}: want can_skip={want}, got {got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `can_skip_dir` must never prune a directory that holds an included path: check it
/// against `is_excluded` on every path of a small tree.
#[test]
fn can_skip_dir_is_sound_on_a_tree() {
    let tree = [
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/keep.txt",
        "a/b/x.rs",
        "a/keep.txt",
        "dir",
        "dir/keep",
        "dir/keep/f",
        "dir/sub",
        "dir/sub/keep",
        "src",
        "src/main.rs",
        "src/lib.rs",
        "x",
        "x/y",
        "x/y/LICENSE",
        "x/y/z.go",
    ];
    let files = [
        "a\n!a/b/c/keep.txt",
        "*\n!src\n!*.rs",
        "dir\n!dir/keep",
        "*\n!**/keep",
        "x\n!x/*/LICENSE",
        "**/b\n!a/b/x.*",
        "*\n!?/*",
        "a/**\n!a/b",
    ];
    let mut pruned = 0;
    for text in files {
        let m = Dockerignore::parse(text).unwrap();
        for dir in tree {
            if !m.can_skip_dir(dir) {
                continue;
            }
            pruned += 1;
            for path in tree.iter().filter(|p| p.starts_with(&format!("{dir}/"))) {
                assert!(
                    m.is_excluded(path),
                    "{text:?}: can_skip_dir({dir:?}) but {path:?} is included"
                );
            }
        }
    }
    assert!(
        pruned >= 5,
        "only {pruned} directories were prunable; the check proves little"
    );
}

#[test]
fn per_dockerfile_ignore_file_wins() {
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path();
    let dockerfile = dir.join("app.Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\n").unwrap();

    // neither file
    assert_eq!(read_for_dockerfile(dir, &dockerfile).unwrap(), None);

    // only the context's file
    std::fs::write(dir.join(".dockerignore"), "from-context\n").unwrap();
    assert_eq!(
        read_for_dockerfile(dir, &dockerfile).unwrap().as_deref(),
        Some("from-context\n")
    );

    // the Dockerfile's own file wins, even when empty
    std::fs::write(dir.join("app.Dockerfile.dockerignore"), "").unwrap();
    let (path, text) = locate_for_dockerfile(dir, &dockerfile).unwrap().unwrap();
    assert_eq!(path, dir.join("app.Dockerfile.dockerignore"));
    assert_eq!(text, "");

    // a Dockerfile elsewhere (`-f other/Dockerfile`) looks next to itself
    std::fs::create_dir(dir.join("other")).unwrap();
    let other = dir.join("other/Dockerfile");
    std::fs::write(&other, "FROM scratch\n").unwrap();
    assert_eq!(
        read_for_dockerfile(dir, &other).unwrap().as_deref(),
        Some("from-context\n")
    );
    std::fs::write(
        dir.join("other/Dockerfile.dockerignore"),
        "from-dockerfile\n",
    )
    .unwrap();
    assert_eq!(
        read_for_dockerfile(dir, &other).unwrap().as_deref(),
        Some("from-dockerfile\n")
    );

    // a directory in the way is "no file", as BuildKit treats it
    let ctx2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(ctx2.path().join(".dockerignore")).unwrap();
    assert_eq!(
        read_for_dockerfile(ctx2.path(), &ctx2.path().join("Dockerfile")).unwrap(),
        None
    );
}

#[test]
fn incremental_matching_carries_parent_results() {
    // `!foo` matches `foo/x` only through its parent; the walker's record must keep that.
    let m = Dockerignore::parse("*/x\n!foo\nbar").unwrap();
    let (foo, record) = m.matches_with_parent("foo", None);
    assert!(!foo);
    let (foo_x, _) = m.matches_with_parent("foo/x", Some(&record));
    assert!(!foo_x, "foo/x is re-included by !foo");
    let (bar, record) = m.matches_with_parent("bar", None);
    assert!(bar);
    let (bar_x, record) = m.matches_with_parent("bar/x", Some(&record));
    assert!(bar_x);
    let (deep, _) = m.matches_with_parent("bar/x/y", Some(&record));
    assert!(deep);
    // a record from a different matcher is ignored, not trusted
    let other = Dockerignore::parse("a\nb\nc\nd").unwrap();
    let (_, foreign) = other.matches_with_parent("a", None);
    assert!(m.matches_with_parent("bar/q", Some(&foreign)).0);
}
