//! Root-only tests of overlay mounting: deep chains through `lowerdir+`, read-only views.

use std::fs;
use std::path::PathBuf;

use kiln_executor::snapshot::overlay::{
    mount_overlay, mount_overlay_readonly, overlay_supported, unmount,
};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: this test needs root (overlay mounts)");
            return;
        }
    };
}

#[test]
fn two_hundred_fifty_layers_mount_and_read_top_and_bottom() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    assert!(
        overlay_supported(base),
        "overlayfs should be usable under {}",
        base.display()
    );
    // Long-ish paths on purpose: 250 of them are far over the one-page mount(2) limit.
    let mut lowers: Vec<PathBuf> = Vec::new();
    for i in 0..250 {
        let d = base.join(format!("layer-with-a-longish-name-{i:04}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join(format!("file{i}")), format!("layer {i}")).unwrap();
        fs::write(d.join("shadowed"), format!("from {i}")).unwrap();
        lowers.push(d);
    }
    let total: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(
        total > 4096,
        "the test must exceed the page limit, got {total}"
    );
    // Top-most first.
    lowers.reverse();
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    mount_overlay(&merged, &lowers, &upper, &work).unwrap();
    let read = |n: &str| fs::read_to_string(merged.join(n));
    let results = (
        read("file0"),
        read("file249"),
        read("shadowed"),
        fs::write(merged.join("new"), "x"),
    );
    unmount(&merged).unwrap();
    assert_eq!(results.0.unwrap(), "layer 0");
    assert_eq!(results.1.unwrap(), "layer 249");
    assert_eq!(results.2.unwrap(), "from 249");
    results.3.unwrap();
    assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "x");
    assert!(!lowers[0].join("new").exists());
}

#[test]
fn readonly_overlay_and_single_lower_view_refuse_writes() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (a, b, m) = (base.join("a"), base.join("b"), base.join("m"));
    for d in [&a, &b, &m] {
        fs::create_dir(d).unwrap();
    }
    fs::write(a.join("f"), "top").unwrap();
    fs::write(b.join("f"), "bottom").unwrap();
    fs::write(b.join("g"), "g").unwrap();

    mount_overlay_readonly(&m, &[a.clone(), b.clone()]).unwrap();
    let seen = (
        fs::read_to_string(m.join("f")),
        fs::read_to_string(m.join("g")),
    );
    let write = fs::write(m.join("h"), "x");
    unmount(&m).unwrap();
    assert_eq!(seen.0.unwrap(), "top");
    assert_eq!(seen.1.unwrap(), "g");
    assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));

    mount_overlay_readonly(&m, std::slice::from_ref(&b)).unwrap();
    let seen = fs::read_to_string(m.join("f"));
    let write = fs::write(m.join("h"), "x");
    unmount(&m).unwrap();
    assert_eq!(seen.unwrap(), "bottom");
    assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert!(!b.join("h").exists());

    let err = mount_overlay_readonly(&m, &[]).unwrap_err();
    assert!(err.to_string().contains("no lower dirs"), "{err}");
}

#[test]
fn missing_lower_dir_is_a_clear_error() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let (u, w, m) = (base.join("u"), base.join("w"), base.join("m"));
    for d in [&u, &w, &m] {
        fs::create_dir(d).unwrap();
    }
    let err = mount_overlay(&m, &[base.join("nope")], &u, &w).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("failed to mount overlay"), "{msg}");
    assert!(msg.contains("nope"), "{msg}");
}
