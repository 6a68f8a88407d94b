//! Full disks: a store (or an output) on a size-limited tmpfs that each test mounts on a
//! directory of its own and unmounts when done. A build whose layer does not fit, a pull, a
//! load, exports and metadata writes that run out of room fail saying the disk is full and
//! which file system, leave no half-written blob, ingest file, output or image name, keep
//! `kiln system check` clean, and the same operation succeeds once the file system has room.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::registry::Registry;

/// A tmpfs of a given size on a fresh directory; unmounted (lazily if busy) and removed on drop.
struct SmallFs {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

impl SmallFs {
    fn new(mib: u64) -> Option<SmallFs> {
        if !common::nix_is_root() {
            eprintln!("skipped: needs root to mount a small tmpfs");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-diskfull-")
            .tempdir()
            .unwrap();
        let mut fs = SmallFs {
            dir: Some(dir),
            mounted: false,
        };
        let result = nix::mount::mount(
            Some("kiln-test-diskfull"),
            fs.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID,
            Some(format!("size={}m,mode=0755", mib).as_str()),
        );
        match result {
            Ok(()) => fs.mounted = true,
            Err(e) => {
                eprintln!("skipped: cannot mount a tmpfs here: {e}");
                return None;
            }
        }
        Some(fs)
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Gives the file system `mib` MiB (the "space is freed" step).
    fn grow(&self, mib: u64) {
        nix::mount::mount(
            None::<&str>,
            self.path(),
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_NOSUID,
            Some(format!("size={}m", mib).as_str()),
        )
        .expect("remount the test tmpfs larger");
    }

    fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(self.path()).unwrap();
        s.blocks_available() * s.fragment_size()
    }

    /// Fills the file system until `leave` bytes are free; returns the filler's path.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let size = self.free().saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; size as usize]).unwrap();
        filler
    }

    /// Every file under the file system whose name looks like a temporary (ingest, output or
    /// save temp files).
    fn temp_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") || name.starts_with(".kiln-") || name.starts_with(".tmp")
                {
                    out.push(p.clone());
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                }
            }
        }
        out
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            let path = self.path().to_path_buf();
            if nix::mount::umount(&path).is_err() {
                let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // The directory (now empty) goes with the TempDir.
        drop(self.dir.take());
    }
}

/// `kiln --root ROOT`.
struct Kiln {
    root: PathBuf,
}

impl Kiln {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("KILN_ROOT")
            .env("KILN_CONFIG", self.root.with_extension("no-config.toml"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kiln {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args`, which must fail with the disk-full line naming `mount`; returns stderr.
    fn fails_full(&self, args: &[&str], mount: &Path) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kiln {args:?} should fail: {}",
            text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains("No space left on device")
                && err.contains(&format!(
                    "the disk is full: the file system mounted at {} has",
                    mount.display()
                )),
            "kiln {args:?} should say the disk at {} is full:\n{err}",
            mount.display()
        );
        err
    }

    fn assert_clean(&self) {
        let out = self.ok(&["system", "check"]);
        assert!(out.contains("is consistent"), "{out}");
        let ingest = self.root.join("content/ingest");
        let left: Vec<_> = std::fs::read_dir(&ingest)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "ingest files left: {left:?}");
    }

    fn has_image(&self, name: &str) -> bool {
        self.run(&["inspect", name]).status.success()
    }

    fn import_busybox(&self) {
        let tar = self.root.with_extension("busybox.tar");
        kiln_testutil::write_busybox_rootfs_tar(&tar).unwrap();
        self.ok(&[
            "import",
            tar.to_str().unwrap(),
            "busybox",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]);
        std::fs::remove_file(&tar).unwrap();
    }

    /// Imports an image `noise:1` of one layer holding `mib` MiB of incompressible bytes.
    fn import_noise(&self, mib: usize) {
        let tar_path = self.root.with_extension("noise.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        let data = noise(mib << 20);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "noise", &data[..]).unwrap();
        b.into_inner().unwrap();
        self.ok(&["import", tar_path.to_str().unwrap(), "noise:1"]);
        std::fs::remove_file(&tar_path).unwrap();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A store root in an ordinary temp directory (plenty of room).
fn roomy() -> (tempfile::TempDir, Kiln) {
    let dir = tempfile::Builder::new()
        .prefix("kiln-diskfull-roomy-")
        .tempdir()
        .unwrap();
    let kiln = Kiln {
        root: dir.path().join("root"),
    };
    (dir, kiln)
}

#[test]
fn a_build_whose_layer_does_not_fit_fails_cleanly_and_succeeds_after_room_is_made() {
    let Some(fs) = SmallFs::new(48) else { return };
    let kiln = Kiln {
        root: fs.path().join("root"),
    };
    kiln.import_busybox();
    let ctx = fs.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // 30 MiB of noise fits in the snapshot, but not twice (snapshot + layer blob).
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN head -c 31457280 /dev/urandom > /noise\n",
    )
    .unwrap();
    let build = [
        "build",
        "--progress",
        "plain",
        "-t",
        "big",
        ctx.to_str().unwrap(),
    ];
    let err = kiln.fails_full(&build, fs.path());
    // The cause, not its echo (`Broken pipe` from the other end of the compression pipe).
    assert!(!err.contains("Broken pipe"), "{err}");
    assert!(!kiln.has_image("big"));
    kiln.assert_clean();
    assert!(fs.temp_files().is_empty(), "{:?}", fs.temp_files());

    fs.grow(160);
    let out = kiln.ok(&build);
    let _ = out;
    assert!(kiln.has_image("big"));
    kiln.assert_clean();
}

#[test]
fn pulls_and_loads_that_do_not_fit_store_nothing_and_are_not_retried() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let Some(fs) = SmallFs::new(16) else { return };
    // The image: 24 MiB of noise, pushed to the registry and saved as a docker archive.
    let (src_dir, src) = roomy();
    src.import_noise(24);
    let name = format!("{}/full/noise:1", reg.host());
    src.ok(&["tag", "noise:1", &name]);
    src.ok(&["push", &name]);
    let archive = src_dir.path().join("noise.tar");
    src.ok(&["save", "-o", archive.to_str().unwrap(), "noise:1"]);

    let kiln = Kiln {
        root: fs.path().join("root"),
    };
    let err = kiln.fails_full(&["pull", &name], fs.path());
    assert!(
        !err.contains("retrying"),
        "a full disk is not a network hiccup: {err}"
    );
    assert!(!kiln.has_image(&name));
    kiln.assert_clean();
    let err = kiln.fails_full(&["load", "-i", archive.to_str().unwrap()], fs.path());
    let _ = err;
    assert!(!kiln.has_image("noise:1"));
    kiln.assert_clean();
    assert!(fs.temp_files().is_empty(), "{:?}", fs.temp_files());

    fs.grow(128);
    kiln.ok(&["pull", &name]);
    kiln.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(kiln.has_image(&name) && kiln.has_image("noise:1"));
    kiln.assert_clean();
}

#[test]
fn exports_to_a_full_disk_leave_no_partial_output() {
    let Some(fs) = SmallFs::new(8) else { return };
    let (_dir, kiln) = roomy();
    kiln.import_noise(12);
    let out = fs.path();
    let dest = |name: &str| out.join(name).to_str().unwrap().to_owned();
    let ctx = kiln.root.with_extension("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM noise:1\n").unwrap();
    let ctx = ctx.to_str().unwrap().to_owned();
    let attempts: Vec<Vec<String>> = vec![
        vec![
            "save".into(),
            "-o".into(),
            dest("saved.tar"),
            "noise:1".into(),
        ],
        vec![
            "build".into(),
            "-o".into(),
            format!("type=oci,dest={}", dest("oci.tar")),
            ctx.clone(),
        ],
        vec![
            "build".into(),
            "-o".into(),
            format!("type=docker,dest={}", dest("docker.tar")),
            ctx.clone(),
        ],
        vec![
            "build".into(),
            "-o".into(),
            format!("type=tar,dest={}", dest("fs.tar")),
            ctx.clone(),
        ],
        vec![
            "build".into(),
            "-o".into(),
            format!("type=local,dest={}", dest("local")),
            ctx.clone(),
        ],
        vec![
            "build".into(),
            "-o".into(),
            format!("type=oci,tar=false,dest={}", dest("layout")),
            ctx.clone(),
        ],
    ];
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kiln.fails_full(&args, fs.path());
        let left: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "kiln {args:?} left {left:?}");
        kiln.assert_clean();
    }
    fs.grow(256);
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kiln.ok(&args);
    }
    let mut made: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        [
            "docker.tar",
            "fs.tar",
            "layout",
            "local",
            "oci.tar",
            "saved.tar"
        ]
    );
    assert_eq!(
        std::fs::metadata(out.join("local/noise")).unwrap().len(),
        12 << 20
    );
    kiln.assert_clean();
}

#[test]
fn metadata_writes_on_a_full_disk_fail_cleanly_and_lose_no_names() {
    let Some(fs) = SmallFs::new(12) else { return };
    let kiln = Kiln {
        root: fs.path().join("root"),
    };
    kiln.import_busybox();
    let filler = fs.fill(16 << 10);
    // Tag until the database cannot grow: each tag is a durable write transaction.
    let mut tagged = Vec::new();
    let mut failure = None;
    for i in 0..400 {
        let name = format!("busybox:t{i}");
        let out = kiln.run(&["tag", "busybox", &name]);
        if out.status.success() {
            tagged.push(name);
        } else {
            failure = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = failure.expect("400 tags fit in 16 KiB: the disk was not full");
    assert!(
        err.contains("No space left on device")
            && err.contains(&format!(
                "the file system mounted at {} has",
                fs.path().display()
            )),
        "{err}"
    );
    kiln.assert_clean();
    std::fs::remove_file(filler).unwrap();
    kiln.ok(&["tag", "busybox", "busybox:after"]);
    for name in tagged
        .iter()
        .chain(std::iter::once(&"busybox:after".to_owned()))
    {
        assert!(kiln.has_image(name), "{name} was lost");
    }
    kiln.assert_clean();
}
