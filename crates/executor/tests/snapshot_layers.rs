//! Root-only tests of layer diff and apply: round trips on both drivers, determinism, and a
//! table of malicious tars that must be refused without writing outside the target.

#[path = "snapshot_util.rs"]
mod util;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use kiln_executor::snapshot::{
    ApplyOptions, DiffOptions, Driver, SnapshotId, Snapshotter, WhiteoutMode, apply_layer,
};
use util::{Mounted, assert_same_listing, listing};

fn mknod(path: &Path, kind: rustix::fs::FileType, major: u32, minor: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o640),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `f` on the mounted active snapshot, then commits it.
fn build(
    sn: &Snapshotter,
    mnt: &Path,
    parent: Option<&SnapshotId>,
    f: impl FnOnce(&Path),
) -> SnapshotId {
    let a = sn.prepare("test", parent).unwrap();
    {
        a.mounts().mount(mnt).unwrap();
        let _m = Mounted(mnt.to_path_buf());
        f(mnt);
    }
    sn.commit(a).unwrap()
}

fn base_layer(m: &Path) {
    for d in [
        "etc",
        "bin",
        "usr/lib",
        "data/keep",
        "data/gone/sub",
        "data/replaced",
        "tmp",
    ] {
        fs::create_dir_all(m.join(d)).unwrap();
    }
    chmod(&m.join("tmp"), 0o1777);
    fs::write(m.join("etc/passwd"), "root:x:0:0\n").unwrap();
    fs::write(m.join("bin/sh"), vec![0x7f; 10_000]).unwrap();
    chmod(&m.join("bin/sh"), 0o755);
    fs::write(m.join("usr/lib/a.so"), "a").unwrap();
    fs::write(m.join("usr/lib/b.so"), "b").unwrap();
    fs::write(m.join("data/keep/x"), "x").unwrap();
    fs::write(m.join("data/gone/sub/y"), "y").unwrap();
    fs::write(m.join("data/replaced/old1"), "1").unwrap();
    fs::write(m.join("data/replaced/old2"), "2").unwrap();
    symlink("usr/lib", m.join("lib")).unwrap();
    fs::write(m.join("h1"), "linked").unwrap();
    fs::hard_link(m.join("h1"), m.join("h2")).unwrap();
    xattr::set(m.join("etc/passwd"), "user.origin", b"base").unwrap();
}

fn second_layer(m: &Path) {
    fs::write(m.join("etc/passwd"), "root:x:0:0\nuser:x:1000:1000\n").unwrap();
    fs::write(m.join("etc/new"), "new").unwrap();
}

/// The changes whose diff must round-trip: deletions of lower files, a replaced directory,
/// type changes, metadata changes, long names, links, special files, xattrs, big owners.
fn changes(m: &Path) {
    fs::remove_file(m.join("usr/lib/a.so")).unwrap();
    fs::remove_dir_all(m.join("data/gone")).unwrap();
    fs::remove_dir_all(m.join("data/replaced")).unwrap();
    fs::create_dir(m.join("data/replaced")).unwrap();
    fs::write(m.join("data/replaced/new"), "fresh").unwrap();
    chmod(&m.join("bin/sh"), 0o700);
    chown(&m.join("etc/passwd"), 1000, 1000);
    // Type changes both ways.
    fs::remove_file(m.join("usr/lib/b.so")).unwrap();
    fs::create_dir(m.join("usr/lib/b.so")).unwrap();
    fs::write(m.join("usr/lib/b.so/inner"), "inner").unwrap();
    fs::remove_dir_all(m.join("data/keep")).unwrap();
    fs::write(m.join("data/keep"), "now a file").unwrap();
    // Long names need PAX records (over 100 bytes of name, over 256 of path).
    let long_dir = m.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&long_dir).unwrap();
    let long_file = long_dir.join("f".repeat(150));
    fs::write(&long_file, "long").unwrap();
    symlink("t".repeat(200), m.join("long-symlink")).unwrap();
    fs::hard_link(&long_file, m.join("link-to-long")).unwrap();
    // New links, special files, setuid, xattrs, owners beyond the ustar field.
    fs::create_dir(m.join("new")).unwrap();
    fs::write(m.join("new/a"), "shared").unwrap();
    fs::hard_link(m.join("new/a"), m.join("new/b")).unwrap();
    symlink("../etc/passwd", m.join("new/pw")).unwrap();
    mknod(&m.join("new/fifo"), rustix::fs::FileType::Fifo, 0, 0);
    mknod(
        &m.join("new/null"),
        rustix::fs::FileType::CharacterDevice,
        1,
        3,
    );
    mknod(&m.join("new/blk"), rustix::fs::FileType::BlockDevice, 7, 0);
    fs::write(m.join("new/suid"), "#!/bin/sh\n").unwrap();
    chmod(&m.join("new/suid"), 0o4755);
    fs::write(m.join("new/big-owner"), "x").unwrap();
    chown(&m.join("new/big-owner"), 3_000_000, 3_000_001);
    xattr::set(m.join("new/a"), "user.kiln", b"\x00binary\xff").unwrap();
    xattr::set(m.join("new"), "user.dir", b"d").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(m.join("new/big"), big).unwrap();
    fs::write(m.join("-sorts-before-dot"), "z").unwrap();
    fs::write(m.join("data/replaced/-early"), "e").unwrap();
    filetime::set_file_mtime(
        m.join("etc/new"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
}

fn round_trip(driver: Driver) {
    let tmp = tempfile::tempdir().unwrap();
    let sn = Snapshotter::open_with_driver(&tmp.path().join("root"), driver).unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let l1 = build(&sn, &mnt, None, base_layer);
    let l2 = build(&sn, &mnt, Some(&l1), second_layer);
    let changed = build(&sn, &mnt, Some(&l2), changes);

    let mut tar1 = Vec::new();
    let stats = sn
        .diff(&changed, &mut tar1, &DiffOptions::default())
        .unwrap();
    assert_eq!(stats.tar_bytes, tar1.len() as u64);
    assert!(stats.whiteouts >= 3, "{stats:?}");
    let mut tar2 = Vec::new();
    sn.diff(&changed, &mut tar2, &DiffOptions::default())
        .unwrap();
    assert!(tar1 == tar2, "the same tree must give the same bytes");
    check_tar_shape(&tar1, driver);

    let fresh = sn.prepare("applied", Some(&l2)).unwrap();
    let opts = ApplyOptions {
        allow_devices: true,
        ..ApplyOptions::default()
    };
    let applied_stats = sn.apply(&fresh, &tar1[..], &opts).unwrap();
    assert_eq!(applied_stats.entries, stats.entries);
    let applied = sn.commit(fresh).unwrap();

    let expected = {
        sn.mount(&changed, &mnt).unwrap();
        let _m = Mounted(mnt.clone());
        listing(&mnt)
    };
    let got = {
        sn.mount(&applied, &mnt).unwrap();
        let _m = Mounted(mnt.clone());
        listing(&mnt)
    };
    assert!(expected.iter().any(|l| l.starts_with("data/replaced/new ")));
    assert!(!expected.iter().any(|l| l.starts_with("usr/lib/a.so ")));
    assert!(
        !expected
            .iter()
            .any(|l| l.starts_with("data/replaced/old1 "))
    );
    assert_same_listing(&expected, &got);

    // Diffing the applied snapshot gives the same layer again.
    let mut tar3 = Vec::new();
    sn.diff(&applied, &mut tar3, &DiffOptions::default())
        .unwrap();
    assert!(tar3 == tar1, "re-diff of the applied layer differs");
}

/// Entries in order, parents first, numeric owners only, whiteouts present.
fn check_tar_shape(tar: &[u8], driver: Driver) {
    let mut archive = tar::Archive::new(tar);
    let mut seen: Vec<String> = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "uname set on {path}");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "gname set on {path}");
        let trimmed = path.trim_end_matches('/');
        if let Some((parent, _)) = trimmed.rsplit_once('/') {
            assert!(
                seen.iter().any(|s| s.trim_end_matches('/') == parent),
                "{path} comes before its parent"
            );
        }
        if path.ends_with("big-owner") {
            assert_eq!(
                e.pax_extensions()
                    .unwrap()
                    .unwrap()
                    .filter_map(|x| x.ok())
                    .filter(|x| x.key() == Ok("uid"))
                    .count(),
                1
            );
        }
        seen.push(path);
    }
    // Overlay records a removed-and-recreated directory as opaque; comparing trees (copy
    // driver) cannot tell it from emptying the directory and whites out each old entry.
    let replaced: &[&str] = match driver {
        Driver::Overlay => &["data/replaced/.wh..wh..opq"],
        Driver::Copy => &["data/replaced/.wh.old1", "data/replaced/.wh.old2"],
    };
    for needle in ["usr/lib/.wh.a.so", "data/.wh.gone"].iter().chain(replaced) {
        assert!(
            seen.iter().any(|s| s == needle),
            "missing {needle} in {seen:#?}"
        );
    }
    assert!(
        !seen.iter().any(|s| s.contains("data/gone/")),
        "whiteout dir contents leaked"
    );
}

#[test]
fn overlay_diff_round_trips_through_apply() {
    require_root!();
    round_trip(Driver::Overlay);
}

#[test]
fn copy_driver_diff_round_trips_through_apply() {
    require_root!();
    round_trip(Driver::Copy);
}

#[test]
fn layer_from_one_driver_applies_on_the_other() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut listings = Vec::new();
    let mut tars = Vec::new();
    for driver in [Driver::Overlay, Driver::Copy] {
        let sn =
            Snapshotter::open_with_driver(&tmp.path().join(driver.to_string()), driver).unwrap();
        let l0 = build(&sn, &mnt, None, base_layer);
        let l1 = build(&sn, &mnt, Some(&l0), second_layer);
        let changed = build(&sn, &mnt, Some(&l1), changes);
        let mut tar = Vec::new();
        sn.diff(&changed, &mut tar, &DiffOptions::default())
            .unwrap();
        tars.push((sn, l1, tar));
    }
    // Apply each driver's layer on the other driver's base.
    for i in 0..2 {
        let (sn, l1, _) = &tars[i];
        let tar = &tars[1 - i].2;
        let a = sn.prepare("cross", Some(l1)).unwrap();
        let opts = ApplyOptions {
            allow_devices: true,
            ..ApplyOptions::default()
        };
        sn.apply(&a, &tar[..], &opts).unwrap();
        let id = sn.commit(a).unwrap();
        sn.mount(&id, &mnt).unwrap();
        let _m = Mounted(mnt.clone());
        listings.push(listing(&mnt));
    }
    // Directory mtimes legitimately differ between the two builds (made at different times);
    // compare everything else.
    let strip = |l: &Vec<String>| -> Vec<String> {
        l.iter()
            .map(|s| {
                if s.contains(" dir ") {
                    s.split(" mtime=").next().unwrap().to_string()
                } else {
                    s.clone()
                }
            })
            .map(|s| s.split(" mtime=").next().unwrap().to_string())
            .collect()
    };
    assert_same_listing(&strip(&listings[0]), &strip(&listings[1]));
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let sn = Snapshotter::open_with_driver(&tmp.path().join("root"), Driver::Overlay).unwrap();
    let a = sn.prepare("t", None).unwrap();
    fs::write(a.upper_dir().join("f"), "x").unwrap();
    filetime::set_file_mtime(
        a.upper_dir().join("f"),
        filetime::FileTime::from_unix_time(100, 0),
    )
    .unwrap();
    fs::write(a.upper_dir().join("g"), "y").unwrap();
    let id = sn.commit(a).unwrap();
    let mut tar = Vec::new();
    sn.diff(
        &id,
        &mut tar,
        &DiffOptions {
            source_date_epoch: Some(1000),
        },
    )
    .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let times: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                e.header().mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(times, vec![("f".to_string(), 100), ("g".to_string(), 1000)]);
}

// ---- malicious tars ----

/// A raw ustar header with the name written byte for byte (the `tar` crate refuses to write
/// `..` names through its safe setters, which is exactly what we need to test).
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    h
}

enum E<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
    Char(&'a [u8]),
    Block(&'a [u8]),
    PaxPath(&'a [u8]),
}

fn make_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |h: tar::Header, data: &[u8]| {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    };
    for e in entries {
        match *e {
            E::File(n, data) => push(
                raw_header(n, tar::EntryType::Regular, data.len() as u64, b""),
                data,
            ),
            E::Dir(n) => push(raw_header(n, tar::EntryType::Directory, 0, b""), b""),
            E::Symlink(n, t) => push(raw_header(n, tar::EntryType::Symlink, 0, t), b""),
            E::Hardlink(n, t) => push(raw_header(n, tar::EntryType::Link, 0, t), b""),
            E::Char(n) => push(raw_header(n, tar::EntryType::Char, 0, b""), b""),
            E::Block(n) => push(raw_header(n, tar::EntryType::Block, 0, b""), b""),
            E::PaxPath(p) => {
                let mut rec = Vec::new();
                let body = format!(" path={}\n", String::from_utf8_lossy(p));
                let mut len = body.len() + 2;
                while len != body.len() + len.to_string().len() {
                    len = body.len() + len.to_string().len();
                }
                rec.extend_from_slice(format!("{len}{body}").as_bytes());
                push(
                    raw_header(b"pax", tar::EntryType::XHeader, rec.len() as u64, b""),
                    &rec,
                );
                push(
                    raw_header(b"placeholder", tar::EntryType::Regular, 4, b""),
                    b"evil",
                );
            }
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn malicious_tars_are_refused_and_write_nothing_outside() {
    require_root!();
    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        (
            "dotdot name",
            vec![E::File(b"../escape", b"x")],
            "`..` path component",
        ),
        (
            "dotdot in the middle",
            vec![E::Dir(b"a/"), E::File(b"a/../../escape", b"x")],
            "`..` path component",
        ),
        (
            "absolute name",
            vec![E::File(b"/abs-escape", b"x")],
            "absolute path",
        ),
        (
            "dotdot through pax path",
            vec![E::PaxPath(b"../../pax-escape")],
            "`..` path component",
        ),
        (
            "symlink to an absolute dir, then write through it",
            vec![
                E::Symlink(b"link", b"/OUTSIDE"),
                E::File(b"link/pwned", b"x"),
            ],
            "link is a symlink or not a directory",
        ),
        (
            "symlink to a relative escape, then write through it",
            vec![E::Symlink(b"up", b"../outside"), E::File(b"up/pwned", b"x")],
            "up is a symlink or not a directory",
        ),
        (
            "symlink chain, then write through it",
            vec![
                E::Dir(b"d/"),
                E::Symlink(b"d/s", b"../../outside"),
                E::Dir(b"d/s/x/"),
            ],
            "d/s is a symlink or not a directory",
        ),
        (
            "hard link out of the tree",
            vec![E::Hardlink(b"hl", b"../outside/secret")],
            "leaves the layer",
        ),
        (
            "hard link to an absolute path",
            vec![E::Hardlink(b"hl", b"/OUTSIDE/secret")],
            "leaves the layer",
        ),
        (
            "hard link to a not yet existing target",
            vec![E::Hardlink(b"hl", b"later"), E::File(b"later", b"x")],
            "does not exist (yet)",
        ),
        (
            "hard link through a symlink",
            vec![
                E::Symlink(b"s", b"/OUTSIDE"),
                E::Hardlink(b"hl", b"s/secret"),
            ],
            "is not an existing file in the layer",
        ),
        (
            "hard link to a directory",
            vec![E::Dir(b"dir/"), E::Hardlink(b"hl", b"dir")],
            "is a directory",
        ),
        (
            "character device",
            vec![E::Char(b"dev-null")],
            "device nodes are not allowed",
        ),
        (
            "block device",
            vec![E::Block(b"sda")],
            "device nodes are not allowed",
        ),
        (
            "whiteout of dotdot",
            vec![E::File(b"a/.wh...", b"")],
            "whiteout of an invalid name",
        ),
    ];
    for (what, entries, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "secret").unwrap();
        let target = tmp.path().join("target");
        fs::create_dir(&target).unwrap();
        let outside_str = outside.to_str().unwrap().as_bytes().to_vec();
        // Patch the placeholder for the absolute outside path into the entries.
        let fix = |b: &[u8]| -> Vec<u8> {
            let s = String::from_utf8_lossy(b)
                .replace("/OUTSIDE", std::str::from_utf8(&outside_str).unwrap());
            s.into_bytes()
        };
        let owned: Vec<(u8, Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|e| match *e {
                E::File(n, d) => (0, fix(n), d.to_vec()),
                E::Dir(n) => (1, fix(n), vec![]),
                E::Symlink(n, t) => (2, fix(n), fix(t)),
                E::Hardlink(n, t) => (3, fix(n), fix(t)),
                E::Char(n) => (4, fix(n), vec![]),
                E::Block(n) => (5, fix(n), vec![]),
                E::PaxPath(p) => (6, fix(p), vec![]),
            })
            .collect();
        let rebuilt: Vec<E<'_>> = owned
            .iter()
            .map(|(k, n, x)| match k {
                0 => E::File(n, x),
                1 => E::Dir(n),
                2 => E::Symlink(n, x),
                3 => E::Hardlink(n, x),
                4 => E::Char(n),
                5 => E::Block(n),
                _ => E::PaxPath(n),
            })
            .collect();
        let tar = make_tar(&rebuilt);
        for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete] {
            let opts = ApplyOptions {
                whiteouts: mode,
                ..ApplyOptions::default()
            };
            let err = apply_layer(&tar[..], &target, &opts)
                .expect_err(&format!("case {what:?} was accepted"));
            let msg = err.to_string();
            assert!(
                msg.contains(expected),
                "case {what:?}: error {msg:?} lacks {expected:?}"
            );
            assert!(
                msg.starts_with("refusing tar entry"),
                "case {what:?}: {msg}"
            );
            let mut around: Vec<String> = fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            around.sort();
            assert_eq!(
                around,
                ["outside", "target"],
                "case {what:?} wrote next to the target"
            );
            let inside: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(inside.len(), 1, "case {what:?} wrote into outside/");
            assert_eq!(
                fs::read_to_string(outside.join("secret")).unwrap(),
                "secret"
            );
            assert!(!Path::new("/abs-escape").exists() && !Path::new("/pax-escape").exists());
            fs::remove_dir_all(&target).unwrap();
            fs::create_dir(&target).unwrap();
        }
    }
}

#[test]
fn replacing_a_symlink_with_a_file_does_not_write_through_it() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, "secret").unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let out = outside.to_str().unwrap().as_bytes();
    let tar = make_tar(&[E::Symlink(b"s", out), E::File(b"s", b"overwritten")]);
    let stats = apply_layer(&tar[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.entries, 2);
    assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
    assert_eq!(fs::read_to_string(target.join("s")).unwrap(), "overwritten");
    assert!(
        !fs::symlink_metadata(target.join("s"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn whiteouts_apply_as_overlay_devices_and_opaque_xattrs() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let tar = make_tar(&[
        E::Dir(b"d/"),
        E::File(b"d/.wh..wh..opq", b""),
        E::File(b"d/kept", b"k"),
        E::File(b"e/.wh.gone", b""),
    ]);
    let stats = apply_layer(&tar[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(
        xattr::get(target.join("d"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let wh = fs::symlink_metadata(target.join("e/gone")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!target.join("d/.wh..wh..opq").exists());

    // Delete mode on a full tree: the opaque dir keeps only this layer's entries.
    let full = tmp.path().join("full");
    fs::create_dir_all(full.join("d")).unwrap();
    fs::create_dir_all(full.join("e")).unwrap();
    fs::write(full.join("d/old"), "o").unwrap();
    fs::write(full.join("e/gone"), "g").unwrap();
    fs::write(full.join("e/stays"), "s").unwrap();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..ApplyOptions::default()
    };
    let tar = make_tar(&[
        E::Dir(b"d/"),
        E::File(b"d/-first", b"f"),
        E::File(b"d/.wh..wh..opq", b""),
        E::File(b"d/kept", b"k"),
        E::File(b"e/.wh.gone", b""),
    ]);
    apply_layer(&tar[..], &full, &opts).unwrap();
    let mut d: Vec<_> = fs::read_dir(full.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    d.sort();
    assert_eq!(d, ["-first", "kept"]);
    assert!(!full.join("e/gone").exists() && full.join("e/stays").exists());
}
