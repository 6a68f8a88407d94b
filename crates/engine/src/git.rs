//! The git client behind git sources (`ADD <repo>#ref:dir`), git build contexts and named
//! contexts: the `git` program resolves a ref to a commit (which is what the cache key holds,
//! so a moved branch rebuilds and an unchanged one does not) and checks out exactly that commit.
//!
//! The user's git configuration applies (credential helpers for private repositories); git is
//! never allowed to prompt.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::EngineError;

/// A git repository reference as ADD and build contexts write it:
/// `REMOTE[#REF[:SUBDIR]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    pub remote: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

impl GitUrl {
    /// Parses a git URL (`git://`, `ssh://`, `git@host:`, `http(s)://...` ending in `.git`,
    /// `file://`) with an optional `#ref:subdir`; `None` for anything else.
    pub fn parse(text: &str) -> Option<GitUrl> {
        let (remote, fragment) = match text.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (text, None),
        };
        let is_git = remote.starts_with("git://")
            || remote.starts_with("git@")
            || remote.starts_with("ssh://")
            || remote.starts_with("file://")
            || ((remote.starts_with("https://") || remote.starts_with("http://"))
                && (remote.ends_with(".git") || fragment.is_some() && remote.contains(".git")));
        if !is_git || remote.len() <= "git://".len() {
            return None;
        }
        let (reference, subdir) = match fragment.map(|f| f.split_once(':').unwrap_or((f, ""))) {
            Some((r, d)) => (
                Some(r.to_owned()).filter(|r| !r.is_empty()),
                Some(d.trim_matches('/').to_owned()).filter(|d| !d.is_empty()),
            ),
            None => (None, None),
        };
        Some(GitUrl {
            remote: remote.to_owned(),
            reference,
            subdir,
        })
    }
}

fn git(args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        // A remote over ssh fails instead of asking about an unknown host key.
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null());
    cmd
}

/// Runs git, returning its stdout; a failure names what was being done and git's own words.
fn run(mut cmd: Command, what: &str) -> Result<String, EngineError> {
    let out = cmd.output().map_err(|source| EngineError::Io {
        what: format!("{what}: run git (is git installed?)"),
        source,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("git failed")
        .to_owned();
    Err(EngineError::Git(format!("{what}: {reason}")))
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `reference` (a branch, tag, full ref or commit id; the default branch when
/// `None`) of `remote` points at now.
pub fn resolve(remote: &str, reference: Option<&str>) -> Result<String, EngineError> {
    if let Some(r) = reference
        && is_commit_id(r)
    {
        return Ok(r.to_ascii_lowercase());
    }
    let wanted = reference.unwrap_or("HEAD");
    let listing = run(
        git(&["ls-remote", "--", remote, wanted]),
        &format!("resolve {wanted} of {remote}"),
    )?;
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    // Git's own order for an ambiguous short name: the name itself, then tags, then branches;
    // a tag's peeled commit (`^{}`) rather than the tag object.
    let candidates = [
        wanted.to_owned(),
        format!("refs/tags/{wanted}"),
        format!("refs/heads/{wanted}"),
    ];
    for name in &candidates {
        let peeled = format!("{name}^{{}}");
        if let Some((sha, _)) = refs.iter().find(|(_, r)| *r == peeled) {
            return Ok((*sha).to_owned());
        }
        if let Some((sha, _)) = refs.iter().find(|(_, r)| r == name) {
            return Ok((*sha).to_owned());
        }
    }
    Err(EngineError::Git(format!(
        "resolve {wanted} of {remote}: no such branch, tag or ref"
    )))
}

/// What to check out.
#[derive(Debug, Clone)]
pub struct Checkout<'a> {
    pub remote: &'a str,
    /// The ref the user named, fetched by name (servers need not serve a bare commit id).
    pub reference: Option<&'a str>,
    /// The commit [`resolve`] found; the checkout is exactly this commit.
    pub commit: &'a str,
    pub subdir: Option<&'a str>,
    pub keep_git_dir: bool,
}

/// Checks out `what` into `dest` (an existing empty directory): the work tree with its
/// submodules, `.git` only when asked, only `subdir` when one is given. `scratch` is an empty
/// directory on the same file system for the subdir case.
pub fn checkout(what: &Checkout<'_>, dest: &Path, scratch: &Path) -> Result<(), EngineError> {
    let work = if what.subdir.is_some() { scratch } else { dest };
    let dir = work
        .to_str()
        .ok_or_else(|| EngineError::Git(format!("{}: not a UTF-8 path", work.display())))?;
    let label = format!("fetch {} of {}", what.commit, what.remote);
    run(git(&["init", "-q", dir]), &label)?;
    run(
        git(&["-C", dir, "remote", "add", "origin", what.remote]),
        &label,
    )?;
    let by_name = what.reference.filter(|r| !is_commit_id(r));
    let fetched = match by_name {
        Some(r) => run(
            git(&[
                "-C",
                dir,
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "origin",
                r,
            ]),
            &label,
        ),
        None if what.reference.is_none() => run(
            git(&[
                "-C",
                dir,
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "origin",
                "HEAD",
            ]),
            &label,
        ),
        None => run(
            git(&[
                "-C",
                dir,
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "origin",
                what.commit,
            ]),
            &label,
        ),
    };
    let head = fetched.and_then(|_| {
        run(
            git(&["-C", dir, "rev-parse", "FETCH_HEAD^{commit}"]),
            &label,
        )
    });
    if head.as_deref().map(str::trim).ok() != Some(what.commit) {
        // The ref moved since it was resolved, or the server would not send a bare commit
        // id: fetch everything and find the commit among it.
        run(
            git(&[
                "-C",
                dir,
                "fetch",
                "-q",
                "--tags",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
            ]),
            &label,
        )?;
    }
    run(
        git(&[
            "-C",
            dir,
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            "--detach",
            what.commit,
        ]),
        &format!("check out {} of {}", what.commit, what.remote),
    )?;
    if work.join(".gitmodules").is_file() {
        run(
            git(&[
                "-C",
                dir,
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth=1",
            ]),
            &format!("update the submodules of {}", what.remote),
        )?;
    }
    if !what.keep_git_dir {
        std::fs::remove_dir_all(work.join(".git")).map_err(|source| EngineError::Io {
            what: "remove the .git directory of a checkout".into(),
            source,
        })?;
    }
    if let Some(sub) = what.subdir {
        let from = kiln_image::rootfs::resolve_in_root(work, sub, true).map_err(|source| {
            EngineError::Io {
                what: format!("find {sub} in {}", what.remote),
                source,
            }
        })?;
        if !from.is_dir() {
            return Err(EngineError::Git(format!(
                "{}#{}:{sub}: no such directory in the repository",
                what.remote, what.commit
            )));
        }
        for entry in std::fs::read_dir(&from).map_err(|source| EngineError::Io {
            what: format!("read {sub} of the checkout"),
            source,
        })? {
            let entry = entry.map_err(|source| EngineError::Io {
                what: format!("read {sub} of the checkout"),
                source,
            })?;
            std::fs::rename(entry.path(), dest.join(entry.file_name())).map_err(|source| {
                EngineError::Io {
                    what: format!("move {sub} of the checkout into place"),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_parse_with_ref_and_subdir() {
        let u = GitUrl::parse("https://example.com/org/repo.git#v1.2:docs/site").unwrap();
        assert_eq!(u.remote, "https://example.com/org/repo.git");
        assert_eq!(u.reference.as_deref(), Some("v1.2"));
        assert_eq!(u.subdir.as_deref(), Some("docs/site"));
        let u = GitUrl::parse("git://127.0.0.1:9418/repo.git").unwrap();
        assert_eq!((u.reference, u.subdir), (None, None));
        let u = GitUrl::parse("file:///srv/repo.git#:sub").unwrap();
        assert_eq!((u.reference, u.subdir.as_deref()), (None, Some("sub")));
        assert!(GitUrl::parse("https://example.com/ctx.tar.gz").is_none());
        assert!(GitUrl::parse("./dir").is_none());
        assert!(GitUrl::parse("git@github.com:org/repo.git").is_some());
    }
}
