//! COPY semantics on real directory trees, written from BuildKit's documented behaviour
//! (research checklist section A): wildcards, directory contents, trailing slashes, symlinks,
//! `--chmod` on implicit parents, `--parents`, `--exclude`, ownership.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::copy::{CopyError, CopyOptions, Ownership, copy};
use kiln_llb::FileMode as Chmod;

fn opts(sources: &[&str], dest: &str) -> CopyOptions {
    let mut o = CopyOptions::new(
        sources.iter().map(|s| s.to_string()).collect(),
        dest,
        Ownership::Set { uid: 0, gid: 0 },
    );
    o.allow_empty_wildcard = false;
    o
}

/// `COPY --parents SRC DEST` as the frontend lowers it: the part before a `/./` pivot (or the
/// root) is the source, the rest an include pattern.
fn parents(src: &str, dest: &str) -> CopyOptions {
    let (dir, pattern) = src.split_once("/./").unwrap_or(("/", src));
    let mut o = opts(&[dir], dest);
    o.include = vec![pattern.trim_start_matches('/').to_string()];
    o
}

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    write(c, "foo.go", "foo");
    write(c, "foo2.go", "foo2");
    write(c, "bar.txt", "bar");
    write(c, "sub/dir1/dir2/foo", "deep");
    write(c, "sub/file", "subfile");
    dir
}

#[test]
fn wildcards_and_directory_contents_follow_buildkit() {
    let ctx = context();
    let dest = tempfile::tempdir().unwrap();
    let (c, d) = (ctx.path(), dest.path());
    copy(c, d, &opts(&["*.go"], "/gofiles/")).unwrap();
    assert_eq!(read(d, "gofiles/foo.go"), "foo");
    assert_eq!(read(d, "gofiles/foo2.go"), "foo2");
    // A single wildcard match to a path without a slash is a plain file.
    copy(c, d, &opts(&["f*2.go"], "/single.go")).unwrap();
    assert_eq!(read(d, "single.go"), "foo2");
    copy(c, d, &opts(&["sub/*/dir2/foo"], "/subdest2/")).unwrap();
    assert_eq!(read(d, "subdest2/foo"), "deep");
    // A directory source copies its contents, with or without a trailing slash or /. suffix.
    for (src, dst) in [
        ("sub/dir1/", "/x"),
        ("sub/dir1/.", "/y"),
        ("sub/dir1", "/z"),
    ] {
        copy(c, d, &opts(&[src], dst)).unwrap();
        assert_eq!(read(d, &format!("{}/dir2/foo", &dst[1..])), "deep", "{src}");
    }
    copy(c, d, &opts(&["."], "/all/")).unwrap();
    assert_eq!(read(d, "all/sub/file"), "subfile");
}

#[test]
fn destination_rules_and_missing_sources() {
    let ctx = context();
    let dest = tempfile::tempdir().unwrap();
    let (c, d) = (ctx.path(), dest.path());
    copy(c, d, &opts(&["bar.txt"], "/sample/")).unwrap();
    assert_eq!(read(d, "sample/bar.txt"), "bar");
    fs::create_dir(d.join("existing")).unwrap();
    copy(c, d, &opts(&["bar.txt"], "/existing")).unwrap();
    assert_eq!(read(d, "existing/bar.txt"), "bar");
    copy(c, d, &opts(&["bar.txt"], "/renamed")).unwrap();
    assert_eq!(read(d, "renamed"), "bar");
    let err = copy(c, d, &opts(&["nosuch"], "/")).unwrap_err();
    assert!(
        matches!(err, CopyError::SourceNotFound(ref p) if p == "/nosuch"),
        "{err}"
    );
    // A wildcard that matches nothing copies nothing (BuildKit 0.24: even as the only
    // source), unless the action asks for a match.
    let mut lenient = opts(&["bar.txt", "nomatch*"], "/w/");
    lenient.allow_empty_wildcard = true;
    copy(c, d, &lenient).unwrap();
    assert_eq!(read(d, "w/bar.txt"), "bar");
    lenient.sources = vec!["nomatch*".into()];
    copy(c, d, &lenient).unwrap();
    assert!(copy(c, d, &opts(&["nomatch*"], "/w/")).is_err());
}

#[test]
fn symlinked_sources_are_followed_and_inner_links_kept() {
    let ctx = context();
    let c = ctx.path();
    symlink("bar.txt", c.join("link")).unwrap();
    symlink("sub", c.join("sublink")).unwrap();
    symlink("file", c.join("sub/inner")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    copy(c, d, &opts(&["link"], "/")).unwrap();
    assert_eq!(read(d, "link"), "bar");
    assert!(
        !d.join("link")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    copy(c, d, &opts(&["sublink/file"], "/through")).unwrap();
    assert_eq!(read(d, "through"), "subfile");
    copy(c, d, &opts(&["sub"], "/s")).unwrap();
    assert!(
        d.join("s/inner")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn chmod_applies_to_files_and_implicit_parents() {
    let ctx = context();
    let dest = tempfile::tempdir().unwrap();
    let (c, d) = (ctx.path(), dest.path());
    let mut o = opts(&["bar.txt"], "/parent/foo");
    o.chmod = Some(Chmod::parse("777").unwrap());
    copy(c, d, &o).unwrap();
    let mode = |p: &str| fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("parent/foo"), 0o777);
    assert_eq!(mode("parent"), 0o777);
    let mut o = opts(&["bar.txt"], "/parent/sub/foo");
    o.chmod = Some(Chmod::parse("770").unwrap());
    copy(c, d, &o).unwrap();
    assert_eq!(mode("parent/sub"), 0o770);
    assert_eq!(mode("parent"), 0o777, "existing parents keep their mode");
}

#[test]
fn parents_keep_source_directories() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    write(c, "foo1/foo2/bar", "b");
    write(c, "foo1/foo2/baz", "z");
    write(c, "test/a/b/c/d/file", "deep");
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    copy(c, d, &parents("foo1/foo2/bar", "/")).unwrap();
    assert_eq!(read(d, "foo1/foo2/bar"), "b");
    copy(c, d, &parents("foo1/foo2/ba*", "/test/")).unwrap();
    assert_eq!(read(d, "test/foo1/foo2/baz"), "z");
    copy(c, d, &parents("/test/a/b/./c/d", "/out/")).unwrap();
    assert_eq!(read(d, "out/c/d/file"), "deep");
    assert!(!d.join("out/a").exists());
}

#[test]
fn exclude_and_ownership() {
    let ctx = context();
    let dest = tempfile::tempdir().unwrap();
    let (c, d) = (ctx.path(), dest.path());
    let mut o = opts(&["."], "/app/");
    o.exclude = vec!["*.go".into(), "sub/dir1".into()];
    o.ownership = Ownership::Set { uid: 300, gid: 400 };
    copy(c, d, &o).unwrap();
    assert!(!d.join("app/foo.go").exists());
    assert!(!d.join("app/sub/dir1").exists());
    assert_eq!(read(d, "app/sub/file"), "subfile");
    let meta = fs::metadata(d.join("app/sub/file")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (300, 400));
}
