//! Programs for another architecture (a RUN step, a container): the kernel runs them through a
//! binfmt_misc handler (QEMU user emulation, Debian's `qemu-user-static`); this module checks,
//! before a sandbox starts, that a handler is there and usable inside the sandbox, so a missing
//! one is a message saying what to install rather than "exec format error".
//!
//! The sandbox pivots into the step's root filesystem, where the handler's interpreter does
//! not exist: only a handler registered with the F (fix-binary) flag, whose interpreter the
//! kernel opened at registration, works there. Debian's registrations have it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A platform as OCI spells it, normalized by the caller (`linux`, `arm64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform<'a> {
    pub os: &'a str,
    pub architecture: &'a str,
    pub variant: Option<&'a str>,
}

impl fmt::Display for Platform<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// Where the kernel shows its binfmt_misc handlers; `KILN_BINFMT_MISC_DIR` replaces it (for
/// tests, which must not change the host's handlers).
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The directory to read handlers from.
pub fn binfmt_dir() -> PathBuf {
    std::env::var_os("KILN_BINFMT_MISC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINFMT_MISC_DIR))
}

/// An ELF machine: what the header of a program for a platform starts with.
struct Elf {
    /// QEMU's name for the architecture (`qemu-<name>` handlers, `qemu-<name>-static`).
    qemu: &'static str,
    /// EI_CLASS: 1 for 32-bit, 2 for 64-bit.
    class: u8,
    /// EI_DATA: 1 little-endian, 2 big-endian.
    data: u8,
    machine: u16,
}

fn elf_of(platform: &Platform<'_>) -> Option<Elf> {
    let (qemu, class, data, machine) = match platform.architecture {
        "amd64" => ("x86_64", 2, 1, 0x3e),
        "386" => ("i386", 1, 1, 0x03),
        "arm64" => ("aarch64", 2, 1, 0xb7),
        "arm" => ("arm", 1, 1, 0x28),
        "ppc64le" => ("ppc64le", 2, 1, 0x15),
        "s390x" => ("s390x", 2, 2, 0x16),
        "riscv64" => ("riscv64", 2, 1, 0xf3),
        "mips64le" => ("mips64el", 2, 1, 0x08),
        "loong64" => ("loongarch64", 2, 1, 0x102),
        _ => return None,
    };
    Some(Elf {
        qemu,
        class,
        data,
        machine,
    })
}

/// Whether the host runs `platform`'s programs itself: its own architecture, and 32-bit x86
/// on x86-64.
pub fn runs_natively(platform: &Platform<'_>, host: &Platform<'_>) -> bool {
    platform.os == host.os
        && (platform.architecture == host.architecture
            || (host.architecture == "amd64" && platform.architecture == "386"))
}

/// Checks that programs for `platform` can run on `host` (inside a sandbox), reading
/// handlers from `dir`. `Err` is the whole message for the user.
pub fn check(platform: &Platform<'_>, host: &Platform<'_>, dir: &Path) -> Result<(), String> {
    if runs_natively(platform, host) {
        return Ok(());
    }
    if platform.os != host.os {
        return Err(format!(
            "cannot run programs for {platform} on this {host} host: only {} programs can \
             be run (through emulation for other architectures)",
            host.os
        ));
    }
    let Some(elf) = elf_of(platform) else {
        return Err(format!(
            "not supported yet: RUN steps for {platform} (no known emulator for architecture \
             {})",
            platform.architecture
        ));
    };
    let install = format!(
        "install qemu-user-static and binfmt-support (apt-get install qemu-user-static \
         binfmt-support), which register binfmt_misc handlers with the F flag, or run \
         `update-binfmts --enable qemu-{}`",
        elf.qemu
    );
    let status = std::fs::read_to_string(dir.join("status")).map_err(|_| {
        format!(
            "cannot run programs for {platform} on this {host} host: binfmt_misc is not \
             mounted at {} (mount -t binfmt_misc binfmt_misc {}); then {install}",
            dir.display(),
            dir.display()
        )
    })?;
    if status.trim() != "enabled" {
        return Err(format!(
            "cannot run programs for {platform} on this {host} host: binfmt_misc is disabled \
             ({}/status says {:?}); enable it (echo 1 > {}/status) and {install}",
            dir.display(),
            status.trim(),
            dir.display()
        ));
    }
    let mut without_fix = None;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read binfmt_misc handlers in {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(handler) = Handler::parse(&text) else {
            continue;
        };
        if !handler.enabled || !handler.runs(&elf) {
            continue;
        }
        if handler.flags.contains('F') {
            return Ok(());
        }
        without_fix = Some(name);
    }
    Err(match without_fix {
        Some(name) => format!(
            "cannot run programs for {platform} on this {host} host: the binfmt_misc handler \
             {name} for {} programs lacks the F (fix-binary) flag, so its interpreter cannot \
             be found inside the step's root filesystem; {install}",
            elf.qemu
        ),
        None => format!(
            "cannot run programs for {platform} on this {host} host: no binfmt_misc handler \
             for {} programs in {} (QEMU user emulation is missing); {install}",
            elf.qemu,
            dir.display()
        ),
    })
}

/// One binfmt_misc handler as its file in the binfmt_misc directory shows it.
struct Handler {
    enabled: bool,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    fn parse(text: &str) -> Option<Handler> {
        let mut handler = Handler {
            enabled: false,
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line == "enabled" {
                handler.enabled = true;
            } else if let Some(flags) = line.strip_prefix("flags:") {
                handler.flags = flags.trim().to_owned();
            } else if let Some(offset) = line.strip_prefix("offset ") {
                handler.offset = offset.trim().parse().ok()?;
            } else if let Some(magic) = line.strip_prefix("magic ") {
                handler.magic = hex(magic.trim())?;
            } else if let Some(mask) = line.strip_prefix("mask ") {
                handler.mask = hex(mask.trim())?;
            }
        }
        // Extension handlers (`E`) have no magic: they never match an ELF program.
        (!handler.magic.is_empty()).then_some(handler)
    }

    /// Whether this handler takes an ELF program for `elf` (a typical executable: the magic
    /// and mask are compared with a header's first 20 bytes).
    fn runs(&self, elf: &Elf) -> bool {
        let machine = match elf.data {
            2 => elf.machine.to_be_bytes(),
            _ => elf.machine.to_le_bytes(),
        };
        // An executable (ET_EXEC = 2); PIE programs are ET_DYN = 3, which masks that keep
        // only the low bit of e_type (as QEMU's `\xfe`) also accept.
        let e_type: u16 = 2;
        let e_type = match elf.data {
            2 => e_type.to_be_bytes(),
            _ => e_type.to_le_bytes(),
        };
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = elf.class;
        header[5] = elf.data;
        header[6] = 1;
        header[16..18].copy_from_slice(&e_type);
        header[18..20].copy_from_slice(&machine);
        if self.offset + self.magic.len() > header.len() || self.magic.len() < 20 {
            return false;
        }
        self.magic.iter().enumerate().all(|(i, m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header[self.offset + i] & mask == m & mask
        })
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn p(s: &str) -> Platform<'_> {
        let mut parts = s.split('/');
        Platform {
            os: parts.next().unwrap(),
            architecture: parts.next().unwrap(),
            variant: parts.next(),
        }
    }

    #[test]
    fn native_and_386_need_no_handler() {
        let empty = Path::new("/nonexistent-binfmt");
        assert!(check(&p("linux/amd64"), &p("linux/amd64"), empty).is_ok());
        assert!(check(&p("linux/386"), &p("linux/amd64"), empty).is_ok());
    }

    #[test]
    fn debian_handler_with_fix_binary_is_found() {
        let dir = dir_with(&[("qemu-aarch64", AARCH64)]);
        assert_eq!(
            check(&p("linux/arm64"), &p("linux/amd64"), dir.path()),
            Ok(())
        );
        // Not the handler for arm (32-bit).
        let e = check(&p("linux/arm/v7"), &p("linux/amd64"), dir.path()).unwrap_err();
        assert!(e.contains("no binfmt_misc handler for arm programs"), "{e}");
    }

    #[test]
    fn missing_handler_names_qemu_user_static_and_binfmt() {
        let dir = dir_with(&[]);
        let e = check(&p("linux/arm64"), &p("linux/amd64"), dir.path()).unwrap_err();
        assert!(e.contains("qemu-user-static"), "{e}");
        assert!(e.contains("binfmt_misc handler for aarch64"), "{e}");
        assert!(!e.contains("exec format error"), "{e}");
    }

    #[test]
    fn disabled_or_unfixed_handler_is_refused() {
        let disabled = AARCH64.replace("enabled\n", "disabled\n");
        let dir = dir_with(&[("qemu-aarch64", &disabled)]);
        let e = check(&p("linux/arm64"), &p("linux/amd64"), dir.path()).unwrap_err();
        assert!(e.contains("no binfmt_misc handler"), "{e}");
        let unfixed = AARCH64.replace("flags: PF", "flags: P");
        let dir = dir_with(&[("qemu-aarch64", &unfixed)]);
        let e = check(&p("linux/arm64"), &p("linux/amd64"), dir.path()).unwrap_err();
        assert!(e.contains("lacks the F (fix-binary) flag"), "{e}");
    }

    #[test]
    fn unmounted_binfmt_misc_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = check(&p("linux/arm64"), &p("linux/amd64"), dir.path()).unwrap_err();
        assert!(e.contains("binfmt_misc is not mounted"), "{e}");
        assert!(e.contains("qemu-user-static"), "{e}");
    }
}
