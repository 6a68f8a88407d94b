//! `--chown` and USER names resolved against a root filesystem's `/etc/passwd` and `/etc/group`,
//! at build time and inside the destination, as BuildKit does.

use std::path::Path;
use thiserror::Error;

use super::path::resolve_in_root;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

/// A resolved owner: numeric ids, the ids of the user's supplementary groups, and the home
/// directory passwd gives it (`/` for a user passwd does not list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `user[:group]` (names or numbers) against `root`'s passwd and group files.
/// A numeric user without a group gets gid 0 unless passwd names it (Docker's rule); a
/// `user:group` spec gets exactly that group and no supplementary groups.
pub fn resolve_user(root: Option<&Path>, spec: &str) -> Result<ResolvedUser, UserError> {
    resolve_user_with(&|path| read_file(root, path), spec)
}

/// The owner `--chown=user[:group]` gives, by BuildKit's rules, which differ from USER's: a
/// name is looked up in `root`'s passwd (uid and primary gid) and an unknown one is 0:0; a
/// number (or `root`) is that uid with the same gid; a group, by name from the group file or by
/// number, replaces the gid, and an unknown group name leaves it as it was. Never an error.
pub fn resolve_chown(root: &Path, user: &str, group: Option<&str>) -> (u32, u32) {
    let id = |s: &str| {
        if s == "root" {
            Some(0)
        } else {
            s.parse::<u32>().ok()
        }
    };
    let (uid, mut gid) = match id(user) {
        Some(n) => (n, n),
        None => parse_db(read_file(Some(root), "/etc/passwd"))
            .iter()
            .find(|f| field(f, 0) == Some(user))
            .map(|f| {
                let n = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                (n(2), n(3))
            })
            .unwrap_or((0, 0)),
    };
    if let Some(group) = group {
        match id(group) {
            Some(n) => gid = n,
            None => {
                if let Some(n) = parse_db(read_file(Some(root), "/etc/group"))
                    .iter()
                    .find(|f| field(f, 0) == Some(group))
                    .and_then(|f| f.get(2)?.parse().ok())
                {
                    gid = n;
                }
            }
        }
    }
    (uid, gid)
}

/// The user a RUN step runs as: `spec` as [`resolve_user_with`] resolves it, or, for an image
/// that sets no USER, uid 0 as passwd describes it, or 0:0 with home `/` when passwd has no such
/// entry or there is no passwd at all (a `FROM scratch` stage), as BuildKit's runc executor does.
pub fn resolve_exec_user_with(
    read: &dyn Fn(&str) -> Option<String>,
    spec: &str,
) -> Result<ResolvedUser, UserError> {
    if !spec.is_empty() {
        return resolve_user_with(read, spec);
    }
    let passwd = parse_db(read("/etc/passwd"));
    match passwd.iter().find(|f| field(f, 2) == Some("0")) {
        Some(entry) => resolve_user_with(read, &entry[0]),
        None => Ok(ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![0],
            home: "/".into(),
        }),
    }
}

/// [`resolve_user`] over any way of reading the root's files, such as the layers of a snapshot
/// that is not mounted on the host.
pub fn resolve_user_with(
    read: &dyn Fn(&str) -> Option<String>,
    spec: &str,
) -> Result<ResolvedUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let passwd = parse_db(read("/etc/passwd"));
    let groups = parse_db(read("/etc/group"));
    let entry = passwd.iter().find(|f| {
        field(f, 0) == Some(user) || (user.parse::<u32>().is_ok() && field(f, 2) == Some(user))
    });
    let home = entry
        .and_then(|f| field(f, 5))
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();
    let (uid, primary_gid, name) = match (user.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0),
            f.get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
            Some(f[0].as_str()),
        ),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), None) => return Err(UserError::UnknownUser(user.to_string())),
    };
    if let Some(group) = group {
        let gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| field(f, 0) == Some(group))
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| UserError::UnknownGroup(group.to_string()))?,
        };
        return Ok(ResolvedUser {
            uid,
            gid,
            additional_gids: Vec::new(),
            home,
        });
    }
    let mut additional_gids = vec![primary_gid];
    if let Some(name) = name {
        for f in &groups {
            let members = field(f, 3).unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Some(gid) = f.get(2).and_then(|v| v.parse().ok())
                && !additional_gids.contains(&gid)
            {
                additional_gids.push(gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid: primary_gid,
        additional_gids,
        home,
    })
}

fn field(f: &[String], i: usize) -> Option<&str> {
    f.get(i).map(String::as_str)
}

fn read_file(root: Option<&Path>, path: &str) -> Option<String> {
    let file = resolve_in_root(root?, path, true).ok()?;
    std::fs::read_to_string(file).ok()
}

/// The colon-separated records of a passwd-style file; a missing file is an empty database.
fn parse_db(text: Option<String>) -> Vec<Vec<String>> {
    let Some(text) = text else { return Vec::new() };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\ndaemon:x:1:\nwheel:x:10:root\nnogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let dir = root();
        let r = |s| resolve_user(Some(dir.path()), s);
        assert_eq!(
            r("root").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![0, 10],
                home: "/root".into(),
            }
        );
        assert_eq!(r("daemon").unwrap().gid, 1);
        assert_eq!(r("1234").unwrap().gid, 0);
        assert_eq!(r("1234:1234").unwrap().gid, 1234);
        assert_eq!(r("1000:nogroup").unwrap().gid, 65534);
        assert_eq!(
            r("nosuch").unwrap_err(),
            UserError::UnknownUser("nosuch".into())
        );
        assert_eq!(
            r("0:nosuch").unwrap_err(),
            UserError::UnknownGroup("nosuch".into())
        );
        assert_eq!(resolve_user(None, "5:6").unwrap().uid, 5);
    }

    #[test]
    fn chown_follows_buildkit_not_user() {
        let dir = root();
        let c = |u, g| resolve_chown(dir.path(), u, g);
        assert_eq!(c("daemon", None), (1, 1));
        assert_eq!(c("1234", None), (1234, 1234), "a number is uid and gid");
        assert_eq!(c("nosuch", None), (0, 0), "an unknown name is root");
        assert_eq!(
            c("daemon", Some("nosuch")),
            (1, 1),
            "an unknown group keeps the gid"
        );
        assert_eq!(c("5", Some("wheel")), (5, 10));
        assert_eq!(c("root", Some("7")), (0, 7));
    }

    #[test]
    fn run_steps_get_passwd_home_and_root_without_passwd() {
        let dir = root();
        let read = |p: &str| read_file(Some(dir.path()), p);
        assert_eq!(resolve_exec_user_with(&read, "").unwrap().home, "/root");
        assert_eq!(resolve_exec_user_with(&read, "daemon").unwrap().home, "/");
        assert_eq!(resolve_exec_user_with(&read, "1234").unwrap().home, "/");
        let none = |_: &str| None;
        let scratch = resolve_exec_user_with(&none, "").unwrap();
        assert_eq!(
            (scratch.uid, scratch.gid, scratch.home.as_str()),
            (0, 0, "/")
        );
        assert!(resolve_exec_user_with(&none, "root").is_err());
    }
}
