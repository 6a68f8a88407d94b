//! Root-only tests of the snapshotter: lifecycle, deep chains, crash recovery, concurrency.

#[path = "snapshot_util.rs"]
mod util;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kiln_executor::snapshot::{Driver, Kind, Mounts, SnapshotError, SnapshotId, Snapshotter};
use util::Mounted;

fn drivers() -> [Driver; 2] {
    [Driver::Overlay, Driver::Copy]
}

#[test]
fn lifecycle_prepare_commit_view_remove() {
    require_root!();
    for driver in drivers() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = Snapshotter::open_with_driver(&tmp.path().join("root"), driver).unwrap();
        assert_eq!(sn.driver(), driver);
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();

        let a = sn.prepare("base", None).unwrap();
        assert!(!a.mounts().is_readonly());
        {
            a.mounts().mount(&mnt).unwrap();
            let _m = Mounted(mnt.clone());
            fs::write(mnt.join("hello"), "base").unwrap();
            fs::create_dir(mnt.join("dir")).unwrap();
        }
        let active_id = a.id().clone();
        assert_eq!(
            sn.view(&active_id).unwrap_err().to_string(),
            format!("snapshot {active_id} is active, not committed")
        );
        let base = sn.commit(a).unwrap();
        assert_eq!(base, active_id, "commit keeps the id");
        assert!(
            !sn.root()
                .join("snapshots")
                .join(base.as_str())
                .join("work")
                .exists()
        );

        let b = sn.prepare("child", Some(&base)).unwrap();
        let err = sn
            .prepare("grandchild-of-active", Some(b.id()))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::NotCommitted(_)), "{err}");
        {
            b.mounts().mount(&mnt).unwrap();
            let _m = Mounted(mnt.clone());
            assert_eq!(fs::read_to_string(mnt.join("hello")).unwrap(), "base");
            fs::write(mnt.join("hello"), "child").unwrap();
        }
        let child = sn.commit(b).unwrap();
        assert_eq!(sn.parent(&child).unwrap(), Some(base.clone()));
        assert_eq!(sn.chain(&child).unwrap(), vec![child.clone(), base.clone()]);
        assert!(sn.usage(&child).unwrap().inodes >= 2);

        // Views are read-only and show the right layer.
        {
            sn.mount(&child, &mnt).unwrap();
            let _m = Mounted(mnt.clone());
            assert_eq!(fs::read_to_string(mnt.join("hello")).unwrap(), "child");
            let err = fs::write(mnt.join("x"), "x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        }
        {
            sn.mount(&base, &mnt).unwrap();
            let _m = Mounted(mnt.clone());
            assert_eq!(fs::read_to_string(mnt.join("hello")).unwrap(), "base");
        }
        if driver == Driver::Overlay {
            assert!(matches!(
                sn.view(&child).unwrap(),
                Mounts::OverlayReadonly { .. }
            ));
        }

        let list = sn.list().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|i| i.kind == Kind::Committed));
        assert_eq!(list[1].key, "child");

        let err = sn.remove(&base).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("snapshot {base} still has children: {child}")
        );
        sn.remove(&child).unwrap();
        sn.remove(&base).unwrap();
        assert!(matches!(sn.view(&base), Err(SnapshotError::NotFound(_))));
        assert!(sn.list().unwrap().is_empty());

        // Discarding an active snapshot removes it; ids are never reused.
        let c = sn.prepare("scratch", None).unwrap();
        let cid = c.id().clone();
        assert!(cid.as_str().parse::<u64>().unwrap() > child.as_str().parse::<u64>().unwrap());
        sn.discard(c).unwrap();
        assert!(sn.list().unwrap().is_empty());
    }
}

#[test]
fn driver_is_fixed_per_root_and_ids_are_validated() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sn = Snapshotter::open_with_driver(&root, Driver::Copy).unwrap();
    drop(sn);
    let err = Snapshotter::open_with_driver(&root, Driver::Overlay).unwrap_err();
    assert!(
        err.to_string()
            .contains("uses the copy driver, not overlay"),
        "{err}"
    );
    assert_eq!(
        Snapshotter::open_with_driver(&root, Driver::Copy)
            .unwrap()
            .driver(),
        Driver::Copy
    );
    assert!(SnapshotId::parse("../../etc").is_err());

    // A fresh root on a filesystem that can hold overlays picks overlay by itself.
    let auto = Snapshotter::open(&tmp.path().join("auto")).unwrap();
    if std::env::var("KILN_SNAPSHOTTER").is_err() {
        assert_eq!(auto.driver(), Driver::Overlay);
    }
}

#[test]
fn chain_of_two_hundred_snapshots_mounts_and_reads_top_and_bottom() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let sn = Snapshotter::open_with_driver(&tmp.path().join("root"), Driver::Overlay).unwrap();
    let mut parent: Option<SnapshotId> = None;
    for i in 0..210 {
        let a = sn.prepare(&format!("layer {i}"), parent.as_ref()).unwrap();
        fs::write(a.upper_dir().join(format!("f{i}")), format!("{i}")).unwrap();
        fs::write(a.upper_dir().join("top"), format!("{i}")).unwrap();
        parent = Some(sn.commit(a).unwrap());
    }
    let top = parent.unwrap();
    assert_eq!(sn.chain(&top).unwrap().len(), 210);
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    sn.mount(&top, &mnt).unwrap();
    let _m = Mounted(mnt.clone());
    assert_eq!(fs::read_to_string(mnt.join("f0")).unwrap(), "0");
    assert_eq!(fs::read_to_string(mnt.join("f209")).unwrap(), "209");
    assert_eq!(fs::read_to_string(mnt.join("top")).unwrap(), "209");

    // A writable snapshot on the chain works too.
    let a = sn.prepare("on top", Some(&top)).unwrap();
    let mnt2 = tmp.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    a.mounts().mount(&mnt2).unwrap();
    let _m2 = Mounted(mnt2.clone());
    fs::remove_file(mnt2.join("f0")).unwrap();
    assert!(!mnt2.join("f0").exists());
}

/// Not a test on its own: the child process of `stale_active_snapshot_of_killed_process_is_removed`.
#[test]
#[ignore]
fn crash_helper_prepare_and_hang() {
    let Ok(root) = std::env::var("KILN_SNAPSHOT_CRASH_ROOT") else {
        return;
    };
    let sn = Snapshotter::open(std::path::Path::new(&root)).unwrap();
    let a = sn.prepare("doomed", None).unwrap();
    fs::write(a.upper_dir().join("half-done"), "x").unwrap();
    println!("READY {}", a.id());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn stale_active_snapshot_of_killed_process_is_removed_on_open() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sn = Snapshotter::open_with_driver(&root, Driver::Overlay).unwrap();
    let a = sn.prepare("survivor", None).unwrap();
    fs::write(a.upper_dir().join("kept"), "x").unwrap();
    let kept = sn.commit(a).unwrap();
    let mine = sn.prepare("still mine", None).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_helper_prepare_and_hang",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_SNAPSHOT_CRASH_ROOT", &root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let doomed = loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "helper exited early");
        // libtest prints "test <name> ... " before the helper's own output on the same line.
        if let Some(at) = line.find("READY ") {
            break SnapshotId::parse(line[at + 6..].trim()).unwrap();
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();

    // Also a creation interrupted before its metadata was written.
    let incomplete = root.join("snapshots").join("99999");
    fs::create_dir_all(incomplete.join("fs")).unwrap();

    assert!(
        sn.list().unwrap().iter().any(|i| i.id == doomed),
        "visible before recovery"
    );
    let reopened = Snapshotter::open(&root).unwrap();
    let rec = reopened.recovery();
    assert_eq!(rec.stale_active, vec![doomed.clone()]);
    assert_eq!(rec.incomplete, vec!["99999".to_string()]);
    assert!(!root.join("snapshots").join(doomed.as_str()).exists());
    assert!(!incomplete.exists());
    let ids: Vec<SnapshotId> = reopened.list().unwrap().into_iter().map(|i| i.id).collect();
    // Our own live active snapshot is not stale and stays.
    assert_eq!(ids, vec![kept.clone(), mine.id().clone()]);
    sn.commit(mine).unwrap();
}

#[test]
fn concurrent_snapshotters_on_one_root_hand_out_unique_ids() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    Snapshotter::open_with_driver(&root, Driver::Overlay).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let sn = Snapshotter::open(&root).unwrap();
                let mut ids = Vec::new();
                let mut parent = None;
                for i in 0..15 {
                    let a = sn.prepare(&format!("t{t}-{i}"), parent.as_ref()).unwrap();
                    let id = sn.commit(a).unwrap();
                    ids.push(id.clone());
                    parent = Some(id);
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<SnapshotId> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60);
    assert_eq!(Snapshotter::open(&root).unwrap().list().unwrap().len(), 60);
}

/// Not a test on its own: prints the driver `open` picks under the environment it is given.
#[test]
#[ignore]
fn env_helper_print_driver() {
    let Ok(root) = std::env::var("KILN_SNAPSHOT_ENV_ROOT") else {
        return;
    };
    match Snapshotter::open(std::path::Path::new(&root)) {
        Ok(sn) => println!("DRIVER {}", sn.driver()),
        Err(e) => println!("ERROR {e}"),
    }
}

fn driver_under_env(root: &std::path::Path, value: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_helper_print_driver",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_SNAPSHOT_ENV_ROOT", root)
        .env("KILN_SNAPSHOTTER", value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let at = stdout
        .find("DRIVER ")
        .or_else(|| stdout.find("ERROR "))
        .unwrap_or_else(|| panic!("no answer from helper: {stdout}"));
    stdout[at..].lines().next().unwrap().to_string()
}

#[test]
fn env_var_forces_the_copy_driver() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        driver_under_env(&tmp.path().join("a"), "copy"),
        "DRIVER copy"
    );
    assert_eq!(
        driver_under_env(&tmp.path().join("b"), "overlay"),
        "DRIVER overlay"
    );
    let bogus = driver_under_env(&tmp.path().join("c"), "zfs");
    assert!(
        bogus.contains("invalid snapshot driver: KILN_SNAPSHOTTER=zfs"),
        "{bogus}"
    );
    // The driver a root was created with wins over a later, conflicting request.
    let conflict = driver_under_env(&tmp.path().join("a"), "overlay");
    assert!(
        conflict.contains("uses the copy driver, not overlay"),
        "{conflict}"
    );
}

#[test]
fn root_on_overlayfs_falls_back_to_the_copy_driver() {
    require_root!();
    use kiln_executor::snapshot::overlay::{mount_overlay, overlay_supported};
    let tmp = tempfile::tempdir().unwrap();
    let [l, u, w, m] = ["l", "u", "w", "m"].map(|d| {
        let p = tmp.path().join(d);
        fs::create_dir(&p).unwrap();
        p
    });
    // An overlayfs cannot serve as another overlay's upper dir: the probe must notice.
    mount_overlay(&m, &[l], &u, &w).unwrap();
    let _m = Mounted(m.clone());
    let root = m.join("root");
    assert!(!overlay_supported(&root));
    if std::env::var("KILN_SNAPSHOTTER").is_ok() {
        eprintln!("KILN_SNAPSHOTTER is set; not checking the automatic choice");
        return;
    }
    let sn = Snapshotter::open(&root).unwrap();
    assert_eq!(sn.driver(), Driver::Copy);
    let a = sn.prepare("on overlayfs", None).unwrap();
    fs::write(a.upper_dir().join("f"), "x").unwrap();
    let base = sn.commit(a).unwrap();
    let b = sn.prepare("child", Some(&base)).unwrap();
    assert_eq!(
        fs::read_to_string(b.upper_dir().join("f")).unwrap(),
        "x",
        "copy of the parent"
    );
    fs::remove_file(b.upper_dir().join("f")).unwrap();
    let child = sn.commit(b).unwrap();
    let mut tar = Vec::new();
    let stats = sn.diff(&child, &mut tar, &Default::default()).unwrap();
    assert_eq!((stats.entries, stats.whiteouts), (1, 1));
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".overlay-probe")),
        "probe left {names:?}"
    );
}
