//! The child's reports on the status pipe, read by the parent until execve closes it: the
//! stubs it created (for cleanup) and, on failure, the step that failed, turned into an error
//! that names it.

use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::SandboxError;
use super::spec::{CAPABILITY_NAMES, Network, SandboxSpec};
use crate::sys::child;

/// Reads reports until the pipe closes (on exec, or when the child exits). Created stubs that
/// the ops tracked go to `created`; returns the failure, if the child reported one.
pub(super) fn read_reports(
    status: OwnedFd,
    tracked: &[Option<PathBuf>],
    created: &mut Vec<PathBuf>,
) -> Option<child::Report> {
    let mut status = fs::File::from(status);
    let mut failure = None;
    let mut buf = [0u8; child::REPORT_SIZE];
    loop {
        match status.read_exact(&mut buf) {
            Ok(()) => {
                let r = child::Report::from_bytes(&buf);
                if r.kind == child::REPORT_CREATED {
                    if let Some(Some(p)) = tracked.get(r.index as usize) {
                        created.push(p.clone());
                    }
                } else if r.kind == child::REPORT_ERROR {
                    failure = Some(r);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    failure
}

/// The error for a failure report: the step (or mount op, from `op_what`) and the errno.
pub(super) fn describe_failure(
    spec: &SandboxSpec,
    op_what: &[String],
    mountpoint: &Path,
    r: child::Report,
) -> SandboxError {
    use child::Step;
    let source = io::Error::from_raw_os_error(r.errno);
    let Some(step) = Step::from_u32(r.step) else {
        return SandboxError::Setup {
            what: format!(
                "sandbox setup failed at unknown step {} (this is a bug in kiln)",
                r.step
            ),
            source,
        };
    };
    let what = match step {
        Step::Exec => {
            return SandboxError::Exec {
                program: spec.argv[0].clone(),
                source,
            };
        }
        Step::JoinCgroup => "failed to join the sandbox cgroup".to_string(),
        Step::CgroupNs => "failed to create a cgroup namespace".to_string(),
        Step::JoinNetNs => match &spec.network {
            Network::Namespace(p) => format!("failed to join network namespace {}", p.display()),
            _ => "failed to join network namespace".to_string(),
        },
        Step::Loopback => "failed to bring up lo".to_string(),
        Step::Hostname => format!("failed to set hostname {:?}", spec.hostname),
        Step::MakePrivate => "failed to make the sandbox's mounts private".to_string(),
        Step::AttachRootfs => format!("failed to attach the rootfs at {}", mountpoint.display()),
        Step::PivotRoot => format!("failed to pivot_root into {}", mountpoint.display()),
        Step::DetachOldRoot => "failed to detach the old root".to_string(),
        Step::Op => op_what
            .get(r.index as usize)
            .cloned()
            .unwrap_or_else(|| format!("failed at setup op {}", r.index)),
        Step::ReadonlyRootfs => "failed to make the rootfs read-only".to_string(),
        Step::Rlimit => match spec.rlimits.get(r.index as usize) {
            Some(l) => format!("failed to set {}", l.resource.oci_name()),
            None => "failed to set an rlimit".to_string(),
        },
        Step::Cwd => format!("failed to enter working directory {}", spec.cwd.display()),
        Step::DropBounding => format!(
            "failed to drop {} from the bounding set",
            CAPABILITY_NAMES
                .get(r.index as usize)
                .unwrap_or(&"a capability")
        ),
        Step::Setsid => "failed to start a new session".to_string(),
        Step::Groups => format!(
            "failed to set supplementary groups {:?}",
            spec.user.additional_gids
        ),
        Step::Gid => format!("failed to set gid {}", spec.user.gid),
        Step::Uid => format!("failed to set uid {}", spec.user.uid),
        Step::Capabilities => "failed to set capabilities".to_string(),
        Step::NoNewPrivs => "failed to set no_new_privs".to_string(),
        Step::Stdio => "failed to set up stdin, stdout and stderr".to_string(),
        Step::ControllingTty => "failed to make the pty the controlling terminal".to_string(),
        Step::Seccomp => "failed to install the seccomp filter".to_string(),
        Step::JoinNs => "failed to join the IPC or UTS namespace".to_string(),
        Step::Init => "failed to start the init".to_string(),
    };
    SandboxError::Setup { what, source }
}
